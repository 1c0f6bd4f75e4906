"""``guardmatch deployment prior | drift | profiles | set-profile`` end to end on a tiny saved model."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from guardmatch.cli.main import app
from guardmatch.evaluation.label_shift import adapt_threshold
from guardmatch.model import GuardClassifierConfig

runner = CliRunner()


@pytest.fixture()
def model_dir(tiny_prompt_model_dir, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(tiny_prompt_model_dir, path)
    return path


def _config(path):
    return GuardClassifierConfig.model_validate_json((path / "guardmatch.json").read_text())


def test_prior_estimates_and_stores_an_adapted_profile(model_dir, shared_data):
    xs = str(shared_data / "xstest" / "xstest_prompts.csv")
    res = runner.invoke(app, ["deployment", "prior", str(model_dir), xs, "--source-prior", "0.5", "--profile",
                              "xstest", "--bootstrap", "20", "--json", "--no-hub"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    est = out["estimate"]
    assert out["n"] == 450 and est["method"] == "em" and est["low"] <= est["prior"] <= est["high"]
    assert out["adapted_threshold"] == pytest.approx(adapt_threshold(out["base_threshold"], 0.5, est["prior"]))
    prof = _config(model_dir).threshold_profiles["xstest"]
    assert prof.method == "label-shift:em" and prof.threshold == pytest.approx(out["adapted_threshold"])
    assert prof.details["estimated_prior"] == est["prior"] and prof.details["n"] == 450
    # the model records no harmful rate of its own: a clear error, exit 2
    res = runner.invoke(app, ["deployment", "prior", str(model_dir), xs, "--no-hub"])
    assert res.exit_code == 2 and "pass the source prior" in res.output


def test_profiles_set_and_list(model_dir):
    res = runner.invoke(app, ["deployment", "set-profile", str(model_dir), "eu", "--threshold", "0.3", "--note", "x"])
    assert res.exit_code == 0, res.output
    listed = json.loads(runner.invoke(app, ["deployment", "profiles", str(model_dir)]).stdout)
    assert listed["eu"]["threshold"] == 0.3 and listed["eu"]["method"] == "manual"
    assert listed["default"]["threshold"] == _config(model_dir).threshold
    res = runner.invoke(app, ["deployment", "set-profile", str(model_dir), "default", "--threshold", "0.3"])
    assert res.exit_code == 2 and "threshold profile name" in res.output


def test_drift_exit_code_says_whether_the_batch_moved(model_dir, train_file, shared_data, tmp_path):
    xs = str(shared_data / "xstest" / "xstest_prompts.csv")
    res = runner.invoke(app, ["deployment", "drift", str(model_dir), "--reference", str(train_file), "--batch", xs,
                              "--source-prior", "0.5", "--max-per-set", "60", "--permutations", "200",
                              "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "d"), "--no-hub"])
    assert res.exit_code == 1, res.output  # moved
    report = json.loads((tmp_path / "d" / "drift.json").read_text())
    assert report["moved"] and report["batch"]["name"] == "xstest_prompts.csv"
