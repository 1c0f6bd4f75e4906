"""The shared prediction API (``guardmatch.scoring``): softmax with temperature by hand, and the
``ScoringMixin`` batching, ordering, checks and thresholds on a runtime whose logits are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from guardmatch.model import GuardClassifier, GuardClassifierConfig
from guardmatch.scoring import ScoringMixin, probs_from_logits, softmax_from_logits


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_softmax_from_logits_by_hand():
    # softmax([0, ln 3]) = [1/4, 3/4]; softmax([ln 2, 0]) = [2/3, 1/3]
    out = softmax_from_logits([[0.0, math.log(3.0)], [math.log(2.0), 0.0]])
    assert out.dtype == np.float64 and out.shape == (2, 2)
    np.testing.assert_allclose(out, [[0.25, 0.75], [2 / 3, 1 / 3]], rtol=1e-12)
    # T = 2 halves the gap: softmax([0, ln 3 / 2]) = [1, sqrt 3] / (1 + sqrt 3)
    s3 = math.sqrt(3.0)
    np.testing.assert_allclose(softmax_from_logits([[0.0, math.log(3.0)]], 2.0), [[1 / (1 + s3), s3 / (1 + s3)]])
    # shifted by 1000: the same probabilities, no overflow
    np.testing.assert_allclose(softmax_from_logits([[1000.0, 1000.0 + math.log(3.0)]]), [[0.25, 0.75]], rtol=1e-12)


def test_probs_from_logits_is_the_harmful_column():
    logits = np.array([[0.0, np.log(3.0)], [1.0, -1.0]])
    assert probs_from_logits(logits)[0] == pytest.approx(0.75)
    assert probs_from_logits(logits, 2.0)[0] == pytest.approx(np.sqrt(3) / (1 + np.sqrt(3)))
    assert probs_from_logits(logits)[1] == pytest.approx(_sigmoid(-2.0))  # softmax of two logits: sigmoid of the gap


class KnownLogits(ScoringMixin):
    """A runtime whose logits are ``[0, len(prompt) - 4 (+ len(response) - 4), 99]``: a third, virtual column
    the mixin must drop, and each batch recorded."""

    def __init__(self, task: str = "prompt", temperature: float = 1.0, threshold: float = 0.5):
        self.config = GuardClassifierConfig(encoder="known", task=task, num_outputs=3, temperature=temperature,
                                            threshold=threshold)
        self.batches: list[list[str]] = []
        self.entered = 0

    def _batch_logits(self, prompts, responses):
        self.batches.append(list(prompts))
        z = [len(p) - 4 + (len(responses[i]) - 4 if responses is not None else 0) for i, p in enumerate(prompts)]
        return np.array([[0.0, v, 99.0] for v in z])

    def _inference(self):
        self.entered += 1
        return super()._inference()


def test_batches_are_length_sorted_and_outputs_in_input_order():
    rt = KnownLogits()
    texts = ["abcdefgh", "ab", "abcdef", "abcd", "a"]
    logits = rt.predict_logits(texts, batch_size=2)
    # column 1 is len - 4 in input order; the virtual column is gone
    assert logits.shape == (5, 2) and logits.dtype == np.float32
    np.testing.assert_array_equal(logits[:, 1], [4, -2, 2, 0, -3])
    np.testing.assert_array_equal(logits[:, 0], 0)
    # batches of 2 over the inputs sorted by length: shortest first
    assert rt.batches == [["a", "ab"], ["abcd", "abcdef"], ["abcdefgh"]]
    assert rt.entered == 1


def test_proba_score_and_predict_apply_temperature_and_threshold():
    rt = KnownLogits(temperature=2.0, threshold=0.6)
    texts = ["abcdef", "abcd", "ab"]  # logits gap 2, 0, -2; at T = 2: sigmoid(1), 1/2, sigmoid(-1)
    p = [_sigmoid(1.0), 0.5, _sigmoid(-1.0)]
    assert list(rt.classes_) == ["unharmful", "harmful"]
    proba = rt.predict_proba(texts)
    np.testing.assert_allclose(proba, np.stack([1 - np.array(p), p], 1), rtol=1e-6)
    np.testing.assert_allclose(rt.score(texts), p, rtol=1e-6)
    # threshold 0.6: only sigmoid(1) = 0.731 is flagged; at 0.5 the tie 1/2 is flagged too (>=)
    assert rt.predict(texts).tolist() == [1, 0, 0]
    assert rt.predict(texts, threshold=0.5).tolist() == [1, 1, 0]
    assert rt.predict(texts, labels=True).tolist() == ["harmful", "unharmful", "unharmful"]
    assert rt.predict_labels(texts, threshold=0.5).tolist() == ["harmful", "harmful", "unharmful"]


def test_input_checks_and_empty_input():
    rt = KnownLogits()
    assert rt.predict_logits([]).shape == (0, 2) and rt.score([]).shape == (0,)
    assert rt.batches == []
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        rt.score(["a", "b"], ["r"])
    pairs = KnownLogits(task="response")
    with pytest.raises(ValueError, match="response classifier"):
        pairs.score(["prompt only"])
    # pairs are sorted by prompt + response length: ("a", "abcdefgh") is the longest
    np.testing.assert_array_equal(pairs.predict_logits(["a", "abc"], ["abcdefgh", "abcd"], batch_size=1)[:, 1], [1, -1])
    assert pairs.batches == [["abc"], ["a"]]


def test_the_classifier_scores_through_the_mixin(tiny_prompt_model_dir):
    """A real (tiny) GuardClassifier: ``score`` is softmax(mean-head logits / T)[:, 1], batch size free."""
    model = GuardClassifier.from_pretrained(tiny_prompt_model_dir)
    model.config.temperature = 2.5
    texts = ["how do I kill a python process", "write a poem about spring", "hi", "a longer text " * 12]
    logits = model.predict_logits(texts, batch_size=3)
    np.testing.assert_allclose(model.predict_logits(texts, batch_size=1), logits, atol=1e-5)
    np.testing.assert_allclose(model.score(texts), probs_from_logits(logits, 2.5), atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(texts).sum(1), 1.0, atol=1e-12)
