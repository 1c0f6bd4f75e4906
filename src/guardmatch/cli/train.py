"""``guardmatch train``, ``evaluate`` and ``predict``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence, cast

import typer

from guardmatch.cli.common import console, friendly_errors, parse_assignments, print_json, stdout
from guardmatch.data.example import Example, Task
from guardmatch.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np


def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML run config (flags override it)"),
    algorithm: Optional[str] = typer.Option(None, help="supervised | fixmatch | marginmatch | multimatch"),
    labels: Optional[str] = typer.Option(None, help="labeled budget: a count (200, 2000) or 'all'"),
    seed: Optional[int] = typer.Option(None, help="seed (also draws the labeled subset)"),
    task: Optional[Task] = typer.Option(None, help="which text is classified (default: the config's, else prompt)"),
    train_source: Optional[str] = typer.Option(None, "--train", help="dataset name or file to draw labels from"),
    encoder: Optional[str] = typer.Option(None, help="encoder alias (minilm, deberta-v3-base), Hub id or path"),
    views: Optional[str] = typer.Option(None, help="augmentation cache with strong views (SSL algorithms)"),
    max_steps: Optional[int] = typer.Option(None, help="training steps"),
    batch_size: Optional[int] = typer.Option(None, help="labeled batch size B"),
    mu: Optional[int] = typer.Option(None, help="unlabeled batch = mu * B"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate"),
    validation: Optional[int] = typer.Option(None, help="validation examples taken from the budget"),
    data_dir: Optional[str] = typer.Option(None, help="local data root (else $GUARDMATCH_DATA_DIR, ../shared/data)"),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="run directory"),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="algorithm parameter KEY=VALUE"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="any config key, dotted: optim.lr=1e-4"),
    resume: Optional[bool] = typer.Option(None, "--resume/--no-resume", help="continue from the last checkpoint"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads"),
) -> None:
    """Train a classifier (supervised or semi-supervised), save it, and evaluate it on the test suite."""
    from guardmatch.config import load_train_config
    from guardmatch.training.run import run_training

    with friendly_errors():
        overrides = {
            "algorithm": algorithm,
            "data.labels": (labels if labels == "all" else int(labels)) if labels else None,
            "seed": seed,
            "data.task": task,
            "data.train": train_source,
            "model.encoder": encoder,
            "views.cache": views,
            "optim.max_steps": max_steps,
            "optim.batch_size": batch_size,
            "optim.mu": mu,
            "optim.lr": lr,
            "data.validation": validation,
            "data.data_dir": data_dir,
            "output_dir": output_dir,
            "resume": resume,
            "threads": threads,
        }
        overrides.update(parse_assignments(set_))
        for key, value in parse_assignments(param, "--param").items():
            overrides[f"algorithm_params.{key}"] = value
        cfg = load_train_config(config, overrides)
        result = run_training(cfg, console=console)
    if not result.is_main:
        return
    console.print(f"[green]model saved to[/] {result.model_dir}")
    if result.evaluation is not None:
        stdout.print(result.evaluation.to_markdown(title=f"{cfg.algorithm}, {cfg.data.labels} labels, seed {cfg.seed}"))


def evaluate(
    model_dir: Path = typer.Argument(..., help="a saved guardmatch model directory (or an ONNX export)"),
    suite: Optional[str] = typer.Option(None, help="prompt | response (default: the model's task)"),
    input_file: Optional[Path] = typer.Option(None, "--input", help="evaluate on this labeled file instead"),
    input_format: Optional[str] = typer.Option(None, "--format", help="format of --input (auto-detected)"),
    by: Optional[str] = typer.Option(None, help="also report F1 per value of this metadata field (with --input)"),
    threshold: Optional[float] = typer.Option(None, help="override the model's threshold"),
    data_dir: Optional[str] = typer.Option(None, help="local data root"),
    out: Optional[Path] = typer.Option(None, help="write evaluation.json / .md / scores here"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    batch_size: int = typer.Option(64, help="inference batch size"),
    hub: Optional[bool] = typer.Option(None, "--hub/--no-hub", help=(
        "read test sets missing locally from the Hub (default: as the model was trained; never with "
        "HF_HUB_OFFLINE=1)")),
) -> None:
    """Evaluate a saved model: harmful-class F1, precision, recall, AUPRC, ECE per test set."""
    from guardmatch.data.loaders import load_file
    from guardmatch.data.suites import load_suite
    from guardmatch.evaluation.report import evaluate_model
    from guardmatch.serving.backends import load_classifier

    with friendly_errors():
        model = load_classifier(model_dir)  # a PyTorch model or an ONNX export
        sets: Mapping[str, Sequence[Example]]
        if input_file is not None:
            result = load_file(input_file, format=input_format, task=model.task)
            sets = {input_file.name: result.examples}
        else:
            allow_hub = hub if hub is not None else bool(model.config.provenance.get("allow_hub", True))
            sets = load_suite(suite or model.task.value, data_dir, allow_hub)
        report = evaluate_model(model, sets, threshold=threshold, batch_size=batch_size, progress=True,
                                name=str(model_dir))
        slices = None
        if by:
            if input_file is None:
                raise ConfigError("--by needs --input FILE whose metadata holds the segment field")
            from guardmatch.evaluation.slices import metrics_by_segment

            examples = sets[input_file.name]
            probs = cast("np.ndarray", report.results[input_file.name].scores)  # evaluate_scores keeps the scores
            slices = metrics_by_segment(examples, probs, report.threshold, by)
        if out:
            report.save(out)
    if as_json:
        data = report.to_dict()
        if slices is not None:
            data["slices"] = _rows(slices)
        print_json(data)
    else:
        stdout.print(report.to_markdown())
        if slices is not None and by is not None:  # slices are only computed with --by
            stdout.print(_slices_markdown(_rows(slices), by))


def _rows(slices) -> list[dict]:
    if hasattr(slices, "to_dict"):
        return slices.to_dict(orient="records")
    return [dict(r) if not hasattr(r, "model_dump") else r.model_dump() for r in slices]


def _slices_markdown(rows: list[dict], by: str) -> str:
    if not rows:
        return f"(no segments for {by!r})"
    cols = list(rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    return f"\nper {by}:\n" + "\n".join(lines)


def predict(
    model_dir: Path = typer.Argument(..., help="a saved guardmatch model directory"),
    input_file: Path = typer.Argument(..., help="jsonl / csv / parquet with prompts (and responses)"),
    out: Path = typer.Option(..., "--out", "-o", help="output jsonl (appended to and resumed if it exists)"),
    input_format: Optional[str] = typer.Option(None, "--format", help="input format (auto-detected)"),
    column: Optional[list[str]] = typer.Option(None, "--column", help="column mapping SRC=DEST, e.g. text=prompt"),
    batch_size: int = typer.Option(64, help="inference batch size"),
    chunk: int = typer.Option(1024, help="rows scored and written per chunk"),
    threshold: Optional[float] = typer.Option(None, help="override the model's threshold"),
    profile: Optional[str] = typer.Option(None, help="use the model's named threshold profile (see `guardmatch "
                                          "profiles list`)"),
) -> None:
    """Score a file: one JSON line per row, {"id", "p_harmful", "flagged", "threshold", "profile", "model"}
    (flagged = p_harmful >= threshold). Resumable: rows already in --out are skipped."""
    from guardmatch.serving.batch import predict_file

    with friendly_errors():
        mapping = {k: str(v) for k, v in parse_assignments(column, "--column").items()} if column else None
        stats = predict_file(model_dir, input_file, out, format=input_format, column_mapping=mapping,
                             batch_size=batch_size, chunk_size=chunk, threshold=threshold, profile=profile)
    console.print(json.dumps(stats))


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(evaluate)
    app.command()(predict)
