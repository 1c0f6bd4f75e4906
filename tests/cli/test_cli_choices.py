"""Choices are enums: a bad value is rejected at once (before any data is read or file written) and
listed in --help; the CLI's choices match the registries they stand for."""

from __future__ import annotations

import time
import typing

from typer.testing import CliRunner

from guardmatch.cli.common import (
    AugmenterChoice,
    AugmenterName,
    ExchangeFormat,
    LLMBackendChoice,
    LLMBackendName,
    RoutingStrategy,
)
from guardmatch.cli.main import app


def test_choices_match_the_registries():
    from guardmatch.augment.backends import BACKENDS
    from guardmatch.augment.registry import AUGMENTERS
    from guardmatch.review.exchange import FORMATS
    from guardmatch.review.routing import STRATEGIES

    assert {s.value for s in RoutingStrategy} == set(STRATEGIES.names())
    assert tuple(f.value for f in ExchangeFormat) == FORMATS
    assert {a.value for a in AugmenterName} == set(AUGMENTERS.names()) == set(typing.get_args(AugmenterChoice))
    assert {b.value for b in LLMBackendName} == set(BACKENDS.names()) == set(typing.get_args(LLMBackendChoice))


def test_unknown_strategy_fails_within_a_second_without_scoring(tmp_path):
    db = tmp_path / "q.db"
    run = tmp_path / "run"  # does not even exist: nothing may be looked at before the choice is checked
    t = time.perf_counter()
    res = CliRunner().invoke(app, ["review", "route", str(db), "--run", str(run), "--strategy", "nosuch"])
    elapsed = time.perf_counter() - t
    assert res.exit_code == 2 and elapsed < 1.0
    assert "nosuch" in res.output and "margin" in res.output and "least_confidence" in res.output
    assert not db.exists()


def test_bad_formats_tasks_and_augmenters_are_rejected_before_any_file(tmp_path):
    runner = CliRunner()
    out = tmp_path / "out.xml"
    res = runner.invoke(app, ["review", "export", str(tmp_path / "q.db"), str(out), "--format", "xml"])
    assert res.exit_code == 2 and "labelstudio" in res.output and not out.exists()
    res = runner.invoke(app, ["review", "import", str(tmp_path / "q.db"), str(out), "--format", "xml"])
    assert res.exit_code == 2 and "argilla" in res.output and not (tmp_path / "q.db").exists()
    res = runner.invoke(app, ["review", "route", str(tmp_path / "q.db"), "--task", "images"])
    assert res.exit_code == 2 and "response" in res.output
    res = runner.invoke(app, ["augment", "--augmenter", "nosuch", "--input", "x.jsonl", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 2 and "llm-rewrite" in res.output and list(tmp_path.iterdir()) == []
    res = runner.invoke(app, ["augment", "--augmenter", "llm-rewrite", "--backend", "vllm", "--input", "x.jsonl"])
    assert res.exit_code == 2 and "openai" in res.output


def test_help_lists_the_choices():
    runner = CliRunner()
    route_help = runner.invoke(app, ["review", "route", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"}).output
    assert "head_disagreement" in route_help and "apm_instability" in route_help
    wide = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}
    assert "labelstudio" in runner.invoke(app, ["review", "export", "--help"], env=wide).output
    assert "llm-backtranslation" in runner.invoke(app, ["augment", "--help"], env=wide).output


def test_task_is_a_choice_for_train_and_data_inspect(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    t = time.perf_counter()
    res = runner.invoke(app, ["train", "--task", "images", "--output-dir", str(run)])
    assert res.exit_code == 2 and time.perf_counter() - t < 1.0
    assert "images" in res.output and "prompt" in res.output and "response" in res.output and not run.exists()
    res = runner.invoke(app, ["data", "inspect", str(tmp_path / "x.jsonl"), "--task", "images"])
    assert res.exit_code == 2 and "response" in res.output
    wide = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}
    for command in (["train", "--help"], ["data", "inspect", "--help"]):
        assert "prompt|response" in runner.invoke(app, command, env=wide).output, command
