"""Source windows: augment only what the encoder reads, cut exactly as training cuts it."""

from __future__ import annotations

from transformers import AutoTokenizer

from guardmatch.augment.base import ViewRequest
from guardmatch.augment.cache import ViewCache
from guardmatch.augment.eda import EDAAugmenter
from guardmatch.augment.filters import QualityFilter, ViewFilterConfig
from guardmatch.augment.runner import augment
from guardmatch.augment.window import SourceWindow
from guardmatch.data.example import Example, Task
from guardmatch.encoders import resolve_encoder
from guardmatch.model import tokenize_inputs

TOK = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))


def _words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


def test_prompt_cut_keeps_the_tokens_the_encoder_reads():
    text = " ".join(["alpha"] * 300)  # "alpha" is one MiniLM token
    ex = Example("a", text, None, 1, "unit")
    cut, meta = SourceWindow(max_length=16).cut(ex, Task.PROMPT)
    assert cut.prompt == " ".join(["alpha"] * 14)  # 16 - [CLS] - [SEP]
    assert meta == {"tokenizer": "minilm", "max_length": 16, "prompt_chars": len(cut.prompt),
                    "prompt_chars_source": len(text), "cut": True}
    assert cut.id == "a" and cut.label == 1
    full = tokenize_inputs(TOK, [text], None, 16, return_tensors=None)["input_ids"][0]
    assert TOK(cut.prompt)["input_ids"] == full  # the view's source is exactly what training reads


def test_short_texts_are_unchanged():
    ex = Example("b", "How do I bake bread?  ", "Mix flour and water.", 0, "unit")
    assert SourceWindow(max_length=128).cut(ex, Task.PROMPT)[0] == ex
    same, meta = SourceWindow(max_length=128).cut(ex, Task.RESPONSE)
    assert same == ex and meta["cut"] is False and meta["response_chars"] == len(ex.response)


def test_pair_cut_is_prompt_first_like_training():
    ex = Example("c", " ".join(["alpha"] * 40), " ".join(["beta"] * 10), 1, "unit")
    cut, meta = SourceWindow(max_length=20).cut(ex, Task.RESPONSE)
    # budget 20 - 3 specials = 17: the response keeps its 10 tokens, the prompt gets 7
    assert cut.response == ex.response and cut.prompt == " ".join(["alpha"] * 7)
    assert meta["cut"] is True and meta["prompt_chars_source"] == len(ex.prompt)
    enc = tokenize_inputs(TOK, [ex.prompt], [ex.response], 20, return_tensors=None)["input_ids"][0]
    assert TOK(cut.prompt, cut.response)["input_ids"] == enc


def test_window_is_in_the_fingerprint_and_views_keep_the_uncut_key(tmp_path):
    long = Example("d", "the quick brown fox jumps over the lazy dog " * 20, None, 0, "unit")
    plain, windowed = EDAAugmenter(), EDAAugmenter(window=SourceWindow(max_length=16))
    assert plain.fingerprint() != windowed.fingerprint()
    assert "window" not in plain.describe()["config"]  # caches made before windows keep their key
    checks = QualityFilter(ViewFilterConfig(enabled=False))
    report = augment([long], windowed, Task.PROMPT, 1, cache_root=tmp_path, progress=False, quality_filter=checks)
    cache = ViewCache.open(report.cache_dir)
    (rec,) = [r for r in cache.iter_records(Task.PROMPT)]
    assert rec.key == long.content_hash(Task.PROMPT) and rec.meta["window"]["cut"] is True
    assert len(cache.accepted(long, Task.PROMPT)[0].prompt) < len(long.prompt) / 3
    assert ViewRequest(long, Task.PROMPT, 0, 0, 1, source_key="k").key == "k"


def test_one_window_serves_both_tasks():
    window = SourceWindow(max_length=16, pair_max_length=20)
    ex = Example("e", " ".join(["alpha"] * 40), " ".join(["beta"] * 10), 1, "unit")
    assert window.cut(ex, Task.PROMPT)[0].prompt == " ".join(["alpha"] * 14)
    cut, meta = window.cut(ex, Task.RESPONSE)
    assert cut.prompt == " ".join(["alpha"] * 7) and meta["max_length"] == 20
