"""Calibration: temperature scaling and a threshold chosen for an operating target.

Temperature scaling (Guo et al., 2017) divides a classifier's logits by one scalar ``T`` fitted to
minimise the negative log-likelihood on held-out labeled data. It changes no ranking (AUPRC is
unchanged) but makes ``P(harmful)`` mean what it says, which is what a threshold needs.

The threshold is then picked on the same held-out data for one target:

- ``precision``: the lowest threshold whose precision is at least ``value`` (most recall at that precision);
- ``recall``: the highest threshold whose recall is at least ``value`` (most precision at that recall);
- ``fpr``: the lowest threshold whose false-positive rate on benign inputs is at most ``value``;
- ``f1``: the threshold that maximises harmful-class F1.

Thresholds are midpoints between neighbouring distinct scores, so a tie is never split.

Never fit on a test set you report: pass a held-out part of the *training source* (e.g. the
labeled examples a split left unused), and keep the test suites for evaluation.

Python API (also what ``guardmatch calibrate`` and training's calibration step call)::

    from guardmatch.calibration import calibrate
    result = calibrate(model, held_out_examples, target="fpr", value=0.05)
    model.save_pretrained(out_dir)          # temperature, threshold and the record are in model.config
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from guardmatch.data.example import Example, Task
from guardmatch.errors import GuardmatchError
from guardmatch.evaluation.metrics import best_f1_threshold, binary_metrics, expected_calibration_error
from guardmatch.scoring import probs_from_logits

Target = Literal["precision", "recall", "fpr", "f1"]
TARGETS: tuple[str, ...] = ("precision", "recall", "fpr", "f1")
# GuardClassifierConfig requires 0 < threshold < 1.
_THR_MIN, _THR_MAX = 1e-6, 1.0 - 1e-6
_T_BOUNDS = (0.05, 20.0)  # log-space search interval for the temperature


class CalibrationError(GuardmatchError, ValueError):
    """Calibration data or target that cannot give a meaningful result."""


# ---------------------------------------------------------------------------------------------
# Temperature scaling
# ---------------------------------------------------------------------------------------------


def _as_logits(logits: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:  # binary margins z = l1 - l0: the same as logits [0, z]
        z = np.stack([np.zeros_like(z), z], axis=1)
    if z.ndim != 2 or z.shape[1] < 2:
        raise CalibrationError(f"logits must be [N] margins or [N, C>=2], got shape {z.shape}")
    return z


def nll(logits: Sequence[Sequence[float]] | np.ndarray, labels: Sequence[int] | np.ndarray,
        temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    z = _as_logits(logits) / float(temperature)
    y = np.asarray(labels, dtype=np.int64)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(y)), y]))


def fit_temperature(
    logits: Sequence[Sequence[float]] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    bounds: tuple[float, float] = _T_BOUNDS,
) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits / T)`` on ``labels``.

    ``logits`` is ``[N, C]`` (or ``[N]`` binary margins). The NLL is convex in ``1/T``, so a bounded
    scalar search over ``log T`` (Brent) finds the optimum; it is clipped to ``bounds``.
    """
    z = _as_logits(logits)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(z):
        raise CalibrationError(f"{len(z)} logits but {len(y)} labels")
    if len(y) == 0:
        raise CalibrationError("no labeled examples to fit a temperature on")
    if np.any((y < 0) | (y >= z.shape[1])):
        raise CalibrationError(f"labels must be in 0..{z.shape[1] - 1}")
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    res = minimize_scalar(lambda s: nll(z, y, math.exp(s)), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-6})
    return float(math.exp(res.x))


# ---------------------------------------------------------------------------------------------
# Threshold for a target
# ---------------------------------------------------------------------------------------------


@dataclass
class ThresholdChoice:
    """A threshold, the target it was chosen for, and what it achieves on the data it was chosen on."""

    threshold: float
    target: str
    value: float | None
    met: bool
    achieved: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _candidates(probs: np.ndarray) -> np.ndarray:
    """Cut points: below every score, midpoints between distinct scores, above every score."""
    u = np.unique(probs)
    mids = (u[1:] + u[:-1]) / 2 if len(u) > 1 else np.zeros(0)
    lo = max(_THR_MIN, float(u[0]) / 2) if len(u) else _THR_MIN
    hi = min(_THR_MAX, (float(u[-1]) + 1.0) / 2) if len(u) else _THR_MAX
    cands = np.clip(np.concatenate([[lo], mids, [hi]]), _THR_MIN, _THR_MAX)
    return np.unique(cands)


def _rates(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, FPR and F1 at every threshold (vectorised; flag = p >= t)."""
    pos = np.sort(p[y == 1])
    neg = np.sort(p[y == 0])
    tp = len(pos) - np.searchsorted(pos, thresholds, side="left")
    fp = len(neg) - np.searchsorted(neg, thresholds, side="left")
    flagged = tp + fp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(flagged > 0, tp / np.maximum(flagged, 1), 1.0)
        recall = tp / len(pos) if len(pos) else np.zeros_like(thresholds)
        fpr = fp / len(neg) if len(neg) else np.zeros_like(thresholds)
        f1 = np.where(tp > 0, 2 * tp / np.maximum(flagged + len(pos), 1), 0.0)
    return {"precision": precision, "recall": recall, "fpr": fpr, "f1": f1, "tp": tp, "fp": fp}


def choose_threshold(
    labels: Sequence[int] | np.ndarray,
    probs: Sequence[float] | np.ndarray,
    target: Target | str = "f1",
    value: float | None = None,
    *,
    strict: bool = True,
) -> ThresholdChoice:
    """Pick a threshold on ``probs`` (P(harmful), flag when ``p >= threshold``) for ``target``.

    ``precision``/``recall`` need ``value`` (the floor), ``fpr`` needs ``value`` (the ceiling on the
    benign false-positive rate); ``f1`` takes none. When a precision floor cannot be met at any
    threshold, ``strict=True`` raises :class:`CalibrationError`; ``strict=False`` returns the most
    precise threshold with ``met=False``.
    """
    if target not in TARGETS:
        raise CalibrationError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape:
        raise CalibrationError(f"{len(y)} labels but {len(p)} scores")
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if target == "f1":
        if n_pos == 0:
            raise CalibrationError("target f1 needs harmful examples in the calibration data")
        thr, _ = best_f1_threshold(y, p)
        thr = float(np.clip(thr, _THR_MIN, _THR_MAX))
        return ThresholdChoice(thr, "f1", None, True, _achieved(y, p, thr))
    if value is None:
        raise CalibrationError(f"target {target!r} needs a value (e.g. --value 0.05)")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise CalibrationError(f"value for target {target!r} must be in [0, 1], got {value}")
    if target in ("precision", "recall") and n_pos == 0:
        raise CalibrationError(f"target {target!r} needs harmful examples in the calibration data")
    if target == "fpr" and n_neg == 0:
        raise CalibrationError("target 'fpr' needs benign (unharmful) examples in the calibration data")

    cands = _candidates(p)
    r = _rates(y, p, cands)
    eps = 1e-12
    if target == "precision":
        ok = (r["precision"] >= value - eps) & (r["tp"] > 0)
        if ok.any():
            thr = float(cands[np.flatnonzero(ok)[0]])  # lowest such threshold: most recall
            met = True
        else:
            if strict:
                best = float(r["precision"][r["tp"] > 0].max()) if (r["tp"] > 0).any() else 0.0
                raise CalibrationError(f"no threshold reaches precision {value:.3f} on the calibration data "
                                       f"(best is {best:.3f}); lower the target or use more data")
            masked = np.where(r["tp"] > 0, r["precision"], -1.0)
            thr, met = float(cands[int(np.argmax(masked))]), False
    elif target == "recall":
        ok = r["recall"] >= value - eps
        thr = float(cands[np.flatnonzero(ok)[-1]])  # highest such threshold: most precision
        met = True
    else:  # fpr
        ok = r["fpr"] <= value + eps
        thr = float(cands[np.flatnonzero(ok)[0]])  # lowest such threshold: most recall
        met = True
    return ThresholdChoice(thr, target, value, met, _achieved(y, p, thr))


def _achieved(y: np.ndarray, p: np.ndarray, thr: float) -> dict[str, Any]:
    m = binary_metrics(y, p, thr)
    return {k: m[k] for k in ("n", "positives", "precision", "recall", "f1", "fpr", "tp", "fp", "fn", "tn")}


# ---------------------------------------------------------------------------------------------
# Whole-model calibration
# ---------------------------------------------------------------------------------------------


@dataclass
class CalibrationResult:
    """What :func:`calibrate` fitted and measured; ``record`` is stored in ``model.config.calibration``."""

    temperature: float
    threshold: float
    record: dict[str, Any]

    @property
    def ece_before(self) -> float:
        return self.record["ece_before"]

    @property
    def ece_after(self) -> float:
        return self.record["ece_after"]


def _logits_of(model: Any, examples: Sequence[Example], batch_size: int, progress: bool) -> np.ndarray:
    task = Task(model.config.task)
    prompts = [ex.prompt for ex in examples]
    responses = [ex.response or "" for ex in examples] if task is Task.RESPONSE else None
    return np.asarray(model.predict_logits(prompts, responses, batch_size=batch_size, progress=progress))


def calibrate(
    model: Any,
    examples: Sequence[Example],
    *,
    target: Target | str = "f1",
    value: float | None = None,
    temperature: bool = True,
    strict: bool = True,
    source: str | None = None,
    batch_size: int = 64,
    progress: bool = False,
    logits: np.ndarray | None = None,
) -> CalibrationResult:
    """Fit the temperature and pick the threshold on held-out labeled ``examples``; store both in ``model.config``.

    ``model`` is a :class:`~guardmatch.model.GuardClassifier` or an ONNX classifier (anything with
    ``config`` and ``predict_logits``). ``temperature=False`` keeps ``T = 1`` and only picks the
    threshold. ``source`` names the calibration data in the stored record. ``logits`` (``[N, C]``,
    before temperature) skips inference when the caller already has them. Returns the fitted values
    and the record; save the model (``save_pretrained``) to keep them.
    """
    labeled = [ex for ex in examples if ex.label is not None]
    if len(labeled) < 2:
        raise CalibrationError(f"calibration needs labeled examples; got {len(labeled)} of {len(examples)}")
    if logits is None:
        logits = _logits_of(model, labeled, batch_size, progress)
    elif len(labeled) != len(examples):
        raise CalibrationError("pass logits only together with fully labeled examples")
    z = _as_logits(logits)
    y = np.asarray([ex.label for ex in labeled], dtype=np.int64)
    old_t = float(model.config.temperature)
    p_raw = probs_from_logits(z, 1.0)
    p_before = probs_from_logits(z, old_t)
    t = fit_temperature(z, y) if temperature else 1.0
    p_after = probs_from_logits(z, t)
    choice = choose_threshold(y, p_after, target, value, strict=strict)
    sources = sorted({ex.source for ex in labeled if ex.source})
    record = {
        "method": "temperature" if temperature else "none",
        "temperature": t,
        "threshold": choice.threshold,
        "target": choice.target,
        "value": choice.value,
        "met": choice.met,
        "achieved": choice.achieved,
        "n": int(len(y)),
        "positives": int(y.sum()),
        "source": source or ("+".join(sources) if sources else "examples"),
        "ece_uncalibrated": expected_calibration_error(y, p_raw),
        "ece_before": expected_calibration_error(y, p_before),
        "ece_after": expected_calibration_error(y, p_after),
        "nll_before": nll(z, y, old_t),
        "nll_after": nll(z, y, t),
        "previous": {"temperature": old_t, "threshold": float(model.config.threshold)},
        "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    model.config.temperature = t
    model.config.threshold = choice.threshold
    model.config.calibration = record
    return CalibrationResult(temperature=t, threshold=choice.threshold, record=record)


# ---------------------------------------------------------------------------------------------
# Calibration data
# ---------------------------------------------------------------------------------------------


@dataclass
class CalibrationData:
    """Held-out labeled examples and how they were chosen (stored in the calibration record)."""

    examples: list[Example]
    description: dict[str, Any]


def find_split_manifest(model_dir: str | Path) -> Path | None:
    """The ``split_manifest.json`` of the training run a model directory belongs to, if any."""
    model_dir = Path(model_dir)
    for cand in (model_dir / "split_manifest.json", model_dir.parent / "split_manifest.json"):
        if cand.is_file():
            return cand
    return None


def held_out_examples(
    data: str | Path,
    task: Task | str,
    *,
    exclude_manifest: str | Path | None = None,
    exclude_ids: Sequence[str] = (),
    exclude_sets: Any = None,
    limit: int | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    format: str | None = None,
    column_mapping: dict[str, str] | None = None,
) -> CalibrationData:
    """Labeled examples of ``data`` (file or named dataset) that training did not see.

    ``exclude_manifest`` (a training run's ``split_manifest.json``) drops the run's labeled and
    validation ids; ``exclude_sets`` (name -> examples, e.g. a test suite) drops any example whose
    text occurs in them, so calibration never touches a set that is reported. ``limit`` keeps a
    random ``limit`` of what is left (``seed``).
    """
    from guardmatch.data.overlap import remove_overlap
    from guardmatch.data.splits import SplitManifest
    from guardmatch.data.suites import load_source

    task = Task(task)
    loaded = load_source(str(data), task, format=format, column_mapping=column_mapping, data_dir=data_dir,
                         errors="skip")
    examples = [ex for ex in loaded.examples if ex.label is not None]
    desc: dict[str, Any] = {"data": str(data), "rows": len(loaded.examples), "labeled": len(examples)}
    excluded = set(exclude_ids)
    if exclude_manifest is not None:
        manifest = SplitManifest.model_validate_json(Path(exclude_manifest).read_text(encoding="utf-8"))
        excluded |= set(manifest.labeled_ids) | set(manifest.validation_ids)
        desc["exclude_manifest"] = str(exclude_manifest)
        desc["manifest_source"] = manifest.source
    if excluded:
        before = len(examples)
        examples = [ex for ex in examples if ex.id not in excluded]
        desc["excluded_training_ids"] = before - len(examples)
    if exclude_sets:
        examples, removed = remove_overlap(examples, exclude_sets, task)
        desc["excluded_test_overlap"] = removed
        desc["exclude_sets"] = sorted(exclude_sets)
    if limit is not None and len(examples) > limit:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.permutation(len(examples))[:limit])
        examples = [examples[i] for i in keep]
        desc["limit"] = int(limit)
        desc["seed"] = int(seed)
    desc["n"] = len(examples)
    desc["positives"] = int(sum(ex.label == 1 for ex in examples))
    if not examples:
        raise CalibrationError(f"{data}: no labeled examples left for calibration ({desc})")
    return CalibrationData(examples, desc)


def calibrate_model_dir(
    model_dir: str | Path,
    data: CalibrationData | Sequence[Example],
    *,
    out_dir: str | Path | None = None,
    target: Target | str = "f1",
    value: float | None = None,
    temperature: bool = True,
    strict: bool = True,
    batch_size: int = 64,
    progress: bool = False,
) -> CalibrationResult:
    """Load a model directory (PyTorch or ONNX export), calibrate it and save it to ``out_dir`` (default: in place)."""
    from guardmatch.serving.backends import load_classifier

    model = load_classifier(model_dir)
    examples = data.examples if isinstance(data, CalibrationData) else list(data)
    source = str(data.description.get("data")) if isinstance(data, CalibrationData) else None
    result = calibrate(model, examples, target=target, value=value, temperature=temperature, strict=strict,
                       batch_size=batch_size, progress=progress, source=source)
    if isinstance(data, CalibrationData):
        result.record["data"] = dict(data.description)
        model.config.calibration = result.record
    model.save_pretrained(out_dir or model_dir)
    return result
