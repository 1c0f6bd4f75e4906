"""The one example type guardmatch works with, and the two tasks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Iterable, Sequence

from guardmatch.errors import GuardmatchError

UNHARMFUL = 0
HARMFUL = 1
LABEL_NAMES: tuple[str, str] = ("unharmful", "harmful")

# Upstream spellings of the two classes. Anything else is an unknown label (an error).
_LABEL_ALIASES: dict[str, int] = {
    "harmful": HARMFUL,
    "unsafe": HARMFUL,
    "1": HARMFUL,
    "true": HARMFUL,
    "unharmful": UNHARMFUL,
    "harmless": UNHARMFUL,
    "safe": UNHARMFUL,
    "benign": UNHARMFUL,
    "0": UNHARMFUL,
    "false": UNHARMFUL,
}


class Task(str, Enum):
    """What is classified: the user's prompt, or the model's response to it."""

    PROMPT = "prompt"
    RESPONSE = "response"


class UnknownLabelError(GuardmatchError, ValueError):
    """A label value that is neither a known spelling of harmful/unharmful nor null."""


def is_null(value: Any) -> bool:
    """True for None, NaN and the empty string (how upstream files write a missing label)."""
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN
        return True
    if isinstance(value, str) and value.strip() == "":
        return True
    return False


def parse_label(value: Any) -> int | None:
    """Map an upstream label (``harmful``/``unsafe``/``1``/True ...) to 0/1; null -> None.

    Raises :class:`UnknownLabelError` for any other value: guessing would corrupt training.
    """
    if is_null(value):
        return None
    if isinstance(value, bool):
        return HARMFUL if value else UNHARMFUL
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    key = str(value).strip().lower()
    if key in _LABEL_ALIASES:
        return _LABEL_ALIASES[key]
    raise UnknownLabelError(f"unknown label {value!r} (expected one of harmful/unharmful, unsafe/safe, 1/0)")


def text_hash(text: str) -> str:
    """Stable content hash used for caches, de-duplication and train/test overlap checks."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Example:
    """One prompt (and optionally the response to it) with an optional binary harm label.

    ``label`` is the label *for the task the example was loaded for*: prompt harm for the prompt
    task, response harm for the response task; ``None`` means unlabeled.
    """

    id: str
    prompt: str
    response: str | None = None
    label: int | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def text(self, task: Task | str) -> str:
        """The classified text as one string (prompt, or prompt and response joined)."""
        if Task(task) is Task.PROMPT:
            return self.prompt
        return f"{self.prompt}\n\n{self.response or ''}"

    def content_hash(self, task: Task | str) -> str:
        """Hash of what the classifier sees for ``task``."""
        return text_hash(self.text(task))

    def unlabeled(self) -> "Example":
        """A copy without its label (the label moves to ``metadata['hidden_label']``)."""
        meta = dict(self.metadata)
        if self.label is not None:
            meta["hidden_label"] = self.label
        return replace(self, label=None, metadata=meta)

    @property
    def label_name(self) -> str | None:
        return None if self.label is None else LABEL_NAMES[self.label]

    def to_dict(self) -> dict[str, Any]:
        """The normalized JSON form: ``id, prompt, response, label`` (+ source, metadata)."""
        out: dict[str, Any] = {
            "id": self.id,
            "prompt": self.prompt,
            "response": self.response,
            "label": self.label_name,
            "source": self.source,
        }
        if self.metadata:
            out["metadata"] = self.metadata
        return out


def distinct_texts(examples: Iterable[Example], task: Task | str) -> list[Example]:
    """The first example of each distinct text the classifier sees for ``task`` (content hash)."""
    task = Task(task)
    seen: set[str] = set()
    out = []
    for ex in examples:
        key = ex.content_hash(task)
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def labels_of(examples: Sequence[Example]) -> list[int]:
    """The labels of labeled examples; raises if any example is unlabeled."""
    out = []
    for ex in examples:
        if ex.label is None:
            raise ValueError(f"example {ex.id!r} has no label")
        out.append(ex.label)
    return out


def split_inputs(examples: Iterable[Example], task: Task | str) -> tuple[list[str], list[str] | None]:
    """Prompts and (for the response task) responses, ready for :meth:`GuardClassifier.predict_proba`."""
    examples = list(examples)
    prompts = [ex.prompt for ex in examples]
    if Task(task) is Task.PROMPT:
        return prompts, None
    return prompts, [ex.response or "" for ex in examples]
