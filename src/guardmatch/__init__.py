"""guardmatch: semi-supervised training of small, fast LLM-safety classifiers.

The public surface, flat (as SetFit does): data types and loaders, the classifier, configs,
training and evaluation. Heavy modules are imported lazily.
"""

from __future__ import annotations

from typing import Any

from guardmatch.data.example import HARMFUL, LABEL_NAMES, UNHARMFUL, Example, Task

__version__ = "0.1.0"

_LAZY = {
    "GuardClassifier": "guardmatch.model",
    "GuardClassifierConfig": "guardmatch.model",
    "TrainConfig": "guardmatch.config",
    "load_train_config": "guardmatch.config",
    "run_training": "guardmatch.training.run",
    "Trainer": "guardmatch.training.trainer",
    "evaluate_model": "guardmatch.evaluation.report",
    "load_file": "guardmatch.data.loaders",
    "load_dataset": "guardmatch.data.suites",
    "load_suite": "guardmatch.data.suites",
    "make_split": "guardmatch.data.splits",
    "build_algorithm": "guardmatch.algorithms",
}

__all__ = ["Example", "Task", "HARMFUL", "UNHARMFUL", "LABEL_NAMES", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'guardmatch' has no attribute {name!r}")
