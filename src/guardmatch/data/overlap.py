"""Train/test contamination: the same classifier input in a training source and a test set."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

from guardmatch.data.example import Example, Task, text_hash
from guardmatch.data.validation import Problem

_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: trivial re-spellings count as the same text."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def overlap_key(example: Example, task: Task | str) -> str:
    """Hash of the normalized text the classifier sees for ``task`` (prompt, or prompt+response)."""
    task = Task(task)
    if task is Task.PROMPT:
        return text_hash(normalize_text(example.prompt))
    return text_hash(normalize_text(example.prompt) + "\n\n" + normalize_text(example.response or ""))


def check_overlap(
    train_examples: Iterable[Example],
    test_sets: Mapping[str, Sequence[Example]],
    task: Task | str,
    *,
    max_ids: int = 5,
) -> list[Problem]:
    """One error :class:`Problem` per test example whose normalized input also occurs in training.

    ``Problem.file`` is the test set's name, ``field`` what was compared, and the message names
    the test id and the training id(s) with the same text.
    """
    task = Task(task)
    where = "prompt" if task is Task.PROMPT else "prompt+response"
    train_ids: dict[str, list[str]] = defaultdict(list)
    for ex in train_examples:
        train_ids[overlap_key(ex, task)].append(ex.id)
    problems: list[Problem] = []
    for name, examples in test_sets.items():
        for ex in examples:
            hits = train_ids.get(overlap_key(ex, task))
            if not hits:
                continue
            more = f" and {len(hits) - max_ids} more" if len(hits) > max_ids else ""
            shown = ", ".join(repr(i) for i in hits[:max_ids]) + more
            problems.append(Problem(name, None, where, (
                f"train/test overlap: test example {ex.id!r} in {name!r} has the same {where} text as "
                f"training example(s) {shown}")))
    return problems


def remove_overlap(
    train_examples: Sequence[Example], test_sets: Mapping[str, Sequence[Example]], task: Task | str
) -> tuple[list[Example], int]:
    """Training examples whose input occurs in none of the test sets, and how many were removed."""
    task = Task(task)
    test_keys = {overlap_key(ex, task) for examples in test_sets.values() for ex in examples}
    kept = [ex for ex in train_examples if overlap_key(ex, task) not in test_keys]
    return kept, len(train_examples) - len(kept)
