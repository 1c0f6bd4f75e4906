"""Evaluate a classifier on a suite of test sets; results as JSON and a markdown table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

import numpy as np

from guardmatch.data.example import Example, Task
from guardmatch.evaluation.metrics import binary_metrics, expected_calibration_error, threshold_sweep


@dataclass
class SetResult:
    """Metrics of one test set at the model's threshold, plus a threshold sweep."""

    name: str
    metrics: dict[str, Any]
    sweep: list[dict[str, float]]
    ece: float
    scores: np.ndarray | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.metrics, "ece": self.ece, "sweep": self.sweep}


@dataclass
class EvaluationReport:
    """All test sets of one evaluation."""

    model: str
    task: str
    threshold: float
    results: dict[str, SetResult]
    info: dict[str, Any] = field(default_factory=dict)

    def f1(self) -> dict[str, float]:
        return {k: r.metrics["f1"] for k, r in self.results.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task,
            "threshold": self.threshold,
            "info": self.info,
            "results": {k: r.to_dict() for k, r in self.results.items()},
        }

    def to_markdown(self, title: str | None = None) -> str:
        head = f"### {title}\n\n" if title else ""
        rows = [
            "| test set | n | harmful | F1 | precision | recall | AUPRC | ECE |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in self.results.items():
            m = r.metrics
            rows.append(
                f"| {name} | {m['n']} | {m['positives']} | {m['f1']:.3f} | {m['precision']:.3f} | "
                f"{m['recall']:.3f} | {m['auprc']:.3f} | {r.ece:.3f} |"
            )
        foot = f"\n\nthreshold {self.threshold:.3f}; model `{self.model}`; task {self.task}"
        return head + "\n".join(rows) + foot

    def save(self, directory: str | Path, *, scores: bool = True) -> Path:
        """Write ``evaluation.json``, ``evaluation.md`` and (optionally) per-set scores as ``.npy``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "evaluation.json").write_text(json.dumps(self.to_dict(), indent=2))
        (directory / "evaluation.md").write_text(self.to_markdown() + "\n")
        if scores:
            sdir = directory / "scores"
            sdir.mkdir(exist_ok=True)
            for name, r in self.results.items():
                if r.scores is not None and r.labels is not None:  # set together by evaluate_scores
                    np.save(sdir / f"{name}.scores.npy", r.scores, allow_pickle=False)
                    np.save(sdir / f"{name}.labels.npy", r.labels, allow_pickle=False)
        return directory


def evaluate_scores(
    suite_scores: Mapping[str, tuple[Sequence[int] | np.ndarray, Sequence[float] | np.ndarray]], threshold: float
) -> dict[str, SetResult]:
    """Metrics for precomputed ``{name: (labels, P(harmful))}``."""
    out = {}
    for name, (labels, probs) in suite_scores.items():
        y = np.asarray(labels, dtype=np.int64)
        p = np.asarray(probs, dtype=np.float64)
        out[name] = SetResult(
            name=name,
            metrics=binary_metrics(y, p, threshold),
            sweep=threshold_sweep(y, p),
            ece=expected_calibration_error(y, p),
            scores=p,
            labels=y,
        )
    return out


def evaluate_model(
    model: Any,
    suite: Mapping[str, Sequence[Example]],
    *,
    threshold: float | None = None,
    batch_size: int = 64,
    progress: bool = False,
    name: str | None = None,
) -> EvaluationReport:
    """Score every test set with ``model.score`` (P(harmful)) and compute harmful-class metrics."""
    task = Task(model.config.task)
    thr = model.config.threshold if threshold is None else threshold
    scored = {}
    for set_name, examples in suite.items():
        labeled = [ex for ex in examples if ex.label is not None]
        if not labeled:
            continue
        prompts = [ex.prompt for ex in labeled]
        responses = [ex.response or "" for ex in labeled] if task is Task.RESPONSE else None
        probs = model.score(prompts, responses, batch_size=batch_size, progress=progress)
        scored[set_name] = ([cast(int, ex.label) for ex in labeled], probs)  # labeled: label is not None
    return EvaluationReport(
        model=name or str(model.config.encoder),
        task=task.value,
        threshold=float(thr),
        results=evaluate_scores(scored, thr),
    )
