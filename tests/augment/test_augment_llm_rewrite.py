"""LLM rewrite through llama.cpp (SmolLM2-135M GGUF) and transformers (tiny random Llama), prompts."""

from __future__ import annotations

import pytest

from guardmatch.augment import ViewCache, augment
from guardmatch.augment.backends import BackendConfig, GenerationParams, build_backend
from guardmatch.augment.base import ViewRequest
from guardmatch.augment.filters import IntentCheckConfig, QualityFilter, ViewFilterConfig
from guardmatch.augment.llm_rewrite import LLMRewriteAugmenter, LLMRewriteConfig
from guardmatch.augment.prompts import load_prompt, packaged_prompts
from guardmatch.data.example import Example, Task

NO_INTENT = ViewFilterConfig(intent=IntentCheckConfig(mode="none"))


def test_packaged_prompts_parse_and_render():
    names = packaged_prompts()
    for name in ("rewrite", "rewrite_harmful", "rewrite_benign", "rewrite_response", "translate"):
        assert name in names
    msgs = load_prompt("rewrite").render(text="How do I {pick} a lock?")
    assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"
    assert "How do I {pick} a lock?" in msgs[-1]["content"]  # other braces left alone
    assert [m["role"] for m in msgs[1:-1]] == ["user", "assistant"] * ((len(msgs) - 2) // 2)
    assert "harmful" in msgs[0]["content"] and "benign" in msgs[0]["content"]  # one label-free instruction
    with pytest.raises(KeyError, match="needs"):
        load_prompt("rewrite_response").render(response="only the response")


def test_custom_prompt_file(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("Paraphrase: {text}")
    t = load_prompt(str(f))
    assert t.render(text="hi") == [{"role": "user", "content": "Paraphrase: hi"}]
    with pytest.raises(FileNotFoundError, match="packaged"):
        load_prompt("no_such_prompt")


def test_label_specific_prompts_only_with_use_labels_and_a_visible_label(smollm2_gguf):
    cfg = LLMRewriteConfig(backend=BackendConfig(model="smollm2", threads=1, n_ctx=1024), use_labels=True)
    aug = LLMRewriteAugmenter(cfg)
    harmful = Example("h", "Tell me how to hotwire a car.", None, 1)
    pool = harmful.unlabeled()  # label hidden in metadata: must not be used
    assert aug._choose(ViewRequest(harmful, Task.PROMPT, 0, 0, 0), response=False) == "rewrite_harmful"
    assert aug._choose(ViewRequest(pool, Task.PROMPT, 0, 0, 0), response=False) == "rewrite"
    assert aug._choose(ViewRequest(Example("b", "x", "y", 0), Task.RESPONSE, 0, 0, 0), True) == "rewrite_response_benign"
    default = LLMRewriteAugmenter(LLMRewriteConfig(backend=BackendConfig(model="smollm2")))
    assert default._choose(ViewRequest(harmful, Task.PROMPT, 0, 0, 0), response=False) == "rewrite"
    assert aug.fingerprint() != default.fingerprint()


def test_llama_cpp_rewrite_end_to_end(smollm2_gguf, short_prompts, tmp_path):
    cfg = LLMRewriteConfig(backend=BackendConfig(kind="llama-cpp", model="smollm2", threads=1, n_ctx=1024), max_new_tokens=16)
    exs = short_prompts[:1] + short_prompts[-1:]
    with LLMRewriteAugmenter(cfg) as aug:
        rep = augment(exs, aug, Task.PROMPT, views=1, cache_root=tmp_path, quality_filter=QualityFilter(NO_INTENT),
                      progress=False, max_attempts=1)
    assert rep.attempts == 2 and rep.complete
    cache = ViewCache.open(rep.cache_dir)
    recs = list(cache.iter_records("prompt"))
    assert len(recs) == 2
    for rec in recs:
        assert rec.meta["backend"] == "llama-cpp" and rec.meta["prompt_template"] == "rewrite"
        assert rec.meta["prompt_tokens"] <= 16
        assert rec.status == "rejected" or rec.prompt.strip()
    assert cache.manifest["description"]["identity"]["backend"]["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    # the run's speed-only settings are logged with its throughput, never in the fingerprint
    (run,) = cache.manifest["runs"]
    assert run["runtime"] == {"threads": 1, "parallel": 1}
    assert "threads" not in cache.manifest["description"]["config"]["backend"]


def test_llama_cpp_sampling_is_seeded(smollm2_gguf):
    backend = build_backend(BackendConfig(kind="llama-cpp", model="smollm2", threads=1, n_ctx=512))
    conv = [[{"role": "user", "content": "Name three fruits."}]]
    a = backend.chat(conv, [GenerationParams(max_new_tokens=12, temperature=1.0, seed=5)])[0].text
    b = backend.chat(conv, [GenerationParams(max_new_tokens=12, temperature=1.0, seed=5)])[0].text
    assert a == b and a.strip()
    too_long = backend.chat([[{"role": "user", "content": "word " * 600}]], [GenerationParams(max_new_tokens=8)])[0]
    assert too_long.error and "n_ctx" in too_long.error
    backend.close()


def test_llama_cpp_seeded_generation_ignores_what_came_before(smollm2_gguf):
    """A text's view depends on the text, template and seed only: not on the calls before it (the
    KV prefix of another text, another template) nor on the process (a fresh backend)."""
    sys_a = {"role": "system", "content": "You rewrite texts."}
    sys_b = {"role": "system", "content": "You translate texts into German."}
    conv = [sys_a, {"role": "user", "content": "Name three fruits."}]
    other = [sys_a, {"role": "user", "content": "Name three fruits that are red and sweet."}]
    switch = [sys_b, {"role": "user", "content": "Good morning."}]
    p = [GenerationParams(max_new_tokens=12, temperature=1.0, seed=11)]
    first = build_backend(BackendConfig(kind="llama-cpp", model="smollm2", threads=1, n_ctx=512))
    alone = first.chat([conv], p)[0].text
    first.close()
    later = build_backend(BackendConfig(kind="llama-cpp", model="smollm2", threads=1, n_ctx=512))
    after = [later.chat([c], p)[0].text for c in (other, conv, switch, conv)]
    later.close()
    assert alone.strip() and after[1] == alone and after[3] == alone


def test_llama_cpp_parallel_contexts_give_the_same_generations(smollm2_gguf):
    """Two contexts share a batch out (longest first) and return it in order, as one context would."""
    convs = [[{"role": "user", "content": f"Name {n} fruits{'.' * n}"}] for n in (1, 5, 2, 4, 3)]
    params = [GenerationParams(max_new_tokens=10, temperature=1.0, seed=s) for s in range(5)]
    one = build_backend(BackendConfig(kind="llama-cpp", model="smollm2", threads=1, n_ctx=512))
    two = build_backend(BackendConfig(kind="llama-cpp", model="smollm2", threads=1, n_ctx=512, parallel=2))
    assert two.preferred_batch_size() == 12 and one.preferred_batch_size() == 4
    expected = [g.text for g in one.chat(convs, params)]
    got = two.chat(convs, params)
    assert len(two._contexts) == 2
    assert [g.text for g in got] == expected and all(t.strip() for t in expected)
    one.close()
    two.close()


def test_transformers_backend_tiny_random_llama(tiny_causal_lm, short_prompts, tmp_path):
    cfg = LLMRewriteConfig(backend=BackendConfig(kind="transformers", model=str(tiny_causal_lm)), max_new_tokens=12)
    aug = LLMRewriteAugmenter(cfg)
    aug.prepare()
    convs = [load_prompt("rewrite").render(text=ex.prompt) for ex in short_prompts[:3]]
    params = [GenerationParams(max_new_tokens=n, temperature=0.9, seed=1) for n in (4, 8, 12)]
    gens = aug.backend.chat(convs, params)
    assert [g.completion_tokens <= n for g, n in zip(gens, (4, 8, 12))] == [True] * 3
    again = aug.backend.chat(convs, params)
    assert [g.text for g in gens] == [g.text for g in again]  # seeded
    rendered = aug.backend.render(convs[0])
    assert rendered.startswith("[system]") and rendered.endswith("[assistant] ")
    rep = augment(short_prompts[:4], aug, Task.PROMPT, views=1, cache_root=tmp_path,
                  quality_filter=QualityFilter(ViewFilterConfig(enabled=False)), progress=False, batch_size=4)
    assert rep.attempts == 4 and rep.accepted + sum(rep.rejected.values()) == 4
    assert rep.cache_counts["prompt"]["texts"] == 4
    aug.close()


def test_response_task_prompt_optionally_rewritten(smollm2_gguf, response_pairs, tmp_path):
    cfg = LLMRewriteConfig(backend=BackendConfig(model="smollm2", threads=1, n_ctx=2048), max_new_tokens=12,
                           rewrite_prompt_too=True)
    with LLMRewriteAugmenter(cfg) as aug:
        aug.prepare()
        reqs = [ViewRequest(ex, Task.RESPONSE, 0, 0, 3) for ex in response_pairs[:1]]
        drafts = aug.generate(reqs)
    for d in drafts:
        assert d.error is None
        assert d.metadata["prompt_template"] == "rewrite" and d.metadata["response_template"] == "rewrite_response"
        assert d.prompt is not None and d.response is not None


def test_fingerprint_ignores_speed_settings_only(smollm2_gguf):
    def fp(**backend) -> str:
        return LLMRewriteAugmenter(LLMRewriteConfig(backend=BackendConfig(model="smollm2", **backend))).fingerprint()

    assert fp(threads=1) == fp(threads=2) == fp(threads=2, concurrency=9, timeout_s=5) == fp(parallel=3)
    assert fp(n_ctx=1024) != fp(n_ctx=2048)
    assert fp() != LLMRewriteAugmenter(LLMRewriteConfig(backend=BackendConfig(model="smollm2"),
                                                        temperature=0.2)).fingerprint()
