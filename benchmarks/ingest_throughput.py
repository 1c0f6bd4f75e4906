"""Ingest throughput and peak memory on a large synthetic chat log built from real prompts.

The log (OpenAI ``messages`` JSONL, default >= 1 GiB) is generated under ``/work/cache`` (outside
the repository; never commit it) from the real prompts and responses in ``../shared/data``:
1-4 turn conversations whose user turns splice halves of two real prompts (so most are new
texts), real responses, segment fields (product, region, user_type), ~4% turns with injected PII,
~8% repeated conversations (exact duplicates), ~3% lightly edited ones (near duplicates) and
~0.05% bad lines (malformed JSON, a message without a role, non-UTF-8).

The ingest runs in a child process (``guardmatch ingest``'s Python API, default config, no NER);
peak RSS is the child's ``ru_maxrss``. Results: ``benchmarks/results/ingest_throughput.json``.

    nice -n 10 python benchmarks/ingest_throughput.py --gb 1.0          # build + measure
    nice -n 10 python benchmarks/ingest_throughput.py --gb 1.0 --delete # and remove the log after
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

from pii_redaction import GENERATORS, inject, load_texts  # noqa: E402

PRODUCTS = ["chat-web", "chat-mobile", "api", "assistant-plugin", "support-bot"]
REGIONS = ["US", "EU", "UK", "IN", "BR", "APAC"]
USER_TYPES = ["free", "pro", "enterprise", "anonymous"]


def _splice(a: str, b: str) -> str:
    return a[: max(1, len(a) // 2)].rstrip() + " " + b[len(b) // 2:].lstrip()


def build_log(path: Path, target_bytes: int, data: Path, seed: int = 0) -> dict:
    rng = random.Random(seed)
    prompts, responses = load_texts(data)
    pii_kinds = [k for k in GENERATORS if k != "PERSON"]
    path.parent.mkdir(parents=True, exist_ok=True)
    recent: list[str] = []
    n = bad = dups = near = 0
    with open(path, "wb") as fh:
        while fh.tell() < target_bytes:
            n += 1
            r = rng.random()
            if r < 0.0005:
                bad += 1
                fh.write(rng.choice([b'{"id": "broken", "messages": [\n',
                                     b'{"id": "x", "messages": [{"content": "no role"}]}\n',
                                     b'{"id": "y", "messages": [{"role": "user", "content": "caf\xe9"}]}\n']))
                continue
            if recent and r < 0.08:
                dups += 1
                fh.write(rng.choice(recent))
                continue
            if recent and r < 0.11:
                near += 1
                obj = json.loads(rng.choice(recent))
                for m in obj["messages"]:
                    m["content"] = m["content"].replace(" the ", " the very ", 1) + " Thanks!"
                obj["id"] = f"c{n}"
                fh.write((json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8"))
                continue
            messages = []
            for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
                user = _splice(rng.choice(prompts), rng.choice(prompts))
                if rng.random() < 0.04:
                    user, _ = inject(user, rng.choice(pii_kinds), rng)
                messages.append({"role": "user", "content": user})
                if rng.random() < 0.85:
                    messages.append({"role": "assistant", "content": rng.choice(responses)})
            obj = {"id": f"c{n}", "product": rng.choice(PRODUCTS), "region": rng.choice(REGIONS),
                   "user_type": rng.choice(USER_TYPES), "ts": 1_700_000_000 + n, "messages": messages}
            line = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")
            fh.write(line)
            if len(recent) < 2000:
                recent.append(line)
            elif rng.random() < 0.01:
                recent[rng.randrange(2000)] = line
    return {"lines": n, "bytes": path.stat().st_size, "bad_lines": bad, "exact_dup_lines": dups, "near_dup_lines": near}


CHILD = r"""
import json, sys, time
from guardmatch.ingest.config import IngestConfig
from guardmatch.ingest.pipeline import ingest
t = time.perf_counter()
rep = ingest([sys.argv[1]], sys.argv[2], IngestConfig(), overwrite=True, progress=sys.stderr.isatty())
print(json.dumps({"seconds": time.perf_counter() - t, "counts": rep.manifest["counts"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0, help="size of the synthetic log in GiB")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--workdir", type=Path, default=Path("/work/cache/guardmatch-ingest-bench"))
    ap.add_argument("--delete", action="store_true", help="delete the log and pool afterwards")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingest_throughput.json")
    args = ap.parse_args()
    log = args.workdir / f"chatlog-{args.gb:g}gib.jsonl"
    pool = args.workdir / "pool.jsonl"
    target = int(args.gb * (1 << 30))
    if not log.exists() or log.stat().st_size < target:
        t = time.perf_counter()
        built = build_log(log, target, args.data)
        built["build_seconds"] = time.perf_counter() - t
        (args.workdir / "log-info.json").write_text(json.dumps(built))
    built = json.loads((args.workdir / "log-info.json").read_text())
    print(f"log: {log} ({built['bytes'] / 2**30:.2f} GiB, {built['lines']:,} lines)", flush=True)

    env = {**os.environ, "GUARDMATCH_CACHE_DIR": str(args.workdir / "cache")}
    env.pop("GUARDMATCH_ENCRYPTION_KEY", None)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(log), str(pool)], env=env, stdout=subprocess.PIPE,
                          text=True, check=True)
    wall = time.perf_counter() - t
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kib = usage.ru_maxrss
    load = os.getloadavg()
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    c = child["counts"]
    result = {
        "log": {**built, "path": str(log), "gib": built["bytes"] / 2**30},
        "config": "IngestConfig() defaults: PII patterns on (no NER), exact + MinHash LSH (128 perm, 0.8), no language filter",
        "machine": f"{os.cpu_count()} cores (shared), nice -n 10",
        "wall_seconds": wall,
        "ingest_seconds": child["seconds"],
        "records_per_s": c["records"] / child["seconds"],
        "examples_in_per_s": c["drafts"] / child["seconds"],
        "mib_per_s": built["bytes"] / 2**20 / child["seconds"],
        "peak_rss_mib": peak_kib / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "load_average_at_end": load,
        "pool_bytes": pool.stat().st_size,
        "counts": {k: c[k] for k in ("records", "drafts", "kept", "errors", "kept_by_kind", "dedup", "redactions", "skipped")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    if args.delete:
        for p in args.workdir.glob("*"):
            if p.is_file():
                p.unlink()
        print(f"deleted the files in {args.workdir}")



if __name__ == "__main__":
    main()
