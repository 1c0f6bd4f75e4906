"""The bad inputs tried against ``guardmatch ingest``: what is reported, what is kept, peak memory.

Each case is a small file around real prompts (plus one 100 MB single line) ingested in a child
process; we record the problems (file, line, field, message), rows kept and the child's peak RSS.
Files go to /work/cache (outside the repository) and are deleted afterwards.

    nice -n 10 python benchmarks/ingest_bad_inputs.py   # -> benchmarks/results/ingest_bad_inputs.json
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path("/work/cache/guardmatch-bad-inputs")

CHILD = r"""
import json, resource, sys
from guardmatch.ingest.pipeline import ingest
from guardmatch.ingest.config import IngestConfig
try:
    rep = ingest(sys.argv[1:-1], sys.argv[-1], IngestConfig(), overwrite=True)
    out = {"kept": rep.manifest["counts"]["kept"], "records": rep.manifest["counts"]["records"],
           "skipped": rep.manifest["counts"]["skipped"], "problems": [str(p) for p in rep.problems[:6]]}
except Exception as exc:
    out = {"exception": f"{type(exc).__name__}: {exc}"}
out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def good(i: int) -> bytes:
    messages = [{"role": "user", "content": f"How do I bake bread, attempt {i}?"},
                {"role": "assistant", "content": "Mix flour, water, yeast."}]
    return (json.dumps({"id": f"g{i}", "messages": messages}) + "\n").encode()


def cases() -> dict[str, list[Path]]:
    WORK.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {}

    def write(name: str, data: bytes) -> Path:
        p = WORK / name
        p.write_bytes(data)
        return p

    out["malformed JSON lines"] = [write("malformed.jsonl",
                                         good(1) + b'{"id": 2, "messages": [\n' + b"not json at all\n" + good(3))]
    out["messages without roles / unknown role / no content"] = [write("roles.jsonl", good(1)
        + b'{"id": "a", "messages": [{"content": "hi"}]}\n'
        + b'{"id": "b", "messages": [{"role": "wizard", "content": "hi"}]}\n'
        + b'{"id": "c", "messages": [{"role": "user"}]}\n' + good(5))]
    out["non-UTF-8 (latin-1, invalid bytes)"] = [write("latin1.jsonl", good(1) + '{"prompt": "café crème"}\n'.encode("latin-1")
                                                    + b'{"prompt": "\xff\xfe bad"}\n' + good(4))]
    big = WORK / "100mb_line.jsonl"
    with big.open("wb") as fh:
        fh.write(good(1))
        fh.write(b'{"prompt": "')
        chunk = b"A" * (1 << 20)
        for _ in range(100):
            fh.write(chunk)
        fh.write(b'"}\n')
        fh.write(good(3))
    out["a 100 MB single line (default max_line_bytes 16 MiB)"] = [big]
    out["truncated last line, no newline"] = [write("truncated.jsonl", good(1) + good(2)[:30])]
    out["UTF-8 BOM, blank lines, CRLF"] = [write("bom.jsonl",
                                                 b"\xef\xbb\xbf" + good(1).replace(b"\n", b"\r\n") + b"\n\n" + good(2))]
    out["empty file"] = [write("empty.jsonl", b"")]
    out["CSV: wrong field count, unterminated quote"] = [
        write("bad.csv", b'prompt,region\n"ok prompt",EU\n"x",EU,extra\n"never closed,US\n')]
    gz = WORK / "cut.jsonl.gz"
    gz.write_bytes(gzip.compress(b"".join(good(i) for i in range(2000)))[:-200])
    out["truncated .gz (then a good file)"] = [gz, write("after.jsonl", good(9))]
    out["not a JSON object per line (array, number)"] = [write("arrays.jsonl", b"[1, 2]\n42\n" + good(3))]
    return out


def main() -> None:
    results = {}
    try:
        for name, files in cases().items():
            proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, files), str(WORK / "pool.jsonl")],
                                  capture_output=True, text=True, env={"GUARDMATCH_CACHE_DIR": str(WORK / "cache"),
                                                                       "PATH": "/usr/bin:/bin"})
            line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else json.dumps({"stderr": proc.stderr[-2000:]})
            results[name] = json.loads(line)
            print(f"## {name}\n{json.dumps(results[name], indent=1)}", flush=True)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    out = ROOT / "benchmarks" / "results" / "ingest_bad_inputs.json"
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
