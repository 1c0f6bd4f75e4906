"""Plain helpers shared by the grid tests (a uniquely named module: ``conftest`` is ambiguous across folders)."""

from __future__ import annotations

import random
from pathlib import Path

from guardmatch.augment.cache import ACCEPTED, ViewCache, ViewRecord
from guardmatch.data.example import Example, Task


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
