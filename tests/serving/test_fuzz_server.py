"""Fuzzing the server: random and adversarial Unicode, nesting, sizes and types never give a 5xx,
and good requests sent at the same time keep their exact scores."""

from __future__ import annotations

import json
import threading

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from guardmatch.serving.app import ServerConfig, create_app, load_served_model  # noqa: E402

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# adversarial characters: lone surrogates, JSON structure, NUL, bidi override, BOM, combining marks
CHARS = st.one_of(st.characters(), st.characters(categories=["Cs"]),
                  st.sampled_from(['[', '{', '"', "\\", "\x00", "\u202e", "\ufeff", "\u0301", "🙂"]))
TEXT = st.text(CHARS, max_size=60)
JSON_VALUE = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), TEXT),
                          lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=4),
                          max_leaves=12)
BODY = st.one_of(
    st.builds(lambda v: {"input": v}, JSON_VALUE),
    st.builds(lambda v: {"input": [v]}, JSON_VALUE),
    st.builds(lambda p, r: {"prompt": p, "response": r}, JSON_VALUE, JSON_VALUE),
    st.builds(lambda t, n: {"input": [t] * n}, TEXT, st.integers(0, 12)),
    st.builds(lambda t, n: {"input": t * n}, TEXT, st.integers(0, 400)),
    JSON_VALUE,
)
RAW = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda d, c: (c * d).encode(), st.integers(1, 3000), st.sampled_from(["[", "{\"a\":", "[{\"x\":"])),
    st.builds(lambda b, k: b[:k], BODY.map(lambda v: json.dumps(v).encode()), st.integers(0, 100)),  # truncated JSON
)
GOOD = ["How do I kill a Python process?", "What is the capital of France?", "Write a poem about the sea."]


@pytest.fixture(scope="module")
def served(serving_prompt_dir, serving_response_dir):
    models = load_served_model(serving_prompt_dir, "p"), load_served_model(serving_response_dir, "r")
    expected = models[0].classifier.score(GOOD)
    app = create_app(*models, ServerConfig(max_list_length=8, max_input_chars=2000, max_batch=16, max_wait_ms=2))
    with TestClient(app) as client:
        yield client, dict(zip(GOOD, expected))


def _post(client, path: str, raw: bytes):
    return client.post(path, content=raw, headers={"content-type": "application/json"})


def _check_reply(r) -> None:
    assert r.status_code in (200, 400, 413, 422), (r.status_code, r.text[:300])
    if r.status_code != 200:
        err = r.json()["error"]
        assert err["message"] and err["type"] == "invalid_request_error"


@FUZZ
@given(body=BODY, path=st.sampled_from(["/v1/moderations", "/v1/classify"]))
def test_any_json_body_is_answered_without_a_server_error(served, body, path):
    client, _ = served
    r = _post(client, path, json.dumps(body).encode("ascii"))  # ensure_ascii: surrogates travel as \ud800
    _check_reply(r)
    if path == "/v1/moderations" and r.status_code == 200:
        assert len(r.json()["results"]) >= 1


@FUZZ
@given(raw=RAW, path=st.sampled_from(["/v1/moderations", "/v1/classify"]))
def test_any_bytes_are_answered_without_a_server_error(served, raw, path):
    client, _ = served
    _check_reply(_post(client, path, raw))


@settings(max_examples=5, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bad=st.lists(st.one_of(BODY.map(lambda v: json.dumps(v).encode()), RAW), min_size=6, max_size=10))
def test_bad_requests_do_not_touch_concurrent_good_ones(served, bad):
    client, expected = served
    good_out: list[tuple[str, int, float | None]] = []
    bad_out: list = []
    barrier = threading.Barrier(len(bad) + len(GOOD) * 2)

    def send_bad(raw: bytes) -> None:
        barrier.wait()
        bad_out.append(_post(client, "/v1/moderations", raw))

    def send_good(text: str) -> None:
        barrier.wait()
        r = client.post("/v1/moderations", json={"input": text})
        score = r.json()["results"][0]["category_scores"]["harmful"] if r.status_code == 200 else None
        good_out.append((text, r.status_code, score))

    threads = [threading.Thread(target=send_bad, args=(b,)) for b in bad]
    threads += [threading.Thread(target=send_good, args=(t,)) for t in GOOD * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(good_out) == len(GOOD) * 2 and len(bad_out) == len(bad)
    for r in bad_out:
        _check_reply(r)
    for text, status, score in good_out:
        assert status == 200 and score == pytest.approx(expected[text], abs=1e-6)
