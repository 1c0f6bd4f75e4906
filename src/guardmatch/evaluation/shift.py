"""Distribution shift between the labeled seed, the unlabeled pool and the test sets.

Before training, a user should see whether the pool covers what the model will be tested on:
SSL learns the pool's neighbourhood, so a pool far from a test set helps little there, and a pool
from the seed's own source can make the model *more* confident in that source only (the paper's
OAIMod drop at 2,000 labels). For each set compared with the seed this module reports:

* **MMD²** (unbiased) between sentence embeddings with an RBF kernel whose bandwidth is the median
  pairwise distance of the pooled sample (median heuristic), and a **permutation p-value**
  (the set labels shuffled ``permutations`` times);
* a **classifier two-sample test**: cross-validated ROC AUC of a logistic regression telling the two
  sets apart from their embeddings (0.5: indistinguishable, 1.0: disjoint);
* **nearest-neighbour similarity**: median over the set of the highest cosine similarity to any seed
  (and, for test sets, any pool) example: how well the seed/pool *covers* the set;
* **length** (characters, encoder tokens) and **style** rates: questions, role-play framing
  ("imagine", "pretend", "act as", ...), code, non-ASCII characters, URLs, multi-line texts.

Embeddings: the packaged all-MiniLM-L6-v2 with sentence-transformers' pooling (masked mean, L2
normalised), computed through :class:`guardmatch.features.FeatureStore` so they are cached on disk
and shared with the frozen-mode training cache (same encoder, same max length -> same vectors).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from guardmatch.data.example import Example, Task
from guardmatch.data.validation import DataError

ROLEPLAY = re.compile(
    r"\b(imagine|pretend|role[- ]?play|act as|acting as|you are now|you're now|hypothetical(?:ly)?|fictional|"
    r"in a (?:story|novel|game|world)|as a character|stay in character|jailbreak|DAN)\b", re.IGNORECASE)
# code fences, definitions, imports, HTML/JS, SQL, C-like calls; not redaction tags such as <Person>
CODE = re.compile(r"```|\bdef \w+\(|^\s*(?:from \w+ )?import \w+|#include\b|\bfunction\s*\w*\(|"
                  r"</?(?:html|body|div|span|script|pre|code|table|iframe|img|a)\b[^>]*>|\bSELECT\b.+\bFROM\b|"
                  r"\w+\([^()]*\);", re.IGNORECASE | re.MULTILINE)
URL = re.compile(r"https?://|www\.", re.IGNORECASE)


@dataclass
class TextSet:
    """A named set of examples and its role: ``seed`` (labeled), ``pool`` (unlabeled) or ``test``."""

    name: str
    role: str
    examples: list[Example]


# ----------------------------------------------------------------------------- statistics


def style_stats(texts: Sequence[str], token_counts: Sequence[int] | None = None) -> dict[str, float]:
    """Length and style rates of ``texts`` (rates are shares of texts, ``non_ascii`` a mean char share)."""
    n = len(texts)
    if n == 0:
        return {"n": 0}
    chars = np.array([len(t) for t in texts], dtype=float)
    out = {
        "n": n,
        "chars_median": float(np.median(chars)),
        "chars_mean": float(chars.mean()),
        "question": float(np.mean(["?" in t for t in texts])),
        "roleplay": float(np.mean([bool(ROLEPLAY.search(t)) for t in texts])),
        "code": float(np.mean([bool(CODE.search(t)) for t in texts])),
        "url": float(np.mean([bool(URL.search(t)) for t in texts])),
        "multiline": float(np.mean(["\n" in t.strip() for t in texts])),
        "non_ascii": float(np.mean([sum(ord(c) > 127 for c in t) / max(len(t), 1) for t in texts])),
        "upper": float(np.mean([sum(c.isupper() for c in t) / max(sum(c.isalpha() for c in t), 1) for t in texts])),
    }
    if token_counts is not None:
        tokens = np.asarray(token_counts, dtype=float)
        out["tokens_median"] = float(np.median(tokens))
        out["tokens_mean"] = float(tokens.mean())
    return out


def _sq_dists(z: np.ndarray) -> np.ndarray:
    sq = (z * z).sum(1)
    d = sq[:, None] + sq[None, :] - 2.0 * z @ z.T
    np.maximum(d, 0, out=d)
    return d


def median_bandwidth(z: np.ndarray) -> float:
    """Median pairwise Euclidean distance (off-diagonal) of ``z``."""
    d = np.sqrt(_sq_dists(z))
    iu = np.triu_indices(len(z), k=1)
    med = float(np.median(d[iu])) if len(iu[0]) else 1.0
    return med if med > 0 else 1.0


def mmd_rbf(x: np.ndarray, y: np.ndarray, *, bandwidth: float | None = None, permutations: int = 200,
            seed: int = 0) -> dict[str, float]:
    """Unbiased MMD² with ``k(a, b) = exp(-|a-b|² / (2 σ²))`` and a permutation p-value.

    ``σ`` defaults to the median pairwise distance of the pooled sample. The p-value is
    ``(1 + #{perm ≥ observed}) / (1 + permutations)``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise DataError(f"MMD needs at least 2 examples per set (got {m} and {n})")
    z = np.concatenate([x, y])
    d2 = _sq_dists(z)
    if bandwidth is None:
        iu = np.triu_indices(len(z), k=1)
        bandwidth = float(np.median(np.sqrt(d2[iu]))) or 1.0
    k = np.exp(-d2 / (2.0 * bandwidth ** 2))
    np.fill_diagonal(k, 0.0)  # unbiased: i != j terms only

    def stat(masks: np.ndarray) -> np.ndarray:
        """MMD² for each column of ``masks`` (1 = in the first set), vectorised."""
        a = masks.astype(np.float64)
        b = 1.0 - a
        ka, kb = k @ a, k @ b
        sxx = (a * ka).sum(0)
        syy = (b * kb).sum(0)
        sxy = (a * kb).sum(0)  # the zeroed diagonal never pairs an element with itself across sets
        return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2.0 * sxy / (m * n)

    observed = float(stat(np.r_[np.ones(m), np.zeros(n)][:, None])[0])
    p_value = float("nan")
    if permutations > 0:
        rng = np.random.default_rng(seed)
        masks = np.zeros((m + n, permutations))
        for j in range(permutations):
            masks[rng.permutation(m + n)[:m], j] = 1.0
        null = stat(masks)
        p_value = float((1 + np.sum(null >= observed)) / (1 + permutations))
    return {"mmd2": observed, "p_value": p_value, "bandwidth": float(bandwidth), "n_x": m, "n_y": n}


def c2st_auc(x: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Classifier two-sample test: cross-validated ROC AUC of logistic regression (x vs y).

    The larger set is subsampled to the smaller one's size so 0.5 means "cannot tell them apart".
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    rng = np.random.default_rng(seed)
    size = min(len(x), len(y))
    if size < folds:
        raise DataError(f"C2ST needs at least {folds} examples per set (got {len(x)} and {len(y)})")
    xs = x[rng.choice(len(x), size, replace=False)]
    ys = y[rng.choice(len(y), size, replace=False)]
    feats = np.concatenate([xs, ys])
    labels = np.r_[np.zeros(size), np.ones(size)]
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(LogisticRegression(C=1.0, max_iter=2000), feats, labels, cv=cv, scoring="roc_auc")
    return {"auc": float(scores.mean()), "auc_std": float(scores.std()), "n_per_set": int(size)}


def nn_similarity(target: np.ndarray, reference: np.ndarray, chunk: int = 2048) -> float:
    """Median over ``target`` of its highest cosine similarity to ``reference`` (rows L2-normalised)."""
    best = []
    for start in range(0, len(target), chunk):
        best.append((target[start : start + chunk] @ reference.T).max(1))
    return float(np.median(np.concatenate(best))) if best else float("nan")


# ----------------------------------------------------------------------------- embeddings


class Embedder:
    """L2-normalised mean-pooled sentence embeddings of examples, cached on disk."""

    def __init__(self, task: Task | str = Task.PROMPT, encoder: str = "minilm", max_length: int = 128,
                 cache_dir: str | Path | None = None, batch_size: int = 64, progress: bool = True):
        from guardmatch.features import FeatureStore
        from guardmatch.model import GuardClassifier

        self.task = Task(task)
        path = Path(encoder)
        if (path / "guardmatch.json").is_file():
            self.model = GuardClassifier.from_pretrained(path)
        else:
            self.model = GuardClassifier.from_encoder(encoder, task=self.task, max_length=max_length, seed=0)
        self.model.config.task = self.task
        self.model.eval()
        self.store = FeatureStore(self.model, "frozen", root=cache_dir)
        self.batch_size = batch_size
        self.progress = progress

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def token_counts(self, examples: Sequence[Example]) -> list[int]:
        tok = self.model.tokenizer
        if self.task is Task.PROMPT:
            return [len(ids) for ids in tok([ex.prompt for ex in examples], add_special_tokens=False)["input_ids"]]
        return [len(a) + len(b) for a, b in zip(
            tok([ex.prompt for ex in examples], add_special_tokens=False)["input_ids"],
            tok([ex.response or "" for ex in examples], add_special_tokens=False)["input_ids"])]

    def __call__(self, examples: Sequence[Example]) -> np.ndarray:
        if not examples:
            return np.zeros((0, self.store.cache.dim), dtype=np.float32)
        self.store.build(examples, batch_size=self.batch_size, progress=self.progress, description="embedding")
        vecs = []
        for start in range(0, len(examples), 1024):
            vecs.append(self.store.batch(examples[start : start + 1024])["pooled"].numpy())
        v = np.concatenate(vecs).astype(np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------- the report


@dataclass
class ShiftReport:
    task: str
    seed: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "seed": self.seed, "rows": self.rows, "settings": self.settings}

    def to_markdown(self) -> str:
        s = self.seed
        head = (f"Seed **{s['name']}**: {s['n']} examples, {_pct(s.get('harmful'))} harmful, mean "
                f"{s['stats'].get('tokens_mean', float('nan')):.0f} tokens. Compared with the seed (embeddings: "
                f"{self.settings.get('encoder')}, up to {self.settings.get('max_per_set')} examples per set):\n\n")
        cols = ("set", "role", "n", "harmful", "MMD²", "p", "C2ST AUC", "NN→seed", "NN→pool", "tokens ×",
                "?", "role-play", "code", "non-ASCII")
        lines = ["| " + " | ".join(cols) + " |", "|---|---|" + "---:|" * (len(cols) - 2)]
        seed_row = {"name": s["name"], "role": "seed", "n": s["n"], "harmful": s.get("harmful"), "stats": s["stats"],
                    "nn_seed": s.get("nn_seed"), "nn_pool": s.get("nn_pool")}
        for r in [seed_row, *self.rows]:
            st = r["stats"]
            ratio = st.get("tokens_mean", np.nan) / max(s["stats"].get("tokens_mean", np.nan), 1e-9)
            lines.append("| " + " | ".join([
                r["name"], r["role"], str(r["n"]), _pct(r.get("harmful")),
                _num(r.get("mmd2"), 4), _p(r.get("p_value")), _num(r.get("c2st_auc"), 3),
                _num(r.get("nn_seed"), 3), _num(r.get("nn_pool"), 3), _num(ratio, 2),
                _pct(st.get("question")), _pct(st.get("roleplay")), _pct(st.get("code")), _pct(st.get("non_ascii"), 2),
            ]) + " |")
        pools = [r["name"] for r in self.rows if r["role"] == "pool"]
        tests = [r for r in self.rows if r.get("nn_pools")]
        cover = ""
        if len(pools) > 1 and tests:
            cover = ("\n\nCoverage of each test set by each pool (median best cosine similarity; the seed for "
                     "reference; pools are subsampled to the same size cap, so larger is closer):\n\n"
                     "| test set | seed | " + " | ".join(pools) + " |\n|---|---:|" + "---:|" * len(pools) + "\n")
            for r in tests:
                cover += (f"| {r['name']} | {_num(r.get('nn_seed'), 3)} | "
                          + " | ".join(_num(r["nn_pools"].get(p), 3) for p in pools) + " |\n")
        foot = ("\n\nMMD² (RBF, median-heuristic bandwidth) with a permutation p-value; C2ST AUC: cross-validated "
                "logistic regression telling the set from the seed (0.5 = indistinguishable); NN→seed / NN→pool: "
                "median best cosine similarity of the set's examples to the seed / the pool(s) (coverage); tokens ×: "
                "mean length in encoder tokens relative to the seed (medians mislead on bimodal lengths); "
                "?, role-play, code: share of texts; non-ASCII: mean share of "
                "characters.")
        return head + "\n".join(lines) + cover.rstrip("\n") + foot


def _num(v: Any, digits: int) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _p(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:.3f}" if v >= 0.001 else "<0.001"


def _pct(v: Any, digits: int = 0) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.{digits}f}%"


def _harmful(examples: Sequence[Example]) -> float | None:
    found = [ex.label if ex.label is not None else ex.metadata.get("hidden_label") for ex in examples]
    labels: list[int] = [lab for lab in found if lab is not None]
    return float(np.mean(labels)) if labels else None


def sample_indices(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``k`` of ``n`` items drawn without replacement (all ``n`` when ``n <= k``)."""
    return np.sort(rng.choice(n, k, replace=False)) if n > k else np.arange(n)


def shift_report(seed: TextSet, others: Sequence[TextSet], embedder: Embedder, *, max_per_set: int = 1000,
                 permutations: int = 200, folds: int = 5, random_seed: int = 0) -> ShiftReport:
    """Compare every set in ``others`` with ``seed`` (see the module docstring)."""
    rng = np.random.default_rng(random_seed)
    task = embedder.task

    def prepare(ts: TextSet) -> tuple[list[Example], np.ndarray, dict[str, float]]:
        idx = sample_indices(len(ts.examples), max_per_set, rng)
        sample = [ts.examples[i] for i in idx]
        texts = [ex.text(task) for ex in sample]
        return sample, embedder(sample), style_stats(texts, embedder.token_counts(sample))

    if len(seed.examples) < 2:
        raise DataError(f"the seed {seed.name!r} has {len(seed.examples)} example(s); need at least 2")
    _, seed_emb, seed_stats = prepare(seed)
    prepared = [(ts, *prepare(ts)) for ts in others if ts.examples]
    pool_emb = [e for ts, _, e, _ in prepared if ts.role == "pool"]
    pool_all = np.concatenate(pool_emb) if pool_emb else None
    rows = []
    for ts, sample, emb, stats in prepared:
        row: dict[str, Any] = {"name": ts.name, "role": ts.role, "n": len(ts.examples), "n_compared": len(sample),
                               "harmful": _harmful(ts.examples), "stats": stats}
        if len(sample) >= 2:
            mmd = mmd_rbf(seed_emb, emb, permutations=permutations, seed=random_seed)
            row.update({"mmd2": mmd["mmd2"], "p_value": mmd["p_value"], "bandwidth": mmd["bandwidth"]})
        if min(len(sample), len(seed_emb)) >= folds:
            c2 = c2st_auc(seed_emb, emb, folds=folds, seed=random_seed)
            row.update({"c2st_auc": c2["auc"], "c2st_auc_std": c2["auc_std"]})
        row["nn_seed"] = nn_similarity(emb, seed_emb)
        if pool_all is not None and ts.role != "pool":
            row["nn_pool"] = nn_similarity(emb, pool_all)
            row["nn_pools"] = {p.name: nn_similarity(emb, e) for p, _, e, _ in prepared if p.role == "pool"}
        rows.append(row)
    seed_info = {"name": seed.name, "n": len(seed.examples), "harmful": _harmful(seed.examples), "stats": seed_stats,
                 "nn_pool": nn_similarity(seed_emb, pool_all) if pool_all is not None else None}
    settings = {"encoder": str(embedder.model.config.encoder), "max_length": embedder.model.config.max_length,
                "max_per_set": max_per_set, "permutations": permutations, "folds": folds, "random_seed": random_seed}
    return ShiftReport(task=task.value, seed=seed_info, rows=rows, settings=settings)
