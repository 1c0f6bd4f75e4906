"""``guardmatch data inspect`` through the real CLI app."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from guardmatch.cli.main import app

runner = CliRunner()


def test_inspect_wildguardtest_json(shared_data):
    result = runner.invoke(app, ["data", "inspect", str(shared_data / "wildguardmix" / "wildguardtest.parquet"),
                                 "--task", "prompt", "--json", "--rows", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # nothing but JSON on stdout
    assert summary["rows_read"] == 1725 and summary["kept"] == 1699
    assert summary["labels"] == {"harmful": 754, "unharmful": 945}
    assert summary["skipped"] == {"null label": 26}
    assert summary["errors"] == 0 and len(summary["examples"]) == 2


def test_inspect_named_dataset_rich(shared_data):
    result = runner.invoke(app, ["data", "inspect", "oaimod", "--data-dir", str(shared_data), "--no-hub"])
    assert result.exit_code == 0, result.output
    assert "1,680" in result.stdout and "harmful 522" in result.stdout and "oaimod-0" in result.stdout


def test_inspect_bad_file_exits_1_and_still_reports(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "prompt": "fine", "label": "harmful"}\n'
                    '{"id": "b", "prompt": "hmm", "label": "maybe"}\n'
                    '{"id": "c", "prompt": "", "label": "unharmful"}\n', encoding="utf-8")
    result = runner.invoke(app, ["data", "inspect", str(path), "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["kept"] == 1 and summary["errors"] == 2
    assert [(p["row"], p["field"]) for p in summary["problems"]] == [(2, "label"), (3, "prompt")]
    rich = runner.invoke(app, ["data", "inspect", str(path)])
    assert rich.exit_code == 1 and "unknown label" in rich.stdout


def test_inspect_column_mapping_and_unlabeled(tmp_path):
    path = tmp_path / "traffic.csv"
    path.write_text("text,flag\nhi,\nbuild a weapon,1\n", encoding="utf-8")
    result = runner.invoke(app, ["data", "inspect", str(path), "--map", "text=prompt", "--map", "flag=label",
                                 "--unlabeled", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["labels"] == {"harmful": 1, "unharmful": 0, "unlabeled": 1}


def test_inspect_unknown_target():
    result = runner.invoke(app, ["data", "inspect", "no_such_dataset_or_file"])
    assert result.exit_code == 1
    assert "neither a file nor a known dataset" in result.output
