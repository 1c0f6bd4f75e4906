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

    Both offer ``config``, ``predict_logits``, ``predict_proba`` (``[N, 2]``) and ``score(prompts, responses=None)`` (P(harmful)).
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


CHARS_PER_TOKEN = 16
"""Characters kept per token of the model's window before tokenizing (see :func:`model_window_chars`)."""


def model_window_chars(max_length: int) -> int:
    """How many characters of a text can reach a model that reads ``max_length`` tokens.

    Tokenizing costs time in the text's full length although the model reads only its first
    ``max_length`` tokens, so texts are cut to ``max_length * CHARS_PER_TOKEN`` characters first.
    WordPiece / SentencePiece tokens average 3-6 characters in English and other Latin-script text
    (about 1-2 in CJK), so 16 leaves a margin of about 3x: the window's tokens, and so the scores,
    are the same as from the whole text; only text of mostly 16+-character "words" or long
    whitespace runs would be read differently. For 128 tokens that is 2,048 characters.
    """
    return int(max_length) * CHARS_PER_TOKEN


def cut_to_window(texts: list[str], max_length: int) -> list[str]:
    """``texts`` cut to :func:`model_window_chars` (the same list object when nothing is longer)."""
    limit = model_window_chars(max_length)
    if all(len(t) <= limit for t in texts):
        return texts
    return [t[:limit] for t in texts]
