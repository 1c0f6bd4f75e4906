"""The deployment-split protocol: disjoint by text, stratified, seeded, labels hidden, manifest checked."""

import json

import pytest

from guardmatch.data.deployment import (
    DeploymentSplitError,
    check_manifest,
    deployment_split,
    deployment_splits,
    save_manifests,
)
from guardmatch.data.example import Example, Task
from guardmatch.data.suites import load_dataset


@pytest.fixture(scope="module")
def xstest(shared_data):
    return load_dataset("xstest", Task.PROMPT, shared_data, allow_hub=False).examples


def test_split_is_disjoint_stratified_and_hides_pool_labels(xstest):
    s = deployment_split("xstest", xstest, Task.PROMPT)
    pool_keys = {ex.content_hash(Task.PROMPT) for ex in s.pool}
    eval_keys = {ex.content_hash(Task.PROMPT) for ex in s.evaluation}
    assert not pool_keys & eval_keys
    assert {ex.id for ex in s.pool}.isdisjoint(ex.id for ex in s.evaluation)
    assert len(s.pool) + len(s.evaluation) == len({ex.content_hash(Task.PROMPT) for ex in xstest})
    assert all(ex.label is None for ex in s.pool)
    hidden = s.diagnostic_pool_labels()
    assert set(hidden) == {ex.id for ex in s.pool}
    rate_all = sum(ex.label for ex in xstest) / len(xstest)
    rate_pool = sum(hidden.values()) / len(hidden)
    rate_eval = sum(ex.label for ex in s.evaluation) / len(s.evaluation)
    assert abs(rate_pool - rate_all) < 0.01 and abs(rate_eval - rate_all) < 0.01
    assert abs(len(s.pool) - len(s.evaluation)) <= 2


def test_seeded_and_manifest_round_trip(xstest, tmp_path):
    a, b = deployment_split("xstest", xstest, "prompt"), deployment_split("xstest", xstest, "prompt")
    assert [ex.id for ex in a.pool] == [ex.id for ex in b.pool]
    other = deployment_split("xstest", xstest, "prompt", seed=1)
    assert [ex.id for ex in other.pool] != [ex.id for ex in a.pool]
    path = save_manifests({"xstest": a}, tmp_path / "deployment.json")
    saved = json.loads(path.read_text())["xstest"]
    assert "label" not in json.dumps(saved["pool"]) and saved["pool"]["n"] == len(a.pool)
    check_manifest(b, saved)
    with pytest.raises(DeploymentSplitError, match="differs from its saved manifest"):
        check_manifest(other, saved)


def test_repeated_texts_stay_on_one_side_and_bad_inputs():
    exs = [Example(f"r{i}", f"text number {i % 10}", label=i % 2) for i in range(40)]
    s = deployment_split("dup", exs, Task.PROMPT)
    assert len(s.pool) + len(s.evaluation) == 10
    with pytest.raises(DeploymentSplitError, match="at least 4"):
        deployment_split("tiny", exs[:3], Task.PROMPT)
    assert set(deployment_splits({"xstest": exs, "other": exs}, Task.PROMPT)) == {"xstest"}
