"""Fixtures for the grid tests: a tiny random encoder, a view cache of the real training slice (``train_slice``,
shared from ``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from grid_helpers import write_views
from transformers import BertConfig, BertModel

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
def view_cache(tmp_path_factory, train_slice) -> Path:
    return write_views(tmp_path_factory.mktemp("views"), train_slice)


@pytest.fixture(scope="session")
def feature_dir(tmp_path_factory) -> Path:
    """One feature cache for every grid test (the suite is encoded once per session)."""
    return tmp_path_factory.mktemp("features")
