"""llama.cpp through ``llama-cpp-python`` (optional extra ``llama``): GGUF models on CPU.

Requests run one after another (llama.cpp's Python API has no batched chat); the KV cache of the
shared instruction prefix is reused between calls, so put the varying text last in prompts.
"""

from __future__ import annotations

from typing import Any

from guardmatch.augment.backends.base import BackendConfig, ChatBackend, Generation, GenerationParams, Message
from guardmatch.augment.backends.models import file_identity, resolve_model


class LlamaCppBackend(ChatBackend):
    kind = "llama-cpp"

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        self._llm: Any = None
        self.path = resolve_model(config.model)

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.config.model, **file_identity(self.path)}

    def load(self) -> None:
        if self._llm is not None:
            return
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ImportError('the llama-cpp backend needs the extra: pip install "guardmatch[llama]"') from exc
        self._llm = Llama(model_path=self.path, n_ctx=self.config.n_ctx, n_threads=self.config.threads,
                          n_threads_batch=self.config.threads, verbose=False)

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def preferred_batch_size(self) -> int:
        return 4

    def chat(self, conversations: list[list[Message]], params: list[GenerationParams]) -> list[Generation]:
        self.load()
        out = []
        for messages, p in zip(conversations, params):
            try:
                prompt_tokens = sum(self.count_tokens(m["content"]) + 8 for m in messages)
                room = self.config.n_ctx - prompt_tokens - 16
                if room < 16:
                    out.append(Generation("", "error", prompt_tokens, 0,
                                          error=f"input too long for n_ctx={self.config.n_ctx} ({prompt_tokens} tokens)"))
                    continue
                self._llm.set_seed(p.seed)
                res = self._llm.create_chat_completion(
                    messages=messages, max_tokens=min(p.max_new_tokens, room), temperature=p.temperature,
                    top_p=p.top_p, seed=p.seed, stop=p.stop or None,
                )
                choice = res["choices"][0]
                usage = res.get("usage") or {}
                out.append(Generation(choice["message"].get("content") or "", choice.get("finish_reason") or "stop",
                                      usage.get("prompt_tokens"), usage.get("completion_tokens")))
            except Exception as exc:  # noqa: BLE001 - one bad text must not stop the batch
                out.append(Generation("", "error", error=f"{type(exc).__name__}: {exc}"))
        return out

    def close(self) -> None:
        if self._llm is not None:
            try:
                self._llm.close()
            except Exception:  # noqa: BLE001
                pass
            self._llm = None
