"""The HTTP server in-process (FastAPI TestClient): schemas, limits, errors, auth, metrics, micro-batching."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from serving_fixtures import SERVING_TEXTS

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from guardmatch.model import GuardClassifier  # noqa: E402
from guardmatch.serving.app import (  # noqa: E402
    OPENAI_CATEGORIES,
    ServedModel,
    ServerConfig,
    create_app,
    load_served_model,
)
from guardmatch.serving.batcher import MicroBatcher, QueueFullError  # noqa: E402


@pytest.fixture(scope="module")
def models(serving_prompt_dir, serving_response_dir):
    return load_served_model(serving_prompt_dir, "tiny-prompt"), load_served_model(serving_response_dir, "tiny-resp")


@pytest.fixture()
def client(models):
    app = create_app(*models, ServerConfig(max_list_length=8, max_input_chars=500, max_batch=16))
    with TestClient(app) as c:
        yield c


def test_moderations_openai_schema_and_scores(client, serving_prompt_dir):
    texts = [t for t in SERVING_TEXTS if len(t) <= 500]
    r = client.post("/v1/moderations", json={"input": texts, "model": "omni-moderation-latest"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"].startswith("modr-") and body["model"] == "tiny-prompt"
    assert len(body["results"]) == len(texts)
    expected = GuardClassifier.from_pretrained(serving_prompt_dir).score(texts)
    for res, p in zip(body["results"], expected):
        assert set(res["categories"]) == {"harmful", *OPENAI_CATEGORIES} == set(res["category_scores"])
        assert res["category_scores"]["harmful"] == pytest.approx(p, abs=1e-6)
        assert res["flagged"] == res["categories"]["harmful"] == (p >= 0.5)
        assert not any(res["categories"][c] for c in OPENAI_CATEGORIES)
    # the typed OpenAI SDK model accepts the body as is (drop-in for existing clients)
    openai_types = pytest.importorskip("openai.types")
    parsed = openai_types.ModerationCreateResponse.model_validate(body)
    assert parsed.results[0].categories.violence is False
    assert parsed.results[0].flagged == body["results"][0]["flagged"]


def test_moderation_input_forms(client):
    one = client.post("/v1/moderations", json={"input": "hello there"}).json()
    assert len(one["results"]) == 1
    parts = client.post("/v1/moderations", json={"input": [{"type": "text", "text": "hello"},
                                                           {"type": "text", "text": "there"}]}).json()
    assert len(parts["results"]) == 1  # a list of content parts is one input, as in OpenAI's API


@pytest.mark.parametrize(
    "payload,status,needle",
    [
        ({"input": "x" * 501}, 413, "at most 500"),
        ({"input": ["a"] * 9}, 413, "at most 8 per request"),
        ({"input": ["ok", "y" * 600]}, 413, "input[1] has 600 characters"),
        ({"inputs": "typo"}, 422, "'input' is required"),
        ({"input": 5}, 422, "must be a string or a list"),
        ({"input": []}, 422, "empty list"),
        ({"input": ["a", 3]}, 422, "input[1] must be a string"),
        ({"input": [{"type": "image_url", "image_url": {"url": "http://x"}}]}, 422, "image inputs are not supported"),
    ],
)
def test_moderation_limits_and_validation(client, payload, status, needle):
    r = client.post("/v1/moderations", json=payload)
    assert r.status_code == status
    err = r.json()["error"]
    assert needle in err["message"] and err["type"] == "invalid_request_error"


def test_body_limits_and_bad_json(client):
    r = client.post("/v1/moderations", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]["message"]
    big = b'{"input": "' + b"a" * 5_000_000 + b'"}'
    r = client.post("/v1/moderations", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

    def chunks():  # no content-length: the limit is enforced while reading
        for _ in range(100):
            yield b"a" * 100_000

    r = client.post("/v1/moderations", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_classify_prompt_and_response(client, serving_prompt_dir, serving_response_dir):
    r = client.post("/v1/classify", json={"prompt": "How do I pick a lock?", "response": "Use a tension wrench."})
    assert r.status_code == 200, r.text
    body = r.json()
    p = GuardClassifier.from_pretrained(serving_prompt_dir).score(["How do I pick a lock?"])[0]
    q = GuardClassifier.from_pretrained(serving_response_dir).score(
        ["How do I pick a lock?"], ["Use a tension wrench."])[0]
    assert body["prompt_harm"]["score"] == pytest.approx(p, abs=1e-6)
    assert body["response_harm"]["score"] == pytest.approx(q, abs=1e-6)
    for key in ("prompt_harm", "response_harm"):
        h = body[key]
        assert h["threshold"] == 0.5 and h["flagged"] == (h["score"] >= 0.5)
        assert h["label"] == ("harmful" if h["flagged"] else "unharmful")
    only_prompt = client.post("/v1/classify", json={"prompt": "hi"}).json()
    assert only_prompt["response_harm"] is None and only_prompt["prompt_harm"]["model"] == "tiny-prompt"
    bad = client.post("/v1/classify", json={"prompt": "hi", "respnse": "typo"})
    assert bad.status_code == 422 and "respnse" in bad.json()["error"]["message"]
    assert client.post("/v1/classify", json={"response": "x"}).status_code == 422


def test_classify_without_response_model(models):
    app = create_app(models[0], None)
    with TestClient(app) as c:
        r = c.post("/v1/classify", json={"prompt": "hi", "response": "hello"})
        assert r.status_code == 400 and "--response-model" in r.json()["error"]["message"]
    with pytest.raises(ValueError, match="must be a response classifier"):
        create_app(models[0], models[0])


def test_openapi_has_request_bodies_and_responses(client):
    """Typed client generators get the request and response models of both endpoints."""
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, request, response in (("/v1/moderations", "ModerationRequest", "ModerationResponse"),
                                    ("/v1/classify", "ClassifyRequest", "ClassifyResponse")):
        op = spec["paths"][path]["post"]
        body = op["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{request}"}
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{response}"}
        err = op["responses"]["422"]["content"]["application/json"]["schema"]
        assert err == {"$ref": "#/components/schemas/ErrorResponse"}
        assert request in schemas and response in schemas
    assert set(schemas["ClassifyRequest"]["required"]) == {"prompt"}
    assert schemas["ClassifyRequest"]["additionalProperties"] is False
    assert schemas["ModerationRequest"]["required"] == ["input"]
    assert {"TextPart", "ImageURLPart", "Harm", "ModerationResult", "ErrorDetail"} <= set(schemas)
    # every $ref in the document resolves
    import json
    import re

    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(spec))):
        assert ref in schemas, ref


def test_request_models_name_the_field_at_fault():
    from guardmatch.serving.app import ApiError, ClassifyRequest, ModerationRequest, validated

    with pytest.raises(ApiError) as err:
        validated(ClassifyRequest, {"prompt": 3})
    assert err.value.status == 422 and err.value.param == "prompt" and err.value.message.startswith("prompt: ")
    with pytest.raises(ApiError) as err:
        validated(ModerationRequest, {"input": [{"type": "text", "text": 5}]})
    assert err.value.param == "input"  # union members' tags are not fields
    parts = validated(ModerationRequest, {"input": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]})
    assert parts.texts() == ["a\nb"]
    assert validated(ModerationRequest, {"input": ["a", "b"], "user": "ignored"}).texts() == ["a", "b"]


def test_bearer_auth(models):
    app = create_app(*models, ServerConfig(api_key="s3cret"))
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200  # liveness probes need no token
        r = c.post("/v1/moderations", json={"input": "hi"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["type"] == "authentication_error"
        assert c.post("/v1/moderations", json={"input": "hi"},
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/metrics").status_code == 401
        ok = c.post("/v1/moderations", json={"input": "hi"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_health_and_metrics(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["models"]["prompt"]["backend"] == "pytorch"
    client.post("/v1/moderations", json={"input": ["a", "b", "c"]})
    client.post("/v1/moderations", json={"input": "x" * 501})
    text = client.get("/metrics").text
    assert 'guardmatch_requests_total{endpoint="/v1/moderations",method="POST",status="200"} 1.0' in text
    assert 'guardmatch_requests_total{endpoint="/v1/moderations",method="POST",status="413"} 1.0' in text
    assert 'guardmatch_texts_total{model="prompt"} 3.0' in text
    assert 'guardmatch_batch_size_count{model="prompt"}' in text
    assert 'guardmatch_request_duration_seconds_bucket{endpoint="/v1/moderations"' in text
    assert "process_resident_memory_bytes" in text


def test_concurrent_requests_share_batches(models):
    """Requests arriving together are scored in shared batches and each gets its own scores."""
    app = create_app(models[0], None, ServerConfig(max_batch=64, max_wait_ms=300))
    texts = [f"request number {i}: {SERVING_TEXTS[i % 4]}" for i in range(12)]
    expected = models[0].classifier.score(texts)
    results: dict[int, float] = {}
    with TestClient(app) as c:
        barrier = threading.Barrier(len(texts))

        def call(i: int) -> None:
            barrier.wait()
            r = c.post("/v1/moderations", json={"input": texts[i]})
            results[i] = r.json()["results"][0]["category_scores"]["harmful"]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    np.testing.assert_allclose([results[i] for i in range(len(texts))], expected, atol=1e-6)
    batcher = models[0].batcher
    assert batcher.items == len(texts)
    assert batcher.batches < len(texts)  # at least two requests were scored together


# ---------------------------------------------------------------------------------------------
# The micro-batcher on its own (deterministic: all items are queued before the worker runs)
# ---------------------------------------------------------------------------------------------


def _run(coro):
    return asyncio.run(coro)


def test_microbatcher_forms_batches_up_to_max():
    seen: list[int] = []

    def fn(items):
        seen.append(len(items))
        return [x * 10 for x in items]

    async def main():
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(fn, ex, max_batch=4, max_wait_ms=50)
            out = await asyncio.gather(*(b.submit([i]) for i in range(10)))
            multi = await b.submit([1, 2, 3])
            await b.stop()
            return out, multi

    out, multi = _run(main())
    assert out == [[i * 10] for i in range(10)]
    assert multi == [10, 20, 30]
    assert seen[:3] == [4, 4, 2] and seen[3:] == [3]


def test_microbatcher_errors_reach_callers_and_worker_survives():
    calls = {"n": 0}

    def fn(items):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("model exploded")
        return items

    async def main():
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(fn, ex, max_batch=8, max_wait_ms=0, queue_limit=5)
            with pytest.raises(RuntimeError, match="exploded"):
                await b.submit(["a", "b"])
            assert await b.submit(["c"]) == ["c"]
            with pytest.raises(QueueFullError):
                await b.submit(list("abcdef"))
            await b.stop()

    _run(main())
    with pytest.raises(ValueError):
        MicroBatcher(lambda x: x, ThreadPoolExecutor(1), max_batch=0)


def test_served_model_describe(models):
    d = models[0].describe()
    assert d == {**d, "task": "prompt", "backend": "pytorch", "threshold": 0.5, "calibrated": False}
    assert isinstance(models[1], ServedModel) and models[1].task.value == "response"
