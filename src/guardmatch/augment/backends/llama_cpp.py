"""llama.cpp through ``llama-cpp-python`` (optional extra ``llama``): GGUF models on CPU.

llama.cpp's Python API has no batched chat: a batch is shared out over ``parallel`` contexts that
generate side by side (each a :class:`Llama` on the same memory-mapped weights, called from its own
thread; llama.cpp releases the GIL while it computes).

Seeded generation is deterministic: the same conversation, parameters and seed give the same text
in any order, in any context, in any process. Each call renders the conversation with the GGUF's own
chat template; everything before the last message's content (the instructions and few-shot turns)
is the *prefix*. A context holds one prefix, evaluated alone, and every call evaluates the rest of
its prompt from the end of that prefix, never from wherever the previous call stopped (llama.cpp's
own prefix matching does the latter, which changes logits slightly, hence samples, between two
calls with the same text). The prefix is evaluated once per context and template, so put the
varying text last in prompts.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from guardmatch.augment.backends.base import BACKENDS, BackendConfig, ChatBackend, Generation, GenerationParams, Message
from guardmatch.augment.backends.models import file_identity, resolve_model


@BACKENDS.register("llama-cpp")
class LlamaCppBackend(ChatBackend):
    def __init__(self, config: BackendConfig):
        super().__init__(config)
        self._contexts: list[Any] = []
        self._state: dict[int, _PrefixState] = {}
        self.path = resolve_model(config.model)

    def identity(self) -> dict[str, Any]:
        return {"kind": self.name, "model": self.config.model, **file_identity(self.path)}

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
        self._state = {id(llm): _PrefixState(_chat_formatter(llm)) for llm in self._contexts}

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
            state = self._state[id(llm)]
            rendered = state.formatter(messages=messages)
            tokens = llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
            room = self.config.n_ctx - len(tokens) - 16
            if room < 16:
                return Generation("", "error", len(tokens), 0,
                                  error=f"input too long for n_ctx={self.config.n_ctx} ({len(tokens)} tokens)")
            state.place_prefix(llm, messages, tokens)
            llm.set_seed(p.seed)
            res = llm.create_completion(
                prompt=tokens, max_tokens=min(p.max_new_tokens, room), temperature=p.temperature, top_p=p.top_p,
                seed=p.seed, stop=[*(rendered.stop or []), *p.stop], stopping_criteria=rendered.stopping_criteria,
            )
            state.after_call(llm)
            choice = res["choices"][0]
            usage = res.get("usage") or {}
            return Generation(choice.get("text") or "", choice.get("finish_reason") or "stop",
                              usage.get("prompt_tokens"), usage.get("completion_tokens"))
        except Exception as exc:  # noqa: BLE001 - one bad text must not stop the batch
            self._state[id(llm)].warm = None
            return Generation("", "error", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        for llm in self._contexts:
            try:
                llm.close()
            except Exception:  # noqa: BLE001
                pass
        self._contexts = []


_SENTINEL = "\u2063guardmatch-text\u2063"


class _PrefixState:
    """Which prefix one context holds, evaluated alone (see the module docstring)."""

    def __init__(self, formatter: Any):
        self.formatter = formatter
        self.warm: list[int] | None = None  # the prefix tokens whose KV the context holds intact
        self._intact = True
        self._prefixes: dict[tuple, list[int]] = {}

    def prefix(self, llm: Any, messages: list[Message]) -> list[int]:
        """Tokens of the rendered conversation before the last message's content."""
        key = tuple((m["role"], m["content"]) for m in messages[:-1]) + (messages[-1]["role"],)
        if key not in self._prefixes:
            probe = [*messages[:-1], {**messages[-1], "content": _SENTINEL}]
            rendered = self.formatter(messages=probe)
            head = rendered.prompt[: rendered.prompt.index(_SENTINEL)]
            self._prefixes[key] = llm.tokenize(head.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        return self._prefixes[key]

    def place_prefix(self, llm: Any, messages: list[Message], tokens: list[int]) -> None:
        """Leave the context holding exactly the shared part of this prompt's prefix."""
        prefix = self.prefix(llm, messages)
        common = 0
        for a, b in zip(prefix, tokens):
            if a != b:
                break
            common += 1
        common = min(common, len(tokens) - 1)  # at least one prompt token is evaluated by the call
        if self.warm != prefix:
            llm.reset()
            llm.eval(prefix)
            self.warm = prefix
        llm.n_tokens = common  # generate() reuses [0, common) and evaluates the rest in one go
        self._intact = common == len(prefix)

    def after_call(self, llm: Any) -> None:
        if not self._intact:  # the call overwrote part of the prefix: evaluate it afresh next time
            self.warm = None


def _chat_formatter(llm: Any) -> Any:
    """The GGUF's own chat template as a llama-cpp-python formatter (what create_chat_completion
    uses for a model without a built-in format); ChatML where the file has none."""
    from llama_cpp import llama_chat_format

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return _chatml_formatter(llama_chat_format)
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    eos = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
    return llama_chat_format.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos,
                                                 stop_token_ids=[eos_id])


def _chatml_formatter(llama_chat_format: Any) -> Any:
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return llama_chat_format.Jinja2ChatFormatter(template=template, eos_token="<|im_end|>", bos_token="")


def _n_tokens(llm: Any, text: str) -> int:
    """Tokens of ``text`` under ``llm``'s vocabulary (no BOS, special tokens as text)."""
    return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
