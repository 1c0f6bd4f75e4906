"""One bad or large request never costs anyone else's: invalid text, nesting, poison batches, fairness."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from guardmatch.serving.app import ServerConfig, create_app, json_depth, load_served_model  # noqa: E402
from guardmatch.serving.backends import cut_to_window, model_window_chars  # noqa: E402
from guardmatch.serving.batcher import MicroBatcher  # noqa: E402

LONE = '"abc \\ud800 def"'  # valid JSON: a lone surrogate escape


@pytest.fixture(scope="module")
def models(serving_prompt_dir, serving_response_dir):
    return load_served_model(serving_prompt_dir, "tiny-prompt"), load_served_model(serving_response_dir, "tiny-resp")


def _post(c, path: str, raw: str):
    return c.post(path, content=raw.encode("ascii"), headers={"content-type": "application/json"})


def test_lone_surrogate_is_422_naming_the_field(models):
    with TestClient(create_app(*models)) as c:
        r = _post(c, "/v1/moderations", '{"input": ["a", "b", "c", %s]}' % LONE)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["param"] == "input[3]" and "lone surrogate U+D800" in err["message"]
        assert err["code"] == "invalid_text"
        r = _post(c, "/v1/moderations", '{"input": %s}' % LONE)
        assert r.status_code == 422 and r.json()["error"]["param"] == "input"
        r = _post(c, "/v1/classify", '{"prompt": "hi", "response": %s}' % LONE)
        assert r.status_code == 422 and r.json()["error"]["param"] == "response"
        r = _post(c, "/v1/moderations", '{"input": [{"type": "text", "text": %s}]}' % LONE)
        assert r.status_code == 422 and r.json()["error"]["param"] == "input[0].text"
        # a bad field *name* is echoed safely (the reply itself must still encode)
        r = _post(c, "/v1/classify", '{"prompt": "hi", "\\udfff": 1}')
        assert r.status_code == 422 and "\\udfff" in r.json()["error"]["param"]


def test_poison_requests_among_good_ones_fail_alone(models):
    """30 good requests and a lone-surrogate one, together in shared batches: every good one is 200."""
    app = create_app(models[0], None, ServerConfig(max_batch=64, max_wait_ms=200))
    statuses: dict[int, int] = {}
    with TestClient(app) as c:
        barrier = threading.Barrier(31)

        def call(i: int) -> None:
            barrier.wait()
            raw = '{"input": %s}' % (LONE if i == 30 else json.dumps(f"good request {i}"))
            statuses[i] = _post(c, "/v1/moderations", raw).status_code

        threads = [threading.Thread(target=call, args=(i,)) for i in range(31)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert statuses.pop(30) == 422
    assert set(statuses.values()) == {200} and len(statuses) == 30


@pytest.mark.parametrize("raw", ["[" * 100_000, '{"input": ' + "[" * 5000 + "]" * 5000 + "}",
                                 '{"a":' * 50_000 + "1" + "}" * 50_000])
def test_deep_nesting_is_refused_before_parsing(models, raw):
    with TestClient(create_app(*models)) as c:
        r = _post(c, "/v1/moderations", raw)
        assert r.status_code == 422 and r.json()["error"]["code"] == "too_deep"
        # brackets inside strings are text, not nesting
        r = _post(c, "/v1/moderations", json.dumps({"input": "[" * 10_000}))
        assert r.status_code == 200, r.text
        r = _post(c, "/v1/moderations", '{"input": [[["a"]]]}')
        assert r.status_code == 422 and "input[0] must be a string" in r.json()["error"]["message"]


def test_json_depth_counts_outside_strings():
    assert json_depth(b'{"input": [{"type": "text", "text": "[[[["}]}', limit=2) == 3
    assert json_depth(b'["\\"[[[[", [[1]]]', limit=1) == 3
    assert json_depth(b"[" * 10, limit=100) == 0  # under the limit: not scanned


def test_texts_are_cut_to_the_model_window(models, serving_prompt_dir):
    """A 30k-character text scores as the whole text does (the model reads max_length tokens)."""
    from guardmatch.model import GuardClassifier

    window = models[0].classifier.config.max_length
    assert model_window_chars(window) == window * 16
    long = "Tell me how to pick the lock of my neighbour's front door, step by step. " * 420
    assert len(long) > 30_000
    assert cut_to_window(["short"], window) == ["short"] and len(cut_to_window([long], window)[0]) == window * 16
    expected = GuardClassifier.from_pretrained(serving_prompt_dir).score([long])[0]
    with TestClient(create_app(*models, ServerConfig(max_input_chars=32_000))) as c:
        r = c.post("/v1/moderations", json={"input": long})
        assert r.status_code == 200
        assert r.json()["results"][0]["category_scores"]["harmful"] == pytest.approx(expected, abs=1e-6)
        r = c.post("/v1/classify", json={"prompt": long, "response": long})
        q = GuardClassifier.from_pretrained(models[1].path).score([long], [long])[0]
        assert r.json()["response_harm"]["score"] == pytest.approx(q, abs=1e-6)


def test_healthz_shows_no_filesystem_path(models, serving_prompt_dir):
    with TestClient(create_app(*models, ServerConfig(api_key="k"))) as c:
        body = c.get("/healthz").text
        assert str(serving_prompt_dir) not in body and '"path"' not in body
        assert json.loads(body)["models"]["prompt"]["max_length"] == 48


# ---------------------------------------------------------------------------------------------
# The batcher: isolation and fairness (deterministic: everything is queued before the worker runs)
# ---------------------------------------------------------------------------------------------


def test_a_failing_batch_is_retried_request_by_request():
    calls: list[list[str]] = []

    def fn(items):
        calls.append(list(items))
        if "poison" in items:
            raise ValueError("cannot score poison")
        return [x.upper() for x in items]

    async def main():
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(fn, ex, max_batch=32, max_wait_ms=50)
            jobs = [b.submit([f"good{i}", f"more{i}"]) for i in range(5)] + [b.submit(["x", "poison"])]
            out = await asyncio.gather(*jobs, return_exceptions=True)
            await b.stop()
            return b, out

    b, out = asyncio.run(main())
    assert out[:5] == [[f"GOOD{i}", f"MORE{i}"] for i in range(5)]
    assert isinstance(out[5], ValueError)
    assert b.retried == 1 and len(calls[0]) == 12  # one shared batch, then one call per request


def test_a_large_request_cannot_starve_a_small_one():
    batches: list[list[str]] = []

    def fn(items):
        batches.append(list(items))
        return items

    async def main():
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(fn, ex, max_batch=8, max_wait_ms=0)
            large = [f"big{i}" for i in range(64)]
            out = await asyncio.gather(b.submit(large), b.submit(["small"]))
            await b.stop()
            return out

    big, small = asyncio.run(main())
    assert small == ["small"] and big == [f"big{i}" for i in range(64)]
    assert "small" in batches[0]  # the one-text request rides in the first batch, not after 64 texts
    assert max(len(x) for x in batches) <= 8 and sum(len(x) for x in batches) == 65


def _lane_batches(submissions, **kw):
    """Batches ``fn`` saw for ``submissions`` (lists of strings, queued together); cost = len(text)."""
    batches: list[list[str]] = []

    def fn(items):
        batches.append(list(items))
        return items

    async def main():
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(fn, ex, max_wait_ms=0, cost=len, **kw)
            out = await asyncio.gather(*(b.submit(s) for s in submissions))
            await b.stop()
            return out

    out = asyncio.run(main())
    assert out == submissions  # every request gets its own results, in order
    return batches


def test_batches_are_bounded_by_padded_work_and_grouped_by_length():
    long, short = ["L" * 100 + str(i) for i in range(10)], [f"s{i}" for i in range(12)]
    batches = _lane_batches([long, short], max_batch=32, max_batch_tokens=404, lane_bounds=(50,))
    assert batches[0] == short  # the short lane first, all twelve in one batch
    assert [len(x) for x in batches[1:]] == [4, 4, 2]  # 4 x 101 padded tokens fit in 404, 5 do not
    assert all(len({len(t) > 50 for t in x}) == 1 for x in batches)  # never short and long mixed
    # one lane: the budget still bounds the batch by its longest text
    batches = _lane_batches([long, short], max_batch=32, max_batch_tokens=404)
    assert max(len(x) * max(map(len, x)) for x in batches if len(x) > 1) <= 404


def test_a_long_lane_waits_at_most_max_skips_batches():
    shorts = [[f"s{i}"] for i in range(9)]
    batches = _lane_batches([["L" * 80], *shorts], max_batch=1, lane_bounds=(10,), max_skips=2)
    assert batches.index(["L" * 80]) == 2  # two short batches first, then the long one's turn


def test_a_short_request_queued_last_is_scored_first():
    longs = [["L" * 60 + f"{r}{i}" for i in range(8)] for r in range(3)]
    batches = _lane_batches([*longs, ["short"]], max_batch=32, max_batch_tokens=124, lane_bounds=(10,))
    assert batches[0] == ["short"]
    assert sum(len(x) for x in batches) == 25 and max(len(x) for x in batches) == 2


def test_cancelled_requests_are_dropped():
    seen: list[str] = []

    def fn(items):
        seen.extend(items)
        return items

    async def main():
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(fn, ex, max_batch=4, max_wait_ms=30)
            gone = asyncio.ensure_future(b.submit(["gone"] * 10))
            await asyncio.sleep(0)
            gone.cancel()
            kept = await b.submit(["kept"])
            await b.stop()
            return kept, b.pending

    kept, pending = asyncio.run(main())
    assert kept == ["kept"] and pending == 0 and seen.count("gone") <= 4


def test_predict_skips_a_lone_surrogate_row_and_scores_the_rest(serving_prompt_dir, tmp_path, monkeypatch):
    from guardmatch.serving.batch import predict_file
    from guardmatch.storage.crypto import KEY_ENV
    from guardmatch.storage.files import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(KEY_ENV, raising=False)
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "prompt": "hello there"}\n{"id": "b", "prompt": "bad \\ud800"}\n'
                   '{"id": "c", "prompt": "' + "long text " * 5000 + '"}\n', encoding="ascii")
    out = predict_file(serving_prompt_dir, src, tmp_path / "scores.jsonl")
    assert out["scored_now"] == 2 and out["skipped_bad_rows"] == {"bad text": 1}
    assert "row 2, field 'prompt'" in out["problems"][0]
    again = predict_file(serving_prompt_dir, src, tmp_path / "scores.jsonl")  # a rerun goes past the row
    assert again["already_done"] == 2 and again["scored_now"] == 0
