"""Label-budget splits: a labeled seed (+ validation, counted against the budget) and a hidden pool.

``make_split(examples, budget=200, seed=0)`` draws the labeled seed from the source with a numpy
``Generator`` (deterministic for a seed); every other example of the source becomes the unlabeled
pool, its label moved to ``metadata["hidden_label"]`` (diagnostics only). The manifest records the
ids of every part, so :meth:`Split.from_manifest` reproduces the split exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, Field

from guardmatch.data.example import LABEL_NAMES, Example, distinct_texts
from guardmatch.errors import GuardmatchError

Strategy = Literal["stratified", "balanced"]
Budget = int | Literal["all"]


class SplitError(GuardmatchError, ValueError):
    """A split that cannot be made or reproduced (budget too large, id missing, manifest edited)."""


class SplitManifest(BaseModel):
    """Everything needed to reproduce a split: parameters, the ids of each part, a content hash."""

    version: int = 1
    source: str
    seed: int
    strategy: Strategy
    budget: Budget
    validation: int = 0
    n_source: int
    labeled_ids: list[str]
    validation_ids: list[str] = Field(default_factory=list)
    unlabeled_ids: list[str] = Field(default_factory=list)
    extra_unlabeled_ids: list[str] = Field(default_factory=list)
    label_counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    label_hash: str = ""  # sha256 of the labeled + validation labels: detects relabeled sources
    content_hash: str = ""

    def compute_hash(self) -> str:
        """sha256 of the four id lists (order included)."""
        payload = json.dumps([self.labeled_ids, self.validation_ids, self.unlabeled_ids, self.extra_unlabeled_ids],
                             ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class Split:
    """``labeled`` (train), ``validation`` (labeled, from the budget) and ``unlabeled`` (labels hidden)."""

    labeled: list[Example]
    validation: list[Example]
    unlabeled: list[Example]
    manifest: SplitManifest

    def save_manifest(self, path: str | Path) -> Path:
        """Write the manifest as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_manifest(
        cls,
        manifest: str | Path | SplitManifest,
        examples: Sequence[Example],
        extra_unlabeled: Sequence[Example] | None = None,
    ) -> "Split":
        """Rebuild a saved split from the same examples; errors if an id is missing or a label changed."""
        if not isinstance(manifest, SplitManifest):
            path = Path(manifest)
            try:
                manifest = SplitManifest.model_validate_json(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise SplitError(f"{path}: not a valid split manifest: {exc}") from exc
        if manifest.content_hash != manifest.compute_hash():
            raise SplitError("split manifest: content_hash does not match its id lists (the file was edited)")
        by_id = _index(examples, "examples")
        extra_by_id = _index(extra_unlabeled or [], "extra_unlabeled")

        def pick(ids: list[str], pool: dict[str, Example], part: str) -> list[Example]:
            missing = [i for i in ids if i not in pool]
            if missing:
                shown = ", ".join(repr(i) for i in missing[:10])
                raise SplitError(f"split manifest: {len(missing)} {part} id(s) not found in the examples given "
                                 f"(source {manifest.source!r}): {shown}{' ...' if len(missing) > 10 else ''}")
            return [pool[i] for i in ids]

        labeled = pick(manifest.labeled_ids, by_id, "labeled")
        validation = pick(manifest.validation_ids, by_id, "validation")
        for ex in labeled + validation:
            if ex.label is None:
                raise SplitError(f"split manifest: labeled example {ex.id!r} has no label in the examples given")
        unlabeled = [ex.unlabeled() for ex in pick(manifest.unlabeled_ids, by_id, "unlabeled")]
        unlabeled += [ex.unlabeled() for ex in pick(manifest.extra_unlabeled_ids, extra_by_id, "extra unlabeled")]
        if manifest.label_hash and manifest.label_hash != _label_hash(labeled, validation):
            counts = {"labeled": _counts(labeled), "validation": _counts(validation)}
            recorded = {k: manifest.label_counts.get(k) for k in counts}
            raise SplitError(f"split manifest: labels changed since the split was made (manifest {recorded}, "
                             f"examples now {counts})")
        return cls(labeled, validation, unlabeled, manifest)

    def summary(self) -> dict[str, dict[str, int]]:
        """Label counts per part (hidden labels for the pool)."""
        return dict(self.manifest.label_counts)


def _index(examples: Iterable[Example], what: str) -> dict[str, Example]:
    out: dict[str, Example] = {}
    dupes: list[str] = []
    for ex in examples:
        if ex.id in out:
            dupes.append(ex.id)
        out[ex.id] = ex
    if dupes:
        raise SplitError(f"{what}: {len(dupes)} duplicate id(s), a split needs unique ids: "
                         f"{', '.join(repr(i) for i in dupes[:10])}")
    return out


def _label_hash(labeled: Sequence[Example], validation: Sequence[Example]) -> str:
    payload = json.dumps([[ex.id, ex.label] for ex in labeled] + [[ex.id, ex.label] for ex in validation])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _counts(examples: Iterable[Example]) -> dict[str, int]:
    counter: Counter = Counter()
    for ex in examples:
        label = ex.label if ex.label is not None else ex.metadata.get("hidden_label")
        counter[LABEL_NAMES[label] if label in (0, 1) else "unknown"] += 1
    out = {LABEL_NAMES[1]: counter[LABEL_NAMES[1]], LABEL_NAMES[0]: counter[LABEL_NAMES[0]]}
    if counter["unknown"]:
        out["unknown"] = counter["unknown"]
    return out


def allocate(total: int, available: dict[int, int], strategy: Strategy) -> dict[int, int]:
    """How many of ``total`` to draw from each class.

    ``stratified``: proportional to ``available`` by largest remainder, at least one per class when
    ``total`` allows. ``balanced``: equal per class (an odd remainder goes to the class with more
    available); raises :class:`SplitError` if a class has too few.
    """
    classes = sorted(c for c, n in available.items() if n > 0)
    n_avail = sum(available[c] for c in classes)
    if total > n_avail:
        raise SplitError(f"budget {total} is larger than the {n_avail} labeled examples available")
    if total == 0 or not classes:
        return {c: 0 for c in classes}
    if strategy == "balanced":
        if len(classes) < 2:
            raise SplitError(f"balanced split needs both classes; the source has only {LABEL_NAMES[classes[0]]!r}")
        out = {c: total // len(classes) for c in classes}
        for c in sorted(classes, key=lambda c: (-available[c], -c))[: total % len(classes)]:
            out[c] += 1
        short = {LABEL_NAMES[c]: (out[c], available[c]) for c in classes if out[c] > available[c]}
        if short:
            detail = ", ".join(f"{name}: needs {need}, has {have}" for name, (need, have) in short.items())
            raise SplitError(f"balanced split of {total}: too few examples of a class ({detail})")
        return out
    if strategy != "stratified":
        raise SplitError(f"unknown strategy {strategy!r}; expected 'stratified' or 'balanced'")
    quotas = {c: total * available[c] / n_avail for c in classes}
    out = {c: int(np.floor(q)) for c, q in quotas.items()}
    for c in sorted(classes, key=lambda c: (-(quotas[c] - out[c]), c))[: total - sum(out.values())]:
        out[c] += 1
    if total >= len(classes):  # never leave a present class out of a stratified draw
        for c in classes:
            if out[c] == 0:
                donor = max(classes, key=lambda d: (out[d], d))
                out[donor] -= 1
                out[c] += 1
    return out


def make_split(
    examples: Sequence[Example],
    budget: Budget,
    seed: int,
    strategy: Strategy = "stratified",
    validation: int = 0,
    *,
    extra_unlabeled: Sequence[Example] | None = None,
    source: str | None = None,
) -> Split:
    """Draw ``budget`` labeled examples (``validation`` of them held out) and hide the rest's labels.

    ``budget="all"`` labels everything (empty pool). ``extra_unlabeled`` widens the pool with
    examples from other sources (their labels hidden too). Examples already unlabeled in the source
    go to the pool. Raises :class:`SplitError` on a budget larger than the labeled examples.
    """
    by_id = _index(examples, "examples")
    extras = list(extra_unlabeled or [])
    extra_ids = _index(extras, "extra_unlabeled")
    clash = [i for i in extra_ids if i in by_id]
    if clash:
        raise SplitError(f"extra_unlabeled shares {len(clash)} id(s) with the source: "
                         f"{', '.join(repr(i) for i in clash[:10])}")
    if validation < 0:
        raise SplitError(f"validation must be >= 0, got {validation}")
    labels = np.array([-1 if ex.label is None else ex.label for ex in examples])
    available = {c: int((labels == c).sum()) for c in (0, 1)}
    n_labeled = available[0] + available[1]
    if budget == "all":
        total = n_labeled
    elif isinstance(budget, (int, np.integer)) and not isinstance(budget, bool) and budget > 0:
        total = int(budget)
    else:
        raise SplitError(f"budget must be a positive integer or 'all', got {budget!r}")
    if total > n_labeled:
        raise SplitError(f"budget {total} is larger than the {n_labeled} labeled examples in the source "
                         f"({available[1]} harmful, {available[0]} unharmful)")
    if validation >= total:
        raise SplitError(f"validation ({validation}) must be smaller than the budget ({total}): "
                         "validation labels count against the budget")

    per_class = {c: n for c, n in available.items() if n > 0}
    draw = allocate(total, per_class, strategy) if budget != "all" else dict(per_class)
    held = allocate(validation, draw, strategy if budget != "all" else "stratified")
    rng = np.random.default_rng(seed)
    train_pos: list[int] = []
    val_pos: list[int] = []
    for c in sorted(draw):
        positions = np.flatnonzero(labels == c)
        chosen = positions[rng.permutation(len(positions))[: draw[c]]]
        val_pos += chosen[: held.get(c, 0)].tolist()
        train_pos += chosen[held.get(c, 0):].tolist()
    taken = set(train_pos) | set(val_pos)
    labeled = [examples[i] for i in sorted(train_pos)]
    val = [examples[i] for i in sorted(val_pos)]
    pool_src = [examples[i] for i in range(len(examples)) if i not in taken]
    unlabeled = [ex.unlabeled() for ex in pool_src] + [ex.unlabeled() for ex in extras]

    if source is None:
        names = sorted({ex.source for ex in examples if ex.source})
        source = "+".join(names) if names else "examples"
    manifest = SplitManifest(
        source=source, seed=int(seed), strategy=strategy, budget=budget if budget == "all" else total,
        validation=validation, n_source=len(examples),
        labeled_ids=[ex.id for ex in labeled], validation_ids=[ex.id for ex in val],
        unlabeled_ids=[ex.id for ex in pool_src], extra_unlabeled_ids=[ex.id for ex in extras],
        label_counts={"labeled": _counts(labeled), "validation": _counts(val),
                      "unlabeled": _counts(pool_src), "extra_unlabeled": _counts(extras)},
        label_hash=_label_hash(labeled, val),
    )
    manifest.content_hash = manifest.compute_hash()
    return Split(labeled, val, unlabeled, manifest)


def stratified_subset(examples: Sequence[Example], n: int, seed: int, task: str | None = None) -> list[Example]:
    """A fixed, label-stratified subset of ``n`` distinct texts of a source, in source order.

    Used to define a smaller *source* (seed labels and pool are then split from it, per run seed),
    e.g. the 1,000 response pairs the benchmark's views cover. Rows repeating an earlier row's text
    (for ``task``) are left out first; each class keeps its share of the distinct texts.
    """
    if task is not None:
        examples = distinct_texts(examples, task)
    if n >= len(examples):
        return list(examples)
    labels = np.array([-1 if ex.label is None else ex.label for ex in examples])
    available = {c: int((labels == c).sum()) for c in sorted(set(labels.tolist()))}
    counts = allocate(n, available, "stratified")  # unlabeled rows (-1) are a stratum of their own
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for c in sorted(counts):
        positions = np.flatnonzero(labels == c)
        keep += positions[rng.permutation(len(positions))[: counts[c]]].tolist()
    return [examples[i] for i in sorted(keep)]
