"""Seeded subsets for ``--sample``: same rows every time, and N distinct texts when asked."""

from __future__ import annotations

import numpy as np

from guardmatch.augment.inputs import sample_examples
from guardmatch.data.example import Example, Task


def _examples(texts: list[str]) -> list[Example]:
    return [Example(f"e{i}", t, "same answer", None, "unit") for i, t in enumerate(texts)]


def test_sample_is_seeded_ordered_and_all_when_n_is_large():
    examples = _examples([f"text {i}" for i in range(20)])
    a = sample_examples(examples, 5, seed=3)
    assert [e.id for e in a] == [e.id for e in sample_examples(examples, 5, seed=3)]
    assert [int(e.id[1:]) for e in a] == sorted(int(e.id[1:]) for e in a)
    assert sample_examples(examples, None, 3) == examples and sample_examples(examples, 50, 3) == examples


def test_distinct_sample_replaces_repeats_and_keeps_a_clean_draw():
    # rows 0-9 are five texts twice over (row i and row i + 5 are equal); rows 10-19 are unique
    texts = [f"text {i % 5}" for i in range(10)] + [f"other {i}" for i in range(10)]
    examples = _examples(texts)
    seed, n = 0, 8
    draw = np.random.default_rng(seed).choice(len(examples), n, replace=False)
    plain = sample_examples(examples, n, seed)
    assert sorted(int(e.id[1:]) for e in plain) == sorted(draw.tolist())
    assert len({e.content_hash(Task.PROMPT) for e in plain}) < n  # this draw repeats a text
    distinct = sample_examples(examples, n, seed, Task.PROMPT)
    hashes = [e.content_hash(Task.PROMPT) for e in distinct]
    assert len(distinct) == n and len(set(hashes)) == n
    # every text of the plain draw is still there: repeats are topped up, nothing is swapped out
    assert {e.content_hash(Task.PROMPT) for e in plain} <= set(hashes)
    # a draw with no repeats is the same subset with or without the task
    unique = _examples([f"u {i}" for i in range(20)])
    assert sample_examples(unique, n, seed, Task.PROMPT) == sample_examples(unique, n, seed)
    # the response task compares prompt and response together
    pairs = [Example(f"p{i}", "same prompt", f"answer {i % 3}") for i in range(9)]
    assert len({e.content_hash(Task.RESPONSE) for e in sample_examples(pairs, 3, 1, Task.RESPONSE)}) == 3
