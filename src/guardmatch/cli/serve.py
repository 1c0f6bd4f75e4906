"""``guardmatch serve``, ``guardmatch export onnx`` and ``guardmatch calibrate``: thin layers over
``guardmatch.serving`` and ``guardmatch.calibration``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

import typer

from guardmatch.cli.common import console, friendly_errors, parse_assignments, print_json, stdout
from guardmatch.errors import ConfigError

API_KEY_ENV = "GUARDMATCH_API_KEY"

@contextlib.contextmanager
def _needs_extra(extra: str) -> Iterator[None]:
    """A missing optional dependency: one line naming the extra to install, exit 2."""
    try:
        yield
    except ImportError as exc:
        console.print(f"[bold red]error:[/] {exc} (install it with: pip install 'guardmatch[{extra}]')")
        raise typer.Exit(2) from None


export_app = typer.Typer(name="export", help="Export a model for another runtime (ONNX).", no_args_is_help=True)


def serve(
    prompt_model: Optional[Path] = typer.Option(None, "--prompt-model", help="prompt classifier dir (PyTorch or ONNX export)"),
    response_model: Optional[Path] = typer.Option(None, "--response-model", help="response classifier dir"),
    host: str = typer.Option("127.0.0.1", help="interface to bind (0.0.0.0 for all: put auth in front)"),
    port: int = typer.Option(8000, help="TCP port"),
    max_batch: int = typer.Option(32, help="most texts scored in one micro-batch"),
    max_wait_ms: float = typer.Option(5.0, help="longest a text waits for others to join its batch"),
    max_batch_tokens: Optional[int] = typer.Option(
        None, help="most padded tokens per micro-batch (texts x the longest; default 8 x the model's max_length)"),
    length_lanes: int = typer.Option(4, help="batch texts with texts of similar length (1: one lane)"),
    max_list: int = typer.Option(64, help="most inputs per request (more: 413)"),
    max_chars: int = typer.Option(32_000, help="most characters per text (more: 413)"),
    max_body_bytes: Optional[int] = typer.Option(None, help="largest request body (default: from the limits above)"),
    queue_limit: int = typer.Option(4096, help="most texts waiting; beyond it requests get 503"),
    api_key_file: Optional[Path] = typer.Option(None, help=f"file with the bearer token (else ${API_KEY_ENV}; none: no auth)"),
    threads: Optional[int] = typer.Option(None, help="inference threads (torch / onnxruntime)"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
    keep_alive: float = typer.Option(75.0, help="seconds an idle keep-alive connection stays open"),
    threshold_profile: Optional[str] = typer.Option(
        None, help="the models' threshold profile used when a request sends no X-Guardmatch-Profile header"),
    model_name: Optional[str] = typer.Option(
        None, "--model-name",
        help="model name in responses (the prompt model's, or the only model's; default: its directory name)"),
    response_model_name: Optional[str] = typer.Option(
        None, "--response-model-name", help="the response model's name in responses (default: its directory name)"),
) -> None:
    """Serve OpenAI-compatible /v1/moderations, /v1/classify, /healthz and /metrics."""
    with _needs_extra("serve"):
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        from guardmatch.serving.app import ServerConfig
        from guardmatch.serving.app import serve as run_server
    with friendly_errors(), _needs_extra("onnx"):
        if prompt_model is None and response_model is None:
            raise ConfigError("give --prompt-model DIR (and optionally --response-model DIR)")
        key = api_key_file.read_text().strip() if api_key_file else os.environ.get(API_KEY_ENV) or None
        cfg = ServerConfig(max_batch=max_batch, max_wait_ms=max_wait_ms, max_list_length=max_list,
                           max_input_chars=max_chars, max_body_bytes=max_body_bytes, queue_limit=queue_limit,
                           api_key=key, max_batch_tokens=max_batch_tokens, length_lanes=length_lanes,
                           default_profile=threshold_profile)
        console.print(f"serving on http://{host}:{port} (auth: {'bearer token' if key else 'none'})")
        run_server(prompt_model, response_model, host=host, port=port, config=cfg, threads=threads,
                   log_level=log_level, keep_alive_s=keep_alive, model_name=model_name,
                   response_model_name=response_model_name)


@export_app.command("onnx")
def export_onnx_cmd(
    model_dir: Path = typer.Argument(..., help="a saved guardmatch model directory (PyTorch)"),
    out_dir: Path = typer.Argument(..., help="directory to write model.onnx, tokenizer and config to"),
    quantize: Optional[str] = typer.Option(None, help="int8: dynamic int8 quantization"),
    check: bool = typer.Option(True, "--check/--no-check", help="compare P(harmful) with PyTorch on probe inputs"),
) -> None:
    """Export a model to ONNX (dynamic batch and sequence axes); `predict` and `serve` then use onnxruntime."""
    from guardmatch.serving.onnx import export_onnx

    with friendly_errors(), _needs_extra("onnx"):
        record = export_onnx(model_dir, out_dir, quantize=quantize, check=check)
    console.print(f"[green]exported to[/] {out_dir}")
    print_json(record)


def calibrate(
    model_dir: Path = typer.Argument(..., help="a saved guardmatch model directory (PyTorch or ONNX export)"),
    data: str = typer.Option(..., "--data", help="held-out labeled file or dataset name (never a reported test set)"),
    target: str = typer.Option("f1", help="threshold target: f1 | precision | recall | fpr"),
    value: Optional[float] = typer.Option(None, help="target value: precision/recall floor or FPR ceiling"),
    out: Optional[Path] = typer.Option(None, help="write the calibrated model here (default: in place)"),
    exclude_manifest: Optional[Path] = typer.Option(
        None, help="split manifest whose labeled/validation ids are excluded (default: the run's, when found)"),
    exclude_suite: Optional[str] = typer.Option(
        None, help="drop examples whose text is in this suite's test sets (prompt | response)"),
    limit: Optional[int] = typer.Option(None, help="use at most this many examples (random, --seed)"),
    seed: int = typer.Option(0, help="seed for --limit"),
    temperature: bool = typer.Option(True, "--temperature/--no-temperature", help="fit a temperature (else T=1)"),
    strict: bool = typer.Option(True, "--strict/--best-effort", help="fail when the target cannot be met"),
    data_dir: Optional[str] = typer.Option(None, help="local data root"),
    input_format: Optional[str] = typer.Option(None, "--format", help="format of a --data file (auto-detected)"),
    column: Optional[list[str]] = typer.Option(None, "--column", help="column mapping SRC=DEST"),
    batch_size: int = typer.Option(64, help="inference batch size"),
    as_json: bool = typer.Option(False, "--json", help="print the calibration record as JSON"),
) -> None:
    """Fit temperature scaling and choose a threshold on held-out data; store them in the model's config."""
    from guardmatch.calibration import calibrate_model_dir, find_split_manifest, held_out_examples
    from guardmatch.model import load_config

    with friendly_errors():
        cfg = load_config(model_dir)
        manifest = exclude_manifest
        if manifest is None:
            found = find_split_manifest(model_dir)
            train_source = str(cfg.provenance.get("train_source", ""))
            if found is not None and train_source and train_source == str(data):
                manifest = found
                console.print(f"excluding the training split of {found} (its labeled/validation ids)")
            elif train_source and train_source == str(data):
                console.print(f"[yellow]warning:[/] {data} is the model's training source and no split manifest "
                              "was found: pass --exclude-manifest so training examples are not reused")
        sets = None
        if exclude_suite:
            from guardmatch.data.suites import load_suite

            sets = dict(load_suite(exclude_suite, data_dir).sets)
        mapping = {k: str(v) for k, v in parse_assignments(column, "--column").items()} if column else None
        held = held_out_examples(data, cfg.task, exclude_manifest=manifest, exclude_sets=sets, limit=limit,
                                 seed=seed, data_dir=data_dir, format=input_format, column_mapping=mapping)
        result = calibrate_model_dir(model_dir, held, out_dir=out, target=target, value=value,
                                     temperature=temperature, strict=strict, batch_size=batch_size, progress=True)
    rec = result.record
    if as_json:
        print_json(rec)
        return
    a = rec["achieved"]
    stdout.print(
        f"calibrated on {rec['n']} held-out examples ({rec['positives']} harmful) of {rec['source']}\n"
        f"temperature {rec['temperature']:.4f}; ECE {rec['ece_before']:.4f} -> {rec['ece_after']:.4f}; "
        f"NLL {rec['nll_before']:.4f} -> {rec['nll_after']:.4f}\n"
        f"threshold {rec['threshold']:.4f} for target {rec['target']}"
        + (f"={rec['value']}" if rec["value"] is not None else "")
        + (" [yellow](target not met)[/]" if not rec["met"] else "")
        + f": precision {a['precision']:.3f}, recall {a['recall']:.3f}, F1 {a['f1']:.3f}, FPR {a['fpr']:.3f}\n"
        f"saved to {out or model_dir}"
    )


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(calibrate)
    app.add_typer(export_app, name="export")

