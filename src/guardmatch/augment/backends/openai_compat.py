"""Any OpenAI-compatible chat server (vLLM, llama.cpp server, Ollama, llama_cpp.server, ...).

Requests go out concurrently (``asyncio`` + ``httpx``, at most ``concurrency`` in flight), each
with a timeout and up to ``max_retries`` retries with exponential backoff on connection errors,
timeouts, 429 and 5xx. Other 4xx answers are not retried (they will not get better).
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import httpx

from guardmatch.augment.backends.base import BackendConfig, ChatBackend, Generation, GenerationParams, Message

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ServerError(RuntimeError):
    """The server could not be reached or keeps failing."""


class OpenAICompatBackend(ChatBackend):
    kind = "openai"

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        self.base_url = config.base_url.rstrip("/")

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.config.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def load(self) -> None:
        """Check that the server answers ``GET /models`` (clear error otherwise)."""
        try:
            r = httpx.get(f"{self.base_url}/models", headers=self._headers(), timeout=self.config.timeout_s)
            r.raise_for_status()
        except httpx.HTTPError as exc:
            raise ServerError(f"OpenAI-compatible server at {self.base_url} is not answering: {exc}") from exc

    def chat(self, conversations: list[list[Message]], params: list[GenerationParams]) -> list[Generation]:
        return asyncio.run(self._chat_all(conversations, params))

    async def _chat_all(self, conversations: list[list[Message]], params: list[GenerationParams]) -> list[Generation]:
        sem = asyncio.Semaphore(self.config.concurrency)
        timeout = httpx.Timeout(self.config.timeout_s, connect=min(10.0, self.config.timeout_s))
        async with httpx.AsyncClient(base_url=self.base_url, headers=self._headers(), timeout=timeout) as client:
            return list(await asyncio.gather(*(self._one(client, sem, m, p) for m, p in zip(conversations, params))))

    async def _one(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, messages: list[Message],
                   p: GenerationParams) -> Generation:
        body: dict[str, Any] = {"model": self.config.model, "messages": messages, "max_tokens": p.max_new_tokens,
                                "temperature": p.temperature, "top_p": p.top_p, "seed": p.seed}
        if p.stop:
            body["stop"] = p.stop
        last = ""
        async with sem:
            for attempt in range(self.config.max_retries + 1):
                if attempt:
                    await asyncio.sleep(min(30.0, 0.5 * 2 ** (attempt - 1)) * (1 + random.random() * 0.25))
                try:
                    r = await client.post("/chat/completions", json=body)
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    last = f"{type(exc).__name__}: {exc}"
                    continue
                if r.status_code in RETRY_STATUS:
                    last = f"HTTP {r.status_code}: {r.text[:200]}"
                    continue
                if r.status_code >= 400:
                    return Generation("", "error", error=f"HTTP {r.status_code}: {r.text[:300]}")
                try:
                    data = r.json()
                    choice = data["choices"][0]
                    usage = data.get("usage") or {}
                    return Generation(choice["message"].get("content") or "", choice.get("finish_reason") or "stop",
                                      usage.get("prompt_tokens"), usage.get("completion_tokens"))
                except (ValueError, KeyError, IndexError) as exc:
                    return Generation("", "error", error=f"malformed response: {exc}: {r.text[:200]}")
        return Generation("", "error", error=f"gave up after {self.config.max_retries + 1} tries: {last}")

    def preferred_batch_size(self) -> int:
        return max(8, 2 * self.config.concurrency)
