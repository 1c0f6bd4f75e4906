"""The deployment protocol inside a run: evaluation halves in the suite, deployment halves in the pool."""

import pytest
from pydantic import ValidationError

from guardmatch.config import TrainConfig
from guardmatch.data.example import Task
from guardmatch.training.run import prepare_data


def _config(shared_data, tmp_path, **data):
    return TrainConfig.model_validate({
        "output_dir": str(tmp_path / "run"), "seed": 0,
        "data": {"train": "wildguardtrain", "data_dir": str(shared_data), "allow_hub": False, "labels": 200,
                 "suite": "prompt", **data}})


def test_pool_is_the_deployment_halves_and_the_suite_scores_the_evaluation_halves(shared_data, tmp_path):
    cfg = _config(shared_data, tmp_path, deployment_sets=["xstest"], deployment_pool=True, in_source_pool=False)
    prep = prepare_data(cfg)
    assert list(prep.suite) == ["wildguardtest", "oaimod", "xstest@eval", "aegis"]
    split = prep.deployment["xstest"]
    assert {ex.id for ex in prep.pool} == {ex.id for ex in split.pool}
    assert all(ex.label is None and "hidden_label" not in ex.metadata for ex in prep.pool)
    pool_keys = {ex.content_hash(Task.PROMPT) for ex in prep.pool}
    assert not pool_keys & {ex.content_hash(Task.PROMPT) for ex in prep.suite["xstest@eval"]}
    assert [ex.id for ex in prep.suite["xstest@eval"]] == [ex.id for ex in split.evaluation]
    both = prepare_data(_config(shared_data, tmp_path, deployment_sets=["xstest"], deployment_pool=True))
    assert len(both.pool) == len(prep.pool) + len(prepare_data(_config(shared_data, tmp_path)).pool)


def test_deployment_settings_are_checked_before_any_data(tmp_path):
    with pytest.raises(ValidationError, match="deployment_pool needs deployment_sets"):
        TrainConfig.model_validate({"output_dir": str(tmp_path), "data": {"deployment_pool": True}})
    with pytest.raises(ValidationError, match="external sets are oaimod, xstest, aegis"):
        TrainConfig.model_validate({"output_dir": str(tmp_path), "data": {"deployment_sets": ["wildguardtest"]}})
