"""Baselines a user would pick instead of SSL, trained on exactly a grid cell's labeled split.

* ``tfidf_lr``: word (1-2)-gram + character (2-5)-gram TF-IDF and logistic regression, C chosen by
  stratified k-fold cross-validation **on the labeled split only** (harmful-class F1; the vectorizers
  are fitted inside each fold). For responses the prompt and the response get their own vectorizers.
* ``setfit``: SetFit (Tunstall et al. 2022, PyPI ``setfit``) with the packaged all-MiniLM-L6-v2
  body (``body``: any encoder name or path; ``precision: bf16`` autocasts where bf16 is native):
  contrastive fine-tuning of the sentence-transformer on label-derived pairs, then a logistic
  regression head on its embeddings. For responses the text is ``prompt [SEP] response`` with the
  prompt truncated first, so the response survives truncation (as in guardmatch's own models).

Both write what a training run writes (``split_manifest.json``, ``config.yaml``, ``eval/`` with
scores for precision-recall curves, ``run.json``), at the threshold 0.5 that runs use too.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import numpy as np
import yaml

from guardmatch.data.example import Example, Task, labels_of
from guardmatch.errors import ConfigError
from guardmatch.evaluation.report import EvaluationReport, evaluate_scores
from guardmatch.grid.config import BaselineSpec
from guardmatch.registry import Registry

if TYPE_CHECKING:
    from setfit import SetFitModel
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression

THRESHOLD = 0.5

TFIDF_DEFAULTS: dict[str, Any] = {
    "C_grid": [0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0],
    "cv_folds": 5,
    "word_ngrams": [1, 2],
    "char_ngrams": [2, 5],  # null: words only
    "max_features": 200_000,
    "min_df": 1,
    "class_weight": None,
}

SETFIT_DEFAULTS: dict[str, Any] = {
    "body": "minilm",
    "max_length": 128,
    "batch_size": 16,
    "max_steps": 100,
    "num_iterations": 20,
    "body_learning_rate": 2e-5,
    "head_max_iter": 2000,
    "eval_batch_size": 64,
    # "bf16": autocast where bf16 is native, else fp32. Faster, but measured to squeeze the LR head's
    # probabilities toward 0.5 (F1 at 0.5 0.562 vs 0.620 for MiniLM, AUPRC equal; benchmarks/README.md)
    "precision": "fp32",
}


BASELINES: Registry[Any] = Registry("baseline")
"""Every baseline by ``kind``: classes built as ``cls(task, seed, params, workdir=..., progress=...)``
with ``fit(examples)`` and ``predict_proba(examples)``, and their parameters' ``defaults``."""


def baseline_params(kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Baseline ``kind``'s defaults updated with ``params`` (an unknown kind or parameter, or a value
    outside the class's ``choices``, is an error)."""
    cls = BASELINES.get(kind)
    unknown = set(params or {}) - set(cls.defaults)
    if unknown:
        raise ConfigError(f"{kind}: unknown parameter(s) {sorted(unknown)}; known: {sorted(cls.defaults)}")
    merged = {**cls.defaults, **(params or {})}
    for key, allowed in getattr(cls, "choices", {}).items():
        if merged[key] not in allowed:
            raise ConfigError(f"{kind}: {key} must be one of {list(allowed)}, got {merged[key]!r}")
    return merged


# ----------------------------------------------------------------------------- TF-IDF + LR


def _tfidf_features(task: Task, p: dict[str, Any]):
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer

    def vecs(column: str) -> list[tuple[str, Any, str]]:
        common = {"sublinear_tf": True, "min_df": p["min_df"], "max_features": p["max_features"],
                  "strip_accents": "unicode", "dtype": np.float32}
        out = [(f"{column}_word", TfidfVectorizer(ngram_range=tuple(p["word_ngrams"]), **common), column)]
        if p["char_ngrams"]:
            out.append((f"{column}_char", TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(p["char_ngrams"]),
                                                          **common), column))
        return out

    columns = ["prompt"] + (["response"] if task is Task.RESPONSE else [])
    return ColumnTransformer([v for c in columns for v in vecs(c)])


def _frame(examples: Sequence[Example]):
    import pandas as pd

    return pd.DataFrame({"prompt": [ex.prompt for ex in examples], "response": [ex.response or "" for ex in examples]})


@BASELINES.register("tfidf_lr")
class TfidfLR:
    """TF-IDF + logistic regression with C chosen by CV on the training examples only."""

    name: ClassVar[str]  # set by @BASELINES.register
    defaults = TFIDF_DEFAULTS

    def __init__(self, task: Task, seed: int, params: dict[str, Any] | None = None, *, workdir: Path | None = None,
                 progress: bool = False):  # no work files, no progress to show
        self.task = Task(task)
        self.seed = seed
        self.params = baseline_params(self.name, params)
        self.features: ColumnTransformer | None = None  # set by fit
        self.clf: LogisticRegression | None = None
        self.cv: dict[str, Any] = {}

    def _fitted(self) -> tuple[ColumnTransformer, LogisticRegression]:
        if self.features is None or self.clf is None:
            raise RuntimeError("TfidfLR is not fitted: call fit() first")
        return self.features, self.clf

    def _lr(self, C: float):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, solver="liblinear", max_iter=5000, class_weight=self.params["class_weight"])

    def fit(self, train: Sequence[Example]) -> "TfidfLR":
        from sklearn.metrics import f1_score
        from sklearn.model_selection import StratifiedKFold

        y = np.array([ex.label for ex in train])
        frame = _frame(train)
        grid = [float(c) for c in self.params["C_grid"]]
        folds = min(int(self.params["cv_folds"]), int(np.bincount(y, minlength=2).min()))
        scores: dict[float, list[float]] = {c: [] for c in grid}
        if folds >= 2 and len(grid) > 1:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.seed)
            for tr, va in splitter.split(frame, y):
                feats = _tfidf_features(self.task, self.params)  # fitted inside the fold: no leakage
                xtr = feats.fit_transform(frame.iloc[tr])
                xva = feats.transform(frame.iloc[va])
                for c in grid:
                    pred = self._lr(c).fit(xtr, y[tr]).predict_proba(xva)[:, 1] >= THRESHOLD
                    scores[c].append(f1_score(y[va], pred, zero_division=0))
            means = {c: float(np.mean(v)) for c, v in scores.items()}
            best = max(grid, key=lambda c: (means[c], -abs(np.log10(c))))  # ties: the C closest to 1
        else:
            means, best = {}, 1.0
        self.features = _tfidf_features(self.task, self.params)
        x = self.features.fit_transform(frame)
        self.clf = self._lr(best).fit(x, y)
        self.cv = {"C": best, "folds": folds, "cv_f1": means, "vocabulary": int(x.shape[1])}
        return self

    def predict_proba(self, examples: Sequence[Example]) -> np.ndarray:
        features, clf = self._fitted()
        return clf.predict_proba(features.transform(_frame(examples)))[:, 1]

    def save(self, path: Path) -> None:
        """Vocabularies and idf per vectorizer (JSON + .npy) and the LR weights (.npy): no pickle."""
        features, clf = self._fitted()
        path.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {"kind": "tfidf_lr", "task": self.task.value, "params": self.params, "cv": self.cv,
                                "intercept": float(clf.intercept_[0]), "vectorizers": []}
        for name, vec, column in features.transformers_:
            if name == "remainder":
                continue
            meta["vectorizers"].append({"name": name, "column": column, "analyzer": vec.analyzer,
                                        "ngram_range": list(vec.ngram_range),
                                        "vocabulary": {k: int(v) for k, v in vec.vocabulary_.items()}})
            np.save(path / f"{name}.idf.npy", vec.idf_, allow_pickle=False)
        np.save(path / "coef.npy", clf.coef_[0], allow_pickle=False)
        (path / "tfidf_lr.json").write_text(json.dumps(meta))


# ----------------------------------------------------------------------------- SetFit


def pair_texts(examples: Sequence[Example], task: Task, tokenizer, max_length: int) -> list[str]:
    """Prompt texts, or ``prompt [SEP] response`` with the prompt cut first to fit ``max_length``."""
    if Task(task) is Task.PROMPT:
        return [ex.prompt for ex in examples]
    sep = tokenizer.sep_token or "\n\n"
    budget = max_length - 3  # [CLS] ... [SEP] ... [SEP]
    out = []
    for ex in examples:
        response = ex.response or ""
        r_len = len(tokenizer.tokenize(response))
        p_tokens = tokenizer.tokenize(ex.prompt)
        keep = max(min(len(p_tokens), 16), budget - r_len)  # always a little of the prompt
        prompt = ex.prompt if keep >= len(p_tokens) else tokenizer.convert_tokens_to_string(p_tokens[:keep])
        out.append(f"{prompt} {sep} {response}")
    return out


@BASELINES.register("setfit")
class SetFitBaseline:
    """SetFit (``setfit`` package) on a sentence-transformer body (default: the packaged MiniLM)."""

    name: ClassVar[str]
    defaults = SETFIT_DEFAULTS
    choices: ClassVar[dict[str, tuple[str, ...]]] = {"precision": ("fp32", "bf16")}

    def __init__(self, task: Task, seed: int, params: dict[str, Any] | None = None, *, workdir: Path | None = None,
                 progress: bool = False):
        self.task = Task(task)
        self.seed = seed
        self.params = baseline_params(self.name, params)
        self.workdir = workdir
        self.progress = progress
        self.model: SetFitModel | None = None  # set by fit
        self.info: dict[str, Any] = {}

    def _precision_used(self) -> str:
        """``"bf16"`` when asked for and native here (a CUDA GPU with bf16, AVX512-BF16 or AMX), else ``"fp32"``."""
        from guardmatch.training.run import precision_in_effect

        return precision_in_effect(self.params["precision"])

    def _autocast(self):
        """bf16 autocast of the body's forward passes (fp32 weights) when :meth:`_precision_used` says so."""
        import torch

        return torch.autocast("cuda" if torch.cuda.is_available() else "cpu", dtype=torch.bfloat16,
                              enabled=self._precision_used() == "bf16")

    def _fitted(self) -> SetFitModel:
        if self.model is None:
            raise RuntimeError("SetFitBaseline is not fitted: call fit() first")
        return self.model

    def fit(self, train: Sequence[Example]) -> "SetFitBaseline":
        try:
            from datasets import Dataset
            from setfit import SetFitModel, Trainer, TrainingArguments
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ImportError("the SetFit baseline needs `pip install guardmatch[grid]` (setfit==1.2.0)") from exc
        import logging

        from guardmatch.encoders import resolve_encoder

        logging.getLogger("setfit").setLevel(logging.WARNING)
        p = self.params
        model = SetFitModel.from_pretrained(resolve_encoder(p["body"]),
                                            head_params={"solver": "liblinear", "max_iter": p["head_max_iter"]})
        model.model_body.max_seq_length = int(p["max_length"])
        tokenizer = model.model_body.tokenizer
        texts = pair_texts(train, self.task, tokenizer, int(p["max_length"]))
        labels = [int(label) for label in labels_of(train)]
        workdir = self.workdir or Path("setfit-tmp")
        args = TrainingArguments(
            output_dir=str(workdir), batch_size=int(p["batch_size"]), num_epochs=1, max_steps=int(p["max_steps"]),
            num_iterations=int(p["num_iterations"]), body_learning_rate=float(p["body_learning_rate"]),
            sampling_strategy="oversampling", seed=self.seed, report_to="none", save_strategy="no",
            logging_strategy="no", show_progress_bar=self.progress, max_length=int(p["max_length"]),
        )
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
        t = time.perf_counter()
        with self._autocast():
            trainer.train()
        self.info = {"train_s": time.perf_counter() - t, "pairs_steps": int(p["max_steps"]),
                     "pairs_per_step": int(p["batch_size"]), "precision": self._precision_used()}
        shutil.rmtree(workdir, ignore_errors=True)
        self.model = model
        self._tokenizer = tokenizer
        return self

    def predict_proba(self, examples: Sequence[Example]) -> np.ndarray:
        texts = pair_texts(examples, self.task, self._tokenizer, int(self.params["max_length"]))
        with self._autocast():
            probs = self._fitted().predict_proba(texts, batch_size=int(self.params["eval_batch_size"]), as_numpy=True)
        return np.asarray(probs, dtype=np.float64)[:, 1]

    def save(self, path: Path) -> None:
        """The fine-tuned body (sentence-transformers, safetensors) and the LR head as JSON."""
        model = self._fitted()
        path.mkdir(parents=True, exist_ok=True)
        model.model_body.save(str(path / "body"))
        head = model.model_head
        (path / "head.json").write_text(json.dumps({"coef": head.coef_.tolist(), "intercept": head.intercept_.tolist(),
                                                    "classes": head.classes_.tolist()}))


# ----------------------------------------------------------------------------- a cell


def build_baseline(spec: BaselineSpec, task: Task, seed: int, workdir: Path, progress: bool = False):
    """The untrained baseline of ``spec.kind`` (:data:`BASELINES`)."""
    return BASELINES.get(spec.kind)(task, seed, spec.params, workdir=workdir, progress=progress)


def run_baseline(spec: BaselineSpec, name: str, config, prepared, out_dir: Path, *, keep_model: bool = False,
                 progress: bool = False, on_phase: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit a baseline on ``prepared.split.labeled`` (+ validation, which baselines fold into
    training since they select nothing on it), score every test set, write the run's files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task = config.data.task
    split = prepared.split
    split.save_manifest(out_dir / "split_manifest.json")
    (out_dir / "config.yaml").write_text(yaml.safe_dump(
        {"baseline": {"name": name, "kind": spec.kind, "params": spec.params},
         "data": config.data.model_dump(mode="json"), "seed": config.seed}, sort_keys=False))
    train = list(split.labeled) + list(split.validation)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    model = build_baseline(spec, task, config.seed, out_dir / "_setfit_work", progress)
    if on_phase:
        on_phase(f"fitting {name} on {len(train)} labels")
    model.fit(train)
    timings["train_s"] = time.perf_counter() - t
    t = time.perf_counter()
    scored = {}
    for set_name, examples in (prepared.suite or {}).items():
        labeled = [ex for ex in examples if ex.label is not None]
        scored[set_name] = ([ex.label for ex in labeled], model.predict_proba(labeled))
    report = EvaluationReport(model=str(out_dir), task=task.value, threshold=THRESHOLD,
                              results=evaluate_scores(scored, THRESHOLD),
                              info={"suite": prepared.suite.describe() if prepared.suite else None,
                                    "notes": prepared.notes, "baseline": spec.kind})
    timings["eval_s"] = time.perf_counter() - t
    report.save(out_dir / "eval")
    if keep_model:
        model.save(out_dir / "model")
    fit_info = getattr(model, "cv", None) or getattr(model, "info", {})
    provenance = {"baseline": spec.kind, "name": name, "params": model.params, "fit": fit_info,
                  "labeled_examples": len(train), "train_source": config.data.train, "labels": config.data.labels,
                  "seed": config.seed, "split_fingerprint": split.manifest.content_hash, "unlabeled_examples": 0}
    summary = {"config": {"baseline": name, "data": config.data.model_dump(mode="json"), "seed": config.seed},
               "provenance": provenance, "timings": timings, "notes": prepared.notes, "f1": report.f1()}
    (out_dir / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    return {"timings": timings, "provenance": provenance, "report": report}
