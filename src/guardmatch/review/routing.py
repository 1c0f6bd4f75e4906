"""Routing an unlabeled pool: pseudo-label what the model is sure of, send the rest to people.

``score_pool(model, examples)`` scores every example once (mean-of-heads probabilities, and each
head's probabilities for multi-head models); a :class:`Strategy` ranks the pool by how much a
human label is worth; :func:`route` splits the pool into three disjoint parts::

    scores  = score_pool(model, pool)
    routing = route(scores, pseudo_threshold=0.95, review_budget=100, strategy="margin")
    routing.review      # indices to send to human review, most useful first
    routing.pseudo      # confident enough to pseudo-label (argmax), see below
    routing.untouched   # left alone

Ranking strategies (registered by name, small-text style ``rank(scores, n, rng) -> indices``;
:class:`EmptyPoolError` when no candidate is left). For binary P = P(harmful):

``least_confidence``  1 − max_c p_c                       (Lewis & Gale 1994)
``margin``            −(p_(1) − p_(2)), the top-two gap     (Scheffer et al. 2001)
``entropy``           −Σ_c p_c log p_c                     (Settles 2009)
``head_disagreement`` MultiMatch-style committee: first the number of heads that vote against the
                      majority class, then the mean KL(p_h ‖ p̄) of the heads to their consensus
                      (query by committee, McCallum & Nigam 1998); needs a model with H > 1 heads.
``apm_instability``   MarginMatch's Average Pseudo-Margin of the *currently predicted* class ŷ,
                      APM(u)[ŷ] = mean over training visits of z_ŷ − max_{j≠ŷ} z_j (mean over heads):
                      score = −APM(u)[ŷ]. A negative APM means the training history mostly argued
                      for another class than the one the model now predicts (unstable); near 0
                      means it flipped back and forth. Needs the APM table of the run that trained
                      the model (``load_apm``); examples the run never visited have no APM and are
                      ranked after all visited ones, among themselves by margin.
``random``            uniform, the control.

Ties are broken at random (with ``rng``), so equal scores never favour the pool's file order.

:func:`route` chooses the review set first (a confident but unstable example is worth a human
look), then pseudo-labels the remaining examples whose confidence max_c p_c ≥ ``pseudo_threshold``
and, where the information exists, whose heads all agree with the mean prediction and whose APM
of the predicted class is ≥ 0 (the MultiMatch / MarginMatch filters); everything else is untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from guardmatch.data.example import Example, Task, split_inputs
from guardmatch.errors import ConfigError, GuardmatchError
from guardmatch.registry import Registry


class EmptyPoolError(GuardmatchError, ValueError):
    """No candidate example is left to rank."""


class StrategyUnavailableError(GuardmatchError, ValueError):
    """The strategy needs information these scores do not have (heads, APM table)."""


@dataclass
class PoolScores:
    """Per-example model outputs for a pool, in pool order.

    ``probs`` ``[N, C]`` calibrated class probabilities (mean of the heads' logits, temperature
    applied, as :meth:`GuardClassifier.predict_proba`); ``head_probs`` ``[H, N, C]`` per head
    (None for single-head models); ``apm`` ``[N]`` APM of the predicted class (NaN = never visited;
    None = no training state).
    """

    ids: list[str]
    probs: np.ndarray
    head_probs: np.ndarray | None = None
    apm: np.ndarray | None = None
    model_version: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def p_harmful(self) -> np.ndarray:
        return self.probs[:, 1]

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(1)

    def subset(self, idx: Sequence[int] | np.ndarray) -> "PoolScores":
        idx = np.asarray(idx, dtype=np.int64)
        return PoolScores(
            ids=[self.ids[i] for i in idx],
            probs=self.probs[idx],
            head_probs=None if self.head_probs is None else self.head_probs[:, idx],
            apm=None if self.apm is None else self.apm[idx],
            model_version=self.model_version,
            info=dict(self.info),
        )


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@torch.no_grad()
def score_pool(
    model: Any,
    examples: Sequence[Example],
    task: Task | str | None = None,
    *,
    batch_size: int = 64,
    model_version: str = "",
    progress: bool = False,
    features: Any = None,
) -> PoolScores:
    """Score ``examples`` with a :class:`~guardmatch.model.GuardClassifier` (one forward per batch).

    Batches are formed from length-sorted inputs (fast on CPU) and unsorted afterwards. With
    ``features`` (a :class:`guardmatch.features.FeatureStore` made for ``model``) the frozen lower
    layers are read from the cache (computed once, for what is missing) and only the layers above
    run: the same numbers up to the cache's fp16 rounding, much cheaper round after round. The
    store is keyed by the frozen weights, so a model whose lower layers changed never reads them.
    """
    task = Task(task or model.config.task)
    if task is not Task(model.config.task):
        raise ConfigError(f"the model is a {Task(model.config.task).value} classifier, "
                          f"the pool was loaded for {task.value}")
    n = len(examples)
    C = model.config.num_classes
    H = model.config.num_heads
    logits = np.zeros((H, n, C), dtype=np.float64)
    rank, world = _distributed()
    mine = np.arange(n)[rank::world]  # under torchrun / accelerate launch each rank scores a shard
    if n and features is not None:
        features.build([examples[i] for i in mine], batch_size=batch_size, progress=progress,
                       description="caching pool features")
    if n:
        prompts, responses = split_inputs(examples, task)
        lengths = [len(p) + (len(responses[i]) if responses else 0) for i, p in enumerate(prompts)]
        order = mine[np.argsort([lengths[i] for i in mine], kind="stable")]
        was_training = model.training
        model.eval()
        batches: Iterable[int] = range(0, len(order), batch_size)
        if progress:
            from rich.console import Console
            from rich.progress import track

            batches = track(batches, description="scoring pool", total=(len(order) + batch_size - 1) // batch_size,
                            console=Console(stderr=True))  # stdout stays clean for --json
        try:
            for start in batches:
                idx = order[start : start + batch_size]
                if features is not None:
                    enc = features.batch([examples[i] for i in idx], model.device)
                else:
                    enc = model.tokenize([prompts[i] for i in idx], [responses[i] for i in idx] if responses else None)
                    enc = {k: v.to(model.device) for k, v in enc.items()}
                out = model(**enc)[..., :C].float().cpu().numpy()
                logits[:, idx] = out
        finally:
            model.train(was_training)
        if world > 1:  # every rank ends with every score (the shards are disjoint, zeros elsewhere)
            import torch
            import torch.distributed as dist

            merged = torch.from_numpy(logits)
            dist.all_reduce(merged)
            logits = merged.numpy()
    T = float(model.config.temperature)
    probs = _softmax(logits.mean(0) / T)
    head_probs = _softmax(logits / T) if H > 1 else None
    return PoolScores(ids=[ex.id for ex in examples], probs=probs, head_probs=head_probs, model_version=model_version)


def _distributed() -> tuple[int, int]:
    """(rank, world size) when started by torchrun / accelerate launch, else (0, 1)."""
    from guardmatch.distributed import group

    g = group()
    return g.rank, g.world


# --------------------------------------------------------------------------------------------
# APM from a training run
# --------------------------------------------------------------------------------------------


def _algorithm_state_file(run_dir: Path) -> Path:
    final = run_dir / "algorithm.safetensors"
    if final.is_file():
        return final
    from guardmatch.training.checkpoints import latest_checkpoint

    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is not None and (ckpt / "algorithm.safetensors").is_file():
        return ckpt / "algorithm.safetensors"
    raise FileNotFoundError(
        f"{run_dir}: no algorithm state (algorithm.safetensors or checkpoints/step-*/algorithm.safetensors); "
        "apm_instability needs a MarginMatch or MultiMatch run"
    )


def run_pool_ids(run_dir: str | Path, pool_size: int) -> list[str]:
    """The ids of a run's unlabeled pool in the order its APM table is indexed.

    The trainer indexes the table by position in the pool it trained on: the manifest's
    ``unlabeled_ids + extra_unlabeled_ids``, possibly capped by ``data.unlabeled_limit`` (a seeded
    sample). A candidate order is accepted only if its length matches the table and, where the
    run's config and fingerprint are on disk, if it reproduces the run's fingerprint, so a table is
    never mapped to the wrong examples (:class:`StrategyUnavailableError` when none is accepted).
    """
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "split_manifest.json").read_text(encoding="utf-8"))
    ids = list(manifest.get("unlabeled_ids", [])) + list(manifest.get("extra_unlabeled_ids", []))
    candidates = [ids]
    config = None
    if (run_dir / "config.yaml").is_file():
        from guardmatch.config import load_train_config

        config = load_train_config(run_dir / "config.yaml")
        limit = config.data.unlabeled_limit
        if limit is not None and len(ids) > limit:
            keep = np.sort(np.random.default_rng([config.seed, 13]).choice(len(ids), limit, replace=False))
            candidates.insert(0, [ids[i] for i in keep])
    fingerprint = _run_fingerprint(run_dir)
    for cand in candidates:
        if len(cand) != pool_size:
            continue
        if config is None or fingerprint is None:
            return cand
        if _fingerprint_of(config, manifest, cand) == fingerprint:
            return cand
    raise StrategyUnavailableError(
        f"{run_dir}: cannot map the APM table ({pool_size} rows) to pool ids: the manifest lists {len(ids)} "
        "pool ids and no candidate order reproduces the run's fingerprint (was the pool restricted to the "
        "examples with views?)"
    )


def _run_fingerprint(run_dir: Path) -> str | None:
    for path, key in ((run_dir / "run.json", "provenance"), (run_dir / "model" / "guardmatch.json", "provenance")):
        if path.is_file():
            fp = (json.loads(path.read_text(encoding="utf-8")).get(key) or {}).get("fingerprint")
            if fp:
                return fp
    return None


def _fingerprint_of(config: Any, manifest: dict[str, Any], pool_ids: list[str]) -> str:
    # Mirrors guardmatch.training.run.run_fingerprint (which needs Split/Example objects).
    import hashlib

    cfg = config.model_dump(mode="json", exclude={"output_dir", "resume", "threads", "eval_every", "save_every",
                                                  "keep_checkpoints", "log_every"})
    payload = json.dumps({"config": cfg, "split": manifest.get("content_hash", ""),
                          "pool": hashlib.sha256("\n".join(pool_ids).encode()).hexdigest()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_apm(run_dir: str | Path) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """A run's APM table: ``(id -> row, apm [H, P, C'], visits [P])`` from its algorithm state."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    path = _algorithm_state_file(run_dir)
    state = load_file(str(path))
    apm_key = next((k for k in state if k.endswith("table.apm")), None)
    if apm_key is None:
        raise StrategyUnavailableError(f"{path}: no APM table in this algorithm state (not MarginMatch/MultiMatch)")
    apm = state[apm_key].double().numpy()
    visits_key = apm_key[: -len("apm")] + "visits"
    visits = state[visits_key].numpy() if visits_key in state else np.ones(apm.shape[1], dtype=np.int64)
    ids = run_pool_ids(run_dir, apm.shape[1])
    return {i: k for k, i in enumerate(ids)}, apm, visits


def attach_apm(scores: PoolScores, run_dir: str | Path) -> PoolScores:
    """Set ``scores.apm`` to APM(u)[ŷ] (mean over heads) for ids in the run's pool, NaN elsewhere."""
    index, apm, visits = load_apm(run_dir)
    C = scores.probs.shape[1]
    pred = scores.predicted
    out = np.full(len(scores), np.nan)
    for k, item_id in enumerate(scores.ids):
        row = index.get(item_id)
        if row is not None and visits[row] > 0:
            out[k] = apm[:, row, :C][:, pred[k]].mean()
    scores.apm = out
    scores.info["apm_run"] = str(run_dir)
    scores.info["apm_visited"] = int(np.isfinite(out).sum())
    return scores


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------


class Strategy:
    """Ranks candidates by the value of a human label (higher ``scores`` = review first)."""

    name: str = ""

    def scores(self, scores: PoolScores) -> np.ndarray:
        raise NotImplementedError

    def rank(
        self,
        scores: PoolScores,
        n: int,
        rng: np.random.Generator | int | None = None,
        candidates: Sequence[int] | np.ndarray | None = None,
    ) -> np.ndarray:
        """The ``n`` most useful candidate indices (into ``scores``), most useful first."""
        rng = np.random.default_rng(rng)
        cand = np.arange(len(scores)) if candidates is None else np.asarray(candidates, dtype=np.int64)
        if len(cand) == 0:
            raise EmptyPoolError("no unlabeled example left to rank")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        values = self.scores(scores)[cand]
        tiebreak = rng.random(len(cand))
        order = np.lexsort((tiebreak, -values))  # last key is primary: descending score, random ties
        return cand[order[:n]]


STRATEGIES: Registry[Strategy] = Registry("strategy")
"""Every routing strategy by name."""


def get_strategy(name: str | Strategy) -> Strategy:
    """A strategy instance by name (an instance is returned as it is)."""
    if isinstance(name, Strategy):
        return name
    return STRATEGIES.get(name)()


@STRATEGIES.register("least_confidence")
class LeastConfidence(Strategy):
    def scores(self, scores: PoolScores) -> np.ndarray:
        return 1.0 - scores.probs.max(1)


@STRATEGIES.register("margin")
class Margin(Strategy):
    def scores(self, scores: PoolScores) -> np.ndarray:
        top2 = np.sort(scores.probs, axis=1)[:, -2:]
        return -(top2[:, 1] - top2[:, 0])


@STRATEGIES.register("entropy")
class Entropy(Strategy):
    def scores(self, scores: PoolScores) -> np.ndarray:
        p = np.clip(scores.probs, 1e-12, 1.0)
        return -(p * np.log(p)).sum(1)


@STRATEGIES.register("head_disagreement")
class HeadDisagreement(Strategy):
    """Minority votes among the heads, then mean KL of each head to the heads' mean (in [0, 1))."""

    def scores(self, scores: PoolScores) -> np.ndarray:
        hp = scores.head_probs
        if hp is None or hp.shape[0] < 2:
            raise StrategyUnavailableError("head_disagreement needs a multi-head model (e.g. trained with MultiMatch)")
        H, N, C = hp.shape
        votes = hp.argmax(2)  # [H, N]
        counts = np.stack([(votes == c).sum(0) for c in range(C)], 1)  # [N, C]
        minority = H - counts.max(1)
        mean = hp.mean(0)
        p = np.clip(hp, 1e-12, 1.0)
        kl = (p * (np.log(p) - np.log(np.clip(mean, 1e-12, 1.0))[None])).sum(2).mean(0)
        return minority + kl / (1.0 + kl)


@STRATEGIES.register("apm_instability")
class APMInstability(Strategy):
    """−APM of the predicted class; never-visited examples after all visited ones, by margin."""

    def scores(self, scores: PoolScores) -> np.ndarray:
        if scores.apm is None:
            raise StrategyUnavailableError(
                "apm_instability needs the APM table of the run that trained the model (route with --run)"
            )
        apm = np.asarray(scores.apm, dtype=np.float64)
        visited = np.isfinite(apm)
        out = np.empty(len(apm))
        out[visited] = -apm[visited]
        if (~visited).any():
            floor = out[visited].min() if visited.any() else 0.0
            margin = Margin().scores(scores)[~visited]  # in [-1, 0]
            out[~visited] = floor - 2.0 + margin  # strictly below every visited example
        return out


@STRATEGIES.register("random")
class RandomStrategy(Strategy):
    def scores(self, scores: PoolScores) -> np.ndarray:
        return np.zeros(len(scores))


# --------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------


@dataclass
class Routing:
    """Disjoint index sets into the scored pool (``review`` ordered, most useful first)."""

    pseudo: np.ndarray
    review: np.ndarray
    untouched: np.ndarray
    strategy: str
    priority: np.ndarray  # the strategy's score of each review pick, same order as ``review``
    pseudo_threshold: float

    def counts(self) -> dict[str, int]:
        return {"pseudo": len(self.pseudo), "review": len(self.review), "untouched": len(self.untouched)}


def pseudo_mask(scores: PoolScores, threshold: float) -> np.ndarray:
    """Confidence ≥ threshold, heads agreeing with the mean prediction, APM(ŷ) ≥ 0 where known."""
    mask = scores.confidence >= threshold
    if scores.head_probs is not None:
        mask &= (scores.head_probs.argmax(2) == scores.predicted[None]).all(0)
    if scores.apm is not None:
        apm = np.asarray(scores.apm, dtype=np.float64)
        mask &= ~(np.isfinite(apm) & (apm < 0))
    return mask


def route(
    scores: PoolScores,
    pseudo_threshold: float = 0.95,
    review_budget: int = 100,
    strategy: str | Strategy = "margin",
    rng: np.random.Generator | int | None = 0,
    exclude: Sequence[int] | None = None,
) -> Routing:
    """Split the pool: ``review_budget`` picks by ``strategy``, then pseudo-labels, then the rest.

    ``exclude`` (indices) are neither reviewed nor pseudo-labeled (e.g. already labeled or queued).
    """
    if not 0.5 <= pseudo_threshold <= 1.0:
        raise ConfigError(f"pseudo_threshold must be in [0.5, 1], got {pseudo_threshold}")
    strat = get_strategy(strategy)
    n = len(scores)
    eligible = np.ones(n, dtype=bool)
    if exclude is not None:
        eligible[np.asarray(list(exclude), dtype=np.int64)] = False
    cand = np.flatnonzero(eligible)
    if review_budget > 0:
        review = strat.rank(scores, review_budget, rng, cand)
    else:
        review = np.zeros(0, dtype=np.int64)
    priority = strat.scores(scores)[review] if len(review) else np.zeros(0)
    rest = eligible.copy()
    rest[review] = False
    confident = pseudo_mask(scores, pseudo_threshold) & rest if pseudo_threshold < 1.0 else np.zeros(n, dtype=bool)
    pseudo = np.flatnonzero(confident)
    untouched = np.flatnonzero(rest & ~confident)
    return Routing(pseudo=pseudo, review=review, untouched=untouched, strategy=strat.name, priority=priority,
                   pseudo_threshold=pseudo_threshold)


def model_version(model_dir: str | Path) -> str:
    """``<dir name>@<fingerprint or content hash>``: identifies the model that made a prediction."""
    import hashlib

    model_dir = Path(model_dir)
    cfg = json.loads((model_dir / "guardmatch.json").read_text(encoding="utf-8"))
    fp = (cfg.get("provenance") or {}).get("fingerprint")
    h = hashlib.sha256()
    h.update((model_dir / "guardmatch.json").read_bytes())
    weights = model_dir / "model.safetensors"
    if weights.is_file():
        with open(weights, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    name = model_dir.name if model_dir.name != "model" else model_dir.parent.name
    return f"{name}@{(fp + '-') if fp else ''}{h.hexdigest()[:10]}"
