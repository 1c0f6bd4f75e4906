"""llama.cpp through ``llama-cpp-python`` (optional extra ``llama``): GGUF models on CPU.

llama.cpp's Python API has no batched chat: a batch is shared out over ``parallel`` contexts that
generate side by side (each a :class:`Llama` on the same memory-mapped weights, called from its own
thread; llama.cpp releases the GIL while it computes). Each context reuses the KV cache of the shared
instruction prefix between calls, so put the varying text last in prompts.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from guardmatch.augment.backends.base import BackendConfig, ChatBackend, Generation, GenerationParams, Message
from guardmatch.augment.backends.models import file_identity, resolve_model


class LlamaCppBackend(ChatBackend):
    kind = "llama-cpp"

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        self._contexts: list[Any] = []
        self.path = resolve_model(config.model)

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.config.model, **file_identity(self.path)}

    def load(self) -> None:
        if self._contexts:
            return
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ImportError('the llama-cpp backend needs the extra: pip install "guardmatch[llama]"') from exc
        self._contexts = [
            Llama(model_path=self.path, n_ctx=self.config.n_ctx, n_threads=self.config.threads,
                  n_threads_batch=self.config.threads, verbose=False)
            for _ in range(self.config.parallel)
        ]

    def count_tokens(self, text: str) -> int:
        self.load()
        return _n_tokens(self._contexts[0], text)

    def preferred_batch_size(self) -> int:
        return 4 if self.config.parallel == 1 else 6 * self.config.parallel

    def chat(self, conversations: list[list[Message]], params: list[GenerationParams]) -> list[Generation]:
        self.load()
        if len(self._contexts) == 1 or len(conversations) == 1:
            return [self._chat_one(self._contexts[0], m, p) for m, p in zip(conversations, params)]
        idle: queue.Queue[Any] = queue.Queue()
        for llm in self._contexts:
            idle.put(llm)

        def run(messages: list[Message], p: GenerationParams) -> Generation:
            llm = idle.get()
            try:
                return self._chat_one(llm, messages, p)
            finally:
                idle.put(llm)

        # longest first, so that the contexts finish the batch at about the same time
        order = sorted(range(len(conversations)), key=lambda i: -sum(len(m["content"]) for m in conversations[i]))
        with ThreadPoolExecutor(max_workers=len(self._contexts)) as pool:
            futures = {i: pool.submit(run, conversations[i], params[i]) for i in order}
            return [futures[i].result() for i in range(len(conversations))]

    def _chat_one(self, llm: Any, messages: list[Message], p: GenerationParams) -> Generation:
        try:
            prompt_tokens = sum(_n_tokens(llm, m["content"]) + 8 for m in messages)
            room = self.config.n_ctx - prompt_tokens - 16
            if room < 16:
                return Generation("", "error", prompt_tokens, 0,
                                  error=f"input too long for n_ctx={self.config.n_ctx} ({prompt_tokens} tokens)")
            llm.set_seed(p.seed)
            res = llm.create_chat_completion(
                messages=messages, max_tokens=min(p.max_new_tokens, room), temperature=p.temperature,
                top_p=p.top_p, seed=p.seed, stop=p.stop or None,
            )
            choice = res["choices"][0]
            usage = res.get("usage") or {}
            return Generation(choice["message"].get("content") or "", choice.get("finish_reason") or "stop",
                              usage.get("prompt_tokens"), usage.get("completion_tokens"))
        except Exception as exc:  # noqa: BLE001 - one bad text must not stop the batch
            return Generation("", "error", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        for llm in self._contexts:
            try:
                llm.close()
            except Exception:  # noqa: BLE001
                pass
        self._contexts = []


def _n_tokens(llm: Any, text: str) -> int:
    """Tokens of ``text`` under ``llm``'s vocabulary (no BOS, special tokens as text)."""
    return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
