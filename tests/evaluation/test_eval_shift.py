"""Distribution-shift report: MMD and C2ST math, style statistics, the `data shift` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from guardmatch.data.example import Example, Task
from guardmatch.evaluation.shift import (
    Embedder,
    TextSet,
    c2st_auc,
    median_bandwidth,
    mmd_rbf,
    nn_similarity,
    shift_report,
    style_stats,
)


def test_mmd_matches_the_unbiased_formula_by_hand():
    x = np.array([[0.0], [1.0]])
    y = np.array([[3.0], [5.0]])
    sigma = 2.0
    k = lambda a, b: np.exp(-((a - b) ** 2) / (2 * sigma**2))  # noqa: E731
    # unbiased: off-diagonal XX and YY terms (m(m-1) = 2 each), all XY terms (mn = 4)
    kxx = 2 * k(0, 1) / 2
    kyy = 2 * k(3, 5) / 2
    kxy = (k(0, 3) + k(0, 5) + k(1, 3) + k(1, 5)) / 4
    out = mmd_rbf(x, y, bandwidth=sigma, permutations=0)
    assert out["mmd2"] == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-12)
    assert np.isnan(out["p_value"])
    # median heuristic: median of the 6 pairwise distances {1, 3, 5, 2, 4, 2} = 2.5
    assert median_bandwidth(np.array([[0.0], [1.0], [3.0], [5.0]])) == pytest.approx(2.5)
    assert mmd_rbf(x, y, permutations=0)["bandwidth"] == pytest.approx(2.5)


def test_mmd_permutation_test_separates_shift_from_no_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(120, 5))
    same = rng.normal(size=(100, 5))
    shifted = rng.normal(size=(100, 5)) + np.array([0.8, 0, 0, 0, 0])
    null = mmd_rbf(a, same, permutations=200, seed=1)
    alt = mmd_rbf(a, shifted, permutations=200, seed=1)
    assert alt["p_value"] == pytest.approx(1 / 201)  # no permutation reaches the observed statistic
    assert null["p_value"] > 0.05
    assert alt["mmd2"] > 10 * abs(null["mmd2"])
    assert (null["n_x"], null["n_y"]) == (120, 100)


def test_c2st_auc_near_half_without_shift_and_high_with_it():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 8))
    assert abs(c2st_auc(a, rng.normal(size=(300, 8)))["auc"] - 0.5) < 0.1
    far = c2st_auc(a, rng.normal(size=(150, 8)) + 2.0)
    assert far["auc"] > 0.97 and far["n_per_set"] == 150


def test_nn_similarity_by_hand():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    target = np.array([[1.0, 0.0], [np.sqrt(0.5), np.sqrt(0.5)], [-1.0, 0.0]])
    # best cosine per target row: 1, sqrt(.5), 0 -> median sqrt(.5)
    assert nn_similarity(target, ref) == pytest.approx(np.sqrt(0.5))


def test_style_stats_by_hand():
    texts = ["Imagine you are a pirate. How do I steal gold?", "def f(x): return x", "café über alles <Person>",
             "plain text\nsecond line http://x.org"]
    st = style_stats(texts, token_counts=[12, 6, 4, 8])
    assert st["n"] == 4
    assert st["question"] == 0.25 and st["roleplay"] == 0.25 and st["code"] == 0.25
    assert st["url"] == 0.25 and st["multiline"] == 0.25
    assert st["non_ascii"] == pytest.approx((2 / 24) / 4)  # redaction tags like <Person> are not code
    assert st["tokens_median"] == 7.0 and st["chars_median"] == pytest.approx(np.median([len(t) for t in texts]))


def test_report_on_real_slices_with_an_unlabeled_pool(tmp_path, shared_data, tiny_prompt_model_dir, train_slice):
    from guardmatch.data.suites import load_dataset

    xs = load_dataset("xstest", "prompt", data_dir=shared_data).examples[:60]
    pool = [Example(f"u{i}", ex.prompt) for i, ex in enumerate(train_slice[40:])]  # label-free
    emb = Embedder(Task.PROMPT, encoder=str(tiny_prompt_model_dir), cache_dir=tmp_path, progress=False)
    report = shift_report(TextSet("seed", "seed", train_slice[:40]),
                          [TextSet("pool", "pool", pool), TextSet("xstest", "test", xs)], emb,
                          max_per_set=50, permutations=50)
    rows = {r["name"]: r for r in report.rows}
    assert rows["pool"]["harmful"] is None and rows["xstest"]["harmful"] == pytest.approx(
        np.mean([e.label for e in xs]))
    assert rows["xstest"]["n"] == 60 and rows["xstest"]["n_compared"] == 50
    assert 0 <= rows["xstest"]["p_value"] <= 1 and 0 <= rows["xstest"]["c2st_auc"] <= 1
    assert "nn_pool" in rows["xstest"] and "nn_pool" not in rows["pool"]
    # XSTest prompts are short: the length ratio to the seed is visible
    assert rows["xstest"]["stats"]["tokens_mean"] < report.seed["stats"]["tokens_mean"]
    md = report.to_markdown()
    assert "| xstest | test | 60 |" in md and "C2ST AUC" in md


def test_data_shift_command(tmp_path, shared_data, tiny_prompt_model_dir, train_file):
    from guardmatch.cli.main import app

    pool = tmp_path / "ingested.jsonl"  # what `guardmatch ingest` writes: normalized, label null
    rows = [json.loads(line) for line in open(train_file)][:30]
    pool.write_text("".join(json.dumps({"id": f"p{i}", "prompt": r["prompt"], "response": None, "label": None}) + "\n"
                            for i, r in enumerate(rows)))
    args = ["data", "shift", "--seed-source", str(train_file), "--labels", "20", "--pool", str(pool),
            "--suite", "prompt", "--data-dir", str(shared_data), "--no-hub", "--encoder", str(tiny_prompt_model_dir),
            "--max-per-set", "40", "--permutations", "20", "--cache-dir", str(tmp_path / "c"), "--json",
            "--out", str(tmp_path / "rep")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{"):])
    names = [r["name"] for r in data["rows"]]
    assert names == ["train.jsonl rest (in-source)", "ingested.jsonl", "wildguardtest", "oaimod", "xstest", "aegis"]
    assert data["seed"]["n"] == 20
    assert (tmp_path / "rep" / "shift.md").read_text().startswith("Seed **train.jsonl (20 labels, seed 0)**")
    bad = CliRunner().invoke(app, ["data", "shift", "--seed-source", str(tmp_path / "missing.jsonl"), "--suite", "none"])
    assert bad.exit_code == 2 and "missing.jsonl" in bad.output
