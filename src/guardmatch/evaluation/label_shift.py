"""Label shift: the deployment's harmful rate from unlabeled predictions, and the threshold that follows.

Under label shift the class-conditional text distributions stay put while the prior moves
(P_t(x | y) = P_s(x | y), P_t(y) != P_s(y)). Two estimators of the target prior q = P_t(harmful):

* :func:`em_prior` (default): maximum-likelihood EM on calibrated posteriors, Saerens, Latinne and
  Decaestecker, "Adjusting the outputs of a classifier to new a priori probabilities: a simple
  procedure", Neural Computation 14(1), 2002. Each step re-weights every posterior by the prior
  ratio and sets q to their mean. Alexandari, Kundaje and Shrikumar (ICML 2020) showed that with
  calibrated probabilities (our temperature scaling) it matches or beats BBSE.
* :func:`bbse_prior`: black-box shift estimation, Lipton, Wang and Smola, ICML 2018: the confusion
  matrix C[i, j] = P_s(yhat = i, y = j) on labeled held-out source data, mu = P_t(yhat) on the
  unlabeled batch, w = C^-1 mu, q = w_1 P_s(harmful), clipped to [0, 1]. Needs no calibration, only
  hard predictions, but wants enough source labels for a well-conditioned C.

:func:`estimate_prior` adds a percentile bootstrap interval (over the unlabeled texts, and for BBSE
over the labeled ones too). :func:`adapt_threshold` moves a threshold chosen under the source prior
to the one that flags the same posterior odds under the target prior.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

import numpy as np

from guardmatch.errors import GuardmatchError

Method = Literal["em", "bbse"]
_EPS = 1e-6


class LabelShiftError(GuardmatchError, ValueError):
    """Inputs the estimators cannot use (no texts, a prior of 0 or 1, a singular confusion matrix)."""


def _probs(p: Sequence[float] | np.ndarray, what: str = "probabilities") -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise LabelShiftError(f"no {what} given")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
        raise LabelShiftError(f"{what} must lie in [0, 1]")
    return arr


def _prior(value: float, what: str) -> float:
    if not 0.0 < value < 1.0:
        raise LabelShiftError(f"{what} must be strictly between 0 and 1, got {value}")
    return float(value)


def reweight(p: Sequence[float] | np.ndarray, source_prior: float, target_prior: float) -> np.ndarray:
    """Posteriors P_s(harmful | x) moved to the target prior (Bayes' rule with the prior ratio)."""
    p = _probs(p)
    w1 = _prior(target_prior, "target_prior") / _prior(source_prior, "source_prior")
    w0 = (1.0 - target_prior) / (1.0 - source_prior)
    num = w1 * p
    return num / (num + w0 * (1.0 - p))


@dataclass
class EMResult:
    prior: float
    iterations: int
    converged: bool


def em_prior(p: Sequence[float] | np.ndarray, source_prior: float, *, max_iter: int = 1000,
             tol: float = 1e-8) -> EMResult:
    """Saerens et al. (2002) EM: q <- mean(reweight(p, source_prior, q)), from q = source_prior."""
    p = _probs(p)
    source_prior = _prior(source_prior, "source_prior")
    q = source_prior
    for it in range(1, max_iter + 1):
        new = float(np.clip(reweight(p, source_prior, q).mean(), _EPS, 1.0 - _EPS))
        if abs(new - q) < tol:
            return EMResult(new, it, True)
        q = new
    return EMResult(q, max_iter, False)


def bbse_prior(source_p: Sequence[float] | np.ndarray, source_labels: Sequence[int] | np.ndarray,
               target_p: Sequence[float] | np.ndarray, threshold: float = 0.5) -> float:
    """Lipton et al. (2018) BBSE with hard predictions at ``threshold``; q clipped to [0, 1]."""
    sp, tp = _probs(source_p, "source probabilities"), _probs(target_p, "target probabilities")
    y = np.asarray(source_labels).reshape(-1).astype(int)
    if y.shape != sp.shape:
        raise LabelShiftError(f"{len(y)} source labels for {len(sp)} source probabilities")
    yhat = (sp >= threshold).astype(int)
    conf = np.zeros((2, 2))
    np.add.at(conf, (yhat, y), 1.0)
    conf /= len(y)
    mu = np.array([(tp < threshold).mean(), (tp >= threshold).mean()])
    if abs(np.linalg.det(conf)) < 1e-9:
        raise LabelShiftError("the source confusion matrix is singular: the classifier does not separate the "
                              "classes on the labeled data, so BBSE cannot invert it")
    w = np.clip(np.linalg.solve(conf, mu), 0.0, None)
    source_rates = conf.sum(axis=0)  # P_s(y)
    target = w * source_rates
    if target.sum() <= 0:
        raise LabelShiftError("BBSE found no mass in either class")
    return float(np.clip(target[1] / target.sum(), 0.0, 1.0))


@dataclass
class PriorEstimate:
    """An estimated deployment harmful rate with its bootstrap interval."""

    method: str
    prior: float
    low: float
    high: float
    source_prior: float
    n_unlabeled: int
    bootstrap: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_prior(target_p: Sequence[float] | np.ndarray, source_prior: float, *, method: Method = "em",
                   source_p: Sequence[float] | np.ndarray | None = None,
                   source_labels: Sequence[int] | None = None, threshold: float = 0.5, bootstrap: int = 200,
                   confidence: float = 0.95, seed: int = 0) -> PriorEstimate:
    """The deployment's harmful rate with a percentile bootstrap interval (``bootstrap`` resamples).

    ``em`` needs calibrated ``target_p`` and the training prior; ``bbse`` needs labeled held-out
    source probabilities and labels too (resampled with the unlabeled texts).
    """
    tp = _probs(target_p, "target probabilities")
    rng = np.random.default_rng(seed)
    if method == "em":
        def fit(t: np.ndarray, s: Any = None) -> float:  # s: bootstrap indices, unused by em
            return em_prior(t, source_prior).prior
    elif method == "bbse":
        if source_p is None or source_labels is None:
            raise LabelShiftError("bbse needs the labeled source probabilities and labels")
        sp, sy = _probs(source_p, "source probabilities"), np.asarray(source_labels).astype(int)

        def fit(t: np.ndarray, s: Any = None) -> float:
            idx = s if s is not None else slice(None)
            return bbse_prior(sp[idx], sy[idx], t, threshold)
    else:
        raise LabelShiftError(f"unknown label-shift method {method!r}; expected 'em' or 'bbse'")
    point = fit(tp)
    draws = []
    for _ in range(bootstrap):
        t = tp[rng.integers(0, len(tp), len(tp))]
        s = rng.integers(0, len(source_labels), len(source_labels)) if method == "bbse" else None  # type: ignore[arg-type]
        try:
            draws.append(fit(t, s))
        except LabelShiftError:
            continue
    alpha = (1.0 - confidence) / 2
    low, high = (np.quantile(draws, [alpha, 1 - alpha]).tolist() if draws else (point, point))
    return PriorEstimate(method, point, float(low), float(high), float(source_prior), len(tp), len(draws), confidence)


def adapt_threshold(threshold: float, source_prior: float, target_prior: float) -> float:
    """The threshold on source posteriors that equals ``threshold`` on target-prior posteriors.

    Flagging ``reweight(p) >= t`` is flagging ``logit(p) >= logit(t) + logit(pi_s) - logit(q)``.
    """
    t = _prior(threshold, "threshold")
    s, q = _prior(source_prior, "source_prior"), _prior(np.clip(target_prior, _EPS, 1 - _EPS), "target_prior")

    def logit(v: float) -> float:
        return float(np.log(v) - np.log1p(-v))

    z = logit(t) + logit(s) - logit(q)
    return float(1.0 / (1.0 + np.exp(-z)))


def source_prior_of(config: Any, source_prior: float | None = None) -> float:
    """``source_prior``, else the harmful rate a model's probabilities are calibrated for
    (:meth:`GuardClassifierConfig.calibrated_prior`); :class:`LabelShiftError` when it records none."""
    prior = source_prior if source_prior is not None else config.calibrated_prior()
    if prior is None:
        raise LabelShiftError("the model records no harmful rate for its probabilities (no calibration data, no "
                              "provenance.train_harmful_rate): pass the source prior (--source-prior)")
    return float(prior)


@dataclass
class DeploymentPrior:
    """A model's view of a deployment batch: the estimated harmful rate and the adapted threshold."""

    estimate: PriorEstimate
    base_threshold: float
    adapted_threshold: float
    flagged_rate_before: float
    flagged_rate_after: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deployment_prior(model: Any, examples: Sequence[Any], *, source_prior: float | None = None,
                     base_threshold: float | None = None, method: Method = "em",
                     labeled: Sequence[Any] | None = None, bootstrap: int = 200, batch_size: int = 32,
                     seed: int = 0) -> DeploymentPrior:
    """Score unlabeled ``examples`` with ``model``, estimate their harmful rate, and adapt the threshold.

    ``source_prior`` defaults to :meth:`GuardClassifierConfig.calibrated_prior`; ``base_threshold``
    to the model's own threshold; ``labeled`` (held-out source examples) is what BBSE needs.
    """
    from guardmatch.data.example import Task, split_inputs

    cfg = model.config
    prior = source_prior_of(cfg, source_prior)
    task = Task(cfg.task)

    def scores(exs: Sequence[Any]) -> np.ndarray:
        return np.asarray(model.score(*split_inputs(exs, task), batch_size=batch_size))

    tp = scores(examples)
    extra: dict[str, Any] = {}
    if method == "bbse":
        if not labeled:
            raise LabelShiftError("bbse needs labeled held-out source examples")
        extra = {"source_p": scores(labeled), "source_labels": [int(ex.label) for ex in labeled]}
    base = float(cfg.threshold if base_threshold is None else base_threshold)
    est = estimate_prior(tp, prior, method=method, threshold=base, bootstrap=bootstrap, seed=seed, **extra)
    adapted = adapt_threshold(base, prior, est.prior)
    return DeploymentPrior(est, base, adapted, float((tp >= base).mean()), float((tp >= adapted).mean()))
