"""``guardmatch deployment ...``: a saved model meets its deployment's traffic.

``prior``: the deployment's harmful rate from unlabeled texts (EM or BBSE, with an interval) and the
adapted threshold, optionally stored as a named threshold profile; ``drift``: has a new batch moved
away from the reference pool; ``profiles`` / ``set-profile``: the model's named thresholds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from guardmatch.cli.common import console, friendly_errors, print_json, stdout

deployment_app = typer.Typer(help="Label shift, drift and per-deployment thresholds of a saved model.",
                             no_args_is_help=True)


def _load(model_dir: Path):
    from guardmatch.serving.backends import load_classifier

    return load_classifier(model_dir)


def _unlabeled(target: str, task, data_dir: Optional[str], hub: bool):
    from guardmatch.data.suites import load_source

    return [ex.unlabeled() for ex in load_source(target, task, require_label=False, data_dir=data_dir,
                                                  allow_hub=hub).examples]


@deployment_app.command("prior")
def prior_cmd(
    model_dir: Path = typer.Argument(..., help="a saved guardmatch model directory (PyTorch or ONNX)"),
    unlabeled: str = typer.Argument(..., help="the deployment's unlabeled texts: a file or dataset name"),
    method: str = typer.Option("em", help="em (Saerens et al. 2002, calibrated scores) | bbse (Lipton et al. 2018)"),
    labeled: Optional[str] = typer.Option(None, help="bbse: labeled held-out source data (file or dataset name)"),
    source_prior: Optional[float] = typer.Option(None, help="harmful rate the model is calibrated for "
                                                 "(default: from its calibration or training record)"),
    profile: Optional[str] = typer.Option(None, help="store the adapted threshold as this threshold profile"),
    base_profile: Optional[str] = typer.Option(None, help="adapt this profile's threshold (default: the model's)"),
    bootstrap: int = typer.Option(200, min=0, help="bootstrap resamples of the interval"),
    seed: int = typer.Option(0, help="bootstrap seed"),
    data_dir: Optional[str] = typer.Option(None, help="local data root"),
    hub: bool = typer.Option(True, "--hub/--no-hub", help="fall back to the Hugging Face Hub for named datasets"),
    json_out: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
) -> None:
    """Estimate the deployment's harmful rate (95% interval) and the threshold adapted to it."""
    from guardmatch.data.example import Task
    from guardmatch.data.suites import load_source
    from guardmatch.evaluation.label_shift import deployment_prior
    from guardmatch.model import ThresholdProfile, save_threshold_profile

    with friendly_errors():
        model = _load(model_dir)
        task = Task(model.config.task)
        base = model.config.threshold_for(base_profile)
        examples = _unlabeled(unlabeled, task, data_dir, hub)
        held_out = load_source(labeled, task, data_dir=data_dir, allow_hub=hub).examples if labeled else None
        result = deployment_prior(model, examples, source_prior=source_prior, base_threshold=base,
                                  method=method, labeled=held_out, bootstrap=bootstrap, seed=seed)  # type: ignore[arg-type]
        out = {"model": str(model_dir), "unlabeled": unlabeled, "n": len(examples), **result.to_dict()}
        if profile is not None:
            est = result.estimate
            save_threshold_profile(model_dir, profile, ThresholdProfile(
                threshold=result.adapted_threshold, method=f"label-shift:{est.method}",
                details={"unlabeled": unlabeled, "n": len(examples), "estimated_prior": est.prior,
                         "interval": [est.low, est.high], "source_prior": est.source_prior,
                         "base_threshold": result.base_threshold, "base_profile": base_profile or "default"}))
            out["stored_profile"] = profile
    if json_out:
        print_json(out)
        return
    est = result.estimate
    stdout.print(f"estimated harmful rate {est.prior:.3f} [{est.low:.3f}, {est.high:.3f}] ({est.method}, "
                 f"{len(examples)} texts; the model is calibrated for {est.source_prior:.3f})")
    stdout.print(f"threshold {result.base_threshold:.4f} -> {result.adapted_threshold:.4f}; flagged share "
                 f"{result.flagged_rate_before:.3f} -> {result.flagged_rate_after:.3f}")
    if profile is not None:
        console.print(f"stored as threshold profile {profile!r} in {model_dir}")


@deployment_app.command("drift")
def drift_cmd(
    model_dir: Path = typer.Argument(..., help="a saved guardmatch model directory"),
    batch: str = typer.Option(..., "--batch", "-b", help="the new unlabeled batch: a file or dataset name"),
    reference: str = typer.Option(..., "--reference", "-r", help="the pool the model was trained with"),
    source_prior: Optional[float] = typer.Option(None, help="harmful rate the model is calibrated for"),
    max_per_set: int = typer.Option(1000, min=10, help="texts sampled per side"),
    permutations: int = typer.Option(200, min=0, help="MMD permutations for the p-value"),
    cache_dir: Optional[Path] = typer.Option(None, help="embedding cache root"),
    data_dir: Optional[str] = typer.Option(None, help="local data root"),
    hub: bool = typer.Option(True, "--hub/--no-hub", help="fall back to the Hugging Face Hub for named datasets"),
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
    out: Optional[Path] = typer.Option(None, help="also write drift.md and drift.json here"),
) -> None:
    """Has the deployment moved from the reference pool (texts and harmful rate)? Exit 1 when it has."""
    from guardmatch.data.example import Task
    from guardmatch.evaluation.drift import drift_check
    from guardmatch.evaluation.label_shift import source_prior_of
    from guardmatch.evaluation.shift import Embedder

    with friendly_errors():
        model = _load(model_dir)
        task = Task(model.config.task)
        prior = source_prior_of(model.config, source_prior)
        embedder = Embedder(task, encoder=str(model.config.encoder), max_length=int(model.config.max_length),
                            cache_dir=cache_dir, progress=sys.stderr.isatty())
        report = drift_check(model, _unlabeled(reference, task, data_dir, hub), _unlabeled(batch, task, data_dir, hub),
                             embedder, source_prior=prior, reference_name=Path(reference).name,
                             batch_name=Path(batch).name, max_per_set=max_per_set, permutations=permutations)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "drift.md").write_text(report.to_markdown() + "\n")
        (out / "drift.json").write_text(json.dumps(report.to_dict(), indent=2))
    if json_out:
        print_json(report.to_dict())
    else:
        stdout.print(report.to_markdown())
    raise typer.Exit(1 if report.moved else 0)


@deployment_app.command("profiles")
def profiles_cmd(model_dir: Path = typer.Argument(..., help="a saved guardmatch model directory")) -> None:
    """List the model's threshold profiles and how each was obtained."""
    from guardmatch.model import load_config

    with friendly_errors():
        cfg = load_config(model_dir)
    rows = {"default": {"threshold": cfg.threshold, "method": "the model's own threshold"}}
    rows.update({k: v.model_dump() for k, v in sorted(cfg.threshold_profiles.items())})
    print_json(rows)


@deployment_app.command("set-profile")
def set_profile_cmd(
    model_dir: Path = typer.Argument(..., help="a saved guardmatch model directory"),
    name: str = typer.Argument(..., help="profile name, e.g. a product surface or region"),
    threshold: float = typer.Option(..., min=0.0, max=1.0, help="P(harmful) at or above which it flags"),
    note: Optional[str] = typer.Option(None, help="why (recorded with the profile)"),
) -> None:
    """Store a threshold profile chosen by hand."""
    from guardmatch.model import ThresholdProfile, save_threshold_profile

    with friendly_errors():
        save_threshold_profile(model_dir, name, ThresholdProfile(threshold=threshold, method="manual",
                                                                 details={"note": note} if note else {}))
    console.print(f"threshold profile {name!r} = {threshold} stored in {model_dir}")


def register(app: typer.Typer) -> None:
    app.add_typer(deployment_app, name="deployment")
