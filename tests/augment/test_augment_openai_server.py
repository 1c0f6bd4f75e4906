"""The OpenAI-compatible backend against a real server on loopback (llama_cpp.server + SmolLM2)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from guardmatch.augment import ViewCache, augment
from guardmatch.augment.backends import BackendConfig, GenerationParams, build_backend
from guardmatch.augment.backends.openai_compat import ServerError
from guardmatch.augment.filters import IntentCheckConfig, QualityFilter, ViewFilterConfig
from guardmatch.augment.llm_rewrite import LLMRewriteAugmenter, LLMRewriteConfig
from guardmatch.data.example import Task


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(smollm2_gguf, tmp_path_factory):
    pytest.importorskip("llama_cpp.server", reason='llama_cpp.server missing: pip install "llama-cpp-python[server]"')
    port = _free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w+b")  # a PIPE would fill up and block it
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "2"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"llama_cpp.server exited: {log.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("llama_cpp.server did not come up within 90 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_concurrent_chat_against_real_server(server):
    backend = build_backend(BackendConfig(kind="openai", model="smollm2", base_url=server, concurrency=2,
                                          timeout_s=60, max_retries=1))
    backend.load()
    convs = [[{"role": "user", "content": f"Say the number {i}."}] for i in range(3)]
    gens = backend.chat(convs, [GenerationParams(max_new_tokens=6, temperature=0.8, seed=i) for i in range(3)])
    assert [g.error for g in gens] == [None] * 3
    assert all(g.text.strip() and g.completion_tokens <= 6 for g in gens)


def test_chains_send_each_second_step_from_its_own_first_reply(server):
    backend = build_backend(BackendConfig(kind="openai", model="smollm2", base_url=server, concurrency=2,
                                          timeout_s=60, max_retries=1))
    seen: dict[int, str] = {}

    def follow_up(i, reply):
        seen[i] = reply.text
        if i == 1:
            return None  # item 1 stops after its first step
        if i == 3:
            raise ValueError("bad reply")  # costs item 3 only
        return [{"role": "user", "content": f"Repeat: {reply.text}"}], GenerationParams(max_new_tokens=4, seed=i)

    convs = [[{"role": "user", "content": f"Say the number {i}."}] for i in range(4)]
    chains = backend.chat_chains(convs, [GenerationParams(max_new_tokens=5, seed=i) for i in range(4)], follow_up)
    assert sorted(seen) == [0, 1, 2, 3] and [first.text for first, _ in chains] == [seen[i] for i in range(4)]
    assert chains[1][1] is None
    assert chains[3][1].error == "follow-up failed: ValueError: bad reply"
    assert all(second is not None and second.error is None and second.completion_tokens <= 4
               for _, second in (chains[0], chains[2]))


def test_backtranslation_views_through_the_server(server, short_prompts, tmp_path):
    from guardmatch.augment.backtranslation import LLMBacktranslationConfig, LLMBacktranslator

    cfg = LLMBacktranslationConfig(backend=BackendConfig(kind="openai", model="smollm2", base_url=server,
                                                         concurrency=2), max_new_tokens=10)
    rep = augment(short_prompts[:2], LLMBacktranslator(cfg), Task.PROMPT, views=1, cache_root=tmp_path,
                  max_attempts=1, progress=False,
                  quality_filter=QualityFilter(ViewFilterConfig(intent=IntentCheckConfig(mode="none"))))
    recs = list(ViewCache.open(rep.cache_dir).iter_records("prompt"))
    assert len(recs) == 2 and all(r.reason != "error" and r.meta["pivot"] == "de" for r in recs)
    assert all(r.meta["pivot_text"] and "finish" in r.meta for r in recs)  # both legs ran for each text


def test_rewrite_views_through_the_server(server, short_prompts, tmp_path):
    cfg = LLMRewriteConfig(backend=BackendConfig(kind="openai", model="smollm2", base_url=server, concurrency=2),
                           max_new_tokens=12)
    aug = LLMRewriteAugmenter(cfg)
    ident = aug.identity()["backend"]
    assert ident == {"kind": "openai", "model": "smollm2"}  # the URL is not part of the fingerprint
    rep = augment(short_prompts[:2], aug, Task.PROMPT, views=1, cache_root=tmp_path, max_attempts=1,
                  quality_filter=QualityFilter(ViewFilterConfig(intent=IntentCheckConfig(mode="none"))), progress=False)
    recs = list(ViewCache.open(rep.cache_dir).iter_records("prompt"))
    assert len(recs) == 2 and all(r.reason != "error" for r in recs)
    assert all(r.meta["backend"] == "openai" for r in recs)


def test_unreachable_server_fails_clearly_after_retries():
    port = _free_port()  # nothing listens there
    backend = build_backend(BackendConfig(kind="openai", base_url=f"http://127.0.0.1:{port}/v1", timeout_s=2,
                                          max_retries=2))
    with pytest.raises(ServerError, match="not answering"):
        backend.load()
    t = time.perf_counter()
    (gen,) = backend.chat([[{"role": "user", "content": "hi"}]], [GenerationParams(max_new_tokens=4)])
    assert gen.error.startswith("gave up after 3 tries") and "Connect" in gen.error
    # two backoff sleeps happened (the openai SDK's: 0.5 s then 1 s, each less up to 25 % jitter)
    assert time.perf_counter() - t >= 0.75 * (0.5 + 1.0)
