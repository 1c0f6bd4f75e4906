"""Multi-process training (2 CPU processes, gloo) and exact resume after SIGKILL, through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig

from guardmatch.encoders import minilm_path
from guardmatch.model import GuardClassifier

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, prompt_slice) -> dict[str, Path]:
    """A tiny dropout-free model, a 120-row real training file and an EDA view cache for it."""
    root = tmp_path_factory.mktemp("cli")
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    GuardClassifier.from_encoder(str(minilm_path()), encoder_config=cfg, seed=0, max_length=48,
                                 head_dropout=0.0).save_pretrained(root / "tiny")
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps(ex.to_dict()) + "\n" for ex in prompt_slice))
    subprocess.run([str(BIN / "guardmatch"), "augment", "-a", "eda", "-i", str(train), "--views", "2",
                    "--cache-dir", str(root / "cache"), "--intent", "none"], check=True, capture_output=True)
    (views,) = list((root / "cache" / "views").iterdir())
    return {"root": root, "tiny": root / "tiny", "train": train, "views": views}


def _train_args(w: dict[str, Path], out: Path, *, algorithm: str, steps: int, batch: int, extra=()) -> list[str]:
    return ["train", "--algorithm", algorithm, "--train", str(w["train"]), "--labels", "24",
            "--views", str(w["views"]), "--max-steps", str(steps), "--batch-size", str(batch), "--mu", "2",
            "--lr", "1e-3", "--output-dir", str(out), "--set", f"model.init_from={w['tiny']}",
            "--set", "data.suite=none", "--set", "data.validation=6", "--set", "log_every=1", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_two_processes_hold_identical_state_equal_to_one_process(workdir, tmp_path):
    """2 ranks x B=4 vs 1 process x B=8 on the same global batches: same algorithm state."""
    args = _train_args(workdir, tmp_path / "mp", algorithm="marginmatch", steps=4, batch=4,
                       extra=["--param", "apm_warmup=1"])
    launch = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "guardmatch.cli.main", *args]
    proc = subprocess.run(launch, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = _train_args(workdir, tmp_path / "sp", algorithm="marginmatch", steps=4, batch=8,
                         extra=["--param", "apm_warmup=1"])
    proc = subprocess.run([str(BIN / "guardmatch"), *single], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    rank0 = load_file(str(tmp_path / "mp" / "algorithm-rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "mp" / "algorithm-rank1.safetensors"))
    one = load_file(str(tmp_path / "sp" / "algorithm.safetensors"))
    assert set(rank0) == set(one) and "table.apm" in rank0
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"ranks disagree on {key}"
        torch.testing.assert_close(rank0[key], one[key], rtol=1e-4, atol=1e-5, msg=f"single vs 2 procs: {key}")
    assert int(rank0["table.visits"].sum()) == 4 * 16  # 4 steps x global unlabeled batch 2*2*4, no double count
    # validation metrics are gathered without duplicates: 6 validation examples, not 8
    val = [json.loads(x) for x in (tmp_path / "mp" / "metrics.jsonl").read_text().splitlines() if '"val"' in x]
    assert val[-1]["val"]["n"] == 6


def test_sigkill_then_resume_equals_uninterrupted_run(workdir, tmp_path):
    steps = 60
    args = _train_args(workdir, tmp_path / "killed", algorithm="fixmatch", steps=steps, batch=4,
                       extra=["--param", "threshold=0.6", "--set", "save_every=10"])
    cmd = [str(BIN / "guardmatch"), *args]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not (ckpts / "step-000020").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "model").exists(), "killed before the end"
    resumed = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr

    straight = subprocess.run([str(BIN / "guardmatch"), *_train_args(
        workdir, tmp_path / "straight", algorithm="fixmatch", steps=steps, batch=4,
        extra=["--param", "threshold=0.6", "--set", "save_every=10"])], env=_env(), capture_output=True, text=True,
        timeout=300)
    assert straight.returncode == 0, straight.stderr[-3000:]

    a = GuardClassifier.from_pretrained(tmp_path / "killed" / "model")
    b = GuardClassifier.from_pretrained(tmp_path / "straight" / "model")
    texts = [json.loads(x)["prompt"] for x in workdir["train"].read_text().splitlines()[:40]]
    np.testing.assert_array_equal(a.score(texts), b.score(texts))
    log_a = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda log: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in log]  # noqa: E731
    assert strip(log_a) == strip(log_b)
    assert [r["step"] for r in log_a if "loss" in r] == list(range(1, steps + 1))
