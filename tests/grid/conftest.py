"""Fixtures for the grid tests: a tiny random encoder, a real training slice, a view cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from grid_helpers import write_views
from transformers import BertConfig, BertModel

from guardmatch.data.example import Example
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


@pytest.fixture(scope="session")
def view_cache(tmp_path_factory, train_slice) -> Path:
    return write_views(tmp_path_factory.mktemp("views"), train_slice)


@pytest.fixture(scope="session")
def feature_dir(tmp_path_factory) -> Path:
    """One feature cache for every grid test (the suite is encoded once per session)."""
    return tmp_path_factory.mktemp("features")
