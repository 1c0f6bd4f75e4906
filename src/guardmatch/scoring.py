"""The prediction API shared by every runtime (PyTorch ``GuardClassifier``, ``OnnxClassifier``).

A runtime implements one method, ``_batch_logits(prompts, responses) -> [n, C]``; this mixin adds
input checks, length-sorted batching (much faster on CPU), progress, temperature and threshold.

The API is shaped like scikit-learn's: ``classes_`` holds the label names (``unharmful``,
``harmful``), ``predict_proba`` returns ``[N, C]`` probabilities in that column order and
``predict`` returns class indices (0/1; ``labels=True``: names). ``score`` is the 1-D P(harmful)
that thresholds, metrics and the server use.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np

from guardmatch.data.example import Task
from guardmatch.errors import ConfigError


def softmax_from_logits(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) for ``[N, C]`` logits, float64 ``[N, C]``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def probs_from_logits(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """P(harmful) = softmax(logits / T)[:, 1] for ``[N, C]`` logits."""
    return softmax_from_logits(logits, temperature)[:, 1]


class ScoringMixin:
    """``predict_logits`` / ``predict_proba`` / ``score`` / ``predict`` on top of ``_batch_logits``."""

    config: Any  # GuardClassifierConfig

    @property
    def classes_(self) -> np.ndarray:
        """Label names in column order of :meth:`predict_proba` (``["unharmful", "harmful"]``)."""
        return np.asarray(list(self.config.labels), dtype=object)

    def _batch_logits(self, prompts: list[str], responses: list[str] | None) -> np.ndarray:
        raise NotImplementedError

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Set up and tear down inference mode (e.g. ``eval()`` and ``no_grad`` for PyTorch)."""
        yield

    def predict_logits(
        self,
        prompts: Sequence[str],
        responses: Sequence[str] | None = None,
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> np.ndarray:
        """Class logits ``[N, C]`` (mean of heads, before temperature), in input order."""
        prompts = list(prompts)
        if responses is not None:
            responses = list(responses)
            if len(responses) != len(prompts):
                raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        elif Task(self.config.task) is Task.RESPONSE:
            raise ConfigError("this is a response classifier: pass responses=[...] with the prompts")
        n = len(prompts)
        out = np.zeros((n, self.config.num_classes), dtype=np.float32)
        if n == 0:
            return out
        lengths = [len(p) + (len(responses[i]) if responses is not None else 0) for i, p in enumerate(prompts)]
        order = np.argsort(lengths, kind="stable")
        batches: Any = range(0, n, batch_size)
        if progress:
            from rich.console import Console
            from rich.progress import track

            batches = track(batches, description="scoring", total=(n + batch_size - 1) // batch_size,
                            console=Console(stderr=True))
        with self._inference():
            for start in batches:
                idx = order[start : start + batch_size]
                out[idx] = self._batch_logits(
                    [prompts[i] for i in idx], [responses[i] for i in idx] if responses is not None else None
                )[:, : self.config.num_classes]
        return out

    def predict_proba(
        self,
        prompts: Sequence[str],
        responses: Sequence[str] | None = None,
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> np.ndarray:
        """Calibrated class probabilities ``[N, C]``, columns in :attr:`classes_` order (as scikit-learn)."""
        logits = self.predict_logits(prompts, responses, batch_size=batch_size, progress=progress)
        return softmax_from_logits(logits, self.config.temperature)

    def score(
        self,
        prompts: Sequence[str],
        responses: Sequence[str] | None = None,
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> np.ndarray:
        """Calibrated P(harmful) per input, shape ``[N]`` (``predict_proba(...)[:, 1]``)."""
        logits = self.predict_logits(prompts, responses, batch_size=batch_size, progress=progress)
        return probs_from_logits(logits, self.config.temperature)

    def predict(
        self,
        prompts: Sequence[str],
        responses: Sequence[str] | None = None,
        *,
        threshold: float | None = None,
        profile: str | None = None,
        batch_size: int = 32,
        labels: bool = False,
    ) -> np.ndarray:
        """0/1 (1 = harmful) at ``threshold``, else at the threshold ``profile`` (default: the model's own);
        ``labels=True``: label names."""
        thr = self.config.threshold_for(profile) if threshold is None else threshold
        pred = (self.score(prompts, responses, batch_size=batch_size) >= thr).astype(np.int64)
        return self.classes_[pred] if labels else pred

    def predict_labels(
        self,
        prompts: Sequence[str],
        responses: Sequence[str] | None = None,
        *,
        threshold: float | None = None,
        profile: str | None = None,
        batch_size: int = 32,
    ) -> np.ndarray:
        """Label names (``"unharmful"`` / ``"harmful"``) at the threshold: ``predict(..., labels=True)``."""
        return self.predict(prompts, responses, threshold=threshold, profile=profile, batch_size=batch_size,
                            labels=True)
