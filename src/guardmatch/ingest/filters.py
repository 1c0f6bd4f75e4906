"""Length and language filters.

Language identification uses ``py3langid`` (a maintained, offline fork of langid.py: a small
naive-Bayes model shipped inside the wheel, numpy only, deterministic, ~0.1 ms a text).
``langdetect`` is non-deterministic and slower; ``lingua`` is more accurate on short texts but
loads hundreds of MB of models; fastText-based detectors download their model at run time.
"""

from __future__ import annotations

from functools import lru_cache

from guardmatch.ingest.config import IngestFilterConfig


@lru_cache(maxsize=1)
def _identifier():
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier  # model: numpy .npz.xz, no pickle
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("the language filter needs py3langid: pip install 'guardmatch[ingest]'") from exc
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> tuple[str, float]:
    """``(ISO 639-1 code, probability)`` of ``text``."""
    lang, prob = _identifier().classify(text)
    return lang, float(prob)


class TextFilter:
    """Returns why a text is dropped (``too_short``, ``too_long``, ``language:xx``) or None."""

    def __init__(self, config: IngestFilterConfig | None = None):
        self.config = config or IngestFilterConfig()
        self.languages = {lang.lower() for lang in self.config.languages} if self.config.languages else None

    def reason(self, text: str) -> str | None:
        n = len(text.strip())
        if n < self.config.min_chars:
            return "too_short"
        if n > self.config.max_chars:
            return "too_long"
        if self.languages and n >= self.config.lang_min_chars:
            lang, _ = detect_language(text)
            if lang not in self.languages:
                return f"language:{lang}"
        return None
