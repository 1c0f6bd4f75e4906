"""ONNX path: export, parity with PyTorch, int8, dispatch by directory, calibration and batch prediction on ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
from serving_fixtures import SERVING_RESPONSES, SERVING_TEXTS, tiny_classifier
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from guardmatch.calibration import calibrate  # noqa: E402
from guardmatch.cli.main import app  # noqa: E402
from guardmatch.data.example import Example  # noqa: E402
from guardmatch.data.loaders import save_jsonl  # noqa: E402
from guardmatch.data.records import iter_jsonl
from guardmatch.model import GuardClassifier  # noqa: E402
from guardmatch.serving.backends import load_classifier  # noqa: E402
from guardmatch.serving.batch import predict_file  # noqa: E402
from guardmatch.serving.onnx import OnnxClassifier, export_onnx, parity  # noqa: E402

# Float ONNX vs PyTorch: the same graph in float32; differences are summation-order noise.
PARITY_TOL = 1e-5


def test_onnx_matches_pytorch_prompt(serving_prompt_dir, serving_prompt_onnx):
    out, record = serving_prompt_onnx
    torch_model = GuardClassifier.from_pretrained(serving_prompt_dir)
    onnx_model = load_classifier(out)
    assert isinstance(onnx_model, OnnxClassifier)
    assert onnx_model.config.max_length == torch_model.config.max_length == 48
    texts = SERVING_TEXTS * 3  # 24 texts: several batches of mixed lengths
    p_t = torch_model.score(texts, batch_size=5)
    p_o = onnx_model.score(texts, batch_size=5)
    diff = float(np.max(np.abs(p_t - p_o)))
    assert diff < PARITY_TOL, f"max |P_torch - P_onnx| = {diff}"
    # batch size does not change results (dynamic batch and sequence axes)
    np.testing.assert_allclose(onnx_model.score(texts, batch_size=1), p_o, atol=PARITY_TOL)
    # the export recorded its own parity check on probe inputs
    assert record["parity"]["max_abs_diff_proba"] < PARITY_TOL and record["parity"]["label_agreement"] == 1.0
    assert json.loads((out / "guardmatch.json").read_text())["provenance"]["onnx"]["quantize"] is None
    assert list(onnx_model.predict(texts[:4])) == list(torch_model.predict(texts[:4]))
    # the scikit-learn shape: [N, 2] in classes_ order, the same in both runtimes
    assert list(onnx_model.classes_) == list(torch_model.classes_) == ["unharmful", "harmful"]
    proba = onnx_model.predict_proba(texts[:4])
    assert proba.shape == (4, 2)
    np.testing.assert_allclose(proba[:, 1], p_o[:4], atol=1e-7)
    assert list(onnx_model.predict(texts[:4], labels=True)) == list(torch_model.predict_labels(texts[:4]))


def test_onnx_response_pairs_and_int8_cli(serving_response_dir, tmp_path):
    out = tmp_path / "response-int8"
    res = CliRunner().invoke(app, ["export", "onnx", str(serving_response_dir), str(out), "--quantize", "int8"])
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout[res.stdout.index("{"):])
    assert record["quantize"] == "int8" and (out / "model.onnx").exists()
    torch_model = GuardClassifier.from_pretrained(serving_response_dir)
    q = load_classifier(out)
    p_t = torch_model.score(SERVING_TEXTS, SERVING_RESPONSES)
    p_q = q.score(SERVING_TEXTS, SERVING_RESPONSES)
    # int8 weights: close to float, not equal (measured ~1e-3 on this tiny model)
    assert 0 < np.max(np.abs(p_t - p_q)) < 0.05
    with pytest.raises(ValueError, match="response classifier"):
        q.score(SERVING_TEXTS)
    with pytest.raises(ValueError, match="already an ONNX export"):
        export_onnx(out, tmp_path / "again")


def test_onnx_float_response_parity(tmp_path):
    model = tiny_classifier("response", seed=5)
    record = export_onnx(model, tmp_path / "r")
    clf = OnnxClassifier.from_pretrained(tmp_path / "r", threads=1)
    stats = parity(model, clf, SERVING_TEXTS, SERVING_RESPONSES, batch_size=3)
    assert stats["max_abs_diff_proba"] < PARITY_TOL and stats["label_agreement"] == 1.0
    assert record["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]


def test_calibrate_onnx_model_and_predict_file(serving_prompt_dir, serving_prompt_onnx, tmp_path):
    out, _ = serving_prompt_onnx
    clf = load_classifier(out)
    examples = [Example(f"h-{i}", t + f" {i}", None, i % 2, "unit") for i, t in enumerate(SERVING_TEXTS * 4)]
    result = calibrate(clf, examples, target="f1")
    cal_dir = clf.save_pretrained(tmp_path / "onnx-calibrated")
    again = load_classifier(cal_dir)
    assert isinstance(again, OnnxClassifier)
    assert again.config.temperature == pytest.approx(result.temperature)
    assert again.config.threshold == pytest.approx(result.threshold)
    # guardmatch predict's Python API on the ONNX directory: same scores as PyTorch with that temperature
    rows = [Example(f"r{i}", t) for i, t in enumerate(SERVING_TEXTS) if t]  # the loader skips empty prompts
    inp = save_jsonl(rows, tmp_path / "in.jsonl")
    scores = tmp_path / "scores.jsonl"
    stats = predict_file(cal_dir, inp, scores, batch_size=3, chunk_size=3)
    assert stats["scored_now"] == len(rows)
    got = {r["id"]: r for r in iter_jsonl(scores)}
    torch_model = GuardClassifier.from_pretrained(serving_prompt_dir)
    torch_model.config.temperature = result.temperature
    expected = torch_model.score([r.prompt for r in rows])
    for row, p in zip(rows, expected):
        assert got[row.id]["p_harmful"] == pytest.approx(p, abs=1e-5)
        assert got[row.id]["threshold"] == pytest.approx(result.threshold)
    again_stats = predict_file(cal_dir, inp, scores)  # resumed: nothing left to score
    assert again_stats["scored_now"] == 0 and again_stats["already_done"] == len(rows)
