"""Helpers for trainer tests: a tiny random encoder with the real MiniLM tokenizer, a test-defined perturbation."""

from __future__ import annotations

import random

from transformers import BertConfig

from guardmatch.data.example import Example
from guardmatch.encoders import minilm_path
from guardmatch.model import GuardClassifier


def tiny_bert_config() -> BertConfig:
    return BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=512)


def tiny_model(num_heads: int = 1, num_outputs: int = 2, task: str = "prompt", seed: int = 0) -> GuardClassifier:
    return GuardClassifier.from_encoder(str(minilm_path()), encoder_config=tiny_bert_config(), num_heads=num_heads,
                                        num_outputs=num_outputs, task=task, seed=seed, max_length=48)


def word_drop_views(example: Example, k: int = 2, p: float = 0.2, seed: int = 0) -> list[Example]:
    """A simple perturbation defined in the tests (stand-in strong views): drop words at random."""
    rng = random.Random(f"{seed}-{example.id}")
    out = []
    for v in range(k):
        words = example.prompt.split()
        kept = [w for w in words if rng.random() > p] or words[:1]
        out.append(Example(example.id, " ".join(kept), example.response, example.label, example.source,
                           {"view": v}))
    return out


