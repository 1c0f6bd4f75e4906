"""The guardmatch HTTP server (FastAPI): OpenAI-compatible moderation, prompt/response classification.

Endpoints
---------
``POST /v1/moderations``
    OpenAI's moderation schema, so existing clients work unchanged: ``{"input": str | [str] |
    [{"type": "text", "text": ...}], "model"?}`` -> ``{"id": "modr-...", "model", "results": [{"flagged",
    "categories", "category_scores", "category_applied_input_types"}]}``, one result per input string
    (a list of content parts is one input, as in OpenAI's API). Scored by the *prompt* model.

    Categories: guardmatch predicts one binary category, ``harmful``. Results carry ``harmful`` plus
    every OpenAI category key (``hate``, ``violence``, ``self-harm/intent``, ...) set to ``false`` / ``0.0``
    with no applied input types: we do not predict them, and copying the harm score into each of them
    would claim e.g. "hate" for a self-harm prompt. Clients that read ``flagged`` (what most
    integrations gate on) get our decision at the calibrated threshold; clients that read one
    specific OpenAI category get "not flagged" for it, which is the truth about this model. The
    typed OpenAI SDK parses the result (every field it requires is present).

``POST /v1/classify``
    ``{"prompt", "response"?}`` -> prompt-harm (prompt model) and, with a response and a response
    model, response-harm (scored on the prompt+response pair): score, label, flagged and the
    threshold used, per model.

Request and response bodies are pydantic models (:class:`ModerationRequest`, :class:`ModerationResponse`,
:class:`ClassifyRequest`, :class:`ClassifyResponse`, :class:`ErrorResponse`), so ``/openapi.json``
describes them; a request is bounded (size, JSON depth, valid Unicode) and checked against the
server's limits before pydantic parses it. ``guardmatch serve --model-name`` sets the ``model`` clients see.

``GET /healthz`` (never behind auth), ``GET /metrics`` (Prometheus text: requests by endpoint and
status, request latency, batch sizes, inference time, queue depth, process memory), ``GET /v1/models``.

Errors use OpenAI's error body ``{"error": {"message", "type", "param", "code"}}``: 413 for a body,
list or text over the limits, 422 for a malformed request (the message names the field: a text that
is not valid Unicode, such as a lone surrogate ``"\ud800"``, is ``input[3]``; JSON nested deeper
than ``max_json_depth`` is refused before it is parsed), 401 for a missing/wrong bearer token when
``api_key`` is set, 503 when the queue is full. The server keeps no request text: nothing is logged
or written but counts and timings.

Isolation and fairness: texts are cut to what the model reads (:func:`~guardmatch.serving.backends.
model_window_chars`) before tokenizing; batches hold at most ``max_batch`` texts and
``max_batch_tokens`` padded tokens (estimated from characters), texts of similar length together
(``length_lanes``, shortest lane first, a long lane never starved), taken round-robin across
requests; batches are formed and scored off the event loop, each as soon as the previous one
ends; a batch that raises is retried request by request. So one bad or large request never fails
or stalls anyone else's (see :mod:`guardmatch.serving.batcher`).
"""

import asyncio
import hmac
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, MutableMapping, Sequence, overload

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardmatch.data.example import LABEL_NAMES, Task
from guardmatch.data.validation import unreadable_field
from guardmatch.errors import ConfigError, GuardmatchError, UnknownNameError
from guardmatch.serving.backends import cut_to_window
from guardmatch.serving.batcher import MicroBatcher, QueueFullError

# The category keys of OpenAI's moderation results (omni-moderation), all present in every result.
OPENAI_CATEGORIES: tuple[str, ...] = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)
HARM_CATEGORY = "harmful"


# ---------------------------------------------------------------------------------------------
# Request and response models (the OpenAPI schema; requests are checked by hand first, see below)
# ---------------------------------------------------------------------------------------------


class TextPart(BaseModel):
    """A text content part of a moderation input (OpenAI's multi-modal form)."""

    type: Literal["text"]
    text: str


class ImageURLPart(BaseModel):
    """An image content part: part of OpenAI's schema, refused here (422: the model reads text only)."""

    type: Literal["image_url"]
    image_url: dict[str, Any]


class ModerationRequest(BaseModel):
    """OpenAI's moderation request. A list of content parts is one input (one result)."""

    model_config = ConfigDict(extra="ignore")

    input: str | list[str] | list[TextPart | ImageURLPart] = Field(
        description="a text, a list of texts (one result each), or a list of content parts (one result)")
    model: str | None = Field(None, description="accepted for OpenAI compatibility; the served model answers")

    def texts(self) -> list[str]:
        """The texts to score, one per result."""
        if isinstance(self.input, str):
            return [self.input]
        if self.input and not isinstance(self.input[0], str):
            return ["\n".join(part.text for part in self.input if isinstance(part, TextPart))]
        return list(self.input)  # type: ignore[arg-type]


class ModerationResult(BaseModel):
    """One input's result: ``harmful`` plus every OpenAI category key (``false`` / ``0.0``: not predicted)."""

    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]


class ModerationResponse(BaseModel):
    id: str
    model: str = Field(description="the served model's name (`guardmatch serve --model-name`)")
    results: list[ModerationResult]


class ClassifyRequest(BaseModel):
    """A prompt, and optionally the model's response to it (scored by the response model)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    response: str | None = None


class Harm(BaseModel):
    """One model's verdict."""

    score: float = Field(description="calibrated P(harmful)")
    label: Literal["unharmful", "harmful"]
    flagged: bool = Field(description="score >= threshold")
    threshold: float
    profile: str = Field(description="the threshold profile used (header X-Guardmatch-Profile; 'default': the model's own)")
    model: str
    backend: Literal["pytorch", "onnx"]


class ClassifyResponse(BaseModel):
    id: str
    prompt_harm: Harm | None = Field(description="null when the server has no prompt model")
    response_harm: Harm | None = Field(description="null without a response (or a response model)")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = Field(None, description="the field at fault, e.g. input[3] or input[0].text")
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body."""

    error: ErrorDetail


REQUEST_MODELS: tuple[type[BaseModel], ...] = (ModerationRequest, ClassifyRequest)


PROFILE_HEADER = "X-Guardmatch-Profile"  # names the threshold profile of one request
BATCH_TOKENS_PER_WINDOW = 8
CHARS_PER_TOKEN_ESTIMATE = 4  # English WordPiece averages 4-5 characters a token: a slight over-estimate


def estimated_tokens(chars: int, max_length: int) -> int:
    """A text's tokens estimated from its characters (no tokenizing on the event loop), capped at
    what the model reads; used only to size and group batches."""
    return min(int(max_length), chars // CHARS_PER_TOKEN_ESTIMATE + 2)


@dataclass
class ServerConfig:
    """Limits and batching of the server (the CLI's ``serve`` options)."""

    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_list_length: int = 64
    max_input_chars: int = 32_000
    max_body_bytes: int | None = None  # default: derived from the two limits above
    max_json_depth: int = 16  # the deepest valid request nests 3 levels ({"input": [{"text": ...}]})
    queue_limit: int = 4096
    api_key: str | None = None
    inference_batch_size: int | None = None  # default: max_batch
    # Work per batch: at most this many padded tokens (texts x the longest one's estimated tokens);
    # default BATCH_TOKENS_PER_WINDOW x the model's max_length (8 texts of a full window).
    max_batch_tokens: int | None = None
    length_lanes: int = 4  # texts batched with texts of similar length: lanes up to 1/8, 1/4, 1/2, 1 window
    # The models' threshold profile used when a request names none (header X-Guardmatch-Profile).
    default_profile: str | None = None

    def batch_tokens(self, max_length: int) -> int:
        return int(self.max_batch_tokens or BATCH_TOKENS_PER_WINDOW * int(max_length))

    def lane_bounds(self, max_length: int) -> tuple[int, ...]:
        """Upper token bounds of all lanes but the last: window/2, /4, /8 ... (``length_lanes`` lanes)."""
        bounds = sorted({max(1, int(max_length) >> k) for k in range(1, max(1, self.length_lanes))})
        return tuple(b for b in bounds if b < int(max_length))

    def body_limit(self) -> int:
        if self.max_body_bytes is not None:
            return int(self.max_body_bytes)
        # Worst case JSON-escaped UTF-8 (6 bytes per char as \uXXXX) plus framing.
        return int(self.max_list_length * (self.max_input_chars * 6 + 64) + 4096)


@dataclass
class ServedModel:
    """A loaded classifier (PyTorch or ONNX) with the name clients see."""

    name: str
    classifier: Any
    path: str | None = None
    batcher: MicroBatcher | None = field(default=None, repr=False)

    @property
    def task(self) -> Task:
        return Task(self.classifier.config.task)

    @property
    def threshold(self) -> float:
        return float(self.classifier.config.threshold)

    def threshold_for(self, profile: str | None) -> float:
        """The threshold of the model's profile ``profile`` (None: its own); 400 naming the header if unknown."""
        try:
            return float(self.classifier.config.threshold_for(profile))
        except UnknownNameError as exc:
            raise ApiError(400, str(exc), param=PROFILE_HEADER, code="unknown_profile") from None

    @property
    def backend(self) -> str:
        return "onnx" if type(self.classifier).__name__ == "OnnxClassifier" else "pytorch"

    def describe(self, *, with_path: bool = True) -> dict[str, Any]:
        """What the model is; ``with_path=False`` leaves out its filesystem path (for ``/healthz``)."""
        cfg = self.classifier.config
        out = {"name": self.name, "path": self.path, "task": self.task.value, "backend": self.backend,
               "threshold": self.threshold, "temperature": float(cfg.temperature),
               "calibrated": bool(cfg.calibration), "max_length": int(cfg.max_length),
               "threshold_profiles": {k: v.threshold for k, v in sorted(cfg.threshold_profiles.items())}}
        if not with_path:
            del out["path"]
        return out


class ApiError(GuardmatchError):
    """An error answered with OpenAI's error body."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        message, param = _printable(message), _printable(param)  # a client's bad text must not break the reply
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@overload
def _printable(text: str) -> str: ...


@overload
def _printable(text: None) -> None: ...


def _printable(text: str | None) -> str | None:
    return None if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


class _BodyTooLarge(Exception):
    pass


def load_served_model(path: str | Path, name: str | None = None, *, threads: int | None = None) -> ServedModel:
    """Load a model directory (PyTorch or ONNX export) for serving."""
    from guardmatch.serving.backends import load_classifier

    path = Path(path)
    clf = load_classifier(path, threads=threads)
    return ServedModel(name=name or path.name, classifier=clf, path=str(path))


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


class ServerMetrics:
    """Prometheus metrics in a registry of their own (several apps can live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter("guardmatch_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("guardmatch_request_duration_seconds", "Request latency by endpoint", ["endpoint"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.batch_size = Histogram("guardmatch_batch_size", "Texts per inference batch", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
        self.inference = Histogram("guardmatch_inference_seconds", "Seconds per inference batch", ["model"],
                                   buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                   registry=self.registry)
        self.texts = Counter("guardmatch_texts", "Texts scored", ["model"], registry=self.registry)
        self.flagged = Counter("guardmatch_flagged", "Texts flagged harmful", ["model"], registry=self.registry)
        self.queue = Gauge("guardmatch_queue_texts", "Texts waiting for a batch", ["model"], registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# ---------------------------------------------------------------------------------------------
# Request parsing: bounded and checked by hand (messages naming the field, the server's limits),
# then parsed into the pydantic models above
# ---------------------------------------------------------------------------------------------


def _check_text(text: Any, where: str, cfg: ServerConfig) -> str:
    if not isinstance(text, str):
        raise ApiError(422, f"{where} must be a string, got {type(text).__name__}", param=where)
    if len(text) > cfg.max_input_chars:
        raise ApiError(413, f"{where} has {len(text)} characters; this server accepts at most "
                            f"{cfg.max_input_chars} per text", param=where, code="input_too_large")
    return text


def _param(loc: Sequence[Any]) -> str | None:
    """A pydantic error location as a field path (``input[1]``, ``input[0].text``); union tags dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "body":
            continue
        elif "[" in str(part) or str(part) in ("str", "int", "float", "bool", "list", "dict", "none"):
            break  # a union member's tag (``list[str]``, ``str``), not a field
        else:
            out += f".{part}" if out else str(part)
    return out or None


def validated(model: type[BaseModel], body: Any) -> Any:
    """``body`` parsed into ``model``; a :class:`ApiError` (422) naming the first field at fault."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = _param(first.get("loc", ()))
        raise ApiError(422, f"{param or 'request body'}: {first.get('msg')}", param=param) from None


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)  # a JSON string (or its unterminated rest)


def json_depth(raw: bytes, limit: int) -> int:
    """How deep ``raw`` nests arrays/objects outside strings; counting stops once past ``limit``.

    Linear and in C (a regex drops the strings, numpy sums the brackets 1 MiB at a time), so a
    body of a million ``[`` is refused in milliseconds instead of exhausting the parser's recursion.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return 0  # cannot nest deeper than the limit (the common case: no scan)
    bare = np.frombuffer(_JSON_STRING.sub(b"", raw), dtype=np.uint8)
    depth = deepest = 0
    for start in range(0, len(bare), 1 << 20):
        part = bare[start:start + (1 << 20)]
        step = ((part == ord("[")) | (part == ord("{"))).astype(np.int32)
        step -= ((part == ord("]")) | (part == ord("}"))).astype(np.int32)
        running = np.cumsum(step) + depth
        deepest = max(deepest, int(running.max(initial=depth)))
        depth = int(running[-1]) if len(running) else depth
        if deepest > limit:
            break
    return deepest


def parse_json_body(raw: bytes, cfg: ServerConfig) -> Any:
    """The request's JSON, nesting bounded before parsing and every text (keys too) valid Unicode;
    raises :class:`ApiError` (422 naming the field)."""
    import json

    if not raw:
        return None
    depth = json_depth(raw, cfg.max_json_depth)
    if depth > cfg.max_json_depth:
        raise ApiError(422, f"request body nests {depth} levels deep; this server accepts at most "
                            f"{cfg.max_json_depth}", code="too_deep")
    try:
        body = json.loads(raw)
    except RecursionError:  # a safety net: the scan above already bounds the depth
        raise ApiError(422, "request body nests too deeply", code="too_deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(422, f"request body is not valid JSON: {exc}") from None
    bad = unreadable_field(body)  # before anything reads the texts (a "\ud800" escape parses)
    if bad is not None:
        raise ApiError(422, f"{bad[0]}: {bad[1]}", param=bad[0], code="invalid_text")
    return body


def parse_moderation_input(body: Any, cfg: ServerConfig) -> list[str]:
    """The texts of a moderation request, one per result; raises :class:`ApiError` (413/422)."""
    if not isinstance(body, dict):
        raise ApiError(422, "request body must be a JSON object with an 'input' field")
    if "input" not in body:
        raise ApiError(422, "'input' is required: a string, a list of strings, or a list of "
                            "{\"type\": \"text\", \"text\": ...} parts", param="input")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(422, "'model' must be a string", param="model")
    raw = body["input"]
    if isinstance(raw, str):
        _check_text(raw, "input", cfg)
        return validated(ModerationRequest, body).texts()
    if not isinstance(raw, list):
        raise ApiError(422, f"'input' must be a string or a list, got {type(raw).__name__}", param="input")
    if not raw:
        raise ApiError(422, "'input' is an empty list", param="input")
    if len(raw) > cfg.max_list_length:
        raise ApiError(413, f"'input' has {len(raw)} items; this server accepts at most {cfg.max_list_length} "
                            "per request", param="input", code="too_many_inputs")
    parts = all(isinstance(x, dict) for x in raw)  # content parts: one input (OpenAI multi-modal form)
    for i, item in enumerate(raw):
        if not parts:
            _check_text(item, f"input[{i}]", cfg)
        elif item.get("type") == "text":
            _check_text(item.get("text"), f"input[{i}].text", cfg)
        elif item.get("type") == "image_url":
            raise ApiError(422, f"input[{i}]: image inputs are not supported by this model (text only)",
                           param=f"input[{i}]", code="unsupported_input_type")
        else:
            raise ApiError(422, f"input[{i}].type must be 'text', got {item.get('type')!r}", param=f"input[{i}].type")
    texts = validated(ModerationRequest, body).texts()
    return [_check_text(texts[0], "input", cfg)] if parts else texts


def parse_classify(body: Any, cfg: ServerConfig) -> tuple[str, str | None]:
    """``(prompt, response or None)`` of a classify request; raises :class:`ApiError` (413/422)."""
    if not isinstance(body, dict):
        raise ApiError(422, "request body must be a JSON object: {\"prompt\": ..., \"response\"?: ...}")
    unknown = sorted(set(body) - {"prompt", "response"})
    if unknown:
        raise ApiError(422, f"unknown field(s) {unknown}; expected 'prompt' and optionally 'response'",
                       param=unknown[0])
    if "prompt" not in body:
        raise ApiError(422, "'prompt' is required", param="prompt")
    _check_text(body["prompt"], "prompt", cfg)
    if body.get("response") is not None:
        _check_text(body["response"], "response", cfg)
    req = validated(ClassifyRequest, body)
    return req.prompt, req.response


# ---------------------------------------------------------------------------------------------
# App
# ---------------------------------------------------------------------------------------------


def _moderation_result(score: float, threshold: float) -> dict[str, Any]:
    flagged = bool(score >= threshold)
    categories = {HARM_CATEGORY: flagged, **{c: False for c in OPENAI_CATEGORIES}}
    scores = {HARM_CATEGORY: float(score), **{c: 0.0 for c in OPENAI_CATEGORIES}}
    applied = {HARM_CATEGORY: ["text"], **{c: [] for c in OPENAI_CATEGORIES}}
    return {"flagged": flagged, "categories": categories, "category_scores": scores,
            "category_applied_input_types": applied}


def create_app(
    prompt_model: ServedModel | None = None,
    response_model: ServedModel | None = None,
    config: ServerConfig | None = None,
) -> Any:
    """The FastAPI app serving ``prompt_model`` (moderation + prompt harm) and/or ``response_model``."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response

    if prompt_model is None and response_model is None:
        raise ConfigError("serve at least one model (a prompt model and/or a response model)")
    if prompt_model is not None and prompt_model.task is not Task.PROMPT:
        raise ConfigError(f"{prompt_model.name}: --prompt-model must be a prompt classifier (task={prompt_model.task.value})")
    if response_model is not None and response_model.task is not Task.RESPONSE:
        raise ConfigError(f"{response_model.name}: --response-model must be a response classifier "
                         f"(task={response_model.task.value})")
    cfg = config or ServerConfig()
    for served in (prompt_model, response_model):
        if served is not None and cfg.default_profile is not None:
            try:
                served.classifier.config.threshold_for(cfg.default_profile)
            except UnknownNameError as exc:
                raise ConfigError(f"{served.name}: --threshold-profile: {exc}") from None
    metrics = ServerMetrics()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guardmatch-inference")
    models = {k: m for k, m in (("prompt", prompt_model), ("response", response_model)) if m is not None}
    infer_bs = cfg.inference_batch_size or cfg.max_batch

    for key, served in models.items():
        def scorer(items: list[tuple[str, str | None]], served: ServedModel = served) -> list[float]:
            window = int(served.classifier.config.max_length)
            prompts = cut_to_window([p for p, _ in items], window)
            responses = cut_to_window([r or "" for _, r in items], window) if served.task is Task.RESPONSE else None
            return [float(x) for x in served.classifier.score(prompts, responses, batch_size=infer_bs)]

        def on_batch(size: int, seconds: float, name: str = key) -> None:
            metrics.batch_size.labels(name).observe(size)
            metrics.inference.labels(name).observe(seconds)
            metrics.texts.labels(name).inc(size)

        window = int(served.classifier.config.max_length)

        def cost(item: tuple[str, str | None], window: int = window) -> int:
            return estimated_tokens(len(item[0]) + len(item[1] or ""), window)

        served.batcher = MicroBatcher(scorer, executor, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms,
                                      queue_limit=cfg.queue_limit, on_batch=on_batch, cost=cost,
                                      max_batch_tokens=cfg.batch_tokens(window), lane_bounds=cfg.lane_bounds(window))

    @asynccontextmanager
    async def lifespan(app: Any):
        yield
        for served in models.values():
            if served.batcher is not None:
                await served.batcher.stop()
        executor.shutdown(wait=True)

    app = FastAPI(title="guardmatch", version="1", lifespan=lifespan,
                  description="LLM-safety classifiers: OpenAI-compatible moderation and prompt/response harm.")
    app.state.models = models
    app.state.config = cfg
    app.state.metrics = metrics
    app.state.started = time.time()

    def error_response(err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())[:5]
        parts = [f"{_param(e.get('loc', ())) or 'request body'}: {e.get('msg')}" for e in errors]
        param = _param(errors[0].get("loc", ())) if errors else None
        return error_response(ApiError(422, "; ".join(parts) or "invalid request", param=param))

    # -- middleware: body limit, auth, metrics (pure ASGI, so a body is never read twice) --------
    limit = cfg.body_limit()
    api_key = cfg.api_key

    class Guard:
        def __init__(self, app: Any):
            self.app = app

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            path = scope.get("path", "")
            endpoint = path if path in _ENDPOINTS else "other"
            start = time.perf_counter()
            status_box = {"status": 500, "started": False}

            async def send_wrapped(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status_box["status"] = message["status"]
                    status_box["started"] = True
                await send(message)

            async def reply(err: ApiError) -> None:
                await error_response(err)(scope, receive, send_wrapped)

            try:
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
                if api_key and path not in _OPEN_PATHS:
                    got = headers.get("authorization", "")
                    token = got[7:].strip() if got[:7].lower() == "bearer " else ""
                    if not hmac.compare_digest(token.encode(), api_key.encode()):
                        await reply(ApiError(401, "missing or invalid bearer token (Authorization: Bearer <key>)",
                                             type="authentication_error", code="invalid_api_key",
                                             headers={"WWW-Authenticate": "Bearer"}))
                        return
                length = headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > limit:
                    await reply(ApiError(413, f"request body is {int(length)} bytes; this server accepts at most "
                                              f"{limit}", code="body_too_large"))
                    return
                seen = 0

                async def receive_limited() -> dict:
                    nonlocal seen
                    message = await receive()
                    if message["type"] == "http.request":
                        seen += len(message.get("body", b""))
                        if seen > limit:
                            raise _BodyTooLarge()
                    return message

                try:
                    await self.app(scope, receive_limited, send_wrapped)
                except _BodyTooLarge:
                    if not status_box["started"]:
                        await reply(ApiError(413, f"request body is over {limit} bytes", code="body_too_large"))
            finally:
                metrics.requests.labels(endpoint, scope.get("method", ""), str(status_box["status"])).inc()
                metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    app.add_middleware(Guard)

    def profile_of(request: Request) -> str | None:
        return request.headers.get(PROFILE_HEADER) or cfg.default_profile

    async def json_body(request: Request) -> Any:
        return parse_json_body(await request.body(), cfg)

    async def score(key: str, items: Sequence[tuple[str, str | None]]) -> list[float]:
        served = models[key]
        assert served.batcher is not None
        try:
            return await served.batcher.submit(list(items))
        except QueueFullError as exc:
            raise ApiError(503, f"server is overloaded: {exc}; retry later", type="server_error",
                           code="overloaded", headers={"Retry-After": "1"}) from None
        finally:
            metrics.queue.labels(key).set(served.batcher.pending)

    # -- endpoints -----------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.time() - app.state.started, 3),
                "models": {k: m.describe(with_path=False) for k, m in models.items()}}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        for key, served in models.items():
            metrics.queue.labels(key).set(served.batcher.pending if served.batcher else 0)
        data, content_type = metrics.render()
        return Response(content=data, media_type=content_type)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m.name, "object": "model", "owned_by": "guardmatch",
                                            "task": m.task.value} for m in models.values()]}

    @app.post("/v1/moderations", response_model=ModerationResponse, responses=_ERRORS,
              openapi_extra=_request_body(ModerationRequest), summary="Moderate texts (OpenAI's schema)")
    async def moderations(request: Request) -> dict[str, Any]:
        if "prompt" not in models:
            raise ApiError(400, "moderation needs a prompt model; this server has only a response model "
                                "(use /v1/classify)", code="no_prompt_model")
        texts = parse_moderation_input(await json_body(request), cfg)
        served = models["prompt"]
        threshold = served.threshold_for(profile_of(request))
        scores = await score("prompt", [(t, None) for t in texts])
        results = [_moderation_result(s, threshold) for s in scores]
        metrics.flagged.labels("prompt").inc(sum(r["flagged"] for r in results))
        return {"id": f"modr-{uuid.uuid4().hex}", "model": served.name, "results": results}

    @app.post("/v1/classify", response_model=ClassifyResponse, responses=_ERRORS,
              openapi_extra=_request_body(ClassifyRequest), summary="Prompt harm and response harm")
    async def classify(request: Request) -> dict[str, Any]:
        prompt, response = parse_classify(await json_body(request), cfg)
        if response is not None and "response" not in models:
            raise ApiError(400, "a response was given but this server has no response model "
                                "(start it with --response-model DIR)", param="response", code="no_response_model")
        inputs: dict[str, tuple[str, str | None]] = {}
        if "prompt" in models:
            inputs["prompt"] = (prompt, None)
        if response is not None:
            inputs["response"] = (prompt, response)
        if not inputs:
            raise ApiError(422, "this server has only a response model: send a 'response' too", param="response")
        profile = profile_of(request)
        thresholds = {key: models[key].threshold_for(profile) for key in inputs}  # a bad profile: 400 before scoring
        scored = await asyncio.gather(*(score(key, [item]) for key, item in inputs.items()))
        out: dict[str, Any] = {"id": f"clf-{uuid.uuid4().hex}", "prompt_harm": None, "response_harm": None}
        for key, (s,) in zip(inputs, scored):
            served, threshold = models[key], thresholds[key]
            flagged = bool(s >= threshold)
            if flagged:
                metrics.flagged.labels(key).inc()
            out[f"{key}_harm"] = {"score": s, "label": LABEL_NAMES[int(flagged)], "flagged": flagged,
                                  "threshold": threshold, "profile": profile or "default", "model": served.name,
                                  "backend": served.backend}
        return out

    def openapi() -> dict[str, Any]:
        """FastAPI's schema plus the request models (parsed by hand first, so not seen by FastAPI)."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi
            from pydantic.json_schema import models_json_schema

            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _, defs = models_json_schema([(m, "validation") for m in REQUEST_MODELS],
                                         ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route that reads ``model`` (its schema is in the components)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": why} for status, why in (
        (400, "the request needs a model this server does not have"),
        (401, "missing or invalid bearer token"),
        (413, "a body, list or text over the server's limits"),
        (422, "a malformed request: `param` names the field"),
        (503, "the queue is full: retry after `Retry-After` seconds"),
    )
}


_ENDPOINTS = {"/v1/moderations", "/v1/classify", "/healthz", "/metrics", "/v1/models"}
_OPEN_PATHS = {"/healthz"}


def serve(
    prompt_model: str | Path | None,
    response_model: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServerConfig | None = None,
    threads: int | None = None,
    log_level: str = "info",
    keep_alive_s: float = 75.0,
    model_name: str | None = None,
    response_model_name: str | None = None,
) -> None:
    """Load the models and run the server with uvicorn (blocks until stopped).

    ``keep_alive_s``: idle keep-alive connections are closed after this long. Keep it above the idle
    timeout of any proxy or client pool in front (uvicorn's 5 s default races clients that reuse a
    connection just as the server closes it: a reset request). ``model_name`` /
    ``response_model_name``: the names clients see in responses (default: the directory names).
    """
    import uvicorn

    if threads:
        import torch

        torch.set_num_threads(int(threads))
    pm = load_served_model(prompt_model, model_name, threads=threads) if prompt_model else None
    if prompt_model is None:  # one model: --model-name names it
        response_model_name = response_model_name or model_name
    rm = load_served_model(response_model, response_model_name, threads=threads) if response_model else None
    app = create_app(pm, rm, config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                timeout_keep_alive=int(max(1, keep_alive_s)))
