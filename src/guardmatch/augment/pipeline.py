"""One call from settings to a filled cache: what the CLI and the benchmark script use.

``AugmentSettings`` holds everything ``guardmatch augment`` takes; :func:`run_augment` loads the
input, builds augmenter and filters, and runs :func:`guardmatch.augment.runner.augment`.
"""

from __future__ import annotations

import shlex
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from rich.console import Console

from guardmatch.augment.base import Augmenter
from guardmatch.augment.filters import QualityFilter, ReferenceClassifier, ViewFilterConfig
from guardmatch.augment.inputs import load_inputs, sample_examples
from guardmatch.augment.registry import AUGMENTERS, build_augmenter
from guardmatch.augment.runner import AugmentReport, augment
from guardmatch.config import StrictModel, validation_problems
from guardmatch.data.example import Task
from guardmatch.data.validation import DataError


class AugmentSettings(StrictModel):
    """Everything one ``guardmatch augment`` run needs (loadable from YAML)."""

    augmenter: str = "eda"
    input: str
    task: Task = Task.PROMPT
    views: int = Field(1, ge=1)
    sample: int | None = Field(None, ge=1, description="seeded random subset of the input")
    sample_seed: int = 0
    format: str | None = None
    data_dir: str | None = None
    cache_dir: str | None = None
    batch_size: int | None = Field(None, ge=1)
    max_attempts: int = Field(2, ge=1)
    time_limit_s: float | None = Field(None, gt=0)
    augmenter_config: dict[str, Any] = Field(default_factory=dict)
    filters: ViewFilterConfig = Field(default_factory=ViewFilterConfig)
    classifier: str | None = Field(None, description="reference classifier directory for the intent check")

    @model_validator(mode="after")
    def _augmenter_known(self) -> "AugmentSettings":
        """The augmenter and its config are checked here, before any input is read."""
        if self.augmenter not in AUGMENTERS:
            raise ValueError(f"augmenter: unknown augmenter {self.augmenter!r}; "
                             f"available: {', '.join(AUGMENTERS.names())}")
        try:
            AUGMENTERS.get(self.augmenter).config_cls.model_validate(self.augmenter_config)
        except ValidationError as exc:
            raise ValueError(f"augmenter_config of {self.augmenter}: {'; '.join(validation_problems(exc))}") from None
        return self

    def command(self) -> str:
        """The ``guardmatch augment`` command line that reproduces (and resumes) this run."""
        parts = ["guardmatch", "augment", "--augmenter", self.augmenter, "--input", self.input,
                 "--task", self.task.value, "--views", str(self.views)]
        if self.sample is not None:
            parts += ["--sample", str(self.sample), "--sample-seed", str(self.sample_seed)]
        if self.cache_dir:
            parts += ["--cache-dir", self.cache_dir]
        if self.data_dir:
            parts += ["--data-dir", self.data_dir]
        for key, value in _flatten(self.augmenter_config):
            parts += ["--set", f"{key}={_yaml_scalar(value)}"]
        default = ViewFilterConfig().model_dump()
        for key, value in _flatten(self.filters.model_dump(mode="json")):
            if _get(default, key) != value:
                parts += ["--filter", f"{key}={_yaml_scalar(value)}"]
        if self.max_attempts != 2:
            parts += ["--max-attempts", str(self.max_attempts)]
        if self.classifier:
            parts += ["--classifier", self.classifier]
        return " ".join(shlex.quote(p) for p in parts)


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_reference_classifier(path: str) -> ReferenceClassifier:
    """A saved :class:`guardmatch.model.GuardClassifier` for the classifier intent check."""
    from guardmatch.model import GuardClassifier

    return GuardClassifier.from_pretrained(path)


def run_augment(settings: AugmentSettings, *, augmenter: Augmenter | None = None,
                classifier: ReferenceClassifier | None = None, progress: bool = True,
                console: Console | None = None) -> AugmentReport:
    """Load the input, build augmenter and filters, fill the cache; returns the run's report."""
    examples, files = load_inputs(settings.input, settings.task, format=settings.format, data_dir=settings.data_dir)
    if not examples:
        raise DataError(f"{settings.input}: no examples to augment for the {settings.task.value} task")
    examples = sample_examples(examples, settings.sample, settings.sample_seed, settings.task)
    if classifier is None and settings.classifier:
        classifier = load_reference_classifier(settings.classifier)
    quality = QualityFilter(settings.filters, classifier=classifier)
    own = augmenter is None
    augmenter = augmenter or build_augmenter(settings.augmenter, settings.augmenter_config)
    try:
        return augment(examples, augmenter, settings.task, settings.views, cache_root=settings.cache_dir,
                       quality_filter=quality, batch_size=settings.batch_size, max_attempts=settings.max_attempts,
                       progress=progress, console=console, command=settings.command(),
                       sources=files, time_limit_s=settings.time_limit_s)
    finally:
        if own:
            augmenter.close()


IntentMode = Literal["none", "embedding", "classifier", "either", "both"]
