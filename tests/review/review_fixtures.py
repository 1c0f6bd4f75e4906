"""Helpers for the review-loop tests: a tiny random encoder with the real MiniLM tokenizer, tiny runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

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


def write_jsonl(path: Path, examples: Sequence[Example]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_dict()) + "\n")
    return path


def tiny_run_config(train_file: Path, init_from: Path, output_dir: Path, *, labels: int = 40, steps: int = 4):
    from guardmatch.config import TrainConfig

    return TrainConfig.model_validate({
        "output_dir": str(output_dir), "seed": 0, "algorithm": "supervised",
        "data": {"task": "prompt", "train": str(train_file), "labels": labels, "suite": "none"},
        "model": {"init_from": str(init_from), "max_length": 48},
        "optim": {"max_steps": steps, "batch_size": 8, "eval_batch_size": 32, "lr": 1e-3},
        "save_every": 100, "log_every": 2,
    })
