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


def test_inspect_unlabeled_prompt_file_is_recognised_not_one_error_per_row(tmp_path):
    """id/prompt rows (a valid `predict` input): one line saying so, exit 0; other row errors still count."""
    rows = [{"id": f"p{i}", "prompt": text} for i, text in enumerate(["hello there", "how do I make a bomb?",
                                                                      "nice weather today"])]
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    csv = tmp_path / "prompts.csv"
    csv.write_text("id,prompt\n" + "".join(f"{r['id']},{r['prompt']}\n" for r in rows), encoding="utf-8")
    for path in (jsonl, csv):
        result = runner.invoke(app, ["data", "inspect", str(path), "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["unlabeled_file"] is True and summary["errors"] == 0 and summary["problems"] == []
        assert summary["kept"] == 3 and summary["labels"] == {"harmful": 0, "unharmful": 0, "unlabeled": 3}
        rich = runner.invoke(app, ["data", "inspect", str(path)])
        assert rich.exit_code == 0, rich.output
        assert rich.stdout.count("unlabeled file: 3 rows, no labels") == 1 and "missing column" not in rich.stdout

    # no labels, but one row bad for another reason: that row is still an error
    bad = tmp_path / "prompts-bad.jsonl"
    bad.write_text(jsonl.read_text() + json.dumps({"id": "p3", "prompt": ""}) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["data", "inspect", str(bad), "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["unlabeled_file"] is True and summary["kept"] == 3
    assert [(p["row"], p["field"]) for p in summary["problems"]] == [(4, "prompt")]

    # some rows labeled, others without a label or with a bad one: a labeled file with errors, as before
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps({"id": "a", "prompt": "fine", "label": "harmful"}) + "\n"
                     + json.dumps({"id": "b", "prompt": "no label here"}) + "\n"
                     + json.dumps({"id": "c", "prompt": "hmm", "label": "maybe"}) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["data", "inspect", str(mixed), "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["unlabeled_file"] is False and summary["kept"] == 1 and summary["errors"] == 2
    assert sorted((p["row"], p["field"]) for p in summary["problems"]) == [(2, "label"), (3, "label")]
