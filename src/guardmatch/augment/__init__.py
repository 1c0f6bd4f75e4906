"""Strong views for SSL, generated once and cached: EDA, backtranslation, intent-preserving LLM rewrite.

Python API::

    from guardmatch.augment import EDAAugmenter, augment, ViewCache
    report = augment(examples, EDAAugmenter(), task="prompt", views=2)
    views = ViewCache.open(report.cache_dir).views_for(examples, "prompt")

CLI: ``guardmatch augment --augmenter llm-rewrite --model qwen1.5b --input wildguardtrain --views 1``.
"""

from guardmatch.augment.base import Augmenter, AugmenterConfig, Draft, ViewRequest
from guardmatch.augment.cache import MissingViewsError, ViewCache, list_caches
from guardmatch.augment.filters import FilterConfig, IntentCheckConfig, QualityFilter
from guardmatch.augment.registry import augmenter_names, build_augmenter
from guardmatch.augment.runner import AugmentReport, augment


def __getattr__(name: str):  # heavy modules on first use only
    if name == "EDAAugmenter":
        from guardmatch.augment.eda import EDAAugmenter

        return EDAAugmenter
    if name in ("MarianBacktranslator", "LLMBacktranslator"):
        from guardmatch.augment import backtranslation

        return getattr(backtranslation, name)
    if name == "LLMRewriteAugmenter":
        from guardmatch.augment.llm_rewrite import LLMRewriteAugmenter

        return LLMRewriteAugmenter
    raise AttributeError(name)


__all__ = ["AugmentReport", "Augmenter", "AugmenterConfig", "Draft", "EDAAugmenter", "FilterConfig",
           "IntentCheckConfig", "LLMBacktranslator", "LLMRewriteAugmenter", "MarianBacktranslator",
           "MissingViewsError", "QualityFilter", "ViewCache", "ViewRequest", "augment", "augmenter_names",
           "build_augmenter", "list_caches"]
