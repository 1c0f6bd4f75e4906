"""The augmenter interface: texts in, drafted strong views out.

An :class:`Augmenter` turns a batch of :class:`ViewRequest` (one source example, one view slot,
one attempt) into :class:`Draft` views. It knows nothing about caching, filtering or retries:
:func:`guardmatch.augment.runner.augment` does that around it. Every augmenter has a pydantic
config; the *fingerprint* (name + config + whatever identifies the model files) keys the cache.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from guardmatch.augment.window import SourceWindow
from guardmatch.config import StrictModel
from guardmatch.data.example import Example, Task
from guardmatch.errors import ConfigError

CACHE_FORMAT_VERSION = 1
"""Bumped when a change would make old cached views wrong for the same config."""


class AugmenterConfig(StrictModel):
    """Base of every augmenter config: strict, JSON-serialisable, part of the fingerprint."""

    model_config = ConfigDict(protected_namespaces=())

    seed: int = 0
    window: SourceWindow | None = Field(None, description=(
        "cut each source to the classifier's token window before augmenting (what the encoder reads)"))


@dataclass(frozen=True)
class ViewRequest:
    """Make view number ``view_index`` (attempt ``attempt``) of ``example`` for ``task``."""

    example: Example
    task: Task
    view_index: int
    attempt: int
    seed: int
    source_key: str | None = None  # the uncut text's hash when ``example`` was cut to a window
    window: dict[str, Any] | None = None  # how it was cut (see guardmatch.augment.window)

    @property
    def key(self) -> str:
        return self.source_key or self.example.content_hash(self.task)

    @property
    def source_text(self) -> str:
        """The text the augmenter rewrites: the prompt, or the response for the response task."""
        return self.example.prompt if self.task is Task.PROMPT else (self.example.response or "")


@dataclass
class Draft:
    """One generated view before filtering. ``prompt``/``response`` None = unchanged from the source."""

    prompt: str | None = None
    response: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # generation failed (reason stored as rejection ``error``)

    def view_text(self, request: ViewRequest) -> str:
        """The changed field the quality filters look at."""
        if request.task is Task.PROMPT:
            return self.prompt or ""
        return self.response or ""


def stable_seed(*parts: Any) -> int:
    """A 31-bit seed from any JSON-able parts (same inputs, same seed, on every machine)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def make_view(source: Example, task: Task, prompt: str | None, response: str | None,
              metadata: dict[str, Any]) -> Example:
    """An :class:`Example` copy (same id/label/source) carrying the view text and its metadata."""
    meta = dict(source.metadata)
    meta.update(metadata)
    changes: dict[str, Any] = {"metadata": meta}
    if prompt is not None:
        changes["prompt"] = prompt
    if response is not None and Task(task) is Task.RESPONSE:
        changes["response"] = response
    return replace(source, **changes)


class Augmenter(ABC):
    """Base class: subclasses set ``config_cls`` and implement :meth:`generate`; ``name`` is set by
    ``@AUGMENTERS.register`` (:mod:`guardmatch.augment.registry`)."""

    name: ClassVar[str]
    config_cls: ClassVar[type[AugmenterConfig]] = AugmenterConfig
    tasks: ClassVar[tuple[Task, ...]] = (Task.PROMPT, Task.RESPONSE)

    def __init__(self, config: AugmenterConfig | None = None, **overrides: Any):
        if config is None:
            config = self.config_cls(**overrides)
        elif overrides:
            config = config.model_copy(update=overrides)
        self.config = config

    # ---- identity -------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Extra fingerprint parts (e.g. the resolved model file and size). Override when needed."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The JSON-able description stored in the manifest and hashed into the fingerprint
        (backend settings that only change speed, e.g. threads or the server URL, are left out)."""
        config = self.config.model_dump(mode="json")
        if config.get("window") is None:  # no window: the fingerprint of caches made before it existed
            config.pop("window", None)
        if isinstance(config.get("backend"), dict):
            from guardmatch.augment.backends.base import RUNTIME_FIELDS

            config["backend"] = {k: v for k, v in config["backend"].items() if k not in RUNTIME_FIELDS}
        return {
            "name": self.name,
            "format_version": CACHE_FORMAT_VERSION,
            "config": config,
            "identity": self.identity(),
        }

    def runtime(self) -> dict[str, Any]:
        """The speed-only settings of this run (left out of the fingerprint), logged with each run's
        throughput so views/s can be compared across machines and layouts."""
        backend = self.config.model_dump(mode="json").get("backend")
        if not isinstance(backend, dict):
            return {}
        from guardmatch.augment.backends.base import RUNTIME_FIELDS_BY_KIND

        return {k: backend[k] for k in RUNTIME_FIELDS_BY_KIND.get(backend.get("kind", ""), ()) if k in backend}

    def fingerprint(self) -> str:
        """sha256 of :meth:`describe`: the same augmenter and settings always map to one cache."""
        payload = json.dumps(self.describe(), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    # ---- work -----------------------------------------------------------------------------
    def check_task(self, task: Task) -> None:
        if task not in self.tasks:
            raise ConfigError(f"augmenter {self.name!r} supports tasks {[t.value for t in self.tasks]}, not {task.value}")

    def prepare(self) -> None:
        """Load models (called once before generating). Override in model-backed augmenters."""

    def preferred_batch_size(self) -> int:
        return 16

    @abstractmethod
    def generate(self, requests: list[ViewRequest]) -> list[Draft]:
        """One draft per request, in order. Failures are drafts with ``error`` set, never raised."""

    def close(self) -> None:
        """Free models/servers. Safe to call twice."""

    def __enter__(self) -> "Augmenter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
