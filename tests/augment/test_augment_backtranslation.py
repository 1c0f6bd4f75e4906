"""Backtranslation: MarianMT (tiny random models, real sentencepiece vocab) and the LLM fallback."""

from __future__ import annotations

from guardmatch.augment import ViewCache, augment
from guardmatch.augment.backends import BackendConfig
from guardmatch.augment.backtranslation import (
    LLMBacktranslationConfig,
    LLMBacktranslator,
    MarianBacktranslationConfig,
    MarianBacktranslator,
    join_chunks,
    split_chunks,
)
from guardmatch.augment.base import ViewRequest
from guardmatch.augment.filters import QualityFilter, ViewFilterConfig
from guardmatch.data.example import Example, Task


def test_chunking_round_trip_keeps_paragraphs():
    text = "First sentence here. Second one is a bit longer! Third?\n\nNew paragraph. End."
    chunks = split_chunks(text, 30)
    assert all(len(c) <= 30 or c.count(".") <= 1 for c in chunks)
    assert chunks.count("\n") == 2
    assert join_chunks(chunks) == text


def test_marian_backtranslation_path(tiny_marian_dir, short_prompts, tmp_path):
    cfg = MarianBacktranslationConfig(pivots=("de",), model_dir=str(tiny_marian_dir / "opus-mt-{src}-{tgt}"),
                                      max_length=24, batch_size=4, chunk_chars=60)
    aug = MarianBacktranslator(cfg)
    assert aug.model_ref("en", "de").endswith("opus-mt-en-de")
    assert MarianBacktranslator().model_ref("de", "en") == "Helsinki-NLP/opus-mt-de-en"  # the Hub path for users
    aug.prepare()
    long = Example("long", "This is sentence one. " * 6 + "\nAnd a second paragraph here.")
    reqs = [ViewRequest(ex, Task.PROMPT, 0, 0, 11) for ex in short_prompts[:3] + [long]]
    drafts = aug.generate(reqs)
    assert all(d.metadata["pivot"] == "de" and d.metadata["engine"] == "marian" for d in drafts)
    assert all(isinstance(d.prompt, str) and d.metadata["pivot_text"] is not None for d in drafts)
    assert drafts[-1].prompt.count("\n") == 1  # paragraph structure survives en->de->en
    again = aug.generate(reqs)
    assert [d.prompt for d in drafts] == [d.prompt for d in again]  # sampling is seeded
    rep = augment(short_prompts[:4], aug, Task.PROMPT, views=1, cache_root=tmp_path,
                  quality_filter=QualityFilter(), progress=False, max_attempts=1)
    # random weights produce noise: the filters must reject it, with reasons counted
    assert rep.attempts == 4 and sum(rep.rejected.values()) + rep.accepted == 4
    assert ViewCache.open(rep.cache_dir).stats()["prompt"]["attempts"] == 4


def test_one_view_per_pivot(tiny_marian_dir):
    import shutil

    for src, tgt in (("en", "fr"), ("fr", "en")):
        shutil.copytree(tiny_marian_dir / f"opus-mt-{'en-de' if src == 'en' else 'de-en'}",
                        tiny_marian_dir / f"opus-mt-{src}-{tgt}", dirs_exist_ok=True)
    aug = MarianBacktranslator(MarianBacktranslationConfig(pivots=("de", "fr"), max_length=12,
                                                           model_dir=str(tiny_marian_dir / "opus-mt-{src}-{tgt}")))
    ex = Example("a", "How do I open a locked door?")
    drafts = aug.generate([ViewRequest(ex, Task.PROMPT, v, 0, v) for v in range(3)])
    assert [d.metadata["pivot"] for d in drafts] == ["de", "fr", "de"]


def test_llm_backtranslation_with_smollm2(smollm2_gguf, short_prompts, tmp_path):
    cfg = LLMBacktranslationConfig(backend=BackendConfig(model="smollm2", threads=1, n_ctx=1024), pivots=("de",),
                                   max_new_tokens=12)
    with LLMBacktranslator(cfg) as aug:
        rep = augment(short_prompts[:1], aug, Task.PROMPT, views=1, cache_root=tmp_path,
                      quality_filter=QualityFilter(ViewFilterConfig()), progress=False, max_attempts=1)
    (rec,) = ViewCache.open(rep.cache_dir).iter_records("prompt")
    assert rec.meta["engine"] == "llm" and rec.meta["pivot"] == "de" and rec.meta["pivot_text"]
    assert rec.status == "accepted" or rec.reason in {"empty", "refusal", "echo", "length", "language", "intent"}
