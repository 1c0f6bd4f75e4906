"""Fixtures for the grid tests: a tiny random encoder, a real training slice, a view cache."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from transformers import BertConfig, BertModel

from guardmatch.augment.cache import ACCEPTED, ViewCache, ViewRecord
from guardmatch.data.example import Example, Task
from guardmatch.encoders import minilm_path
from guardmatch.model import GuardClassifier


def tiny_bert_config() -> BertConfig:
    return BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=512)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved guardmatch model: tiny random BERT + the packaged MiniLM tokenizer, max length 48."""
    path = tmp_path_factory.mktemp("tiny") / "model"
    GuardClassifier.from_encoder(str(minilm_path()), encoder_config=tiny_bert_config(), seed=0,
                                 max_length=48).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    """A plain Hugging Face tiny BERT (what a sentence-transformer / SetFit body loads)."""
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("tiny-hf") / "bert"
    import torch

    torch.manual_seed(0)
    BertModel(tiny_bert_config()).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(path)
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


def write_views(root: Path, examples: list[Example], name: str = "drop", every: int = 1) -> Path:
    """A view cache with two word-drop views (a perturbation defined here) of every ``every``-th example."""
    cache = ViewCache.create({"name": name, "config": {"p": 0.2}}, (name.encode().hex() * 64)[:64], root)
    with cache.writer("tests") as w:
        for i, ex in enumerate(examples):
            if i % every:
                continue
            rng = random.Random(ex.id)
            for v in range(2):
                words = ex.prompt.split()
                kept = [t for t in words if rng.random() > 0.2] or words[:1]
                w.write(ViewRecord(Task.PROMPT, ex.content_hash(Task.PROMPT), v, 0, ACCEPTED, None, " ".join(kept),
                                   None, {}, "tests", ex.id))
    cache.write_manifest()
    return cache.path


@pytest.fixture(scope="session")
def view_cache(tmp_path_factory, train_slice) -> Path:
    return write_views(tmp_path_factory.mktemp("views"), train_slice)


@pytest.fixture(scope="session")
def feature_dir(tmp_path_factory) -> Path:
    """One feature cache for every grid test (the suite is encoded once per session)."""
    return tmp_path_factory.mktemp("features")


def tiny_grid_dict(out: Path, *, train_file: Path, model_dir: Path, views: Path, features: Path, data_dir: Path,
                   **extra) -> dict:
    grid = {
        "name": "tiny",
        "output_dir": str(out),
        "base": {
            "mode": "frozen",
            "feature_cache_dir": str(features),
            "model": {"init_from": str(model_dir)},
            "data": {"train": str(train_file), "suite": "prompt", "data_dir": str(data_dir), "allow_hub": False},
            "optim": {"max_steps": 6, "batch_size": 4, "lr": 5e-3, "eval_batch_size": 256},
            "save_every": 2,
            "log_every": 2,
        },
        "tasks": {"prompt": {}},
        "methods": {"supervised": {"algorithm": "supervised"},
                    "fixmatch": {"algorithm": "fixmatch", "label": "FixMatch", "params": {"threshold": 0.6}}},
        "augmenters": {"drop": {"cache": str(views), "label": "word drop"}},
        "budgets": [20],
        "seeds": [0, 1],
        "baselines": {"tfidf": {"kind": "tfidf_lr", "label": "TF-IDF", "params": {"C_grid": [0.1, 1.0, 10.0],
                                                                                  "cv_folds": 3, "char_ngrams": None}}},
    }
    for key, value in extra.items():
        grid[key] = value
    return grid
