"""A local causal LM through ``transformers``: batched, left-padded, sampled generation.

Uses the tokenizer's chat template when it has one; otherwise a plain ``System:/User:/Assistant:``
layout. Works with any ``AutoModelForCausalLM`` directory or Hub id, and with a ``.gguf`` file
(aliases ``smollm2``, ``qwen1.5b`` included): transformers dequantizes it on load (needs ``gguf``,
in the ``augment`` extra), which trades llama.cpp's quantized kernels for batched generation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guardmatch.augment.backends.base import BACKENDS, BackendConfig, ChatBackend, Generation, GenerationParams, Message
from guardmatch.augment.backends.models import file_identity, resolve_model


def plain_chat(messages: list[Message]) -> str:
    """Fallback chat layout for tokenizers without a chat template."""
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "".join(f"{names.get(m['role'], m['role'])}: {m['content']}\n" for m in messages) + "Assistant:"


@BACKENDS.register("transformers")
class TransformersBackend(ChatBackend):
    def __init__(self, config: BackendConfig, model: Any = None, tokenizer: Any = None):
        super().__init__(config)
        self.path = resolve_model(config.model)
        self.model, self.tokenizer = model, tokenizer

    def identity(self) -> dict[str, Any]:
        return {"kind": self.name, "model": self.config.model, **file_identity(self.path)}

    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(min(self.config.threads, torch.get_num_threads()))
        where, extra = self.path, {}
        if self.path.endswith(".gguf"):
            where, extra = str(Path(self.path).parent), {"gguf_file": Path(self.path).name}
        if self.tokenizer is None:
            self.tokenizer = AutoTokenizer.from_pretrained(where, **extra)
        if self.model is None:
            dtype = getattr(torch, self.config.dtype)
            model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **extra)
            # transformers wraps PreTrainedModel.to with functools.wraps(nn.Module.to), whose _Wrapped type drops self
            self.model = model.to(self.config.device).eval()  # type: ignore[arg-type]
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is None:
            self.load()
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(self, messages: list[Message]) -> str:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return plain_chat(messages)

    def chat(self, conversations: list[list[Message]], params: list[GenerationParams]) -> list[Generation]:
        """One ``generate`` call per group of conversations sharing sampling settings (seeded per group)."""
        import torch

        if self.model is None or self.tokenizer is None:
            self.load()
        out: list[Generation | None] = [None] * len(conversations)
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(params):
            groups.setdefault((p.temperature, p.top_p, tuple(p.stop)), []).append(i)
        for (temperature, top_p, _), idx in groups.items():
            texts = [self.render(conversations[i]) for i in idx]
            max_new = max(params[i].max_new_tokens for i in idx)
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: enc[k].to(self.model.device) for k in ("input_ids", "attention_mask")}
            torch.manual_seed(params[idx[0]].seed)
            kwargs: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": self.tokenizer.pad_token_id}
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
            else:
                kwargs.update(do_sample=False)
            try:
                with torch.inference_mode():
                    gen = self.model.generate(**enc, **kwargs)
            except Exception as exc:  # noqa: BLE001 - reported per item
                for i in idx:
                    out[i] = Generation("", "error", error=f"{type(exc).__name__}: {exc}")
                continue
            new = gen[:, enc["input_ids"].shape[1]:]
            eos = self.tokenizer.eos_token_id
            for row, i in enumerate(idx):
                ids = new[row].tolist()
                limit = params[i].max_new_tokens
                finish = "length"
                if eos is not None and eos in ids[:limit]:
                    ids, finish = ids[: ids.index(eos)], "stop"
                ids = ids[:limit]
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                for s in params[i].stop:
                    if s in text:
                        text, finish = text.split(s, 1)[0], "stop"
                out[i] = Generation(text, finish, int(enc["attention_mask"][row].sum()), len(ids))
        return out  # type: ignore[return-value]

    def preferred_batch_size(self) -> int:
        return 8

    def close(self) -> None:
        self.model = None
