"""Fixtures for the review-loop tests: real WildGuardTrain prompts, a tiny supervised run, an isolated cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from review_fixtures import tiny_model, tiny_run_config, write_jsonl

from guardmatch.data.example import Example
from guardmatch.data.suites import load_dataset


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Audit log and derived-data registry go to a per-test directory, never ~/.cache."""
    monkeypatch.setenv("GUARDMATCH_CACHE_DIR", str(tmp_path / "gm-cache"))
    monkeypatch.setenv("GUARDMATCH_AUDIT_USER", "review-tests")


@pytest.fixture(scope="session")
def review_slice(shared_data) -> list[Example]:
    """160 real WildGuardTrain prompts, balanced (80/80)."""
    examples = load_dataset("wildguardtrain", "prompt", data_dir=shared_data).examples
    harmful = [e for e in examples if e.label == 1][:80]
    benign = [e for e in examples if e.label == 0][:80]
    return harmful + benign


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("review-tiny") / "model"
    tiny_model().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, review_slice, tiny_model_dir) -> Path:
    """A real (tiny, 4-step) supervised run: 40 seed labels, a pool of 120."""
    from guardmatch.training.run import run_training

    root = tmp_path_factory.mktemp("review-run")
    train = write_jsonl(root / "train.jsonl", review_slice)
    cfg = tiny_run_config(train, tiny_model_dir, root / "run")
    run_training(cfg)
    return root / "run"
