"""Label-budget splits: sizes, class proportions, determinism, manifests, pools."""

from __future__ import annotations

import json

import pytest

from guardmatch.data import Example, Split, SplitError, allocate, load_dataset, make_split


def toy(n_harmful: int, n_unharmful: int, prefix: str = "x") -> list[Example]:
    out = [Example(f"{prefix}{i}", f"harmful text {i}", None, 1, prefix) for i in range(n_harmful)]
    out += [Example(f"{prefix}{n_harmful + i}", f"benign text {i}", None, 0, prefix) for i in range(n_unharmful)]
    return out


def labels(examples):
    return sum(ex.label == 1 for ex in examples), sum(ex.label == 0 for ex in examples)


def test_allocate_by_hand():
    # 30% / 70% of 10 -> 3 / 7 exactly; 1/3 of 10 -> 3.33 / 6.67 -> largest remainder gives 3 / 7
    assert allocate(10, {1: 30, 0: 70}, "stratified") == {0: 7, 1: 3}
    assert allocate(10, {1: 100, 0: 200}, "stratified") == {0: 7, 1: 3}
    # a rare class still gets one example
    assert allocate(10, {1: 1, 0: 999}, "stratified") == {0: 9, 1: 1}
    assert allocate(11, {1: 50, 0: 60}, "balanced") == {0: 6, 1: 5}
    with pytest.raises(SplitError, match="harmful: needs 5, has 3"):
        allocate(10, {1: 3, 0: 60}, "balanced")


def test_budget_with_validation_counts_against_it():
    split = make_split(toy(400, 600), budget=200, seed=0, validation=40)
    assert (len(split.labeled), len(split.validation), len(split.unlabeled)) == (160, 40, 800)
    assert labels(split.labeled) + labels(split.validation) == (64, 96, 16, 24)
    assert labels(split.labeled) == (64, 96) and labels(split.validation) == (16, 24)
    assert all(ex.label is None and ex.metadata["hidden_label"] in (0, 1) for ex in split.unlabeled)
    ids = [ex.id for ex in split.labeled + split.validation + split.unlabeled]
    assert len(set(ids)) == 1000


def test_balanced():
    split = make_split(toy(300, 700), budget=100, seed=1, strategy="balanced", validation=20)
    assert labels(split.labeled) == (40, 40) and labels(split.validation) == (10, 10)
    with pytest.raises(SplitError, match="too few"):
        make_split(toy(30, 700), budget=100, seed=1, strategy="balanced")


def test_deterministic_for_a_seed_and_different_across_seeds():
    data = toy(500, 500)
    a, b = make_split(data, 50, seed=7), make_split(data, 50, seed=7)
    c = make_split(data, 50, seed=8)
    assert a.manifest.labeled_ids == b.manifest.labeled_ids and a.manifest.content_hash == b.manifest.content_hash
    assert a.manifest.labeled_ids != c.manifest.labeled_ids


def test_budget_errors():
    data = toy(5, 5)
    with pytest.raises(SplitError, match="larger than the 10 labeled"):
        make_split(data, 11, seed=0)
    with pytest.raises(SplitError, match="validation"):
        make_split(data, 4, seed=0, validation=4)
    with pytest.raises(SplitError, match="positive integer"):
        make_split(data, 0, seed=0)
    with pytest.raises(SplitError, match="duplicate id"):
        make_split(data + data[:1], 4, seed=0)


def test_all_labels_everything():
    split = make_split(toy(30, 70), "all", seed=3, validation=10)
    assert len(split.labeled) == 90 and len(split.validation) == 10 and split.unlabeled == []
    assert labels(split.validation) == (3, 7)
    assert split.manifest.budget == "all"


def test_extra_unlabeled_widens_the_pool():
    extra = toy(10, 10, prefix="pool")
    split = make_split(toy(50, 50), 20, seed=0, extra_unlabeled=extra)
    assert len(split.unlabeled) == 80 + 20
    pooled = [ex for ex in split.unlabeled if ex.source == "pool"]
    assert len(pooled) == 20 and sum(ex.metadata["hidden_label"] for ex in pooled) == 10
    assert split.manifest.extra_unlabeled_ids == [ex.id for ex in extra]
    with pytest.raises(SplitError, match="shares 1 id"):
        make_split(toy(50, 50), 20, seed=0, extra_unlabeled=toy(1, 0))


def test_already_unlabeled_examples_go_to_the_pool():
    data = toy(20, 20) + [Example("u1", "traffic", None, None, "x")]
    split = make_split(data, 10, seed=0)
    assert "u1" in split.manifest.unlabeled_ids
    with pytest.raises(SplitError, match="40 labeled"):
        make_split(data, 41, seed=0)


def test_manifest_round_trip(tmp_path):
    data = toy(120, 80)
    split = make_split(data, 50, seed=4, strategy="balanced", validation=10, extra_unlabeled=toy(3, 3, "e"))
    path = split.save_manifest(tmp_path / "split.json")
    saved = json.loads(path.read_text())
    assert saved["seed"] == 4 and saved["strategy"] == "balanced" and saved["budget"] == 50
    again = Split.from_manifest(path, list(reversed(data)), extra_unlabeled=toy(3, 3, "e"))
    assert [ex.id for ex in again.labeled] == [ex.id for ex in split.labeled]
    assert [ex.id for ex in again.validation] == [ex.id for ex in split.validation]
    assert again.unlabeled == split.unlabeled
    with pytest.raises(SplitError, match="not found in the examples"):
        Split.from_manifest(path, data[:-5], extra_unlabeled=toy(3, 3, "e"))
    saved["labeled_ids"][0] = "x999"
    path.write_text(json.dumps(saved))
    with pytest.raises(SplitError, match="was edited"):
        Split.from_manifest(path, data)


def test_manifest_detects_changed_labels(tmp_path):
    data = toy(20, 20)
    split = make_split(data, 10, seed=0)
    flipped = [Example(ex.id, ex.prompt, None, 1 - ex.label, ex.source) for ex in data]
    with pytest.raises(SplitError, match="labels changed"):
        Split.from_manifest(split.manifest, flipped)


def test_real_wildguardtrain_budget_200(shared_data):
    source = load_dataset("wildguardtrain", "prompt", data_dir=shared_data).examples
    split = make_split(source, 200, seed=0, validation=40)
    # stratified: 1,600 / 3,393 harmful = 47.2% -> 94 of 200 (75 train + 19 validation)
    assert labels(split.labeled) == (75, 85) and labels(split.validation) == (19, 21)
    assert len(split.unlabeled) == 3193
    assert split.manifest.source == "wildguardtrain_sample"


def test_stratified_subset_keeps_shares_drops_repeats_and_is_fixed():
    from guardmatch.data.splits import stratified_subset

    # 30 harmful + 70 benign distinct texts, plus 5 rows repeating a benign text
    exs = [Example(f"h{i}", f"harm {i}", None, 1, "u") for i in range(30)]
    exs += [Example(f"b{i}", f"fine {i}", None, 0, "u") for i in range(70)]
    exs += [Example(f"r{i}", "fine 0", None, 0, "u") for i in range(5)]
    sub = stratified_subset(exs, 10, seed=3, task="prompt")
    assert sum(ex.label == 1 for ex in sub) == 3 and sum(ex.label == 0 for ex in sub) == 7  # 30 % of 10
    assert not any(ex.id.startswith("r") for ex in sub)
    assert [ex.id for ex in sub] == [ex.id for ex in exs if ex in sub]  # source order
    assert sub == stratified_subset(exs, 10, seed=3, task="prompt")
    assert sub != stratified_subset(exs, 10, seed=4, task="prompt")
    assert len(stratified_subset(exs, 1000, seed=3, task="prompt")) == 100
