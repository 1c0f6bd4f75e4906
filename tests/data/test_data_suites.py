"""Named datasets, data-dir resolution, suites and the train/test overlap check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardmatch.data import (
    DATASETS,
    DatasetNotFoundError,
    Example,
    check_overlap,
    data_dirs,
    load_dataset,
    load_suite,
    remove_overlap,
)
from guardmatch.data.suites import load_source


def test_named_datasets_resolve_locally(shared_data):
    res = load_dataset("wildguardtrain", "prompt", data_dir=shared_data, allow_hub=False)
    assert res.report.kept == 3393 and res.origins == [str(shared_data / "wildguardmix/wildguardtrain_sample.jsonl")]
    # the local sample ids never collide with the Hub's full config ids
    assert res.examples[0].id == "wildguardtrain_sample-0"
    pool = load_dataset("response_pool", "response", data_dir=shared_data, allow_hub=False)
    assert pool.report.kept == 5021 and len(pool.origins) == 2
    assert pool.label_counts() == {"harmful": 2733, "unharmful": 2288}
    assert len({ex.id for ex in pool.examples}) == 5021


def test_env_var_is_used(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("GUARDMATCH_DATA_DIR", str(shared_data))
    monkeypatch.chdir(tmp_path)
    assert data_dirs()[0] == shared_data
    assert load_dataset("xstest", "prompt", allow_hub=False).report.kept == 450


def test_not_found_lists_what_was_tried(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("wildguardtest", "prompt", data_dir=tmp_path, allow_hub=False)
    msg = str(info.value)
    assert "wildguardmix/wildguardtest.parquet" in msg and str(tmp_path) in msg and "allow_hub=False" in msg
    with pytest.raises(DatasetNotFoundError, match="no response labels"):
        load_dataset("wildguardtrain", "response", data_dir=tmp_path, allow_hub=False)
    with pytest.raises(ValueError, match="no response labels"):
        load_dataset("oaimod", "response", data_dir=tmp_path)
    with pytest.raises(KeyError, match="known:"):
        load_dataset("nope", "prompt")


def test_every_registered_local_file_exists(shared_data):
    """The registry points at the real files (Aegis 2.0 is the one not available offline)."""
    for spec in DATASETS.values():
        if spec.parts or spec.name == "aegis2":
            continue
        assert any((shared_data / rel).is_file() for rel in spec.local), spec.name


def test_prompt_suite_uses_aegis1_stand_in(shared_data):
    suite = load_suite("prompt", data_dir=shared_data, allow_hub=False)
    assert list(suite) == ["wildguardtest", "oaimod", "xstest", "aegis"]
    assert {k: len(v) for k, v in suite.items()} == {"wildguardtest": 1699, "oaimod": 1680, "xstest": 450,
                                                     "aegis": 359}
    assert suite.datasets["aegis"] == "aegis1"
    assert any("stand-in for 'aegis2'" in note for note in suite.notes)
    assert suite.reports["wildguardtest"].skipped["null label"] == 26
    desc = suite.describe()
    assert desc["sets"]["oaimod"]["harmful"] == 522
    json.dumps(desc)


def test_response_suite(shared_data):
    suite = load_suite("response", data_dir=shared_data, allow_hub=False)
    assert {k: len(v) for k, v in suite.items()} == {"wildguardtest": 1709, "xstest": 446}
    assert suite.datasets["xstest"] == "xstest_response"
    assert any(note.startswith("aegis: skipped") for note in suite.notes)


def test_aegis2_found_locally_when_present(shared_data, tmp_path):
    """A local Aegis 2.0 file takes precedence over the stand-in."""
    (tmp_path / "aegis2").mkdir()
    rows = [{"id": str(i), "prompt": f"q{i}", "response": f"a{i}", "prompt_label": "unsafe" if i % 2 else "safe",
             "response_label": "safe"} for i in range(4)]
    (tmp_path / "aegis2" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for link in ("wildguardmix", "oaimod", "xstest"):
        (tmp_path / link).symlink_to(shared_data / link)
    suite = load_suite("prompt", data_dir=tmp_path, allow_hub=False)
    assert suite.datasets["aegis"] == "aegis2" and len(suite["aegis"]) == 4 and not suite.notes
    response = load_suite("response", data_dir=tmp_path, allow_hub=False)
    assert list(response) == ["wildguardtest", "xstest", "aegis"]


def test_load_source_path_or_name(shared_data):
    by_path = load_source(shared_data / "xstest" / "xstest_prompts.csv")
    by_name = load_source("xstest", data_dir=shared_data, allow_hub=False)
    assert [ex.label for ex in by_path.examples] == [ex.label for ex in by_name.examples]
    with pytest.raises(FileNotFoundError, match="neither a file nor a known dataset"):
        load_source("no/such/thing.jsonl")


# ---------------------------------------------------------------------------- overlap


def test_overlap_names_test_set_and_ids():
    train = [Example("t1", "How do I  Make a bomb?", None, 1), Example("t2", "hello", None, 0)]
    tests = {"wgt": [Example("w1", "how do i make a bomb?", None, 1), Example("w2", "unrelated", None, 0)],
             "oai": [Example("o1", "Hello", None, 0)]}
    problems = check_overlap(train, tests, "prompt")
    assert [(p.file, p.severity) for p in problems] == [("wgt", "error"), ("oai", "error")]
    assert "'w1'" in problems[0].message and "'t1'" in problems[0].message
    kept, removed = remove_overlap(train, tests, "prompt")
    assert kept == [] and removed == 2


def test_overlap_response_task_compares_the_pair():
    train = [Example("t", "q", "answer one", 1)]
    tests = {"x": [Example("a", "q", "answer two", 0), Example("b", "q", "Answer  one", 1)]}
    problems = check_overlap(train, tests, "response")
    assert len(problems) == 1 and "'b'" in problems[0].message and problems[0].field == "prompt+response"


def test_real_training_sources_against_test_suites(shared_data):
    """Measured on the real files: the prompt pool shares 9 prompts with Aegis 1.0 test, WildGuardTrain none."""
    prompt_suite = load_suite("prompt", data_dir=shared_data, allow_hub=False)
    wgtrain = load_dataset("wildguardtrain", "prompt", data_dir=shared_data).examples
    assert check_overlap(wgtrain, prompt_suite, "prompt") == []
    grtrain = load_dataset("guardreasoner_prompts", "prompt", data_dir=shared_data).examples
    problems = check_overlap(grtrain, prompt_suite, "prompt")
    assert len(problems) == 9 and {p.file for p in problems} == {"aegis"}
    response_suite = load_suite("response", data_dir=shared_data, allow_hub=False)
    pool = load_dataset("response_pool", "response", data_dir=shared_data).examples
    assert check_overlap(pool, response_suite, "response") == []


def test_data_dirs_explicit_only(tmp_path):
    assert data_dirs(tmp_path) == [Path(tmp_path)]
