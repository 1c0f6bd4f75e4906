"""Augmenters by name: ``eda``, ``backtranslation``, ``llm-backtranslation``, ``llm-rewrite``."""

from __future__ import annotations

from typing import Any

from guardmatch.augment.base import Augmenter


def _classes() -> dict[str, type[Augmenter]]:
    from guardmatch.augment.backtranslation import LLMBacktranslator, MarianBacktranslator
    from guardmatch.augment.eda import EDAAugmenter
    from guardmatch.augment.llm_rewrite import LLMRewriteAugmenter

    return {c.name: c for c in (EDAAugmenter, MarianBacktranslator, LLMBacktranslator, LLMRewriteAugmenter)}


def augmenter_names() -> list[str]:
    return sorted(_classes())


def build_augmenter(name: str, config: dict[str, Any] | None = None) -> Augmenter:
    """An augmenter from its name and a (nested) config dict, validated by its pydantic config."""
    classes = _classes()
    if name not in classes:
        raise ValueError(f"unknown augmenter {name!r}; known: {', '.join(sorted(classes))}")
    cls = classes[name]
    return cls(cls.config_class.model_validate(config or {}))
