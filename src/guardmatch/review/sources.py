"""Filling a review store from a training run (its seed labels and unlabeled pool) or from files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardmatch.data.example import Example, Task
from guardmatch.data.splits import Split

ROUND_MARKER = "guardmatch_round.json"


@dataclass
class RunData:
    """What a run trained on: its config, the labeled seed (train + validation) and the pool."""

    run_dir: Path
    config: Any
    seed: list[Example]
    pool: list[Example]
    is_round: bool  # the run is a `guardmatch retrain` round (its labels include human reviews)


def load_run_data(run_dir: str | Path, data_dir: str | None = None) -> RunData:
    """Rebuild a run's split from its ``config.yaml`` and ``split_manifest.json`` (ids and labels checked)."""
    from guardmatch.config import load_train_config
    from guardmatch.training.run import load_configured_source

    run_dir = Path(run_dir)
    for name in ("config.yaml", "split_manifest.json"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir}: not a guardmatch run directory (no {name})")
    config = load_train_config(run_dir / "config.yaml")
    if data_dir:
        config.data.data_dir = data_dir
    task = config.data.task
    examples = load_configured_source(config.data.train, task, config.data).examples
    extras: list[Example] = []
    for extra in config.data.extra_unlabeled:
        extras.extend(load_configured_source(extra, task, config.data, require_label=False).examples)
    split = Split.from_manifest(run_dir / "split_manifest.json", examples, extras)
    return RunData(run_dir=run_dir, config=config, seed=list(split.labeled) + list(split.validation),
                   pool=list(split.unlabeled), is_round=(run_dir / ROUND_MARKER).is_file())


def resolve_source_path(spec: str, task: Task | str, data_dir: str | None = None) -> Path | None:
    """The local file behind a dataset name or path (for the derived-data registry), if any."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    try:
        from guardmatch.data.suites import find_local

        return find_local(spec, task, data_dir)
    except (KeyError, FileNotFoundError, ValueError):
        return None


def config_yaml(config: Any) -> str:
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def round_marker(output_dir: Path, info: dict[str, Any]) -> None:
    (output_dir / ROUND_MARKER).write_text(json.dumps(info, indent=2, default=str))
