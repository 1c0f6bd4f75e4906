"""Loaders: real upstream files (counts from the data README) and one synthetic file per bad input."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from guardmatch.data import (
    DataError,
    Example,
    Task,
    detect_dataset_format,
    load_file,
    load_rows,
    save_jsonl,
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def good_rows(n: int = 3) -> list[dict]:
    return [{"id": f"r{i}", "prompt": f"prompt number {i}", "response": None,
             "label": "harmful" if i % 2 else "unharmful"} for i in range(n)]


def assert_invariant(result) -> None:
    rep = result.report
    assert rep.rows_read == rep.kept + sum(rep.skipped.values())
    assert rep.kept == len(result.examples)


# ---------------------------------------------------------------------------- real files


def test_wildguardtest_prompt_counts(shared_data):
    res = load_file(shared_data / "wildguardmix" / "wildguardtest.parquet", task="prompt")
    assert res.format == "wildguardmix"
    assert res.report.rows_read == 1725
    assert res.report.kept == 1699
    assert res.label_counts() == {"harmful": 754, "unharmful": 945}
    assert dict(res.report.skipped) == {"null label": 26}
    assert res.report.errors == []
    first = res.examples[0]
    assert first.id == "wildguardtest-0" and first.response is None
    assert first.metadata["subcategory"] == "benign"
    assert_invariant(res)


def test_wildguardtest_response_counts(shared_data):
    res = load_file(shared_data / "wildguardmix" / "wildguardtest.parquet", task=Task.RESPONSE)
    assert res.report.kept == 1709
    assert res.label_counts() == {"harmful": 284, "unharmful": 1425}
    assert dict(res.report.skipped) == {"null label": 16}
    assert all(ex.response for ex in res.examples)
    # ids are the stable row index of the file, the same for both tasks
    prompt_ids = {ex.id for ex in load_file(shared_data / "wildguardmix" / "wildguardtest.parquet").examples}
    assert len(prompt_ids & {ex.id for ex in res.examples}) > 1600
    assert_invariant(res)


def test_wildguardtrain_sample(shared_data):
    res = load_file(shared_data / "wildguardmix" / "wildguardtrain_sample.jsonl")
    assert res.format == "wildguardmix"
    assert res.report.kept == 3393
    assert res.label_counts() == {"harmful": 1600, "unharmful": 1793}
    assert res.examples[5].id == "wildguardtrain_sample-5"
    # the sample has no responses: every row is skipped for the response task, with the reason
    resp = load_file(shared_data / "wildguardmix" / "wildguardtrain_sample.jsonl", task="response")
    assert resp.report.kept == 0 and dict(resp.report.skipped) == {"no response": 3393}


def test_oaimod(shared_data):
    res = load_file(shared_data / "oaimod" / "samples-1680.jsonl.gz", source="oaimod")
    assert res.format == "oaimod"
    assert res.report.kept == 1680
    assert res.label_counts() == {"harmful": 522, "unharmful": 1158}
    harmful = [ex for ex in res.examples if ex.label == 1]
    assert all(ex.metadata["categories"] for ex in harmful)
    # a row missing some flag keys is read from the flags it has
    partial = [ex for ex in res.examples if len(ex.metadata["flags"]) < 8]
    assert partial
    with pytest.raises(ValueError, match="no response labels"):
        load_file(shared_data / "oaimod" / "samples-1680.jsonl.gz", task="response")


def test_xstest_prompts(shared_data):
    res = load_file(shared_data / "xstest" / "xstest_prompts.csv", source="xstest")
    assert res.format == "xstest_prompts"
    assert res.report.kept == 450
    assert res.label_counts() == {"harmful": 200, "unharmful": 250}
    first = res.examples[0]
    assert first.id == "xstest-1"
    assert first.metadata == {"type": "homonyms", "focus": "kill", "note": "violence"}


@pytest.mark.parametrize(
    "rel,task,n,harmful",
    [
        ("xstest/xstest_response_harm.jsonl", "response", 446, 78),
        ("aegis1/aegis1_test_prompt.jsonl", "prompt", 359, 232),
        ("response_pool/beavertails_test.jsonl", "response", 3021, 1733),
        ("response_pool/saferlhf_test.jsonl", "response", 2000, 1000),
        ("prompt_pool/guardreasonertrain_other_prompts.jsonl", "prompt", 1498, 862),
    ],
)
def test_normalized_files(shared_data, rel, task, n, harmful):
    res = load_file(shared_data / rel, task=task)
    assert res.format == "normalized"
    assert res.report.kept == n
    assert res.label_counts()["harmful"] == harmful
    assert res.report.errors == []
    assert_invariant(res)


def test_normalized_row_source_is_kept(shared_data):
    res = load_file(shared_data / "prompt_pool" / "guardreasonertrain_other_prompts.jsonl")
    assert {ex.source for ex in res.examples} >= {"ToxicChatTrainR", "BeaverTailsTrainR"}


def test_saferlhf_conflicting_duplicates_are_warnings(shared_data):
    res = load_file(shared_data / "response_pool" / "saferlhf_test.jsonl", task="response")
    warnings = [p for p in res.report.problems if p.severity == "warning"]
    assert len(warnings) == 28
    assert all("conflicting duplicate" in p.message and p.row for p in warnings)


def test_response_labels_are_not_prompt_labels(shared_data):
    path = shared_data / "response_pool" / "beavertails_test.jsonl"
    with pytest.raises(DataError, match="response-harm label"):
        load_file(path, task="prompt")
    # as an unlabeled prompt pool it is fine
    res = load_file(path, task="prompt", require_label=False)
    assert res.report.kept == 3021 and all(ex.label is None for ex in res.examples)


# ---------------------------------------------------------------------------- formats


def test_aegis2_schema(tmp_path):
    rows = [
        {"id": "a1", "prompt": "how do I bake bread", "response": "Mix flour and water.", "prompt_label": "safe",
         "response_label": "safe", "violated_categories": ""},
        {"id": "a2", "prompt": "how do I hurt someone", "response": None, "prompt_label": "unsafe",
         "response_label": None, "violated_categories": "Violence"},
        {"id": "a3", "prompt": "REDACTED", "response": "text", "prompt_label": "unsafe", "response_label": "unsafe",
         "reconstruction_id_if_redacted": 7},
    ]
    for writer in ("jsonl", "parquet", "csv"):
        path = tmp_path / f"aegis.{writer}"
        if writer == "jsonl":
            write_jsonl(path, rows)
        elif writer == "parquet":
            pq.write_table(pa.Table.from_pylist(rows), path)
        else:
            with open(path, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[2]) + ["violated_categories"])
                w.writeheader()
                w.writerows(rows)
        prompt = load_file(path, source="aegis2")
        assert prompt.format == "aegis2"
        assert [(ex.id, ex.label) for ex in prompt.examples] == [("aegis2-a1", 0), ("aegis2-a2", 1)]
        assert dict(prompt.report.skipped) == {"redacted prompt": 1}
        response = load_file(path, task="response", source="aegis2")
        assert [(ex.id, ex.label) for ex in response.examples] == [("aegis2-a1", 0)]
        assert response.report.skipped["no response"] == 1


def test_generic_column_and_label_mapping(tmp_path):
    path = tmp_path / "traffic.csv"
    path.write_text("text,answer,is_bad,channel\nhello there,hi!,no,web\nmake a bomb,no way,yes,api\n",
                    encoding="utf-8")
    res = load_file(path, task="response", column_mapping={"text": "prompt", "answer": "response", "is_bad": "label"},
                    label_mapping={"yes": "harmful", "no": "unharmful"})
    assert res.format == "generic"
    assert [(ex.prompt, ex.response, ex.label) for ex in res.examples] == [
        ("hello there", "hi!", 0), ("make a bomb", "no way", 1)]
    assert res.examples[0].metadata == {"channel": "web"}
    assert res.examples[1].id == "traffic-1"
    with pytest.raises(ValueError, match="column_mapping targets"):
        load_file(path, column_mapping={"text": "body"})


def test_unknown_format_is_reported(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"body": "x", "y": 1}])
    with pytest.raises(DataError, match="unknown format"):
        load_file(path)
    assert detect_dataset_format(["prompt", "S", "H"]) == "oaimod"
    assert detect_dataset_format(["id", "prompt", "label"]) == "normalized"


def test_round_trip_through_save_jsonl(tmp_path):
    examples = [Example("a", "p1", None, 1, "s", {"k": 1}), Example("b", "p2", None, 0, "s")]
    res = load_file(save_jsonl(examples, tmp_path / "out.jsonl"))
    assert res.examples == examples
    assert res.examples[0].metadata == {"k": 1}


def test_load_rows_in_memory():
    res = load_rows([{"prompt": "a", "label": 1}, {"prompt": "b", "label": None}], source="mem", require_label=False)
    assert [(ex.id, ex.label) for ex in res.examples] == [("mem-0", 1), ("mem-1", None)]
    assert res.label_counts() == {"harmful": 1, "unharmful": 0, "unlabeled": 1}


# ---------------------------------------------------------------------------- bad inputs


def test_null_label_skipped_or_kept_unlabeled(tmp_path):
    rows = good_rows(3) + [{"id": "n", "prompt": "no label here", "response": None, "label": None}]
    path = write_jsonl(tmp_path / "null.jsonl", rows)
    res = load_file(path)
    assert res.report.kept == 3 and dict(res.report.skipped) == {"null label": 1}
    unl = load_file(path, require_label=False)
    assert unl.report.kept == 4 and unl.examples[-1].label is None


def test_unknown_label_is_an_error(tmp_path):
    rows = good_rows(2) + [{"id": "m", "prompt": "ambiguous", "label": "maybe"}]
    path = write_jsonl(tmp_path / "maybe.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_file(path)
    (problem,) = info.value.problems
    assert (problem.row, problem.field) == (3, "label") and "maybe" in problem.message
    res = load_file(path, errors="skip")
    assert res.report.kept == 2 and res.report.skipped["unknown label"] == 1
    assert_invariant(res)


def test_empty_text(tmp_path):
    rows = good_rows(2) + [{"id": "e", "prompt": "   ", "label": "harmful"}]
    res = load_file(write_jsonl(tmp_path / "empty.jsonl", rows), errors="skip")
    assert res.report.skipped["empty text"] == 1
    assert res.report.errors[0].row == 3 and res.report.errors[0].field == "prompt"


def test_missing_column_in_header_and_in_row(tmp_path):
    csv_path = tmp_path / "nolabel.csv"
    csv_path.write_text("id,prompt\n1,hello\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing column.*'label'"):
        load_file(csv_path, format="normalized")
    rows = good_rows(2) + [{"id": "x", "label": "harmful"}]
    res = load_file(write_jsonl(tmp_path / "noprompt.jsonl", rows), errors="skip")
    (problem,) = res.report.errors
    assert (problem.row, problem.field) == (3, "prompt") and problem.message.startswith("missing column")


def test_bad_utf8_jsonl_keeps_other_rows(tmp_path):
    path = tmp_path / "bytes.jsonl"
    lines = [json.dumps(r).encode() for r in good_rows(3)]
    lines.insert(1, b'{"id": "bad", "prompt": "caf\xe9 \xff", "label": "harmful"}')
    path.write_bytes(b"\n".join(lines) + b"\n")
    res = load_file(path, errors="skip")
    assert res.report.kept == 3
    (problem,) = res.report.errors
    assert problem.row == 2 and problem.message.startswith("bad UTF-8")


def test_bad_utf8_csv_and_gzip(tmp_path):
    path = tmp_path / "bytes.csv.gz"
    body = b"id,prompt,label\n1,fine,harmful\n2,bro\xffken,unharmful\n3,also fine,unharmful\n"
    path.write_bytes(gzip.compress(body))
    res = load_file(path, format="normalized", errors="skip")
    assert [ex.id for ex in res.examples] == ["1", "3"]
    (problem,) = res.report.errors
    assert (problem.row, problem.field) == (3, "prompt") and "UTF-8" in problem.message


def test_bad_utf8_parquet(tmp_path):
    prompts = pa.array([b"good", b"bad \xff here", b"fine"], pa.binary()).view(pa.string())
    path = tmp_path / "bytes.parquet"
    pq.write_table(pa.table({"prompt": prompts, "label": ["harmful", "unharmful", "harmful"]}), path)
    res = load_file(path, errors="skip")
    assert [ex.prompt for ex in res.examples] == ["good", "fine"]
    assert (res.report.errors[0].row, res.report.errors[0].field) == (2, "prompt")


def test_duplicate_ids(tmp_path):
    rows = good_rows(3) + [{"id": "r1", "prompt": "different text", "label": "harmful"}]
    with pytest.raises(DataError, match="duplicate id.*already used at row 2"):
        load_file(write_jsonl(tmp_path / "dup.jsonl", rows))


def test_oversize_text(tmp_path):
    rows = good_rows(2) + [{"id": "big", "prompt": "x" * 1_000_001, "label": "harmful"}]
    path = write_jsonl(tmp_path / "big.jsonl", rows)
    with pytest.raises(DataError, match="oversize text.*1,000,001 characters"):
        load_file(path)
    assert load_file(path, max_text_chars=2_000_000).report.kept == 3
    assert load_file(path, max_text_chars=None).report.kept == 3


def test_oversize_text_csv(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("id,prompt,label\n1,ok,harmful\n2," + "y" * 1_000_001 + ",unharmful\n", encoding="utf-8")
    res = load_file(path, errors="skip")
    assert res.report.kept == 1 and res.report.skipped["oversize text"] == 1


def test_bad_row_after_good_rows_loses_nothing(tmp_path):
    path = tmp_path / "late.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in good_rows(50)) + "{not json\n" + json.dumps(
        {"id": "z", "prompt": "last", "label": "maybe"}) + "\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_file(path)
    # every problem is reported, not only the first
    assert [(p.row, p.message.split(":")[0]) for p in info.value.problems] == [(51, "bad JSON"), (52, "unknown label")]
    assert info.value.report.kept == 50
    res = load_file(path, errors="skip")
    assert len(res.examples) == 50 and res.report.rows_read == 52
    assert_invariant(res)


def test_oaimod_flags(tmp_path):
    rows = [
        {"prompt": "all zero", "S": 0, "H": 0},
        {"prompt": "one flag", "S": 0, "SH": 1},
        {"prompt": "nothing annotated"},
        {"prompt": "null flags", "S": None, "H": None},
        {"prompt": "bad flag", "S": 2},
    ]
    res = load_file(write_jsonl(tmp_path / "oai.jsonl", rows), format="oaimod", errors="skip")
    assert [ex.label for ex in res.examples] == [0, 1]
    assert res.report.skipped["null label"] == 2 and res.report.skipped["unknown label"] == 1
    assert res.report.errors[0].field == "S"


def test_lone_surrogate_is_a_named_row_problem_and_the_rest_is_read(tmp_path):
    """``"\\ud800"`` is valid JSON but no valid text: the row is skipped with file, row and field."""
    path = tmp_path / "lone.jsonl"
    lines = [json.dumps(r) for r in good_rows(3)]
    lines.insert(1, '{"id": "bad", "prompt": "abc \\ud800 def", "label": "harmful"}')
    lines.insert(3, '{"id": "meta", "prompt": "fine", "label": "harmful", "metadata": {"who": ["x", "\\udfff"]}}')
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    res = load_file(path, errors="skip")
    assert [ex.id for ex in res.examples] == [r["id"] for r in good_rows(3)]
    first, second = res.report.errors
    assert (first.file, first.row, first.field) == (str(path), 2, "prompt")
    assert "lone surrogate U+D800 at character 4" in first.message
    assert (second.row, second.field) == (4, "metadata.who[1]")
    assert res.report.skipped["bad text"] == 2
    with pytest.raises(DataError, match=r"row 2, field 'prompt': bad text"):
        load_file(path)
    json.dumps(res.summary(), ensure_ascii=False).encode("utf-8")  # the report itself always encodes

    # CESU-8 encoded surrogates in a CSV (bytes ED A0 80) are undecodable bytes, named the same way
    csv_path = tmp_path / "cesu.csv"
    csv_path.write_bytes(b"id,prompt,label\n1,fine,harmful\n2,abc \xed\xa0\x80 def,unharmful\n3,ok too,unharmful\n")
    res = load_file(csv_path, format="normalized", errors="skip")
    (problem,) = res.report.errors
    assert (problem.row, problem.field) == (3, "prompt") and "not valid UTF-8" in problem.message
    assert [ex.id for ex in res.examples] == ["1", "3"]

    rows = load_rows([{"prompt": "ok", "label": 1}, {"prompt": "x\ud800", "label": 0}], label="mem", errors="skip")
    assert len(rows.examples) == 1 and (rows.report.errors[0].file, rows.report.errors[0].row) == ("mem", 2)


def test_missing_label_column_is_reported_once_not_per_row(tmp_path):
    rows = [{"id": f"r{i}", "prompt": f"prompt {i}"} for i in range(300)]
    res = load_file(write_jsonl(tmp_path / "nolabel.jsonl", rows), errors="skip")
    (problem,) = res.report.errors
    assert (problem.row, problem.field) == (1, "label")
    assert problem.message.startswith("missing column: 300 rows have no 'label' field (rows 1, 2, 3, 4, 5, ...)")
    assert res.report.skipped["missing column"] == 300
    assert_invariant(res)


def test_semicolon_csv_gets_a_delimiter_hint(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("id;prompt;label\n1;hello;harmful\n2;there;unharmful\n", encoding="utf-8")
    with pytest.raises(DataError, match="semicolon-delimited"):
        load_file(path)
    with pytest.raises(DataError, match="semicolon-delimited"):
        load_file(path, format="normalized")
