"""Backtranslation English -> X -> English, one view per pivot language.

Two engines behind the same view semantics (view ``i`` uses ``pivots[i % len(pivots)]``):

``backtranslation``      MarianMT (OpusMT): ``Helsinki-NLP/opus-mt-en-{X}`` then ``opus-mt-{X}-en``,
                         sampling on, batched, long texts split into sentence chunks. Models come from
                         ``model_dir`` (a local template such as ``/models/opus-mt-{src}-{tgt}``) or
                         the Hub id template.
``llm-backtranslation``  the offline fallback: an instruct LLM (any chat backend) asked to translate
                         there and back with the ``translate`` prompt. Lower quality; the filters and
                         the benchmark measure how much.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from guardmatch.augment.backends import BackendConfig, ChatBackend, Generation, GenerationParams, Message, build_backend
from guardmatch.augment.backends.models import file_identity
from guardmatch.augment.base import Augmenter, AugmenterConfig, Draft, ViewRequest
from guardmatch.augment.postprocess import clean_output
from guardmatch.augment.prompts import PromptTemplate, load_prompt
from guardmatch.augment.registry import AUGMENTERS
from guardmatch.data.example import Task

LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "ru": "Russian", "ro": "Romanian",
                  "es": "Spanish", "it": "Italian", "zh": "Chinese"}
PAPER_PIVOTS = ("de", "fr", "ru", "ro")


def split_chunks(text: str, max_chars: int) -> list[str]:
    """Sentence-ish chunks of at most ``max_chars`` (a longer sentence stays whole); newlines kept
    as separate ``"\\n"`` items so paragraphs survive the round trip."""
    out: list[str] = []
    for i, para in enumerate(text.split("\n")):
        if i:
            out.append("\n")
        if not para.strip():
            continue
        sentences = re.split(r"(?<=[.!?])\s+", para.strip())
        cur = ""
        for s in sentences:
            if cur and len(cur) + 1 + len(s) > max_chars:
                out.append(cur)
                cur = s
            else:
                cur = f"{cur} {s}" if cur else s
        if cur:
            out.append(cur)
    return out


def join_chunks(chunks: list[str]) -> str:
    text = ""
    for c in chunks:
        if c == "\n":
            text += "\n"
        else:
            text += c if (not text or text.endswith("\n")) else " " + c
    return text.strip()


class _PivotMixin:
    config: Any

    def pivot(self, req: ViewRequest) -> str:
        pivots = self.config.pivots
        return pivots[req.view_index % len(pivots)]


# --------------------------------------------------------------------------------------------
# MarianMT
# --------------------------------------------------------------------------------------------


class MarianBacktranslationConfig(AugmenterConfig):
    pivots: tuple[str, ...] = PAPER_PIVOTS
    hub_template: str = "Helsinki-NLP/opus-mt-{src}-{tgt}"
    model_dir: str | None = Field(None, description="local template, e.g. /models/opus-mt-{src}-{tgt}")
    do_sample: bool = True
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    max_length: int = Field(512, ge=8)
    chunk_chars: int = Field(400, ge=20)
    batch_size: int = Field(16, ge=1)
    threads: int = Field(2, ge=1)


@AUGMENTERS.register("backtranslation")
class MarianBacktranslator(Augmenter, _PivotMixin):
    """English -> pivot -> English with a pair of MarianMT models per pivot."""

    config_cls = MarianBacktranslationConfig
    config: MarianBacktranslationConfig

    def __init__(self, config: MarianBacktranslationConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self._models: dict[tuple[str, str], tuple[Any, Any]] = {}

    def model_ref(self, src: str, tgt: str) -> str:
        template = self.config.model_dir or self.config.hub_template
        return template.format(src=src, tgt=tgt)

    def identity(self) -> dict[str, Any]:
        refs = {}
        for p in self.config.pivots:
            for src, tgt in (("en", p), (p, "en")):
                ref = self.model_ref(src, tgt)
                refs[f"{src}-{tgt}"] = file_identity(ref)
        return {"models": refs}

    def _load(self, src: str, tgt: str) -> tuple[Any, Any]:
        if (src, tgt) not in self._models:
            import torch
            from transformers import MarianMTModel, MarianTokenizer

            torch.set_num_threads(min(self.config.threads, torch.get_num_threads()))
            ref = self.model_ref(src, tgt)
            tok = MarianTokenizer.from_pretrained(ref)
            model = MarianMTModel.from_pretrained(ref).eval()
            self._models[(src, tgt)] = (tok, model)
        return self._models[(src, tgt)]

    def prepare(self) -> None:
        for p in self.config.pivots:
            self._load("en", p)
            self._load(p, "en")

    def preferred_batch_size(self) -> int:
        return self.config.batch_size

    def translate(self, texts: list[str], src: str, tgt: str, seed: int) -> list[str]:
        """Translate (chunked, batched, sampled) ``texts`` from ``src`` to ``tgt``."""
        import torch

        tok, model = self._load(src, tgt)
        chunked = [split_chunks(t, self.config.chunk_chars) for t in texts]
        flat = [c for cs in chunked for c in cs if c != "\n"]
        translated: list[str] = []
        torch.manual_seed(seed)
        cfg = self.config
        for i in range(0, len(flat), cfg.batch_size):
            batch = flat[i : i + cfg.batch_size]
            enc = tok(batch, return_tensors="pt", padding=True, truncation=True, max_length=cfg.max_length)
            with torch.inference_mode():
                gen = model.generate(**enc, do_sample=cfg.do_sample, temperature=cfg.temperature, top_p=cfg.top_p,
                                     top_k=cfg.top_k or None, num_beams=1, max_length=cfg.max_length)
            translated.extend(tok.batch_decode(gen, skip_special_tokens=True))
        it = iter(translated)
        return [join_chunks([c if c == "\n" else next(it) for c in cs]) for cs in chunked]

    def generate(self, requests: list[ViewRequest]) -> list[Draft]:
        drafts: list[Draft | None] = [None] * len(requests)
        by_pivot: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            by_pivot.setdefault(self.pivot(req), []).append(i)
        for pivot, idx in by_pivot.items():
            texts = [requests[i].source_text for i in idx]
            seed = requests[idx[0]].seed
            mid = self.translate(texts, "en", pivot, seed)
            back = self.translate(mid, pivot, "en", seed + 1)
            for i, m, b in zip(idx, mid, back):
                meta = {"pivot": pivot, "engine": "marian", "pivot_text": m}
                is_prompt = requests[i].task is Task.PROMPT
                drafts[i] = Draft(prompt=b, metadata=meta) if is_prompt else Draft(response=b, metadata=meta)
        return drafts  # type: ignore[return-value]

    def close(self) -> None:
        self._models.clear()


# --------------------------------------------------------------------------------------------
# LLM translation (offline fallback)
# --------------------------------------------------------------------------------------------


class LLMBacktranslationConfig(AugmenterConfig):
    backend: BackendConfig = Field(default_factory=BackendConfig)
    pivots: tuple[str, ...] = ("de",)
    prompt: str = Field("translate", description="translation template (name or file)")
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: int = Field(768, ge=8)
    length_factor: float = Field(2.0, gt=0, description="max new tokens = factor x source tokens + 32 (capped)")


@AUGMENTERS.register("llm-backtranslation")
class LLMBacktranslator(Augmenter, _PivotMixin):
    """English -> pivot -> English by prompting an instruct LLM to translate."""

    config_cls = LLMBacktranslationConfig
    config: LLMBacktranslationConfig

    def __init__(self, config: LLMBacktranslationConfig | None = None, backend: ChatBackend | None = None,
                 **overrides: Any):
        super().__init__(config, **overrides)
        self.backend = backend or build_backend(self.config.backend)
        self._template: PromptTemplate | None = None

    @property
    def template(self) -> PromptTemplate:
        if self._template is None:
            self._template = load_prompt(self.config.prompt)
        return self._template

    def identity(self) -> dict[str, Any]:
        return {"backend": self.backend.identity(), "prompt": self.template.sha}

    def prepare(self) -> None:
        self.backend.load()

    def preferred_batch_size(self) -> int:
        return self.backend.preferred_batch_size()

    def _request(self, text: str, src: str, tgt: str, seed: int) -> tuple[list[Message], GenerationParams]:
        cfg = self.config
        conv = self.template.render(text=text, source_lang=LANGUAGE_NAMES.get(src, src),
                                    target_lang=LANGUAGE_NAMES.get(tgt, tgt))
        budget = int(cfg.length_factor * self.backend.count_tokens(text)) + 32
        params = GenerationParams(max_new_tokens=min(cfg.max_new_tokens, budget), temperature=cfg.temperature,
                                  top_p=cfg.top_p, seed=seed)
        return conv, params

    def generate(self, requests: list[ViewRequest]) -> list[Draft]:
        """Both legs of every request through the backend's two-step chat: a server backend starts
        a text's way back as soon as its own pivot text is in."""
        drafts: list[Draft | None] = [None] * len(requests)
        by_pivot: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            by_pivot.setdefault(self.pivot(req), []).append(i)
        for pivot, idx in by_pivot.items():
            there = [self._request(requests[i].source_text, "en", pivot, requests[i].seed) for i in idx]

            def back(j: int, reply: Generation, pivot: str = pivot, idx: list[int] = idx):
                mid = clean_output(reply.text)
                if reply.error is not None or not mid.strip():
                    return None
                return self._request(mid, pivot, "en", requests[idx[j]].seed + 1)

            chains = self.backend.chat_chains([c for c, _ in there], [p for _, p in there], back)
            for (first, second), i in zip(chains, idx):
                meta = {"pivot": pivot, "engine": "llm", "backend": self.backend.name,
                        "model": self.backend.config.model, "pivot_text": clean_output(first.text),
                        "pivot_finish": first.finish_reason}
                if second is None:  # the first leg failed or came back empty
                    if first.error:
                        drafts[i] = Draft(metadata=meta, error=first.error)
                    else:
                        drafts[i] = Draft(prompt="", metadata=meta) if requests[i].task is Task.PROMPT \
                            else Draft(response="", metadata=meta)
                    continue
                text = clean_output(second.text)
                meta["finish"] = second.finish_reason
                if second.error:
                    drafts[i] = Draft(metadata=meta, error=second.error)
                elif requests[i].task is Task.PROMPT:
                    drafts[i] = Draft(prompt=text, metadata=meta)
                else:
                    drafts[i] = Draft(response=text, metadata=meta)
        return drafts  # type: ignore[return-value]

    def close(self) -> None:
        self.backend.close()
