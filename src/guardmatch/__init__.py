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

def _register_with_transformers() -> None:
    """``AutoModelForSequenceClassification`` / ``pipeline`` load saved guardmatch models after
    ``import guardmatch`` (see :mod:`guardmatch.hf`). Registering imports transformers' model
    classes (seconds), so it happens when transformers itself is first imported, not before."""
    import importlib.abc
    import importlib.util
    import sys

    def register() -> None:
        try:
            from guardmatch.hf import register as do_register
        except ImportError:  # torch missing: nothing to register with
            return
        do_register()

    if "transformers" in sys.modules:
        register()
        return

    class _AfterTransformersImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):  # noqa: ANN001 - the finder protocol
            if name != "transformers":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_then_register(module):  # noqa: ANN001
                exec_module(module)
                register()

            spec.loader.exec_module = exec_then_register  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, _AfterTransformersImport())


_register_with_transformers()

__all__ = ["Example", "Task", "HARMFUL", "UNHARMFUL", "LABEL_NAMES", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'guardmatch' has no attribute {name!r}")
