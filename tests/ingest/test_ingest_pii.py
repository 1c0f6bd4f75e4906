"""PII redaction: each type on crafted text, checksum validation, and false redactions on real prompts."""

from __future__ import annotations

import json

import pytest

from guardmatch.ingest.pii import PiiConfig, PiiRedactor, ner_available


@pytest.fixture(scope="module")
def redactor() -> PiiRedactor:
    return PiiRedactor()


@pytest.mark.parametrize(
    "text, expected, kind",
    [
        ("write to jane.roe@gmail.com today", "write to <EMAIL> today", "EMAIL"),
        ("call me on +1 (415) 555-2671 now", "call me on <PHONE> now", "PHONE"),
        ("UK office 020 7946 0958.", "UK office <PHONE>.", "PHONE"),
        ("card 4111 1111 1111 1111 exp 12/29", "card <CREDIT_CARD> exp 12/29", "CREDIT_CARD"),
        ("amex 3782-822463-10005 ok", "amex <CREDIT_CARD> ok", "CREDIT_CARD"),
        ("pay to DE89 3704 0044 0532 0130 00 please", "pay to <IBAN> please", "IBAN"),
        ("GB82WEST12345698765432", "<IBAN>", "IBAN"),
        ("server at 10.0.12.7 is down", "server at <IP_ADDRESS> is down", "IP_ADDRESS"),
        ("v6 2001:db8:85a3::8a2e:370:7334 here", "v6 <IP_ADDRESS> here", "IP_ADDRESS"),
        ("db postgres://admin:s3cr3t@db.internal:5432/app ok", "db <URL> ok", "URL"),
        ("see https://x.io/cb?access_token=abcd1234efgh&x=1.", "see <URL>.", "URL"),
        ("key AKIAIOSFODNN7EXAMPLE", "key <SECRET>", "SECRET"),
        ("token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "token <SECRET>", "SECRET"),
        ("OPENAI_API_KEY=sk-proj-Xb2kq9LmN3pQ7rT5vW8yZ1aC", "OPENAI_API_KEY=<SECRET>", "SECRET"),
        ('{"password": "Tr0ub4dor&3"}', '{"password": "<SECRET>"}', "SECRET"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcdefghijkl", "Authorization: Bearer <SECRET>", "SECRET"),
    ],
)
def test_each_type_is_replaced_by_its_placeholder(redactor, text, expected, kind):
    out, counts = redactor.redact(text)
    assert out == expected
    assert counts[kind] >= 1


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 (fails the Luhn check)",
        "IBAN DE89 3704 0044 0532 0130 01 has a bad mod-97 checksum",
        "version 1.2.3 and 3.14159 are not addresses",
        "visit https://example.com/docs?page=2 for more",
        "the password is strong and the token economy grows",
        "In 1969, 600 million people watched; 1,234,567 is a number.",
    ],
)
def test_lookalikes_are_left_alone(redactor, text):
    out, counts = redactor.redact(text)
    assert out == text and not counts


def test_url_with_credentials_wins_over_the_email_inside_it(redactor):
    out, counts = redactor.redact("clone https://bob:hunter2@git.example.com/repo.git")
    assert out == "clone <URL>" and counts == {"URL": 1}


def test_false_redaction_rate_on_real_prompts_is_low(redactor, shared_data):
    rows = [json.loads(line) for line in (shared_data / "wildguardmix" / "wildguardtrain_sample.jsonl").open()][:600]
    flagged = sum(1 for r in rows if redactor.redact(r["prompt"])[1])
    assert flagged / len(rows) < 0.02


def test_disabled_types_are_not_redacted():
    r = PiiRedactor(PiiConfig(types=["EMAIL"]))
    out, _ = r.redact("a@b.com and 10.0.0.1")
    assert out == "<EMAIL> and 10.0.0.1"
    with pytest.raises(ValueError, match="unknown PII types"):
        PiiRedactor(PiiConfig(types=["SSN"]))


@pytest.mark.skipif(not ner_available(), reason="no spaCy English pipeline installed (pip install 'guardmatch[ingest]')")
def test_person_names_with_spacy_ner():
    r = PiiRedactor(PiiConfig(names=True))
    [(out, counts)] = r.redact_many(["Yesterday Michael Thompson emailed michael@corp.com about the merger."])
    assert "Michael Thompson" not in out and "<PERSON>" in out and "<EMAIL>" in out
    assert counts["PERSON"] == 1 and counts["EMAIL"] == 1
