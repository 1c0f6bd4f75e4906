"""Streaming batch prediction: chunked reading with load_file's ids and checks, jsonl/csv/parquet, resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from guardmatch.data.loaders import load_file, load_file_chunks
from guardmatch.data.records import iter_jsonl
from guardmatch.model import GuardClassifier
from guardmatch.serving.batch import predict_file


def _rows(n: int) -> list[dict]:
    return [{"prompt": f"prompt number {i}: " + "word " * (i % 9)} for i in range(n)]


@pytest.fixture()
def jsonl_file(tmp_path):
    path = tmp_path / "input.jsonl"
    lines = [json.dumps(r) for r in _rows(30)]
    lines.insert(11, "{not json")  # a bad line is reported for its row and skipped
    lines.insert(20, json.dumps({"prompt": ""}))  # an empty prompt is skipped too
    path.write_text("\n".join(lines) + "\n")
    return path


def test_chunks_match_load_file(jsonl_file):
    whole = load_file(jsonl_file, require_label=False, errors="skip")
    chunks = list(load_file_chunks(jsonl_file, chunk_size=7))
    assert len(chunks) == 5  # 32 records in chunks of 7
    assert all(len(c.examples) <= 7 for c in chunks)
    assert [e.id for c in chunks for e in c.examples] == [e.id for e in whole.examples]
    assert [e.prompt for c in chunks for e in c.examples] == [e.prompt for e in whole.examples]
    skipped = sum((sum(c.report.skipped.values()) for c in chunks))
    assert skipped == sum(whole.report.skipped.values()) == 2


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_predict_csv_and_parquet_in_chunks(serving_prompt_dir, tmp_path, kind):
    df = pd.DataFrame(_rows(23))
    path = tmp_path / f"input.{kind}"
    df.to_csv(path, index=False) if kind == "csv" else df.to_parquet(path, index=False)
    model = GuardClassifier.from_pretrained(serving_prompt_dir)
    stats = predict_file(model, path, tmp_path / "out.jsonl", chunk_size=5, batch_size=4)
    assert stats["rows"] == 23 and stats["scored_now"] == 23
    got = {r["id"]: r["p_harmful"] for r in iter_jsonl(tmp_path / "out.jsonl")}
    expected = model.score(df["prompt"].tolist())
    ids = [e.id for e in load_file(path, require_label=False).examples]
    assert [got[i] for i in ids] == pytest.approx(list(expected), abs=1e-6)


def test_resume_after_a_kill_mid_write(serving_prompt_dir, jsonl_file, tmp_path):
    out = tmp_path / "scores.jsonl"
    first = predict_file(serving_prompt_dir, jsonl_file, out, chunk_size=7)
    assert first["rows"] == 30 and first["scored_now"] == 30
    assert first["skipped_bad_rows"] and first["problems"]
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:12]) + lines[12][:10])  # 12 complete lines and a torn one
    again = predict_file(serving_prompt_dir, jsonl_file, out, chunk_size=7)
    assert again["already_done"] == 12 and again["scored_now"] == 18
    records = list(iter_jsonl(out))
    assert len(records) == 30 and len({r["id"] for r in records}) == 30
