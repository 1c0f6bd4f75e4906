"""One interface for chat LLMs: local transformers, llama.cpp (GGUF) and OpenAI-compatible servers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from guardmatch.config import StrictModel
from guardmatch.registry import Registry

Message = dict[str, str]
FollowUp = Callable[[int, "Generation"], "tuple[list[Message], GenerationParams] | None"]
"""``follow_up(i, reply)``: item ``i``'s second request, made from its first ``reply`` (or None)."""


def second_request(follow_up: FollowUp, i: int, reply: Generation
                   ) -> tuple[list[Message], GenerationParams] | Generation | None:
    """``follow_up(i, reply)``; if it raises, an ``error`` reply for item ``i`` alone (one bad item
    must not lose the batch)."""
    try:
        return follow_up(i, reply)
    except Exception as exc:  # noqa: BLE001
        return Generation("", "error", error=f"follow-up failed: {type(exc).__name__}: {exc}")

BACKENDS: Registry[ChatBackend] = Registry("chat backend", modules=(
    "guardmatch.augment.backends.llama_cpp", "guardmatch.augment.backends.transformers",
    "guardmatch.augment.backends.openai_compat"))
"""Every chat backend by ``kind`` (its module is imported on the first lookup; heavy libraries only
when a backend loads)."""


class BackendConfig(StrictModel):
    """Which LLM answers, and how. Fields a backend does not use are ignored by it."""

    model_config = ConfigDict(protected_namespaces=())

    kind: str = Field("llama-cpp", description="a backend of BACKENDS: llama-cpp, transformers, openai")
    model: str = Field("qwen1.5b", description="alias (smollm2, qwen1.5b), GGUF/HF path, Hub id, or server model name")
    # local backends
    threads: int = Field(2, ge=1, description="CPU threads (llama.cpp n_threads, torch threads)")
    n_ctx: int = Field(4096, ge=256, description="llama.cpp context window")
    parallel: int = Field(1, ge=1, description=(
        "llama.cpp contexts generating side by side, each with `threads` threads (weights are shared "
        "through mmap). On small CPUs, 2 contexts x 1 thread make ~1.7x the views of 1 x 2 threads."))
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # OpenAI-compatible server
    base_url: str = Field("http://127.0.0.1:8000/v1", description="server root incl. /v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="env var holding the API key (may be unset)")
    concurrency: int = Field(32, ge=1, description=(
        "requests in flight at once (openai backend); 32 keeps a vLLM server's batch full, a llama.cpp "
        "server answers at most its --n_parallel slots at a time"))
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        BACKENDS.get(kind)  # an unknown kind names the available ones
        return kind


RUNTIME_FIELDS_BY_KIND: dict[str, tuple[str, ...]] = {
    "llama-cpp": ("threads", "parallel"),
    "transformers": ("threads", "device"),
    "openai": ("base_url", "concurrency", "timeout_s", "max_retries"),
}
"""The runtime fields each backend kind actually reads (what a run logs next to its throughput)."""

RUNTIME_FIELDS = frozenset({"api_key_env"}).union(*RUNTIME_FIELDS_BY_KIND.values())
"""Backend settings that change speed, not outputs: left out of cache fingerprints, so a run can
resume with more threads or another server address."""


class GenerationParams(StrictModel):
    """Sampling settings of one request."""

    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    seed: int = 0
    stop: list[str] = Field(default_factory=list)


@dataclass
class Generation:
    text: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None


class ChatBackend(ABC):
    """Generates one assistant reply per conversation. Errors are returned, not raised, per item.

    ``name`` (the config's ``kind``) is set by ``@BACKENDS.register``."""

    name: str

    def __init__(self, config: BackendConfig):
        self.config = config

    def identity(self) -> dict[str, Any]:
        """What identifies the model for the cache fingerprint (never the server URL)."""
        return {"kind": self.config.kind, "model": self.config.model}

    def load(self) -> None:
        """Load weights / check the server. Called once before generating."""

    @abstractmethod
    def chat(self, conversations: list[list[Message]], params: list[GenerationParams]) -> list[Generation]:
        """Replies in the order of ``conversations``."""

    def chat_chains(self, conversations: list[list[Message]], params: list[GenerationParams],
                    follow_up: FollowUp) -> list[tuple[Generation, Generation | None]]:
        """Two-step requests (e.g. a translation there and back): each item's first reply, then the
        reply to ``follow_up(i, first)`` where that is not None (a ``follow_up`` that raises gives
        that item an ``error`` second reply). Here as two batches (every first
        step, then every second step); a server backend overrides it so that an item's second step
        starts as soon as its own first step is back, with no wait for the batch's slowest item."""
        first = self.chat(conversations, params)
        out: list[tuple[Generation, Generation | None]] = [(g, None) for g in first]
        todo = []
        for i, g in enumerate(first):
            nxt = second_request(follow_up, i, g)
            if isinstance(nxt, Generation):
                out[i] = (g, nxt)
            elif nxt is not None:
                todo.append((i, nxt))
        second = self.chat([n[0] for _, n in todo], [n[1] for _, n in todo]) if todo else []
        for (i, _), g in zip(todo, second):
            out[i] = (first[i], g)
        return out

    def count_tokens(self, text: str) -> int:
        """Approximate token count (backends with a tokenizer override this)."""
        return max(1, len(text) // 3)

    def preferred_batch_size(self) -> int:
        return 8

    def close(self) -> None:
        """Free the model / client."""
