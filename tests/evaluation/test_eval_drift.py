"""Drift check on real slices: same-source halves do not move, XSTest against WildGuardTrain does."""

import pytest

from guardmatch.data.example import Example, Task
from guardmatch.data.validation import DataError
from guardmatch.evaluation.drift import drift_check
from guardmatch.evaluation.shift import Embedder
from guardmatch.model import GuardClassifier


@pytest.fixture(scope="module")
def parts(tmp_path_factory, tiny_prompt_model_dir):
    model = GuardClassifier.from_pretrained(tiny_prompt_model_dir)
    emb = Embedder(Task.PROMPT, encoder=str(tiny_prompt_model_dir), cache_dir=tmp_path_factory.mktemp("emb"),
                   progress=False)
    return model, emb


def _unlabeled(exs):
    return [Example(f"u{i}", ex.prompt) for i, ex in enumerate(exs)]


def test_same_source_halves_do_not_move_and_xstest_does(parts, train_slice, shared_data):
    from guardmatch.data.suites import load_dataset

    model, emb = parts
    ref = _unlabeled(train_slice[0::2])
    same = drift_check(model, ref, _unlabeled(train_slice[1::2]), emb, source_prior=0.5, permutations=100,
                       bootstrap=50)
    assert not same.moved, same.reasons
    assert same.text_shift["c2st_auc"] < 0.75 and 0 <= same.prior_batch.low <= same.prior_batch.high <= 1
    xs = _unlabeled(load_dataset("xstest", "prompt", data_dir=shared_data, allow_hub=False).examples[:60])
    moved = drift_check(model, ref, xs, emb, source_prior=0.5, permutations=100, bootstrap=50,
                        reference_name="wildguardtrain", batch_name="xstest")
    assert moved.moved and any("texts differ" in r for r in moved.reasons)
    assert moved.text_shift["p_value"] < 0.01 and moved.text_shift["c2st_auc"] > same.text_shift["c2st_auc"]
    md = moved.to_markdown()
    assert "xstest vs wildguardtrain" in md and "moved" in md
    assert moved.to_dict()["prior_batch"]["method"] == "em"


def test_too_few_texts_is_a_clear_error(parts, train_slice):
    model, emb = parts
    with pytest.raises(DataError, match="reference: 3 text\\(s\\); a drift check needs at least 5"):
        drift_check(model, _unlabeled(train_slice[:3]), _unlabeled(train_slice[3:20]), emb, source_prior=0.5)
