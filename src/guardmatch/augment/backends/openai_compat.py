"""Any OpenAI-compatible chat server (vLLM, llama.cpp server, Ollama, llama_cpp.server, ...).

Built on the official ``openai`` SDK (``pip install openai``; in the ``augment`` extra): its
``AsyncOpenAI`` client sends the requests, at most ``concurrency`` in flight (an
``asyncio.Semaphore``; the default, 32, keeps a vLLM server's batch full; lower it for a
llama.cpp server with few slots). The SDK does the retries: connection errors, timeouts, 408,
409, 429 and 5xx are retried up to ``max_retries`` times with exponential backoff that honours
``Retry-After``; other 4xx answers are not retried (they will not get better). Each request has
``timeout_s`` (connect: at most 10 s). Failures come back per item as ``Generation.error``
(typed by the SDK's exceptions), never raised, so one bad request does not lose a batch.

``base_url``, ``concurrency``, ``timeout_s`` and ``max_retries`` are runtime settings: the
backend's identity (what cache fingerprints see) is ``kind`` and ``model`` only.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from guardmatch.augment.backends.base import (
    BACKENDS,
    BackendConfig,
    ChatBackend,
    FollowUp,
    Generation,
    GenerationParams,
    Message,
    second_request,
)
from guardmatch.errors import GuardmatchError

NO_KEY = "no-key"  # servers without auth ignore it; the SDK needs some key


class ServerError(GuardmatchError, RuntimeError):
    """The server could not be reached or keeps failing."""


def _openai():
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - the augment extra installs it
        raise ImportError('the openai backend needs the openai SDK: pip install -e ".[augment]"') from exc
    return openai


@BACKENDS.register("openai")
class OpenAICompatBackend(ChatBackend):
    def __init__(self, config: BackendConfig):
        super().__init__(config)
        self.base_url = config.base_url.rstrip("/")

    def _client_args(self) -> dict[str, Any]:
        # the SDK's own Timeout class: openai 3.x runs on httpx2, which rejects an httpx.Timeout
        timeout = _openai().Timeout(self.config.timeout_s, connect=min(10.0, self.config.timeout_s))
        return {
            "base_url": self.base_url,
            "api_key": os.environ.get(self.config.api_key_env) or NO_KEY,
            "max_retries": self.config.max_retries,
            "timeout": timeout,
        }

    def load(self) -> None:
        """Check that the server answers ``GET /models`` (clear error otherwise)."""
        openai = _openai()
        try:
            with openai.OpenAI(**{**self._client_args(), "max_retries": 0}) as client:
                client.models.list()
        except openai.OpenAIError as exc:
            raise ServerError(f"OpenAI-compatible server at {self.base_url} is not answering: "
                              f"{type(exc).__name__}: {exc}") from exc

    def chat(self, conversations: list[list[Message]], params: list[GenerationParams]) -> list[Generation]:
        return asyncio.run(self._chat_all(conversations, params))

    async def _chat_all(self, conversations: list[list[Message]], params: list[GenerationParams]) -> list[Generation]:
        openai = _openai()
        sem = asyncio.Semaphore(self.config.concurrency)
        async with openai.AsyncOpenAI(**self._client_args()) as client:
            return list(await asyncio.gather(*(self._one(openai, client, sem, m, p)
                                               for m, p in zip(conversations, params))))

    def chat_chains(self, conversations: list[list[Message]], params: list[GenerationParams],
                    follow_up: FollowUp) -> list[tuple[Generation, Generation | None]]:
        """``concurrency`` workers, each taking the next item and running both its steps: a slot
        that finishes an item's first step serves that item's second step next, instead of queueing
        it behind every first step of the batch. A ``follow_up`` that raises costs only its item
        (an ``error`` second reply)."""
        return asyncio.run(self._chains(conversations, params, follow_up))

    async def _chains(self, conversations: list[list[Message]], params: list[GenerationParams],
                      follow_up: FollowUp) -> list[tuple[Generation, Generation | None]]:
        openai = _openai()
        sem = asyncio.Semaphore(self.config.concurrency)
        results: list[tuple[Generation, Generation | None] | None] = [None] * len(conversations)
        todo = iter(range(len(conversations)))  # shared by the workers (one event loop: no lock needed)
        async with openai.AsyncOpenAI(**self._client_args()) as client:
            async def worker() -> None:
                for i in todo:
                    first = await self._one(openai, client, sem, conversations[i], params[i])
                    nxt = second_request(follow_up, i, first)
                    if nxt is None or isinstance(nxt, Generation):
                        results[i] = (first, nxt)
                    else:
                        results[i] = (first, await self._one(openai, client, sem, *nxt))

            await asyncio.gather(*(worker() for _ in range(min(self.config.concurrency, len(conversations)))))
        done = [r for r in results if r is not None]
        assert len(done) == len(results), "every item is taken by exactly one worker"
        return done

    async def _one(self, openai: Any, client: Any, sem: asyncio.Semaphore, messages: list[Message],
                   p: GenerationParams) -> Generation:
        extra: dict[str, Any] = {"stop": p.stop} if p.stop else {}
        tries = self.config.max_retries + 1
        async with sem:
            try:
                resp = await client.chat.completions.create(
                    model=self.config.model, messages=messages, max_tokens=p.max_new_tokens,
                    temperature=p.temperature, top_p=p.top_p, seed=p.seed, **extra)
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                return Generation("", "error", error=f"gave up after {tries} tries: {type(exc).__name__}: {exc}")
            except openai.APIStatusError as exc:
                retried = exc.status_code in (408, 409, 429) or exc.status_code >= 500
                head = f"gave up after {tries} tries: " if retried else ""
                return Generation("", "error", error=f"{head}HTTP {exc.status_code} ({type(exc).__name__}): "
                                                     f"{str(exc.message)[:300]}")
            except openai.OpenAIError as exc:  # e.g. a body that is not a chat completion
                return Generation("", "error", error=f"{type(exc).__name__}: {str(exc)[:300]}")
        try:
            choice = resp.choices[0]
            usage = resp.usage
            return Generation(choice.message.content or "", choice.finish_reason or "stop",
                              getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None))
        except (AttributeError, IndexError, TypeError) as exc:
            return Generation("", "error", error=f"malformed response: {type(exc).__name__}: {exc}")

    def preferred_batch_size(self) -> int:
        """4 requests per slot: the slots drain only at a batch's end (a killed run loses that much)."""
        return max(8, 4 * self.config.concurrency)
