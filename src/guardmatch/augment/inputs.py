"""What ``guardmatch augment --input`` accepts: a file or a named dataset, optionally a seeded sample.

Labels are read when present (the report shows them; label-specific prompts and the gold-label
intent check use them only when asked), but a file without labels is fine: the pool is unlabeled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from guardmatch.data.example import Example, Task
from guardmatch.data.suites import find_local, get_spec, load_source


def load_inputs(target: str | Path, task: Task | str, *, format: str | None = None,
                data_dir: str | Path | None = None, allow_hub: bool = True) -> tuple[list[Example], list[Path]]:
    """Examples of ``target`` (file path or dataset name) and the local files they came from."""
    task = Task(task)
    result = load_source(target, task, format=format, data_dir=data_dir, allow_hub=allow_hub,
                         errors="skip", require_label=False)
    path = Path(target)
    if path.is_file():
        files = [path]
    else:
        spec = get_spec(str(target))
        names = spec.parts or (spec.name,)
        files = [p for n in names if (p := find_local(n, task, data_dir)) is not None]
    examples = list(result.examples)
    if task is Task.RESPONSE:
        examples = [ex for ex in examples if ex.response and ex.response.strip()]
    return examples, files


def sample_examples(examples: list[Example], n: int | None, seed: int, task: Task | None = None) -> list[Example]:
    """A seeded random subset of ``n`` examples in their original order (all if n is None or larger).

    With ``task``, the subset holds ``n`` distinct texts for that task: rows that repeat an earlier
    pick's text are replaced by further draws of the same generator (a draw without repeats is the same
    subset as without ``task``).
    """
    if n is None or n >= len(examples):
        return list(examples)
    rng = np.random.default_rng(seed)
    keep = rng.choice(len(examples), n, replace=False)
    if task is not None:
        picked: dict[str, int] = {}
        for i in keep:
            picked.setdefault(examples[i].content_hash(task), int(i))
        rest = np.setdiff1d(np.arange(len(examples)), keep)
        rest = rest[rng.permutation(len(rest))]
        for i in rest:
            if len(picked) >= n:
                break
            picked.setdefault(examples[i].content_hash(task), int(i))
        keep = np.fromiter(picked.values(), dtype=np.int64)
    return [examples[i] for i in np.sort(keep)]
