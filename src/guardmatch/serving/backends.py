"""Load whichever runtime a model directory holds: PyTorch (safetensors) or an ONNX export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ONNX_FILE = "model.onnx"


def load_classifier(path: str | Path) -> Any:
    """A ``GuardClassifier`` or, for a directory made by ``guardmatch export onnx``, an ONNX classifier.

    Both offer ``config`` and ``predict_proba(prompts, responses=None)``.
    """
    path = Path(path)
    if (path / ONNX_FILE).exists() or any(path.glob("model*.onnx")):
        from guardmatch.serving.onnx import OnnxClassifier

        return OnnxClassifier.from_pretrained(path)
    from guardmatch.model import GuardClassifier

    return GuardClassifier.from_pretrained(path)
