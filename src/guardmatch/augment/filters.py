"""Quality filters for drafted views, and the intent check.

Checks, cheapest first; the first failing check names the rejection reason:

``error``     generation failed (backend error, context overflow)
``empty``     nothing (or almost nothing) left after cleaning
``refusal``   the generator refused or moralised ("I can't help with that") while the source did not
``echo``      the view is the source again (after normalising case, spacing and punctuation)
``length``    view/source length ratio (characters) outside ``[min_length_ratio, max_length_ratio]``
``language``  confidently another language than the source (py3langid)
``intent``    the view does not keep the source's intent: a reference classifier gives it another
              label, or its embedding similarity to the source is below the floor

The intent check is ours, not the paper's. ``mode="embedding"`` (default) compares MiniLM sentence
embeddings; ``mode="classifier"`` needs any object with ``score(prompts, responses=None)``
returning P(harmful): the view must get the same predicted label as the source (label-free; with
``use_labels=True`` the source's *gold* label is used where it has one, never a hidden label).
``either``/``both`` combine the two.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from functools import lru_cache
from typing import Any, Literal, Protocol, Sequence

import numpy as np
from pydantic import Field

from guardmatch.augment.base import Draft, ViewRequest
from guardmatch.config import StrictModel
from guardmatch.data.example import Task
from guardmatch.errors import ConfigError

REASONS = ("error", "empty", "refusal", "echo", "length", "language", "intent")


class ReferenceClassifier(Protocol):
    def score(self, prompts: list[str], responses: list[str] | None = None) -> np.ndarray: ...


class IntentCheckConfig(StrictModel):
    """Does a view keep its source's intent (harmful stays harmful)? By embedding similarity and/or a
    reference classifier."""

    mode: Literal["none", "embedding", "classifier", "either", "both"] = "embedding"
    embedding_model: str = Field("minilm", description="sentence-transformers model: alias, path or Hub id")
    min_similarity: float = Field(0.6, ge=-1, le=1, description="cosine floor between source and view")
    embedding_max_tokens: int = Field(128, ge=8, description="texts are embedded up to this many tokens")
    threshold: float = Field(0.5, gt=0, lt=1, description="P(harmful) threshold of the reference classifier")
    use_labels: bool = Field(False, description="compare with the source's gold label where present")
    classifier: str | None = Field(None, description="name/path of the reference classifier (fingerprint only)")


class ViewFilterConfig(StrictModel):
    """Quality checks on generated strong views (length, echo, language, refusal, intent): which run,
    and their bounds. Part of the cache fingerprint. (Ingest's record filters: ``IngestFilterConfig``.)"""

    enabled: bool = True
    min_chars: int = Field(3, ge=0)
    min_length_ratio: float = Field(0.4, ge=0)
    max_length_ratio: float = Field(2.5, gt=0)
    short_source_chars: int = Field(40, ge=0, description="below this source length only the min/max char bounds apply")
    echo_similarity: float = Field(0.99, gt=0, le=1, description="char similarity at or above which a view is an echo")
    language: bool = True
    language_confidence: float = Field(0.9, ge=0, le=1)
    default_language: str = "en"
    refusal: bool = True
    intent: IntentCheckConfig = Field(default_factory=IntentCheckConfig)


_REFUSAL = re.compile(
    r"^\W*(?:i(?:'m| am)? (?:sorry|afraid)|sorry,|i (?:can(?:no|')t|cannot|won't|will not|am unable|'m unable|"
    r"am not able|'m not able|must decline|do not feel comfortable|don't feel comfortable)|"
    r"as an ai|i apologi[sz]e|unfortunately,? i (?:can|am)|i'm here to help|i understand (?:that|your)|"
    r"it(?:'s| is) (?:not appropriate|important to note|illegal and unethical))"
    r"|\b(?:i can(?:no|')t (?:help|assist|provide|fulfil|comply|create|rewrite|generate)|"
    r"cannot (?:help|assist|provide|fulfil|comply) with|(?:can't|cannot|won't) (?:rewrite|paraphrase) (?:this|that)|"
    r"against my (?:guidelines|programming|policies)|i'm not able to (?:help|assist|provide))",
    re.IGNORECASE,
)


def looks_like_refusal(text: str) -> bool:
    """Refusal / moralising openers and phrases of instruct models."""
    head = text.strip()[:300].replace("\u2019", "'")
    return bool(_REFUSAL.search(head))


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s]", "", text)
    return " ".join(text.split())


def is_echo(source: str, view: str, threshold: float = 0.99) -> bool:
    a, b = _normalise(source), _normalise(view)
    if a == b:
        return True
    if threshold >= 1:
        return False
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= threshold


@lru_cache(maxsize=1)
def _language_identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) from py3langid."""
    lang, prob = _language_identifier().classify(text)
    return str(lang), float(prob)


@lru_cache(maxsize=2)
def _sentence_model(name: str):
    from sentence_transformers import SentenceTransformer

    from guardmatch.encoders import resolve_encoder

    return SentenceTransformer(resolve_encoder(name), device="cpu")


def embedding_similarity(a: Sequence[str], b: Sequence[str], model: str = "minilm", batch_size: int = 64,
                         max_tokens: int = 128) -> np.ndarray:
    """Cosine similarity of paired texts under a sentence-transformers model (each text embedded once)."""
    st = _sentence_model(model)
    st.max_seq_length = max_tokens
    uniq = list(dict.fromkeys([*a, *b]))
    emb = st.encode(uniq, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    pos = {t: i for i, t in enumerate(uniq)}
    ea = emb[[pos[t] for t in a]]
    eb = emb[[pos[t] for t in b]]
    return np.sum(ea * eb, axis=1)


class QualityFilter:
    """Applies :class:`ViewFilterConfig` to a batch of drafts; returns one reason (or None) per draft."""

    def __init__(self, config: ViewFilterConfig | None = None, classifier: ReferenceClassifier | None = None):
        self.config = config or ViewFilterConfig()
        self.classifier = classifier
        mode = self.config.intent.mode
        if self.config.enabled and mode in ("classifier", "either", "both") and classifier is None:
            raise ConfigError(f"intent check mode {mode!r} needs a reference classifier (score)")

    def describe(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    def check(self, requests: Sequence[ViewRequest], drafts: Sequence[Draft]) -> list[str | None]:
        cfg = self.config
        reasons: list[str | None] = [None] * len(drafts)
        for i, (req, draft) in enumerate(zip(requests, drafts)):
            if draft.error is not None:
                reasons[i] = "error"
            elif cfg.enabled:
                reasons[i] = self._cheap(req.source_text, draft.view_text(req))
            # the optionally rewritten prompt of a response view gets the cheap checks too
            if reasons[i] is None and cfg.enabled and req.task is Task.RESPONSE and draft.prompt is not None:
                reasons[i] = self._cheap(req.example.prompt, draft.prompt, echo_ok=True)
        if cfg.enabled and cfg.intent.mode != "none":
            todo = [i for i, r in enumerate(reasons) if r is None]
            if todo:
                keep = self._intent([requests[i] for i in todo], [drafts[i] for i in todo])
                for i, ok in zip(todo, keep):
                    if not ok:
                        reasons[i] = "intent"
        return reasons

    # ---- cheap checks ----------------------------------------------------------------------
    def _cheap(self, source: str, view: str, echo_ok: bool = False) -> str | None:
        cfg = self.config
        stripped = view.strip()
        if len(stripped) < cfg.min_chars or not re.search(r"\w", stripped):
            return "empty"
        if cfg.refusal and looks_like_refusal(stripped) and not looks_like_refusal(source):
            return "refusal"
        if not echo_ok and is_echo(source, stripped, cfg.echo_similarity):
            return "echo"
        n_src, n_view = max(len(source.strip()), 1), len(stripped)
        ratio = n_view / n_src
        if n_src >= cfg.short_source_chars:
            if not cfg.min_length_ratio <= ratio <= cfg.max_length_ratio:
                return "length"
        elif n_view > cfg.max_length_ratio * cfg.short_source_chars:
            return "length"
        if cfg.language and len(stripped) >= 20:
            view_lang, view_p = detect_language(stripped)
            src_lang, src_p = detect_language(source)
            expected = {cfg.default_language}
            if src_p >= cfg.language_confidence:
                expected.add(src_lang)
            if view_p >= cfg.language_confidence and view_lang not in expected:
                return "language"
        return None

    # ---- intent ----------------------------------------------------------------------------
    def _intent(self, requests: Sequence[ViewRequest], drafts: Sequence[Draft]) -> list[bool]:
        icfg = self.config.intent
        by_embedding = by_classifier = None
        if icfg.mode in ("embedding", "either", "both"):
            src = [r.source_text for r in requests]  # the rewritten field (the response for that task)
            views = [d.view_text(r) for r, d in zip(requests, drafts)]
            sims = embedding_similarity(src, views, icfg.embedding_model, max_tokens=icfg.embedding_max_tokens)
            by_embedding = [bool(s >= icfg.min_similarity) for s in sims]
            for d, s in zip(drafts, sims):
                d.metadata["similarity"] = round(float(s), 4)
        if icfg.mode in ("classifier", "either", "both"):
            by_classifier = self._classifier_keeps(requests, drafts)
        if icfg.mode == "embedding":
            return by_embedding  # type: ignore[return-value]
        if icfg.mode == "classifier":
            return by_classifier  # type: ignore[return-value]
        if icfg.mode == "either":
            return [a or b for a, b in zip(by_embedding, by_classifier)]  # type: ignore[arg-type]
        return [a and b for a, b in zip(by_embedding, by_classifier)]  # type: ignore[arg-type]

    def _classifier_keeps(self, requests: Sequence[ViewRequest], drafts: Sequence[Draft]) -> list[bool]:
        icfg = self.config.intent
        task = requests[0].task
        v_prompts = [d.prompt if d.prompt is not None else r.example.prompt for r, d in zip(requests, drafts)]
        v_resp = None
        if task is Task.RESPONSE:
            v_resp = [d.response if d.response is not None else (r.example.response or "") for r, d in zip(requests, drafts)]
        p_view = np.asarray(self.classifier.score(v_prompts, v_resp), dtype=float).reshape(-1)  # type: ignore[union-attr]
        # reference label: the gold label only when allowed and present, else the classifier on the source
        need_src = [i for i, r in enumerate(requests) if not (icfg.use_labels and r.example.label is not None)]
        ref = np.array([r.example.label if r.example.label is not None else -1 for r in requests], dtype=float)
        if not icfg.use_labels:
            ref[:] = -1
        if need_src:
            s_prompts = [requests[i].example.prompt for i in need_src]
            s_resp = [requests[i].example.response or "" for i in need_src] if task is Task.RESPONSE else None
            p_src = np.asarray(self.classifier.score(s_prompts, s_resp), dtype=float).reshape(-1)  # type: ignore[union-attr]
            ref[need_src] = (p_src >= icfg.threshold).astype(float)
        out = []
        for d, p, r in zip(drafts, p_view, ref):
            d.metadata["p_harmful"] = round(float(p), 4)
            out.append(bool((p >= icfg.threshold) == bool(r)))
        return out

