"""Ingest against hostile input: invalid text is a named row problem, never an abort or an empty pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardmatch.ingest.config import IngestConfig
from guardmatch.ingest.pipeline import errors_path, ingest, iter_pool
from guardmatch.storage.crypto import KEY_ENV, AtRestCipher, generate_key
from guardmatch.storage.files import CACHE_ENV
from guardmatch.storage.lineage import manifest_path


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(KEY_ENV, raising=False)


def _chat_line(cid: str, user: str) -> str:
    return json.dumps({"id": cid, "messages": [{"role": "user", "content": user},
                                               {"role": "assistant", "content": "Sure, here you go."}]})


def test_lone_surrogate_row_is_skipped_and_named(tmp_path):
    log = tmp_path / "logs.jsonl"
    lines = [_chat_line("c0", "How do I bake sourdough bread at home?"),
             _chat_line("c1", "abc \\ud800 def, and more words here").replace("\\\\ud800", "\\ud800"),
             _chat_line("c2", "What is the tallest mountain in Europe?")]
    log.write_text("\n".join(lines) + "\n", encoding="ascii")
    assert "\\ud800" in log.read_text()
    csv_log = tmp_path / "flat.csv"
    csv_log.write_bytes(b"prompt\nWhere can I buy good coffee beans?\nabc \xed\xa0\x80 def is bad\n"
                        b"Which train goes to the airport?\n")
    out = tmp_path / "pool.jsonl"
    rep = ingest([log, csv_log], out, IngestConfig())
    prompts = [ex.prompt for ex in iter_pool(out, kind="prompt")]
    assert any("sourdough" in p for p in prompts) and any("tallest" in p for p in prompts)
    assert any("coffee" in p for p in prompts) and any("airport" in p for p in prompts)
    bad = {(p.file, p.row): p for p in rep.problems}
    assert bad[(str(log), 2)].field == "messages[0].content" and "lone surrogate" in bad[(str(log), 2)].message
    assert bad[(str(csv_log), 3)].field == "prompt"
    assert rep.manifest["counts"]["skipped"]["bad text"] == 2
    logged = [json.loads(x) for x in errors_path(out).read_text().splitlines()]
    assert {(e["file"], e["row"]) for e in logged} == {(str(log), 2), (str(csv_log), 3)}
    assert "abc" not in errors_path(out).read_text()  # the error log never holds the text
    # a rerun goes through (resumed, or from scratch), never stopping at the bad row
    assert ingest([log, csv_log], out, IngestConfig()).resumed
    again = ingest([log, csv_log], out, IngestConfig(), overwrite=True)
    assert again.kept == rep.kept and len(again.problems) == 2


def test_surrogate_in_metadata_or_key_is_named(tmp_path):
    log = tmp_path / "meta.jsonl"
    good = _chat_line("ok", "Please recommend a good science fiction novel.")
    bad_meta = json.dumps({"id": "m", "region": "X", "messages": [{"role": "user", "content": "fine text here"}]})
    bad_meta = bad_meta.replace('"X"', '"\\udc80"')
    log.write_text(good + "\n" + bad_meta + "\n", encoding="ascii")
    rep = ingest([log], tmp_path / "pool.jsonl", IngestConfig())
    assert rep.kept == 2
    (problem,) = rep.problems
    assert (problem.row, problem.field) == (2, "region")
    assert Path(tmp_path / "pool.jsonl").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# PII outside the message text: ids, metadata, manifests; the types patterns used to miss
# ---------------------------------------------------------------------------------------------


def test_pii_in_ids_and_metadata_is_redacted_and_ids_stay_stable(tmp_path):
    log = tmp_path / "ids.jsonl"
    rec = {"id": "user-lars68.ypbry@example.com", "contact": "+1 212 000 1234", "who": "lars68.ypbry@example.com",
           "messages": [{"role": "user", "content": "How do I reset my router to factory settings?"}]}
    log.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    cfg = IngestConfig()
    ingest([log], tmp_path / "p.jsonl", cfg)
    (ex,) = list(iter_pool(tmp_path / "p.jsonl"))
    raw = (tmp_path / "p.jsonl").read_text(encoding="utf-8")
    assert "lars68" not in raw and "212 000" not in raw
    assert ex.id.startswith("<EMAIL-") and ex.id.endswith("#u1")
    assert ex.metadata["contact"] == "<PHONE>" and ex.metadata["who"] == "<EMAIL>"
    # stable: the same pool resumed (same salt) gives the same id; another pool is unlinkable
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({**rec, "messages": [{"role": "user", "content": "And how do I update its firmware?"}]})
                    + "\n", encoding="utf-8")
    ingest([log, more], tmp_path / "p.jsonl", cfg)
    ids = [e.id for e in iter_pool(tmp_path / "p.jsonl")]
    assert ids[0] == ex.id and len(ids) == 2 and len(set(ids)) == 1  # same conversation id, same pseudonym


def test_names_flag_covers_metadata(tmp_path):
    from guardmatch.ingest.pii import PiiConfig, ner_available

    if not ner_available():
        pytest.skip("no spaCy English pipeline installed")
    log = tmp_path / "names.jsonl"
    log.write_text(json.dumps({"id": "c1", "agent": "Escalated by Margaret Thompson yesterday",
                               "messages": [{"role": "user", "content": "Where can I find my invoice?"}]}) + "\n")
    ingest([log], tmp_path / "p.jsonl", IngestConfig(pii=PiiConfig(names=True)))
    (ex,) = list(iter_pool(tmp_path / "p.jsonl"))
    assert "Margaret" not in ex.metadata["agent"] and "<PERSON>" in ex.metadata["agent"]


def test_encrypted_pool_manifest_holds_no_metadata_values(tmp_path, monkeypatch):
    from guardmatch.ingest.config import ColumnMapping
    from guardmatch.ingest.pipeline import state_path

    monkeypatch.setenv(KEY_ENV, generate_key())
    log = tmp_path / "seg.jsonl"
    log.write_text("".join(json.dumps({"id": f"c{i}", "team": "Team Zanzibar-Quokka", "messages": [
        {"role": "user", "content": f"Question number {i} about shipping times to Norway"}]}) + "\n" for i in range(3)))
    out = tmp_path / "pool.jsonl"
    rep = ingest([log], out, IngestConfig(columns=ColumnMapping(segments=["team"])))
    assert rep.manifest["encryption"]["enabled"] and rep.kept == 3
    for path in (manifest_path(out), state_path(out), out):
        assert b"Zanzibar" not in path.read_bytes() and b"Norway" not in path.read_bytes(), path
    seg = json.loads(manifest_path(out).read_text())["counts"]["segments"]
    assert seg["fields"] == {"team": {"distinct": 1, "rows": 3}}
    cipher = AtRestCipher.from_env()
    assert json.loads(cipher.decrypt_line(seg["encrypted"])) == {"team": {"Team Zanzibar-Quokka": 3}}
    again = ingest([log], out, IngestConfig(columns=ColumnMapping(segments=["team"])))  # resume reads them back
    assert again.kept == 3


@pytest.mark.parametrize("text,kind", [
    ("my aws secret is wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ok", "SECRET"),
    ("call me on +1 212 000 1234 tonight", "PHONE"),
    ("my number: 555-123-4567", "PHONE"),
    ("send it to 1600 Pennsylvania Avenue NW, Washington, DC 20500", "ADDRESS"),
    ("I live at 221B Baker Street, London", "ADDRESS"),
    ("meine Adresse: Hauptstraße 12, 10115 Berlin", "ADDRESS"),
    ("j'habite 12 rue de la Paix, 75002 Paris", "ADDRESS"),
])
def test_new_pii_types_are_found(text, kind):
    from guardmatch.ingest.pii import PiiRedactor

    out, found = PiiRedactor().redact(text)
    assert found[kind] == 1, out


@pytest.mark.parametrize("text", [
    "commit 3f2a9c1b4d5e6f708192a3b4c5d6e7f809a1b2c3 fixed the build",
    "ThisIsAVeryLongCamelCaseIdentifierName12 is a bad name",
    "In 2019 there were 1,234,567 people in the city.",
    "ISBN 978-3-16-148410-0 is on the back cover",
    "I walked down 5th Avenue yesterday and read chapter 3 of the book",
    "The 3 Little Pigs Way of building houses",
])
def test_new_patterns_leave_clean_text_alone(text):
    from guardmatch.ingest.pii import PiiRedactor

    assert PiiRedactor().redact(text) == (text, {})
