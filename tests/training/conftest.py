"""Fixtures for trainer tests: real data slices, a saved tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trainer_fixtures import tiny_model

from guardmatch.data.example import Example
from guardmatch.data.suites import load_dataset


@pytest.fixture(scope="session")
def prompt_slice(shared_data) -> list[Example]:
    """120 real WildGuardTrain prompts, balanced (60/60)."""
    examples = load_dataset("wildguardtrain", "prompt", data_dir=shared_data).examples
    harmful = [e for e in examples if e.label == 1][:60]
    benign = [e for e in examples if e.label == 0][:60]
    return harmful + benign


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "model"
    tiny_model().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_train_file(tmp_path_factory, prompt_slice) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    with path.open("w") as fh:
        for ex in prompt_slice:
            fh.write(json.dumps(ex.to_dict()) + "\n")
    return path
