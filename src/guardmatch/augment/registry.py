"""Augmenters by name (:data:`AUGMENTERS`): ``eda``, ``backtranslation``, ``llm-backtranslation``, ``llm-rewrite``."""

from __future__ import annotations

from typing import Any

from guardmatch.augment.base import Augmenter
from guardmatch.registry import Registry

AUGMENTERS: Registry[Augmenter] = Registry("augmenter", modules=(
    "guardmatch.augment.eda", "guardmatch.augment.backtranslation", "guardmatch.augment.llm_rewrite"))
"""Every augmenter by name (its module is imported on the first lookup)."""


def build_augmenter(name: str, config: dict[str, Any] | None = None) -> Augmenter:
    """An augmenter from its name and a (nested) config dict, validated by its pydantic config."""
    cls = AUGMENTERS.get(name)
    return cls(cls.config_cls.model_validate(config or {}))
