"""Drift check: has the deployment moved away from the pool the model was trained with?

Given a new unlabeled batch and the reference pool (the unlabeled traffic of training), it reports

* the text shift: unbiased MMD² with its permutation p-value and the classifier two-sample AUC
  between sentence embeddings (:mod:`guardmatch.evaluation.shift`), and how well the reference
  covers the batch (median nearest-neighbour cosine similarity);
* the label shift: the harmful rate of each, estimated from the model's calibrated scores by EM
  (:mod:`guardmatch.evaluation.label_shift`), with bootstrap intervals.

Verdict ``moved`` when the texts differ (p-value < ``alpha`` *and* AUC >= ``auc_margin``: with
thousands of texts a tiny, harmless difference is "significant", so the AUC sets the size that
matters) or the harmful-rate intervals are disjoint and differ by more than ``prior_margin``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from guardmatch.data.example import Example, Task, split_inputs
from guardmatch.data.validation import DataError, Problem
from guardmatch.evaluation.label_shift import PriorEstimate, estimate_prior
from guardmatch.evaluation.shift import Embedder, c2st_auc, mmd_rbf, nn_similarity, sample_indices


@dataclass
class DriftReport:
    """What moved between the reference pool and the batch, and the verdict."""

    reference: dict[str, Any]
    batch: dict[str, Any]
    text_shift: dict[str, float]
    prior_reference: PriorEstimate
    prior_batch: PriorEstimate
    moved: bool
    reasons: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        pr, pb, ts = self.prior_reference, self.prior_batch, self.text_shift
        lines = [f"# Drift check: {self.batch['name']} vs {self.reference['name']}", "",
                 f"**{'moved: retrain or re-calibrate' if self.moved else 'no material drift'}**"
                 + (f" ({'; '.join(self.reasons)})" if self.reasons else ""), "",
                 "| measure | value |", "|---|---|",
                 f"| texts (reference / batch) | {self.reference['n']} / {self.batch['n']} |",
                 f"| MMD² (p-value) | {ts['mmd2']:.4f} ({ts['p_value']:.3f}) |",
                 f"| classifier two-sample AUC | {ts['c2st_auc']:.3f} |",
                 f"| coverage: median NN cosine of the batch to the reference | {ts['nn_similarity']:.3f} |",
                 f"| est. harmful rate, reference | {pr.prior:.3f} [{pr.low:.3f}, {pr.high:.3f}] |",
                 f"| est. harmful rate, batch | {pb.prior:.3f} [{pb.low:.3f}, {pb.high:.3f}] |"]
        return "\n".join(lines)


def _sample(examples: Sequence[Example], k: int, rng: np.random.Generator) -> list[Example]:
    return [examples[i] for i in sample_indices(len(examples), k, rng)]


def drift_check(model: Any, reference: Sequence[Example], batch: Sequence[Example], embedder: Embedder, *,
                source_prior: float, reference_name: str = "reference", batch_name: str = "batch",
                max_per_set: int = 1000, permutations: int = 200, alpha: float = 0.01, auc_margin: float = 0.6,
                prior_margin: float = 0.05, bootstrap: int = 200, batch_size: int = 32,
                seed: int = 0) -> DriftReport:
    """Compare ``batch`` with ``reference`` (both unlabeled) through ``embedder`` and ``model``'s scores.

    ``source_prior``: the harmful rate the model's probabilities are calibrated for (its training
    labels' rate); the EM estimates start from it.
    """
    if len(reference) < 5 or len(batch) < 5:
        raise DataError([Problem(name, None, None, f"{n} text(s); a drift check needs at least 5 on each side")
                         for name, n in ((reference_name, len(reference)), (batch_name, len(batch))) if n < 5],
                        context="drift check")
    task = Task(model.config.task)
    rng = np.random.default_rng(seed)
    ref, new = _sample(reference, max_per_set, rng), _sample(batch, max_per_set, rng)
    ref_emb, new_emb = embedder(ref), embedder(new)
    mmd = mmd_rbf(ref_emb, new_emb, permutations=permutations, seed=seed)
    c2 = c2st_auc(ref_emb, new_emb, folds=min(5, len(ref), len(new)), seed=seed)
    text_shift = {"mmd2": mmd["mmd2"], "p_value": mmd["p_value"], "c2st_auc": c2["auc"],
                  "nn_similarity": nn_similarity(new_emb, ref_emb)}
    prior_ref, prior_new = (estimate_prior(model.score(*split_inputs(exs, task), batch_size=batch_size), source_prior,
                                           bootstrap=bootstrap, seed=seed) for exs in (ref, new))
    reasons = []
    if text_shift["p_value"] < alpha and text_shift["c2st_auc"] >= auc_margin:
        reasons.append(f"texts differ (MMD p={text_shift['p_value']:.3f} < {alpha}, two-sample AUC "
                       f"{text_shift['c2st_auc']:.2f} >= {auc_margin})")
    disjoint = prior_new.low > prior_ref.high or prior_new.high < prior_ref.low
    if disjoint and abs(prior_new.prior - prior_ref.prior) > prior_margin:
        reasons.append(f"harmful rate {prior_ref.prior:.3f} -> {prior_new.prior:.3f} (intervals disjoint, "
                       f"change > {prior_margin})")
    settings = {"max_per_set": max_per_set, "permutations": permutations, "alpha": alpha, "auc_margin": auc_margin,
                "prior_margin": prior_margin, "bootstrap": bootstrap, "seed": seed, "source_prior": source_prior,
                "encoder": str(embedder.model.config.encoder)}
    return DriftReport({"name": reference_name, "n": len(reference), "n_compared": len(ref)},
                       {"name": batch_name, "n": len(batch), "n_compared": len(new)}, text_shift, prior_ref,
                       prior_new, bool(reasons), reasons, settings)
