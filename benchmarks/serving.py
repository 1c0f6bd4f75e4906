"""Serving benchmark: ONNX parity, calibration (ECE before/after), throughput per backend, server load test.

    nice -n 5 python benchmarks/serving.py --model /work/cache/models/quickstart \
        --manifest /work/cache/models/quickstart_split_manifest.json

Parts (``--parts``, default all):

- ``parity``: P(harmful) of the ONNX float and int8 exports against PyTorch on real WildGuardTest prompts.
- ``calibration``: temperature and threshold fitted on the *held-out* part of the training source
  (WildGuardTrain labeled examples the run did not use, minus any text that occurs in the prompt test
  suite); ECE, F1, precision, recall, FPR on each test set before and after. Test sets are never fitted on.
- ``throughput``: texts/s at batch 1, 8, 64 for PyTorch (``GuardClassifier.predict_proba``), ONNX,
  ONNX int8 and the Hugging Face ``pipeline("text-classification")`` wrapping the *same* weights, on
  the same texts; best of ``--rounds`` rounds (the machine is shared).
- ``load``: a real ``guardmatch serve`` process on loopback, ``--clients`` concurrent clients sending
  ``--requests`` single-text ``/v1/moderations`` requests; p50/p90/p99 latency, errors, throughput,
  server memory, mean micro-batch size; and a sequential single-client run for idle latency.

Writes ``benchmarks/results/serving.json`` and ``serving.md`` (tables, with the load conditions).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    import onnxruntime
    import torch
    import transformers

    return {
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def ensure_exports(model_dir: Path) -> dict[str, Path]:
    from guardmatch.serving.onnx import export_onnx

    out = {}
    for q in (None, "int8"):
        target = model_dir.parent / f"{model_dir.name}_onnx{'_' + q if q else ''}"
        if not (target / "model.onnx").exists():
            log(f"exporting {model_dir} -> {target} (quantize={q})")
            export_onnx(model_dir, target, quantize=q)
        out[q or "fp32"] = target
    return out


def hf_pipeline(clf: Any) -> Any:
    """``pipeline("text-classification")`` over the same encoder and heads as ``clf``."""
    from transformers import PreTrainedModel, pipeline
    from transformers.modeling_outputs import SequenceClassifierOutput

    class GuardForSequenceClassification(PreTrainedModel):
        config_class = type(clf.encoder.config)
        base_model_prefix = "guard"
        _supports_sdpa = True
        _supports_attention_backend = True

        def __init__(self, config: Any, guard: Any = None):
            super().__init__(config)
            self.guard = guard

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
            logits = self.guard.class_logits(self.guard(input_ids, attention_mask, token_type_ids=token_type_ids))
            return SequenceClassifierOutput(logits=logits)

    cfg = copy.deepcopy(clf.encoder.config)
    cfg.id2label = {0: "unharmful", 1: "harmful"}
    cfg.label2id = {"unharmful": 0, "harmful": 1}
    model = GuardForSequenceClassification(cfg, clf).eval()
    import transformers

    # The pipeline logs (at error level) that it does not know this class; it works through forward().
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity(transformers.logging.CRITICAL)
    try:
        return pipeline("text-classification", model=model, tokenizer=clf.tokenizer, device=-1, top_k=None,
                        truncation=True, max_length=clf.config.max_length)
    finally:
        transformers.logging.set_verbosity(level)


def test_prompts(n: int, data_dir: str | None) -> list[str]:
    from guardmatch.data.suites import load_dataset

    examples = load_dataset("wildguardtest", "prompt", data_dir).examples
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(examples))[:n]
    return [examples[i].prompt for i in idx]


# ---------------------------------------------------------------------------------------------
# Parts
# ---------------------------------------------------------------------------------------------


def part_parity(model_dir: Path, exports: dict[str, Path], texts: list[str]) -> dict[str, Any]:
    from guardmatch.model import GuardClassifier
    from guardmatch.serving.onnx import OnnxClassifier, parity

    clf = GuardClassifier.from_pretrained(model_dir)
    out = {"texts": len(texts), "source": "WildGuardTest prompts (random sample, seed 0)"}
    for name, path in exports.items():
        out[name] = parity(clf, OnnxClassifier.from_pretrained(path), texts, batch_size=32)
        out[name]["export_probe"] = json.loads((path / "guardmatch.json").read_text())["provenance"]["onnx"].get("parity")
        log(f"parity {name}: {out[name]['max_abs_diff_proba']:.2e} max |dP|")
    return out


def part_calibration(model_dir: Path, manifest: Path, data_dir: str | None, save_to: Path | None) -> dict[str, Any]:
    from guardmatch.calibration import calibrate, held_out_examples
    from guardmatch.data.suites import load_suite
    from guardmatch.evaluation.report import evaluate_scores
    from guardmatch.model import GuardClassifier
    from guardmatch.scoring import probs_from_logits

    clf = GuardClassifier.from_pretrained(model_dir)
    suite = load_suite("prompt", data_dir)
    held = held_out_examples("wildguardtrain", "prompt", exclude_manifest=manifest, exclude_sets=dict(suite.sets),
                             data_dir=data_dir)
    log(f"calibration data: {held.description}")
    z_held = clf.predict_logits([e.prompt for e in held.examples], batch_size=64)
    z_test = {name: clf.predict_logits([e.prompt for e in exs], batch_size=64) for name, exs in suite.sets.items()}
    labels = {name: [e.label for e in exs] for name, exs in suite.sets.items()}

    def table(temperature: float, threshold: float) -> dict[str, Any]:
        res = evaluate_scores({n: (labels[n], probs_from_logits(z, temperature)) for n, z in z_test.items()}, threshold)
        return {n: {"ece": r.ece, **{k: r.metrics[k] for k in ("f1", "precision", "recall", "fpr", "auprc")}}
                for n, r in res.items()}

    out: dict[str, Any] = {"data": held.description, "uncalibrated": {
        "temperature": clf.config.temperature, "threshold": clf.config.threshold,
        "test": table(clf.config.temperature, clf.config.threshold)}}
    for target, value in (("f1", None), ("fpr", 0.05)):
        model = copy.copy(clf)
        model.config = clf.config.model_copy(deep=True)
        result = calibrate(model, held.examples, target=target, value=value, logits=z_held, source="wildguardtrain")
        key = target if value is None else f"{target}={value}"
        out[key] = {"temperature": result.temperature, "threshold": result.threshold,
                    "held_out": {k: result.record[k] for k in ("ece_before", "ece_after", "nll_before", "nll_after")}
                    | {"achieved": result.record["achieved"]},
                    "test": table(result.temperature, result.threshold)}
        log(f"calibration {key}: T={result.temperature:.3f} thr={result.threshold:.3f} "
            f"ECE held-out {result.ece_before:.3f}->{result.ece_after:.3f}")
        if save_to is not None and target == "f1":
            model.config.calibration["data"] = held.description
            model.save_pretrained(save_to)
            out[key]["saved_to"] = str(save_to)
    return out


def _rate(fn: Any, texts: list[str], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best


def part_throughput(model_dir: Path, exports: dict[str, Path], texts: list[str], batches: list[int],
                    rounds: int, threads: int) -> list[dict[str, Any]]:
    import torch

    from guardmatch.model import GuardClassifier
    from guardmatch.serving.onnx import OnnxClassifier

    torch.set_num_threads(threads)
    clf = GuardClassifier.from_pretrained(model_dir)
    backends = {
        "pytorch": clf,
        "onnx": OnnxClassifier.from_pretrained(exports["fp32"], threads=threads),
        "onnx-int8": OnnxClassifier.from_pretrained(exports["int8"], threads=threads),
    }
    pipe = hf_pipeline(GuardClassifier.from_pretrained(model_dir))
    rows = []
    for bs in batches:
        for name, backend in backends.items():
            backend.predict_proba(texts[:16], batch_size=bs)  # warm-up
            rate = _rate(lambda t, b=backend, n=bs: b.predict_proba(t, batch_size=n), texts, rounds)
            rows.append({"backend": name, "batch": bs, "texts_per_s": rate})
            log(f"batch {bs:3d} {name:10s} {rate:8.1f} texts/s")
        with torch.inference_mode():
            pipe(texts[:16], batch_size=bs)
            rate = _rate(lambda t, n=bs: pipe(t, batch_size=n), texts, rounds)
        rows.append({"backend": "hf-pipeline", "batch": bs, "texts_per_s": rate})
        log(f"batch {bs:3d} {'hf-pipeline':10s} {rate:8.1f} texts/s")
    return rows


# ---------------------------------------------------------------------------------------------
# Load test
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000
    if len(a) == 0:
        return {}
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()), "mean_ms": float(a.mean())}


async def _load(base: str, texts: list[str], clients: int, requests: int, pid: int) -> dict[str, Any]:
    """``clients`` concurrent loops posting single-text moderations until ``requests`` are sent.

    aiohttp when installed (several times less client CPU than httpx, which matters when the load
    generator shares two cores with the server), else httpx. No retries: every failure is counted.
    """
    import psutil

    proc = psutil.Process(pid)
    rss = [proc.memory_info().rss]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(requests))
    done = asyncio.Event()

    async def sample_memory() -> None:
        while not done.is_set():
            rss.append(proc.memory_info().rss)
            await asyncio.sleep(0.25)

    try:
        import aiohttp
    except ImportError:
        aiohttp = None

    if aiohttp is not None:
        session = aiohttp.ClientSession(base_url=base, connector=aiohttp.TCPConnector(limit=clients),
                                        timeout=aiohttp.ClientTimeout(total=300))

        async def post(body: dict) -> tuple[int, Any]:
            async with session.post("/v1/moderations", json=body) as r:
                return r.status, await r.json()

        async def get_text(url: str) -> str:
            async with session.get(url) as r:
                return await r.text()
        client_name = f"aiohttp {aiohttp.__version__}"
    else:
        import httpx

        session = httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_connections=clients), timeout=300)

        async def post(body: dict) -> tuple[int, Any]:
            r = await session.post("/v1/moderations", json=body)
            return r.status_code, r.json()

        async def get_text(url: str) -> str:
            return (await session.get(url)).text
        client_name = f"httpx {httpx.__version__}"

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter()
            try:
                status, body = await post({"input": texts[i % len(texts)]})
                if status != 200 or len(body["results"]) != 1:
                    errors[str(status)] = errors.get(str(status), 0) + 1
                    continue
            except Exception as exc:  # noqa: BLE001 - counted as an error
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - t0)

    try:
        mem_task = asyncio.create_task(sample_memory())
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
        done.set()
        await mem_task
        metrics = await get_text("/metrics")
    finally:
        await session.close() if aiohttp is not None else await session.aclose()
    bsum = re.search(r'guardmatch_batch_size_sum\{model="prompt"\} ([0-9.e+]+)', metrics)
    bcount = re.search(r'guardmatch_batch_size_count\{model="prompt"\} ([0-9.e+]+)', metrics)
    return {
        "client": client_name, "clients": clients, "requests": requests, "ok": len(latencies),
        "errors": sum(errors.values()), "error_kinds": errors, "wall_s": wall,
        "requests_per_s": len(latencies) / wall, **_percentiles(latencies),
        "server_rss_mb_start": rss[0] / 2**20, "server_rss_mb_peak": max(rss) / 2**20,
        # cumulative over the server's life (the idle run comes first)
        "mean_batch_cumulative": float(bsum.group(1)) / float(bcount.group(1)) if bsum and bcount else None,
    }


def part_load(model_dir: Path, texts: list[str], clients: int, requests: int, threads: int,
              max_batch: int, max_wait_ms: float, keep_alive: float = 75.0) -> dict[str, Any]:
    port = _free_port()
    exe = Path(sys.executable).with_name("guardmatch")
    cmd = ["nice", "-n", "5", str(exe), "serve", "--prompt-model", str(model_dir), "--port", str(port),
           "--threads", str(threads), "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms),
           "--keep-alive", str(keep_alive), "--log-level", "warning"]
    log(f"starting server: {' '.join(cmd)}")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in 180 s")
            time.sleep(0.5)
        # the nice wrapper execs guardmatch: same pid
        idle = asyncio.run(_load(base, texts, 1, 200, proc.pid))
        log(f"idle (1 client, 200 requests): p50 {idle['p50_ms']:.1f} ms p99 {idle['p99_ms']:.1f} ms")
        loaded = asyncio.run(_load(base, texts, clients, requests, proc.pid))
        log(f"load ({clients} clients, {requests} requests): {loaded['requests_per_s']:.1f} req/s, "
            f"p50 {loaded['p50_ms']:.0f} ms p99 {loaded['p99_ms']:.0f} ms, errors {loaded['errors']}")
        return {"model": str(model_dir), "server": {"threads": threads, "max_batch": max_batch,
                                                    "max_wait_ms": max_wait_ms, "keep_alive_s": keep_alive},
                "load_avg_after": [round(x, 2) for x in os.getloadavg()], "idle": idle, "load": loaded}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def to_markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = ["# Serving benchmark", "",
             f"Model: `{res['model']}` (MiniLM-L6 prompt classifier, max length {res.get('max_length')}). "
             f"Machine: {m['cpus']} CPU cores shared with other engineers' jobs (load averages below), torch {m['torch']}, "
             f"onnxruntime {m['onnxruntime']}, transformers {m['transformers']}; run under `nice -n 5` with "
             f"OMP_WAIT_POLICY={m.get('omp_wait_policy')} and onnxruntime thread spinning off.",
             ""]
    invocations = res.get("invocations") or [{"command": res["command"], "parts": ["all"]}]
    lines += ["Commands (each wrote its parts into `serving.json`; load averages of the 2-core machine):", ""]
    for inv in invocations:
        lines.append(f"- `{inv['command']}` ({', '.join(inv['parts'])}; load avg {inv.get('load_avg_start')} → "
                     f"{inv.get('load_avg_end')})")
    lines.append("")
    if "parity" in res:
        p = res["parity"]
        lines += ["## ONNX parity (P(harmful) vs PyTorch)", "",
                  f"{p['texts']} {p['source']}.", "",
                  "| graph | max abs diff | mean abs diff | max abs diff (logits) | label agreement |",
                  "|---|---:|---:|---:|---:|"]
        for k in ("fp32", "int8"):
            if k in p:
                r = p[k]
                lines.append(f"| {k} | {r['max_abs_diff_proba']:.2e} | {r['mean_abs_diff_proba']:.2e} | "
                             f"{r['max_abs_diff_logits']:.2e} | {r['label_agreement']:.4f} |")
        lines.append("")
    if "calibration" in res:
        c = res["calibration"]
        d = c["data"]
        lines += ["## Calibration", "",
                  f"Fitted on {d['n']} held-out labeled WildGuardTrain prompts ({d['positives']} harmful): the "
                  f"{d['labeled']} labeled rows minus the {d.get('excluded_training_ids', 0)} the model was trained on "
                  f"minus {d.get('excluded_test_overlap', 0)} whose text occurs in a test set. Test sets are only "
                  "evaluated.", "",
                  "| target | T | threshold | held-out ECE before → after | held-out NLL before → after | "
                  "held-out P / R / F1 / FPR at the threshold |",
                  "|---|---:|---:|---:|---:|---|"]
        for key in (k for k in c if k not in ("data", "uncalibrated")):
            r = c[key]
            h = r["held_out"]
            a = h["achieved"]
            lines.append(f"| {key} | {r['temperature']:.3f} | {r['threshold']:.3f} | {h['ece_before']:.3f} → "
                         f"{h['ece_after']:.3f} | {h['nll_before']:.3f} → {h['nll_after']:.3f} | "
                         f"{a['precision']:.3f} / {a['recall']:.3f} / {a['f1']:.3f} / {a['fpr']:.3f} |")
        lines += ["", "Test sets (ECE, and F1 / precision / recall / FPR at the threshold of each setting):", "",
                  "| test set | setting | ECE | F1 | precision | recall | FPR |", "|---|---|---:|---:|---:|---:|---:|"]
        settings = ["uncalibrated"] + [k for k in c if k not in ("data", "uncalibrated")]
        for name in c["uncalibrated"]["test"]:
            for key in settings:
                r = c[key]["test"][name]
                label = key if key != "uncalibrated" else "uncalibrated (T=1, thr 0.5)"
                lines.append(f"| {name} | {label} | {r['ece']:.3f} | {r['f1']:.3f} | {r['precision']:.3f} | "
                             f"{r['recall']:.3f} | {r['fpr']:.3f} |")
        lines.append("")
    if "throughput" in res:
        rows = res["throughput"]
        backends = list(dict.fromkeys(r["backend"] for r in rows))
        batches = list(dict.fromkeys(r["batch"] for r in rows))
        get = {(r["backend"], r["batch"]): r["texts_per_s"] for r in rows}
        t = res["throughput_setup"]
        lines += ["## Throughput (texts/s)", "",
                  f"{t['texts']} WildGuardTest prompts (mean {t['mean_chars']:.0f} chars), truncated at "
                  f"{res.get('max_length')} tokens; {t['threads']} threads; best of {t['rounds']} rounds.", "",
                  "| backend | " + " | ".join(f"batch {b}" for b in batches) + " |",
                  "|---|" + "---:|" * len(batches)]
        for be in backends:
            lines.append(f"| {be} | " + " | ".join(f"{get[(be, b)]:.1f}" for b in batches) + " |")
        lines += ["", "Speed-up over the HF pipeline:", "",
                  "| backend | " + " | ".join(f"batch {b}" for b in batches) + " |", "|---|" + "---:|" * len(batches)]
        for be in backends:
            if be != "hf-pipeline":
                lines.append(f"| {be} | " + " | ".join(f"{get[(be, b)] / get[('hf-pipeline', b)]:.2f}×"
                                                     for b in batches) + " |")
        lines.append("")
    runs = res.get("load_runs", {})
    if runs:
        lines += ["## Server under load (loopback)", "",
                  "A real `guardmatch serve` process; the load generator (asyncio, one process) shares the same 2 "
                  "cores; one real WildGuardTest prompt per `/v1/moderations` request; no client retries. "
                  "Latency under 200 concurrent clients is queueing: p50 ≈ clients / throughput.", "",
                  "| run | server | clients | requests | ok | errors | req/s | p50 ms | p90 ms | p99 ms | max ms | "
                  "server RSS MB (start → peak) | load avg after |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for name, ld in runs.items():
            s_ = ld["server"]
            server = (f"`{Path(ld['model']).name}`, max batch {s_['max_batch']}, wait {s_['max_wait_ms']} ms, "
                      f"keep-alive {s_.get('keep_alive_s', 5)} s")
            for key in ("idle", "load"):
                r = ld[key]
                lines.append(f"| {name} / {key} | {server} | {r['clients']} | {r['requests']} | {r['ok']} | "
                             f"{r['errors']}{' ' + str(r['error_kinds']) if r['errors'] else ''} | "
                             f"{r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | "
                             f"{r['max_ms']:.1f} | {r['server_rss_mb_start']:.0f} → {r['server_rss_mb_peak']:.0f} | "
                             f"{ld.get('load_avg_after', '')} |")
            lines.append(f"| | client: {ld['load'].get('client', 'httpx 0.28.1')} | | | | | | | | | | | |")
        lines.append("")
    if res.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("/work/cache/models/quickstart"))
    ap.add_argument("--manifest", type=Path, default=None, help="the model's split manifest (calibration)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--parts", default="parity,calibration,throughput,load")
    ap.add_argument("--texts", type=int, default=256, help="texts for the throughput runs")
    ap.add_argument("--parity-texts", type=int, default=512)
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--load-model", default="int8", help="fp32 | int8 | pytorch: what the server runs")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--keep-alive", type=float, default=75.0)
    ap.add_argument("--load-label", default=None, help="name of this load run in the results")
    ap.add_argument("--save-calibrated", type=Path, default=None, help="save the f1-calibrated model here")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # OpenMP threads that sleep when idle: on shared cores spinning made PyTorch (and so the HF
    # pipeline) ~5x slower in our runs; onnxruntime gets the same treatment (no spinning).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    from guardmatch.model import load_config

    parts = set(args.parts.split(","))
    out_json = args.out / "serving.json"
    res: dict[str, Any] = json.loads(out_json.read_text()) if out_json.exists() else {}
    res.update({"model": str(args.model), "max_length": load_config(args.model).max_length, "machine": machine(),
                "command": "nice -n 5 python " + shlex.join(sys.argv)})
    exports = ensure_exports(args.model)
    texts = test_prompts(max(args.texts, args.parity_texts), args.data_dir)
    if "parity" in parts:
        res["parity"] = part_parity(args.model, exports, texts[: args.parity_texts])
    if "calibration" in parts:
        manifest = args.manifest or (args.model.parent / "split_manifest.json")
        res["calibration"] = part_calibration(args.model, manifest, args.data_dir, args.save_calibrated)
    if "throughput" in parts:
        sample = texts[: args.texts]
        res["throughput_setup"] = {"texts": len(sample), "mean_chars": float(np.mean([len(t) for t in sample])),
                                   "threads": args.threads, "rounds": args.rounds}
        res["throughput"] = part_throughput(args.model, exports, sample, [int(b) for b in args.batches.split(",")],
                                            args.rounds, args.threads)
    if "load" in res:  # results of an earlier version of this script: one run, httpx client
        res.setdefault("load_runs", {})["max_batch=64, keep-alive 5 s"] = res.pop("load")
    if "load" in parts:
        target = args.model if args.load_model == "pytorch" else exports[args.load_model]
        name = args.load_label or f"{args.load_model}, max_batch={args.max_batch}"
        res.setdefault("load_runs", {})[name] = part_load(target, texts, args.clients, args.requests, args.threads,
                                                          args.max_batch, args.max_wait_ms, args.keep_alive)
    res["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    res.setdefault("invocations", []).append({"command": res["command"], "parts": sorted(parts),
                                              "at": time.strftime("%Y-%m-%d %H:%M:%S"),
                                              "load_avg_start": res["machine"]["load_avg"],
                                              "load_avg_end": res["load_avg_end"]})
    args.out.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "serving.md").write_text(to_markdown(res))
    log(f"wrote {out_json} and serving.md")


if __name__ == "__main__":
    main()
