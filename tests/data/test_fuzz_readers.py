"""Fuzzing the file readers (``load_file`` for inspect/train/predict, the ingest reader): hostile
rows become named row problems, and the good rows around them are all read."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardmatch.data.loaders import load_file
from guardmatch.data.records import read_records

FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CHARS = st.one_of(st.characters(), st.characters(categories=["Cs"]),
                  st.sampled_from(['"', "\\", ",", ";", "\n", "\r", "\x00", "\u2028", "\ufeff", "🙂"]))
TEXT = st.text(CHARS, max_size=40)
VALUE = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                     max_leaves=8)
BAD_ROW = st.one_of(
    st.fixed_dictionaries({"prompt": VALUE, "label": VALUE}),
    st.fixed_dictionaries({"prompt": TEXT, "label": st.sampled_from(["harmful", "unharmful"]), "metadata": VALUE}),
    st.dictionaries(TEXT, VALUE, max_size=4),
).map(lambda r: json.dumps(r).encode("ascii"))  # ensure_ascii: lone surrogates as "\ud800" escapes
RAW_LINE = st.binary(max_size=80).map(lambda b: b.replace(b"\n", b" "))


def _good(i: int) -> dict:
    return {"id": f"good-{i}", "prompt": f"a perfectly normal prompt number {i}", "label": "harmful" if i % 2 else "unharmful"}


def _write(path, bad: list[bytes]) -> list[str]:
    """Good rows interleaved with ``bad`` lines; returns the good ids."""
    lines, ids = [], []
    for i, b in enumerate(bad):
        lines.append(json.dumps(_good(i)).encode())
        ids.append(f"good-{i}")
        lines.append(b)
    lines.append(json.dumps(_good(len(bad))).encode())
    ids.append(f"good-{len(bad)}")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return ids


@FUZZ
@given(bad=st.lists(st.one_of(BAD_ROW, RAW_LINE), min_size=1, max_size=8))
def test_load_file_names_every_bad_row_and_keeps_every_good_one(tmp_path_factory, bad):
    path = tmp_path_factory.mktemp("fuzz") / "rows.jsonl"
    ids = _write(path, bad)
    res = load_file(path, format="normalized", errors="skip")
    kept = {ex.id for ex in res.examples}
    assert set(ids) <= kept
    rep = res.report
    assert rep.rows_read == rep.kept + sum(rep.skipped.values())
    for p in rep.problems:
        assert p.file == str(path) and (p.row is None or 1 <= p.row <= 2 * len(bad) + 1)
        str(p).encode("utf-8")  # a problem is always printable
    for ex in res.examples:  # whatever was kept can be tokenized and written back
        (ex.prompt + (ex.response or "") + json.dumps(ex.metadata, ensure_ascii=False)).encode("utf-8")
        ex.id.encode("utf-8")
    json.dumps(res.summary(), ensure_ascii=False).encode("utf-8")


@FUZZ
@given(bad=st.lists(st.one_of(BAD_ROW, RAW_LINE), min_size=1, max_size=8))
def test_ingest_reader_yields_a_record_or_a_named_problem_per_line(tmp_path_factory, bad):
    path = tmp_path_factory.mktemp("fuzz") / "logs.jsonl"
    ids = _write(path, bad)
    got = []
    for rec in read_records(path):
        if rec.problem is not None:
            assert rec.problem.file == str(path) and rec.problem.row == rec.line
            str(rec.problem).encode("utf-8")
        else:
            json.dumps(rec.data, ensure_ascii=False).encode("utf-8")  # storable as is
            got.append(rec.data.get("id"))
    assert set(ids) <= set(got)


def _unquoted(raw: bytes) -> bytes:
    """Hostile bytes, but no CSV structure (a stray quote opens a field that runs to the file's end)."""
    return bytes(b for b in raw if b not in b'"\r\n,')


@FUZZ
@given(cells=st.lists(st.tuples(TEXT, st.binary(max_size=12)), min_size=1, max_size=6))
def test_csv_with_hostile_cells_keeps_the_good_rows(tmp_path_factory, cells):
    path = tmp_path_factory.mktemp("fuzz") / "rows.csv"
    body = [b"id,prompt,label"]
    for i, (text, raw) in enumerate(cells):
        body.append(f"good-{i},a normal prompt {i},harmful".encode())
        quoted = '"' + text.replace('"', '""') + '"'
        body.append(b"bad-%d," % i + quoted.encode("utf-8", "surrogatepass") + _unquoted(raw) + b",unharmful")
    path.write_bytes(b"\n".join(body) + b"\n")
    res = load_file(path, format="normalized", errors="skip")
    kept = {ex.id for ex in res.examples}
    assert {f"good-{i}" for i in range(len(cells))} <= kept
    for ex in res.examples:
        ex.prompt.encode("utf-8")
    rep = res.report
    assert rep.rows_read == rep.kept + sum(rep.skipped.values())
