"""``guardmatch data shift``: does the unlabeled pool cover what the model will be tested on?"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, TypedDict

import typer

from guardmatch.cli.common import console, friendly_errors
from guardmatch.cli.data import data_app
from guardmatch.data.example import Task
from guardmatch.errors import ConfigError


class _SourceOptions(TypedDict):
    """The ``load_source`` keywords shared by the seed, pool and test sources."""

    data_dir: str | None
    allow_hub: bool


@data_app.command("shift")
def shift(
    seed_source: str = typer.Option(..., "--seed-source", "-s", help="labeled seed: dataset name or file"),
    pool: Optional[list[str]] = typer.Option(None, "--pool", "-p", help="unlabeled pool: dataset name or file "
                                             "(repeatable; label-free files such as `guardmatch ingest` output work)"),
    suite: Optional[str] = typer.Option("auto", help="test suite compared too: prompt, response, auto (the task's), none"),
    test: Optional[list[str]] = typer.Option(None, "--test", help="extra labeled test set: dataset name or file"),
    task: Task = typer.Option(Task.PROMPT, "--task", "-t", help="prompt | response"),
    labels: Optional[str] = typer.Option(
        None, help="draw the labeled seed as training would (a count, e.g. 200); the rest of the seed source "
        "becomes the 'in-source' pool row. Default: the whole seed source is the seed"),
    split_seed: int = typer.Option(0, help="seed of that draw (same as `train --seed`)"),
    encoder: str = typer.Option("minilm", help="embedding encoder alias/path, or a saved guardmatch model dir"),
    max_length: int = typer.Option(128, help="encoder max tokens (128 shares the frozen-grid cache for prompts)"),
    max_per_set: int = typer.Option(1000, min=10, help="examples sampled per set for the tests"),
    permutations: int = typer.Option(200, min=0, help="MMD permutations for the p-value (0: none)"),
    random_seed: int = typer.Option(0, help="seed of the sampling and the tests"),
    cache_dir: Optional[Path] = typer.Option(None, help="embedding cache root (default: $GUARDMATCH_CACHE_DIR)"),
    data_dir: Optional[str] = typer.Option(None, help="local data root"),
    hub: bool = typer.Option(True, "--hub/--no-hub", help="fall back to the Hugging Face Hub for named datasets"),
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
    out: Optional[Path] = typer.Option(None, help="also write shift.md and shift.json here"),
) -> None:
    """Distribution shift of the pool and each test set against the labeled seed.

    MMD (RBF kernel, median heuristic, permutation p-value) and a classifier two-sample test on
    MiniLM sentence embeddings, nearest-neighbour coverage, length and style statistics.
    """
    from guardmatch.data.splits import Budget, make_split
    from guardmatch.data.suites import load_source, load_suite
    from guardmatch.evaluation.shift import Embedder, TextSet, shift_report

    with friendly_errors():
        kwargs: _SourceOptions = {"data_dir": data_dir, "allow_hub": hub}
        seed_examples = load_source(seed_source, task, **kwargs).examples
        sets: list[TextSet] = []
        seed_name = Path(seed_source).name
        if labels is not None:
            budget: Budget = "all" if labels == "all" else int(labels)
            split = make_split(seed_examples, budget, seed=split_seed)
            seed_examples = split.labeled + split.validation
            seed_name = f"{seed_name} ({len(seed_examples)} labels, seed {split_seed})"
            if split.unlabeled:
                sets.append(TextSet(f"{Path(seed_source).name} rest (in-source)", "pool", split.unlabeled))
        for p in pool or []:
            examples = load_source(p, task, require_label=False, **kwargs).examples
            sets.append(TextSet(Path(p).name, "pool", [ex.unlabeled() for ex in examples]))
        suite_name = task.value if suite == "auto" else suite
        if suite_name and suite_name != "none":
            for name, examples in load_suite(suite_name, data_dir, hub).items():
                sets.append(TextSet(name, "test", examples))
        for t in test or []:
            sets.append(TextSet(Path(t).name, "test", load_source(t, task, **kwargs).examples))
        if not sets:
            raise ConfigError("nothing to compare with the seed: give --pool, --test or a --suite")
        embedder = Embedder(task, encoder=encoder, max_length=max_length, cache_dir=cache_dir,
                            progress=sys.stderr.isatty())
        report = shift_report(TextSet(seed_name, "seed", seed_examples), sets, embedder, max_per_set=max_per_set,
                              permutations=permutations, random_seed=random_seed)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "shift.md").write_text(report.to_markdown() + "\n")
        (out / "shift.json").write_text(json.dumps(report.to_dict(), indent=2))
    if json_out:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(report.to_markdown() + "\n")
    if out is not None:
        console.print(f"written to {out}/shift.md and shift.json")


def register(app: typer.Typer) -> None:
    """``shift`` is added to the ``data`` sub-app on import; ``cli.data`` registers the sub-app."""
