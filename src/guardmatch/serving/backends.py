"""Load whichever runtime a model directory holds: PyTorch (safetensors) or an ONNX export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ONNX_FILE = "model.onnx"


def is_onnx_dir(path: str | Path) -> bool:
    """True for a directory written by ``guardmatch export onnx``."""
    path = Path(path)
    return (path / ONNX_FILE).exists() or any(path.glob("model*.onnx"))


def load_classifier(path: str | Path, *, threads: int | None = None) -> Any:
    """A ``GuardClassifier`` or, for a directory made by ``guardmatch export onnx``, an ONNX classifier.

    Both offer ``config``, ``predict_logits`` and ``predict_proba(prompts, responses=None)``.
    ``threads`` sets onnxruntime's intra-op threads (PyTorch uses ``torch.set_num_threads``).
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such model directory")
    if is_onnx_dir(path):
        from guardmatch.serving.onnx import OnnxClassifier

        return OnnxClassifier.from_pretrained(path, threads=threads)
    from guardmatch.model import GuardClassifier

    return GuardClassifier.from_pretrained(path)
