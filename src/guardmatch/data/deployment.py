"""The deployment-split protocol: each external test set becomes a hidden-label pool and an evaluation half.

A classifier trained on one source meets another at deployment. To measure what its unlabeled
traffic is worth, each external test set is split, seeded and label-stratified, into a
*deployment pool* (labels hidden: used only as unlabeled text and for estimating its harmful rate)
and a disjoint *evaluation half* (every number of a deployment experiment is measured there).
Texts are split by content, so a repeated text never lands on both sides.

The pool's labels are not returned with it: :meth:`DeploymentSplit.diagnostic_pool_labels` gives
them, for the final scoring of diagnostics named as such (e.g. estimated vs true harmful rate).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from guardmatch.data.example import Example, Task, distinct_texts
from guardmatch.errors import GuardmatchError
from guardmatch.storage.files import write_secure_text

DEPLOYMENT_SEED = 20251203
DEPLOYMENT_SETS: dict[Task, tuple[str, ...]] = {
    Task.PROMPT: ("oaimod", "xstest", "aegis"),
    Task.RESPONSE: ("wildguardtest", "xstest"),
}


class DeploymentSplitError(GuardmatchError, ValueError):
    """A test set that cannot be split (too small, unlabeled) or a manifest that does not match."""


@dataclass
class DeploymentSplit:
    """One test set split into a hidden-label pool and an evaluation half (disjoint by text)."""

    name: str
    task: Task
    seed: int
    pool: list[Example]  # labels removed
    evaluation: list[Example]
    _pool_labels: dict[str, int] = field(default_factory=dict, repr=False)

    def diagnostic_pool_labels(self) -> dict[str, int]:
        """The pool's hidden labels by id: only for scoring diagnostics named as such."""
        return dict(self._pool_labels)

    def manifest(self) -> dict[str, Any]:
        """Ids and content hashes of both halves (no labels, no text), seed and counts."""
        def side(exs: list[Example]) -> dict[str, Any]:
            return {"n": len(exs), "ids": [ex.id for ex in exs], "content_hashes": [ex.content_hash(self.task) for ex in exs]}

        body = {"name": self.name, "task": self.task.value, "seed": self.seed, "pool": side(self.pool),
                "evaluation": side(self.evaluation),
                "evaluation_harmful": sum(ex.label == 1 for ex in self.evaluation)}
        body["fingerprint"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        return body


def deployment_split(name: str, examples: list[Example], task: Task | str, *, seed: int = DEPLOYMENT_SEED,
                     pool_fraction: float = 0.5) -> DeploymentSplit:
    """Split ``examples`` (labeled) per class: ``pool_fraction`` of each class's distinct texts to the pool."""
    task = Task(task)
    if not 0.0 < pool_fraction < 1.0:
        raise DeploymentSplitError(f"pool_fraction must be strictly between 0 and 1, got {pool_fraction}")
    exs = [ex for ex in distinct_texts(examples, task) if ex.label is not None]
    if len(exs) < 4:
        raise DeploymentSplitError(f"{name}: {len(exs)} labeled distinct texts; a deployment split needs at least 4")
    rng = np.random.default_rng([seed, int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)])
    labels = np.array([ex.label for ex in exs])
    to_pool = np.zeros(len(exs), dtype=bool)
    for c in (0, 1):
        positions = np.flatnonzero(labels == c)
        chosen = positions[rng.permutation(len(positions))[: int(round(len(positions) * pool_fraction))]]
        to_pool[chosen] = True
    pool = [dataclasses.replace(ex, label=None) for ex, p in zip(exs, to_pool) if p]
    evaluation = [ex for ex, p in zip(exs, to_pool) if not p]
    hidden = {ex.id: int(ex.label) for ex, p in zip(exs, to_pool) if p}  # type: ignore[arg-type]
    return DeploymentSplit(name, task, seed, pool, evaluation, hidden)


def deployment_splits(sets: dict[str, list[Example]], task: Task | str, *, seed: int = DEPLOYMENT_SEED,
                      names: tuple[str, ...] | None = None) -> dict[str, DeploymentSplit]:
    """:func:`deployment_split` of each named external set (default: :data:`DEPLOYMENT_SETS` of ``task``)."""
    task = Task(task)
    wanted = names if names is not None else DEPLOYMENT_SETS[task]
    return {n: deployment_split(n, sets[n], task, seed=seed) for n in wanted if n in sets}


def save_manifests(splits: dict[str, DeploymentSplit], path: str | Path) -> Path:
    """Write every split's manifest to one JSON file (0600)."""
    body = {name: s.manifest() for name, s in splits.items()}
    return write_secure_text(path, json.dumps(body, indent=1) + "\n")


def check_manifest(split: DeploymentSplit, manifest: dict[str, Any]) -> None:
    """Raise :class:`DeploymentSplitError` unless ``split`` is the one ``manifest`` recorded."""
    if split.manifest()["fingerprint"] != manifest.get("fingerprint"):
        raise DeploymentSplitError(f"{split.name}: the split differs from its saved manifest (other data or seed?)")
