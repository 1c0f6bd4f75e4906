"""The poison test under load: bad requests mixed into 200 concurrent clients must cost no one else.

    nice -n 5 .venv/bin/python benchmarks/hardening_poison_load.py

Against a real ``guardmatch serve`` process on loopback serving an int8 ONNX export of a MiniLM
prompt classifier (``--model DIR``; by default the packaged MiniLM with random heads, built once
under ``--work-dir``: this measures robustness and latency, not accuracy). Phases, each bounded by
its ``--*-s`` duration (about 90 s of load in all):

- ``offline``: the same int8 engine in this process, batch ``--max-batch``, on the small texts: texts/s.
- ``small``: ``--probe-clients`` clients sending one-text requests back to back: p50/p99 latency.
- ``small+large``: the same probe while ``--large-clients`` clients send 64 texts of 32k characters
  each, back to back (the issue's stall): p50/p99 of the small requests, and their ratio to ``small``.
- ``poison``: 200 clients, every ``--poison-every``-th request a poison one, alternating a lone
  surrogate sent as the JSON escape ``"abc \\ud800 def"`` (``/v1/moderations`` and ``/v1/classify``)
  and 100,000-deep nested JSON; good requests failed (target 0), poison answers by status, and
  the good requests' throughput as a fraction of ``offline`` (target >= 0.8).

Small texts are WildGuardTest prompts when the shared data is there, else seeded generated text.
Client and server share the machine's cores; the load average is recorded. Writes
``benchmarks/results/hardening_poison_load.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from serving import _free_port  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SURROGATE_BODY = b'{"input": "abc \\ud800 def"}'  # valid JSON, a lone surrogate once parsed
SURROGATE_CLASSIFY = b'{"prompt": "abc \\ud800 def"}'
DEEP_BODY = b"[" * 100_000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_model(work: Path, max_length: int) -> Path:
    """An int8 ONNX export of the packaged MiniLM with random heads (cached under ``work``)."""
    from guardmatch.model import GuardClassifier
    from guardmatch.serving.onnx import export_onnx

    torch_dir, onnx_dir = work / "minilm-random", work / "minilm-random-onnx-int8"
    if not (onnx_dir / "model.onnx").exists():
        if not (torch_dir / "guardmatch.json").exists():
            log(f"building {torch_dir} (packaged MiniLM, random heads, max_length {max_length})")
            GuardClassifier.from_encoder("minilm", seed=0, max_length=max_length).save_pretrained(torch_dir)
        log(f"exporting {onnx_dir} (int8)")
        export_onnx(torch_dir, onnx_dir, quantize="int8")
    return onnx_dir


def small_texts(n: int, data_dir: str | None) -> tuple[list[str], str]:
    try:
        from guardmatch.data.suites import load_dataset

        examples = load_dataset("wildguardtest", "prompt", data_dir).examples
        idx = np.random.default_rng(0).permutation(len(examples))[:n]
        return [examples[i].prompt for i in idx], "WildGuardTest prompts (random sample, seed 0)"
    except Exception as exc:  # noqa: BLE001 - no shared data: generated text instead
        log(f"WildGuardTest not available ({exc}); using generated text")
        return [" ".join(_words(np.random.default_rng(i), 12 + i % 30)) for i in range(n)], "generated (seeded)"


_VOCAB = ("the", "model", "request", "server", "how", "do", "I", "make", "a", "safe", "process", "kill",
          "python", "weather", "history", "empire", "write", "poem", "about", "sea", "bread", "recipe")


def _words(rng: np.random.Generator, n: int) -> list[str]:
    return [_VOCAB[i] for i in rng.integers(0, len(_VOCAB), n)]


def large_body(items: int, chars: int) -> bytes:
    rng = np.random.default_rng(7)
    texts = []
    for _ in range(items):
        text = " ".join(_words(rng, chars // 4))
        texts.append((text * (chars // max(len(text), 1) + 1))[:chars])
    return json.dumps({"input": texts}).encode()


def _pct(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000
    if not len(a):
        return {"n": 0}
    return {"n": int(len(a)), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2)}


def offline_rate(model_dir: Path, texts: list[str], batch: int, threads: int, seconds: float) -> dict[str, Any]:
    from guardmatch.serving.backends import cut_to_window
    from guardmatch.serving.onnx import OnnxClassifier

    clf = OnnxClassifier.from_pretrained(model_dir, threads=threads)
    texts = cut_to_window(texts, int(clf.config.max_length))
    clf.score(texts[:batch], batch_size=batch)  # warm-up
    best, done, t_end = 0.0, 0, time.perf_counter() + seconds
    while time.perf_counter() < t_end or done == 0:
        t0 = time.perf_counter()
        clf.score(texts, batch_size=batch)
        best = max(best, len(texts) / (time.perf_counter() - t0))
        done += 1
    return {"texts_per_s": round(best, 1), "batch": batch, "threads": threads, "texts": len(texts),
            "rounds": done, "note": "best round; the server scores the same texts one per request"}


class Client:
    """aiohttp on loopback; every answer's status is counted, nothing is retried."""

    def __init__(self, base: str, connections: int):
        import aiohttp

        self.aiohttp = aiohttp
        self.session = aiohttp.ClientSession(base_url=base, connector=aiohttp.TCPConnector(limit=connections),
                                             timeout=aiohttp.ClientTimeout(total=120))

    async def post(self, path: str, raw: bytes, expect: int | None = None) -> tuple[int | str, float, Any]:
        t0 = time.perf_counter()
        try:
            async with self.session.post(path, data=raw, headers={"content-type": "application/json"}) as r:
                body = await r.read()
                status: int | str = r.status
        except Exception as exc:  # noqa: BLE001 - a reset or timeout is a failure, counted by name
            return type(exc).__name__, time.perf_counter() - t0, None
        return status, time.perf_counter() - t0, body

    async def close(self) -> None:
        await self.session.close()


async def _until(deadline: float, fn: Any) -> None:
    while time.monotonic() < deadline:
        await fn()


def _good(status: Any, body: Any, n: int) -> bool:
    if status != 200 or body is None:
        return False
    try:
        return len(json.loads(body)["results"]) == n
    except (ValueError, KeyError, TypeError):
        return False


async def probe_phase(base: str, texts: list[str], probe_clients: int, seconds: float, large_clients: int,
                      large: bytes | None) -> dict[str, Any]:
    """Small one-text requests (``probe_clients`` loops), with ``large_clients`` large senders or none."""
    client = Client(base, probe_clients + large_clients + 4)
    lat: list[float] = []
    failed: dict[str, int] = {}
    large_lat: list[float] = []
    large_failed: dict[str, int] = {}
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds

    async def small() -> None:
        i = next(counter)
        status, dt, body = await client.post("/v1/moderations", json.dumps({"input": texts[i % len(texts)]}).encode())
        if _good(status, body, 1):
            lat.append(dt)
        else:
            failed[str(status)] = failed.get(str(status), 0) + 1

    async def big() -> None:
        status, dt, body = await client.post("/v1/moderations", large)  # type: ignore[arg-type]
        if _good(status, body, 64):
            large_lat.append(dt)
        else:
            large_failed[str(status)] = large_failed.get(str(status), 0) + 1

    try:
        jobs = [_until(deadline, small) for _ in range(probe_clients)]
        if large is not None:
            jobs += [_until(deadline, big) for _ in range(large_clients)]
        await asyncio.gather(*jobs)
    finally:
        await client.close()
    out: dict[str, Any] = {"seconds": seconds, "probe_clients": probe_clients, "small": _pct(lat),
                           "small_failed": failed}
    if large is not None:
        out |= {"large_clients": large_clients, "large": _pct(large_lat), "large_failed": large_failed}
    return out


async def poison_phase(base: str, texts: list[str], clients: int, seconds: float, every: int) -> dict[str, Any]:
    """``clients`` loops; every ``every``-th request poison (surrogate / classify surrogate / deep JSON)."""
    client = Client(base, clients)
    kinds = (("surrogate", "/v1/moderations", SURROGATE_BODY), ("surrogate_classify", "/v1/classify", SURROGATE_CLASSIFY),
             ("deep_json", "/v1/moderations", DEEP_BODY))
    good_lat: list[float] = []
    good_failed: dict[str, int] = {}
    poison: dict[str, dict[str, int]] = {k: {} for k, _, _ in kinds}
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds

    async def one() -> None:
        i = next(counter)
        if every and i % every == every - 1:
            name, path, raw = kinds[(i // every) % len(kinds)]
            status, _, _ = await client.post(path, raw)
            poison[name][str(status)] = poison[name].get(str(status), 0) + 1
            return
        status, dt, body = await client.post("/v1/moderations", json.dumps({"input": texts[i % len(texts)]}).encode())
        if _good(status, body, 1):
            good_lat.append(dt)
        else:
            good_failed[str(status)] = good_failed.get(str(status), 0) + 1

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(_until(deadline, one) for _ in range(clients)))
    finally:
        await client.close()
    wall = time.perf_counter() - t0
    return {"clients": clients, "seconds": round(wall, 2), "poison_every": every,
            "good_ok": len(good_lat), "good_failed": sum(good_failed.values()), "good_failed_kinds": good_failed,
            "good_requests_per_s": round(len(good_lat) / wall, 1), "good_latency": _pct(good_lat),
            "poison_statuses": poison}


def start_server(model_dir: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("guardmatch")
    cmd = [str(exe), "serve", "--prompt-model", str(model_dir), "--port", str(port), "--threads", str(args.threads),
           "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--max-list", "64",
           "--max-chars", "32000", "--log-level", "warning", "--model-name", "minilm-random-int8"]
    log("starting: " + " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    import httpx

    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not start in 120 s")
        time.sleep(0.3)


def to_markdown(res: dict[str, Any]) -> str:
    s, sl, p, off = res["small"], res["small_with_large"], res["poison"], res["offline"]
    lines = [
        "# Poison requests under load (issue 15)",
        "",
        f"`{res['command']}` — {res['machine']['cpus']} CPU cores shared by client and server "
        f"(load average before {res['machine']['load_avg_before']}, after {res['load_avg_after']}); model: "
        f"{res['model']['what']}, int8 ONNX, max_length {res['model']['max_length']}; server "
        f"`--threads {res['server']['threads']} --max-batch {res['server']['max_batch']} "
        f"--max-wait-ms {res['server']['max_wait_ms']}`; small texts: {res['texts']}.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| good requests failed among {p['clients']} clients with poison mixed in | **{p['good_failed']}** of "
        f"{p['good_ok'] + p['good_failed']} | 0 |",
        "| poison answers (status: count) | "
        + "; ".join(f"{k}: {v}" for k, v in p["poison_statuses"].items()) + " | 4xx each |",
        f"| small-request p50 / p99 alone ({s['probe_clients']} clients) | {s['small'].get('p50_ms')} / "
        f"{s['small'].get('p99_ms')} ms | |",
        f"| small-request p50 / p99 with {sl['large_clients']} clients sending 64 x 32k chars | "
        f"{sl['small'].get('p50_ms')} / {sl['small'].get('p99_ms')} ms | |",
        f"| p99 ratio (with large / alone) | **{res['p99_ratio']}** | <= 3 |",
        f"| large requests (64 x 32k) completed / p50 | {sl['large'].get('n')} / {sl['large'].get('p50_ms')} ms | |",
        f"| server throughput, {p['clients']} clients (good one-text requests) | {p['good_requests_per_s']} req/s | |",
        f"| offline batch throughput, same int8 engine (batch {off['batch']}) | {off['texts_per_s']} texts/s | |",
        f"| server / offline | **{res['throughput_fraction']}** | >= 0.8 |",
        "",
        f"Good-request latency under the {p['clients']}-client mix: p50 {p['good_latency'].get('p50_ms')} ms, "
        f"p99 {p['good_latency'].get('p99_ms')} ms. Failed small probes: alone {s['small_failed'] or 'none'}, with "
        f"large {sl['small_failed'] or 'none'}; failed large requests: {sl['large_failed'] or 'none'}.",
        "",
        "Poison: a lone surrogate as the JSON escape `\"abc \\ud800 def\"` to `/v1/moderations` and "
        "`/v1/classify`, and `\"[\" * 100000`; each 422 naming the field or `too_deep`, answered before batching. "
        "Client and server share the cores, so the server's throughput is a lower bound of what it does "
        "with its own cores.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="an int8 ONNX export (default: built under --work-dir)")
    ap.add_argument("--work-dir", type=Path, default=Path(os.environ.get("GUARDMATCH_CACHE_DIR", "~/.cache/guardmatch"))
                    .expanduser() / "bench")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--probe-clients", type=int, default=4)
    ap.add_argument("--large-clients", type=int, default=2)
    ap.add_argument("--poison-every", type=int, default=10)
    ap.add_argument("--offline-s", type=float, default=10)
    ap.add_argument("--small-s", type=float, default=15)
    ap.add_argument("--large-s", type=float, default=25)
    ap.add_argument("--poison-s", type=float, default=30)
    ap.add_argument("--out", type=Path, default=RESULTS / "hardening_poison_load")
    args = ap.parse_args()

    load_before = [round(x, 2) for x in os.getloadavg()]
    model = args.model or build_model(args.work_dir, args.max_length)
    cfg = json.loads((model / "guardmatch.json").read_text())
    texts, source = small_texts(512, args.data_dir)
    log("offline throughput")
    offline = offline_rate(model, texts, args.max_batch, args.threads, args.offline_s)
    log(f"offline: {offline['texts_per_s']} texts/s")
    large = large_body(64, 32_000)
    port = _free_port()
    proc = start_server(model, port, args)
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(probe_phase(base, texts, args.probe_clients, 2, 0, None))  # warm-up
        small = asyncio.run(probe_phase(base, texts, args.probe_clients, args.small_s, 0, None))
        log(f"small alone: {small['small']}")
        with_large = asyncio.run(probe_phase(base, texts, args.probe_clients, args.large_s, args.large_clients, large))
        log(f"small with large: {with_large['small']}; large: {with_large['large']}")
        poison = asyncio.run(poison_phase(base, texts, args.clients, args.poison_s, args.poison_every))
        log(f"poison: good failed {poison['good_failed']}, {poison['good_requests_per_s']} req/s, "
            f"poison {poison['poison_statuses']}")
        import httpx

        served_name = httpx.get(f"{base}/v1/models", timeout=10).json()["data"][0]["id"]  # --model-name
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    p99a, p99b = small["small"].get("p99_ms"), with_large["small"].get("p99_ms")
    import onnxruntime

    res = {
        "command": "nice -n 5 .venv/bin/python benchmarks/hardening_poison_load.py" + "".join(
            f" {a}" for a in sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "load_avg_before": load_before, "python": platform.python_version(),
                    "onnxruntime": onnxruntime.__version__},
        "model": {"path": str(model), "what": "packaged MiniLM-L6 + random head" if args.model is None else str(model),
                  "max_length": cfg["max_length"], "served_name": served_name},
        "server": {"threads": args.threads, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms},
        "texts": source,
        "offline": offline, "small": small, "small_with_large": with_large, "poison": poison,
        "p99_ratio": round(p99b / p99a, 2) if p99a and p99b else None,
        "throughput_fraction": round(poison["good_requests_per_s"] / offline["texts_per_s"], 3),
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(to_markdown(res))
    log(f"wrote {args.out}.json and .md")
    print(to_markdown(res))


if __name__ == "__main__":
    main()
