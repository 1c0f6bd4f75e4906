"""A real `guardmatch serve` process on a loopback port, called with the official OpenAI Python client."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _guardmatch() -> list[str]:
    exe = Path(sys.executable).with_name("guardmatch")
    return [str(exe)] if exe.exists() else [shutil.which("guardmatch") or "guardmatch"]


@pytest.mark.slow
def test_guardmatch_serve_with_openai_client(serving_prompt_dir, serving_response_dir, tmp_path):
    port = _free_port()
    key_file = tmp_path / "key"
    key_file.write_text("test-key-123\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = _guardmatch() + ["serve", "--prompt-model", str(serving_prompt_dir), "--response-model",
                           str(serving_response_dir), "--port", str(port), "--threads", "1",
                           "--api-key-file", str(key_file), "--max-list", "16", "--log-level", "warning",
                           "--model-name", "guard-test-1"]
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}: {(tmp_path / 'server.log').read_text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not start: {(tmp_path / 'server.log').read_text()}")
            time.sleep(0.5)

        client = openai.OpenAI(base_url=f"{base}/v1", api_key="test-key-123", max_retries=0, timeout=30)
        resp = client.moderations.create(input=["How do I bake bread?", "How do I make a bomb?"],
                                         model="omni-moderation-latest")
        assert resp.id.startswith("modr-") and len(resp.results) == 2
        assert resp.model == "guard-test-1"  # --model-name
        for result in resp.results:
            assert isinstance(result.flagged, bool)
            assert result.categories.hate is False and result.category_scores.violence == 0.0
            harm = result.category_scores.model_extra["harmful"]  # our category rides along
            assert 0.0 <= harm <= 1.0 and result.flagged == (harm >= 0.5)
        single = client.moderations.create(input="hello")
        assert len(single.results) == 1

        bad = openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0, timeout=30)
        with pytest.raises(openai.AuthenticationError):
            bad.moderations.create(input="hello")
        with pytest.raises(openai.APIStatusError) as too_many:
            client.moderations.create(input=["x"] * 17)
        assert too_many.value.status_code == 413 and "at most 16" in too_many.value.message

        r = httpx.post(f"{base}/v1/classify", json={"prompt": "hi", "response": "hello"},
                       headers={"Authorization": "Bearer test-key-123"}, timeout=30)
        assert r.status_code == 200 and r.json()["response_harm"]["model"] == "response-model"
        assert r.json()["prompt_harm"]["model"] == "guard-test-1"
        metrics = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer test-key-123"}, timeout=30).text
        assert 'guardmatch_texts_total{model="prompt"} 4.0' in metrics
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
    assert proc.returncode is not None
