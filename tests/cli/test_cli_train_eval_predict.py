"""`guardmatch train / evaluate / predict` through typer, on tiny real models and real data slices."""

from __future__ import annotations

import json

import pytest
import yaml
from transformers import BertConfig
from typer.testing import CliRunner

from guardmatch.cli.main import app
from guardmatch.data.suites import load_dataset
from guardmatch.encoders import minilm_path
from guardmatch.model import GuardClassifier

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    path = tmp_path_factory.mktemp("m") / "tiny"
    GuardClassifier.from_encoder(str(minilm_path()), encoder_config=cfg, seed=0, max_length=48).save_pretrained(path)
    return path


def test_bad_config_key_names_key_and_file(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"optim": {"lr": "fast", "batchsize": 8}}))
    result = runner.invoke(app, ["train", "--config", str(cfg)])
    assert result.exit_code == 2
    out = result.output
    assert str(cfg) in out and "optim.lr" in out and "optim.batchsize" in out


def test_unknown_algorithm_is_a_clear_error(tmp_path, tiny_dir, shared_data):
    result = runner.invoke(app, ["train", "--algorithm", "mixmatch", "--output-dir", str(tmp_path / "r"),
                                 "--set", f"model.init_from={tiny_dir}", "--set", "data.suite=none",
                                 "--data-dir", str(shared_data)])
    assert result.exit_code == 2
    assert "mixmatch" in result.output and "fixmatch" in result.output


def test_train_then_evaluate_and_predict(tmp_path, tiny_dir, shared_data):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--labels", "16", "--max-steps", "3", "--batch-size", "4",
                                 "--output-dir", str(out), "--set", f"model.init_from={tiny_dir}",
                                 "--set", "data.suite=none", "--data-dir", str(shared_data)])
    assert result.exit_code == 0, result.output
    assert (out / "model" / "guardmatch.json").exists()
    manifest = json.loads((out / "split_manifest.json").read_text())
    assert len(manifest["labeled_ids"]) == 16 and manifest["seed"] == 0

    # evaluation on a labeled file with a segment field in its metadata
    rows = load_dataset("xstest", "prompt", data_dir=shared_data).examples[:60]
    data = tmp_path / "x.jsonl"
    data.write_text("".join(json.dumps({**r.to_dict(), "metadata": {"region": "eu" if i % 2 else "us"}}) + "\n"
                            for i, r in enumerate(rows)))
    result = runner.invoke(app, ["evaluate", str(out / "model"), "--input", str(data), "--by", "region", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["results"]["x.jsonl"]["n"] == 60
    assert {r["value"] for r in report["slices"]} >= {"eu", "us"}

    # batch prediction: resumable, one line per row, nothing scored twice
    scores = tmp_path / "scores.jsonl"
    first = runner.invoke(app, ["predict", str(out / "model"), str(data), "--out", str(scores), "--chunk", "16"])
    assert first.exit_code == 0, first.output
    lines = scores.read_text().splitlines()
    assert len(lines) == 60 and {"id", "p_harmful", "flagged", "threshold"} <= set(json.loads(lines[0]))
    scores.write_text("\n".join(lines[:30]) + "\n" + lines[30][:10])  # as if killed mid-write
    again = runner.invoke(app, ["predict", str(out / "model"), str(data), "--out", str(scores)])
    assert again.exit_code == 0, again.output
    ids = [json.loads(x)["id"] for x in scores.read_text().splitlines()]
    assert len(ids) == 60 and len(set(ids)) == 60


def test_version_and_names_checked_before_any_data_or_file(tmp_path):
    from guardmatch import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"guardmatch {__version__}"
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--algorithm", "nosuch", "-o", str(out), "--data-dir", str(tmp_path / "none")])
    assert res.exit_code == 2 and "unknown algorithm 'nosuch'" in res.output and "fixmatch" in res.output
    res = runner.invoke(app, ["train", "--algorithm", "fixmatch", "-p", "treshold=0.9", "-o", str(out)])
    assert res.exit_code == 2 and "algorithm_params of fixmatch: treshold" in res.output
    assert not out.exists()  # nothing written, no data read
