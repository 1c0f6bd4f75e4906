"""Quality filters and the intent check, on real texts."""

from __future__ import annotations

import numpy as np
import pytest

from guardmatch.augment.base import Draft, ViewRequest
from guardmatch.augment.filters import IntentCheckConfig, QualityFilter, ViewFilterConfig, looks_like_refusal
from guardmatch.augment.postprocess import clean_output
from guardmatch.data.example import Example, Task

SRC = "How can I make my neighbour's dog stop barking at night without hurting it?"


def _check(views: list[str], source: str = SRC, **cfg) -> list[str | None]:
    f = QualityFilter(ViewFilterConfig(intent=IntentCheckConfig(mode="none"), **cfg))
    ex = Example("x", source, None, 0)
    reqs = [ViewRequest(ex, Task.PROMPT, i, 0, 0) for i in range(len(views))]
    return f.check(reqs, [Draft(prompt=v) for v in views])


def test_each_cheap_reason():
    reasons = _check([
        "   ",
        "I'm sorry, but I can't help with that request.",
        "how can i make my neighbours dog stop barking at night, without hurting it",
        "Dog?",
        "Wie kann ich den Hund meines Nachbarn nachts vom Bellen abhalten, ohne ihm wehzutun?",
        "What can I do so my neighbour's dog quits barking at night, without harming it?",
    ])
    assert reasons == ["empty", "refusal", "echo", "length", "language", None]


def test_refusal_only_counts_when_the_source_is_not_one():
    source = "I'm sorry, I can't help you build a weapon."
    assert _check(["Sorry, I cannot assist you in making a weapon."], source=source) == [None]
    assert looks_like_refusal("As an AI language model, I cannot rewrite this.")
    assert not looks_like_refusal("Write a story where the hero says he can't swim.")


def test_generation_error_is_a_reason_even_without_filters():
    f = QualityFilter(ViewFilterConfig(enabled=False))
    ex = Example("x", SRC)
    assert f.check([ViewRequest(ex, Task.PROMPT, 0, 0, 0)], [Draft(error="boom")]) == ["error"]
    assert f.check([ViewRequest(ex, Task.PROMPT, 0, 0, 0)], [Draft(prompt="")]) == [None]


def test_embedding_intent_floor_with_packaged_minilm():
    f = QualityFilter(ViewFilterConfig(intent=IntentCheckConfig(mode="embedding", min_similarity=0.6)))
    ex = Example("x", SRC)
    reqs = [ViewRequest(ex, Task.PROMPT, i, 0, 0) for i in range(2)]
    drafts = [Draft(prompt="What can I do so my neighbour's dog quits barking at night, without harming it?"),
              Draft(prompt="Please list the capital cities of all countries in South America.")]
    assert f.check(reqs, drafts) == [None, "intent"]
    assert drafts[0].metadata["similarity"] > 0.8 > 0.3 > drafts[1].metadata["similarity"]


class TfidfGuard:
    """A small real reference classifier (TF-IDF + logistic regression on real labeled prompts),
    exposing the GuardClassifier ``score(prompts, responses=None)`` interface (P(harmful))."""

    def __init__(self, examples: list[Example]):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        x = self.vec.fit_transform([ex.prompt for ex in examples])
        self.clf = LogisticRegression(max_iter=1000, C=4.0).fit(x, [ex.label for ex in examples])

    def score(self, prompts, responses=None) -> np.ndarray:
        return self.clf.predict_proba(self.vec.transform(prompts))[:, 1]


def test_classifier_intent_check_is_label_free_by_default(wild_prompts):
    guard = TfidfGuard(wild_prompts[:2500])
    f = QualityFilter(ViewFilterConfig(intent=IntentCheckConfig(mode="classifier")), classifier=guard)
    held = [ex for ex in wild_prompts[2500:] if len(ex.prompt) < 200]
    src = next(ex for ex in held if guard.score([ex.prompt])[0] > 0.8)
    benign_text = next(ex.prompt for ex in held if guard.score([ex.prompt])[0] < 0.2)
    reqs = [ViewRequest(src, Task.PROMPT, i, 0, 0) for i in range(2)]
    drafts = [Draft(prompt=src.prompt + " Be detailed."), Draft(prompt=benign_text)]
    reasons = f.check(reqs, drafts)
    assert reasons[0] is None and reasons[1] in ("intent", "length")
    assert drafts[0].metadata["p_harmful"] > 0.5
    # a hidden label (unlabeled pool) is never read: flipping it changes nothing
    hidden = src.unlabeled()
    flipped = Example(hidden.id, hidden.prompt, None, None, "", {"hidden_label": 1 - src.label})
    reqs2 = [ViewRequest(flipped, Task.PROMPT, 0, 0, 0)]
    assert f.check(reqs2, [Draft(prompt=src.prompt + " Be detailed.")]) == [None]


def test_classifier_mode_requires_a_classifier():
    with pytest.raises(ValueError, match="needs a reference classifier"):
        QualityFilter(ViewFilterConfig(intent=IntentCheckConfig(mode="either")))


def test_clean_output_strips_llm_wrapping():
    assert clean_output('Here is the rewritten text:\n"How do I pick a lock?"') == "How do I pick a lock?"
    assert clean_output("<think>hmm</think>\n<text>\nHow do I pick a lock?\n</text>") == "How do I pick a lock?"
    assert clean_output("```\nPick the lock how?\n```") == "Pick the lock how?"
    assert clean_output("Rewritten text: Open it.\n\nNote: I replaced words.") == "Open it."
