"""Named datasets (local files first, the Hugging Face Hub second) and the evaluation suites.

Where local files are looked for, in order (:func:`data_dirs`):

1. the ``data_dir`` argument, when given (then *only* there);
2. otherwise ``$GUARDMATCH_DATA_DIR``, when set;
3. then ``../shared/data`` relative to the current directory;
4. then ``../shared/data`` next to the repository root (source checkouts only).

A dataset whose local file is found in none of them is read from the Hub (``allow_hub=True`` and
the ``datasets`` extra installed); otherwise :class:`DatasetNotFoundError` lists what was tried.
"""

from __future__ import annotations

import os
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from pydantic import BaseModel, ConfigDict

from guardmatch.data.example import Example, Task
from guardmatch.data.loaders import DEFAULT_MAX_TEXT_CHARS, Errors, LoadResult, load_file, load_hub, merge_results
from guardmatch.data.validation import DataError, LoadReport
from guardmatch.errors import ConfigError, GuardmatchError, UnknownNameError

DATA_DIR_ENV = "GUARDMATCH_DATA_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[3]


class HubSource(BaseModel):
    """Where a dataset lives on the Hugging Face Hub, and how its columns map to ours."""

    model_config = ConfigDict(frozen=True)

    repo_id: str
    config: str | None = None
    split: str = "test"
    format: str | None = None
    column_mapping: dict[str, str] | None = None
    label_mapping: dict[Any, Any] | None = None
    note: str = ""


class DatasetSpec(BaseModel):
    """A named dataset: local file(s) under a data dir, an optional Hub source, supported tasks.

    ``parts`` makes a composite (e.g. ``response_pool`` = BeaverTails + SafeRLHF).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    tasks: tuple[Task, ...]
    local: tuple[str, ...] = ()  # candidate relative paths; the first that exists is read
    local_tasks: tuple[Task, ...] | None = None  # tasks the local file has labels for (default: tasks)
    format: str | None = None
    source: str | None = None  # id prefix / Example.source for the local file (default: file stem)
    hub: HubSource | None = None
    parts: tuple[str, ...] = ()
    notes: str = ""

    def supports(self, task: Task | str) -> bool:
        return Task(task) in self.tasks


_P, _R = Task.PROMPT, Task.RESPONSE
_WGM = "allenai/wildguardmix"
_AEGIS2 = "nvidia/Aegis-AI-Content-Safety-Dataset-2.0"

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="wildguardtrain", description="WildGuardMix train (prompt and response harm labels)",
            tasks=(_P, _R), local=("wildguardmix/wildguardtrain_sample.jsonl",), local_tasks=(_P,),
            format="wildguardmix", source="wildguardtrain_sample",
            hub=HubSource(repo_id=_WGM, config="wildguardtrain", split="train", format="wildguardmix"),
            notes="locally a 3,393-prompt label-balanced sample without responses; the Hub has all 86,759 rows",
        ),
        DatasetSpec(
            name="wildguardtest", description="WildGuardTest (prompt and response harm labels)",
            tasks=(_P, _R), local=("wildguardmix/wildguardtest.parquet",), format="wildguardmix",
            source="wildguardtest",
            hub=HubSource(repo_id=_WGM, config="wildguardtest", split="test", format="wildguardmix"),
        ),
        DatasetSpec(
            name="oaimod", description="OpenAI moderation evaluation set (prompts)", tasks=(_P,),
            local=("oaimod/samples-1680.jsonl.gz", "oaimod/samples-1680.jsonl"), format="oaimod", source="oaimod",
        ),
        DatasetSpec(
            name="xstest", description="XSTest v2 prompts (exaggerated-safety probes)", tasks=(_P,),
            local=("xstest/xstest_prompts.csv",), format="xstest_prompts", source="xstest",
        ),
        DatasetSpec(
            name="xstest_response", description="XSTest response-harm set used by WildGuard's evaluation",
            tasks=(_R,), local=("xstest/xstest_response_harm.jsonl",), format="normalized", source="xstest_response",
        ),
        DatasetSpec(
            name="aegis2", description="Aegis 2.0 test split (prompt and response labels)", tasks=(_P, _R),
            local=("aegis2/test.parquet", "aegis2/test.jsonl", "aegis2/test.csv"),
            format="aegis2", source="aegis2",
            hub=HubSource(repo_id=_AEGIS2, split="test", format="aegis2"),
            notes="not available offline; Aegis 1.0 test is the stand-in in the prompt suite",
        ),
        DatasetSpec(
            name="aegis1", description="Aegis 1.0 test prompts (normalized)", tasks=(_P,),
            local=("aegis1/aegis1_test_prompt.jsonl",), format="normalized", source="aegis1",
        ),
        DatasetSpec(
            name="beavertails", description="BeaverTails 30k test subset (prompt+response pairs)", tasks=(_R,),
            local=("response_pool/beavertails_test.jsonl",), format="normalized", source="beavertails",
            hub=HubSource(repo_id="PKU-Alignment/BeaverTails", split="30k_test", format="generic",
                          column_mapping={"is_safe": "label"}, label_mapping={True: 0, False: 1},
                          note="the whole 30k_test split; the local file is a 3,021-pair subset"),
        ),
        DatasetSpec(
            name="saferlhf", description="PKU-SafeRLHF test subset (prompt+response pairs)", tasks=(_R,),
            local=("response_pool/saferlhf_test.jsonl",), format="normalized", source="saferlhf",
        ),
        DatasetSpec(
            name="guardreasoner_prompts", description="GuardReasonerTrain sample (BeaverTails/Aegis/ToxicChat prompts)",
            tasks=(_P,), local=("prompt_pool/guardreasonertrain_other_prompts.jsonl",), format="normalized",
            source="grtrain",
            notes="9 of its prompts also occur in the Aegis 1.0 test set: run check_overlap before training on it",
        ),
        DatasetSpec(
            name="response_pool", description="Response-task training pool: BeaverTails + SafeRLHF", tasks=(_R,),
            parts=("beavertails", "saferlhf"),
        ),
        DatasetSpec(
            name="prompt_pool", description="Extra prompt pool: GuardReasonerTrain sample", tasks=(_P,),
            parts=("guardreasoner_prompts",),
        ),
    )
}


class DatasetNotFoundError(GuardmatchError, FileNotFoundError):
    """A named dataset found neither locally nor on the Hub; the message lists every place tried."""


def data_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The directories searched for local files, in order (see the module docstring)."""
    if data_dir is not None:
        return [Path(data_dir)]
    out: list[Path] = []
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        out.append(Path(env))
    out.append(Path.cwd().parent / "shared" / "data")
    if (_REPO_ROOT / "pyproject.toml").is_file():
        out.append(_REPO_ROOT.parent / "shared" / "data")
    unique: list[Path] = []
    for path in out:
        if path.resolve() not in {p.resolve() for p in unique}:
            unique.append(path)
    return unique


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def find_local(name: str, task: Task | str = Task.PROMPT, data_dir: str | Path | None = None) -> Path | None:
    """The local file of a (non-composite) dataset, or None."""
    spec = get_spec(name)
    if Task(task) not in (spec.local_tasks or spec.tasks):
        return None
    for root in data_dirs(data_dir):
        for rel in spec.local:
            if (root / rel).is_file():
                return root / rel
    return None


def load_dataset(
    name: str,
    task: Task | str = Task.PROMPT,
    data_dir: str | Path | None = None,
    allow_hub: bool = True,
    *,
    errors: Errors = "raise",
    require_label: bool = True,
    max_text_chars: int | None = DEFAULT_MAX_TEXT_CHARS,
) -> LoadResult:
    """Load a named dataset for ``task``: local file first, then the Hub; ``result.origins`` says which."""
    spec = get_spec(name)
    task = Task(task)
    if not spec.supports(task):
        raise ConfigError(f"dataset {name!r} has no {task.value} labels (tasks: {[t.value for t in spec.tasks]})")
    kwargs: dict[str, Any] = {"errors": errors, "require_label": require_label, "max_text_chars": max_text_chars}
    if spec.parts:
        parts = [load_dataset(p, task, data_dir, allow_hub, **kwargs) for p in spec.parts]
        return merge_results(parts, source=name, errors=errors)
    path = find_local(name, task, data_dir)
    if path is not None:
        return load_file(path, format=spec.format, task=task, source=spec.source, **kwargs)
    roots = ", ".join(str(root) for root in data_dirs(data_dir))
    tried = [f"{' | '.join(spec.local)} under {roots}"] if spec.local else []
    if spec.local and task not in (spec.local_tasks or spec.tasks):
        tried = [f"(local files of {name!r} have no {task.value} labels)"]
    if spec.hub is None:
        raise DatasetNotFoundError(f"dataset {name!r} not found; tried: {'; '.join(tried) or 'no local path'}; "
                                   f"it has no Hub source. Set {DATA_DIR_ENV} or pass data_dir.")
    hub = spec.hub
    where = f"hf://{hub.repo_id}" + (f"/{hub.config}" if hub.config else "") + f"[{hub.split}]"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    if not allow_hub or offline:
        why = "HF_HUB_OFFLINE is set" if offline and allow_hub else "allow_hub=False"
        raise DatasetNotFoundError(f"dataset {name!r} not found locally; tried: {'; '.join(tried)}; "
                                   f"the Hub ({where}) was not tried ({why})")
    try:
        return load_hub(hub.repo_id, hub.config, hub.split, format=hub.format, task=task,
                        column_mapping=hub.column_mapping, label_mapping=hub.label_mapping,
                        source=hub.config or name, **kwargs)
    except DataError:
        raise  # the Hub answered, the data is bad: that is not "not found"
    except ImportError as exc:
        reason = str(exc)
    except Exception as exc:  # network, auth, missing split: say what was tried
        reason = f"{type(exc).__name__}: {exc}"
    raise DatasetNotFoundError(f"dataset {name!r} not found; tried: {'; '.join(tried)}; then {where}: {reason}")


# --------------------------------------------------------------------------------------------
# Suites
# --------------------------------------------------------------------------------------------


class SuiteEntry(BaseModel):
    """One test set of a suite: its name and the datasets that may provide it, best first."""

    name: str
    candidates: tuple[str, ...]
    optional: bool = False  # a missing optional entry is noted, not an error


SUITES: dict[str, tuple[Task, tuple[SuiteEntry, ...]]] = {
    "prompt": (_P, (
        SuiteEntry(name="wildguardtest", candidates=("wildguardtest",)),
        SuiteEntry(name="oaimod", candidates=("oaimod",)),
        SuiteEntry(name="xstest", candidates=("xstest",)),
        SuiteEntry(name="aegis", candidates=("aegis2", "aegis1")),
    )),
    "response": (_R, (
        SuiteEntry(name="wildguardtest", candidates=("wildguardtest",)),
        SuiteEntry(name="xstest", candidates=("xstest_response",)),
        SuiteEntry(name="aegis", candidates=("aegis2",), optional=True),
    )),
}


@dataclass
class Suite(AbcMapping):
    """Ordered test sets (name -> examples) for one task, with where each came from.

    ``datasets[name]`` is the dataset used (e.g. ``aegis`` -> ``aegis1``), ``origins[name]`` the
    file(s) or Hub address, ``reports[name]`` the load report; ``notes`` explains substitutions.
    """

    name: str
    task: Task
    sets: dict[str, list[Example]] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)
    origins: dict[str, list[str]] = field(default_factory=dict)
    reports: dict[str, LoadReport] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> list[Example]:
        return self.sets[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sets)

    def __len__(self) -> int:
        return len(self.sets)

    def describe(self) -> dict[str, Any]:
        """JSON-ready: per test set the dataset used, origin, size and label counts."""
        out: dict[str, Any] = {"suite": self.name, "task": self.task.value, "sets": {}, "notes": list(self.notes)}
        for key, examples in self.sets.items():
            out["sets"][key] = {
                "dataset": self.datasets[key],
                "origins": self.origins[key],
                "n": len(examples),
                "harmful": sum(ex.label == 1 for ex in examples),
                "skipped": dict(self.reports[key].skipped),
            }
        return out


def load_suite(
    name: str,
    data_dir: str | Path | None = None,
    allow_hub: bool = True,
    *,
    errors: Errors = "raise",
) -> Suite:
    """Load the ``prompt`` or ``response`` evaluation suite (local files first, then the Hub)."""
    if name not in SUITES:
        raise UnknownNameError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    task, entries = SUITES[name]
    suite = Suite(name=name, task=task)
    for entry in entries:
        failures: list[str] = []
        for candidate in entry.candidates:
            try:
                result = load_dataset(candidate, task, data_dir, allow_hub, errors=errors)
            except DatasetNotFoundError as exc:
                failures.append(str(exc))
                continue
            suite.sets[entry.name] = result.examples
            suite.datasets[entry.name] = candidate
            suite.origins[entry.name] = result.origins
            suite.reports[entry.name] = result.report
            if candidate != entry.candidates[0]:
                suite.notes.append(f"{entry.name}: using {candidate!r} as the stand-in for "
                                   f"{entry.candidates[0]!r}: {failures[0]}")
            break
        else:
            if entry.optional:
                suite.notes.append(f"{entry.name}: skipped, no source available ({' | '.join(failures)})")
                continue
            raise DatasetNotFoundError(f"suite {name!r}: test set {entry.name!r} unavailable:\n  " + "\n  ".join(failures))
    return suite


def dataset_names() -> Sequence[str]:
    return sorted(DATASETS)


def describe_datasets(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The registry as rows: name, tasks, local file found (or None), Hub address."""
    rows = []
    for spec in DATASETS.values():
        local = None if spec.parts else find_local(spec.name, (spec.local_tasks or spec.tasks)[0], data_dir)
        rows.append({
            "name": spec.name,
            "tasks": [t.value for t in spec.tasks],
            "parts": list(spec.parts),
            "local": str(local) if local else None,
            "hub": (f"{spec.hub.repo_id}" + (f"/{spec.hub.config}" if spec.hub.config else "") + f"[{spec.hub.split}]")
            if spec.hub else None,
            "notes": spec.notes,
        })
    return rows


def load_source(
    target: str | Path,
    task: Task | str = Task.PROMPT,
    *,
    format: str | None = None,
    column_mapping: dict[str, str] | None = None,
    data_dir: str | Path | None = None,
    allow_hub: bool = True,
    errors: Errors = "raise",
    require_label: bool = True,
    max_text_chars: int | None = DEFAULT_MAX_TEXT_CHARS,
) -> LoadResult:
    """A file path if it exists, else a named dataset (what ``guardmatch data inspect`` accepts)."""
    path = Path(target)
    kwargs: dict[str, Any] = {"errors": errors, "require_label": require_label, "max_text_chars": max_text_chars}
    if path.is_file():
        return load_file(path, format=format, task=task, column_mapping=column_mapping, **kwargs)
    if str(target) in DATASETS:
        if format is not None or column_mapping:
            raise ConfigError(f"{target!r} is a named dataset: its format is known, drop format/column_mapping")
        return load_dataset(str(target), task, data_dir, allow_hub, **kwargs)
    raise FileNotFoundError(f"{target}: neither a file nor a known dataset (known: {', '.join(sorted(DATASETS))})")
