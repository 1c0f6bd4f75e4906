"""``guardmatch review serve QUEUE.db``: a small review page (FastAPI + plain HTML/JS, no build step).

The page shows the prompt (and response), the model's P(harmful) and prediction, buttons and
keyboard shortcuts (``h`` harmful, ``u`` unharmful, ``s`` skip, ``b`` / Backspace back to the
previous item to correct it) and progress through the queue. Every decision is one transaction in
the store, committed before the page moves on, so closing the browser or killing the server never
loses a review that the page showed as saved.

Text is rendered with ``textContent`` only (prompts are hostile by nature: HTML in them is shown,
never run); a strict Content-Security-Policy forbids inline scripts; POSTs must be JSON from the
same origin (a cross-site form cannot label items). The server binds to 127.0.0.1 by default.

JSON API (what the page uses): ``GET /api/status?reviewer=``, ``GET /api/next?reviewer=&exclude=``,
``GET /api/item/{id}``, ``POST /api/review {item_id, label, reviewer, note}``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from guardmatch.data.example import UnknownLabelError
from guardmatch.review.store import MAX_REVIEWER_CHARS, ReviewStore

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class ReviewIn(BaseModel):
    """One decision posted by the page."""

    item_id: str = Field(min_length=1)
    label: str
    reviewer: str = Field("", max_length=MAX_REVIEWER_CHARS)
    note: str | None = Field(None, max_length=4000)


def static_dir() -> Path:
    return Path(str(resources.files("guardmatch.review") / "static"))


def _host_name(host_header: str) -> str:
    """``localhost:8765`` -> ``localhost``, ``[::1]:8765`` -> ``[::1]`` (lower-cased)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    name, _, port = host.partition(":")
    return name if not port or port.isdigit() else host


def create_app(db_path: str | Path, reviewer: str | None = None, allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS) -> Any:
    """The FastAPI app serving ``db_path`` (needs the ``serve`` extra: fastapi, uvicorn).

    Requests whose ``Host`` is not one of ``allowed_hosts`` (any port) get 400: a page on another
    site that resolves its own name to 127.0.0.1 (DNS rebinding) cannot read or label items.
    """
    try:
        from fastapi import FastAPI, HTTPException, Request
        from fastapi.responses import FileResponse, JSONResponse
        from fastapi.staticfiles import StaticFiles
    except ImportError as exc:  # pragma: no cover - optional extra
        raise ImportError("the review page needs FastAPI and uvicorn: pip install 'guardmatch[serve]'") from exc

    db_path = Path(db_path)
    ReviewStore.open(db_path, create=False).close()  # fail now, not on the first request
    default_reviewer = reviewer or ""

    app = FastAPI(title="guardmatch review", docs_url=None, redoc_url=None, openapi_url=None)
    static = static_dir()

    allowed = {h.lower() for h in allowed_hosts}

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        if _host_name(request.headers.get("host", "")) not in allowed:
            return JSONResponse({"detail": f"unexpected Host header; this page answers only to "
                                           f"{', '.join(sorted(allowed))}"}, status_code=400)
        if request.method == "POST":
            ctype = request.headers.get("content-type", "")
            if not ctype.startswith("application/json"):
                return JSONResponse({"detail": "POST bodies must be application/json"}, status_code=415)
            origin = request.headers.get("origin")
            host = request.headers.get("host", "")
            if origin and origin.split("://", 1)[-1] != host:
                return JSONResponse({"detail": f"cross-origin request from {origin} refused"}, status_code=403)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    def store() -> ReviewStore:
        return ReviewStore.open(db_path, create=False)

    @app.get("/")
    def index() -> Any:
        return FileResponse(static / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/api/status")
    def status(reviewer: str = "") -> dict[str, Any]:
        with store() as s:
            return {"db": db_path.name, "task": s.task.value, "default_reviewer": default_reviewer,
                    "progress": s.progress(reviewer or default_reviewer or None),
                    "open_conflicts": len(s.conflicts("open"))}

    @app.get("/api/next")
    def next_item(reviewer: str = "", exclude: str = "") -> dict[str, Any]:
        who = reviewer or default_reviewer
        if len(who) > MAX_REVIEWER_CHARS:
            raise HTTPException(422, f"reviewer names have at most {MAX_REVIEWER_CHARS} characters")
        if not who:
            raise HTTPException(400, "set a reviewer name first")
        with store() as s:
            item = s.next_item(who, [e for e in exclude.split(",") if e])
            progress = s.progress(who)
        return {"item": item.to_dict() if item else None, "progress": progress}

    @app.get("/api/item/{item_id}")
    def get_item(item_id: str) -> dict[str, Any]:
        with store() as s:
            try:
                return {"item": s.queue_item(item_id).to_dict()}
            except KeyError:
                raise HTTPException(404, f"unknown item id {item_id!r}") from None

    @app.post("/api/review")
    def post_review(body: ReviewIn) -> dict[str, Any]:
        who = (body.reviewer or default_reviewer).strip()
        if not who:
            raise HTTPException(400, "a review needs a reviewer name")
        with store() as s:
            try:
                outcome = s.add_review(body.item_id, body.label, who, note=body.note, origin="web")
            except UnknownLabelError as exc:
                raise HTTPException(422, str(exc)) from None
            except KeyError:
                raise HTTPException(404, f"unknown item id {body.item_id!r}") from None
            return {"outcome": outcome.__dict__, "progress": s.progress(who)}

    return app


def serve(db_path: str | Path, host: str = "127.0.0.1", port: int = 8765, reviewer: str | None = None) -> None:
    """Run the review page with uvicorn (blocking)."""
    import uvicorn

    hosts = LOOPBACK_HOSTS if host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::") else (*LOOPBACK_HOSTS, host)
    uvicorn.run(create_app(db_path, reviewer, allowed_hosts=hosts), host=host, port=port, log_level="warning")
