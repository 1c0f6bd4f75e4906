"""Shared fixtures: the real datasets in ../shared/data (and a slice of WildGuardTrain), the packaged MiniLM,
tiny random models."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from guardmatch.data.example import Example

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$GUARDMATCH_DATA_DIR`` or ``../shared/data`` next to the repository, if present."""
    env = os.environ.get("GUARDMATCH_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for path in candidates:
        if (path / "wildguardmix").is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets; tests that need them skip (with the reason) where they are absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real datasets not found: set GUARDMATCH_DATA_DIR or provide ../shared/data")
    return path


@pytest.fixture(autouse=True, scope="session")
def _offline_and_small():
    """Tests never touch the network and stay polite on a 2-core machine."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # the repository's shipped views/ must not leak into tests; tests of it point here explicitly
    os.environ["GUARDMATCH_VIEWS_DIR"] = str(REPO_ROOT / ".pytest_cache" / "no-shipped-views")
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield


@pytest.fixture(scope="session")
def tiny_prompt_model_dir(tmp_path_factory) -> Path:
    """A saved prompt classifier: random 2-layer BERT (hidden 32) with the packaged MiniLM tokenizer."""
    from transformers import BertConfig

    from guardmatch.encoders import minilm_path
    from guardmatch.model import GuardClassifier

    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    path = tmp_path_factory.mktemp("tiny-prompt") / "model"
    GuardClassifier.from_encoder(str(minilm_path()), encoder_config=cfg, seed=0, max_length=48).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def train_slice(shared_data) -> list[Example]:
    """80 short real WildGuardTrain prompts, 40 harmful and 40 benign."""
    from guardmatch.data.suites import load_dataset

    rows = [e for e in load_dataset("wildguardtrain", "prompt", data_dir=shared_data, allow_hub=False).examples
            if len(e.prompt) < 300]
    return [e for e in rows if e.label == 1][:40] + [e for e in rows if e.label == 0][:40]


@pytest.fixture(scope="session")
def train_file(tmp_path_factory, train_slice) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in train_slice))
    return path
