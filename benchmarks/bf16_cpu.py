"""bf16 autocast vs fp32 on this CPU: one transformer layer of all-mpnet-base-v2's size (768 hidden,
12 heads, 3072 FFN), forward + backward on a 16 x 128 batch, 1 torch thread.

Why: bf16 autocast is several times faster where the CPU has AVX512-BF16 or AMX, but where it has
not (AVX2-only) PyTorch emulates bf16 matmuls; ``guardmatch.training.run.mixed_precision`` then falls
back to fp32. Writes ``benchmarks/results/bf16_cpu.{json,md}``, one row per CPU measured (a rerun on
the same CPU model and flags replaces its row, other machines' rows stay).

    python benchmarks/bf16_cpu.py [--reps 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import MPNetConfig
from transformers.models.mpnet.modeling_mpnet import MPNetLayer

from guardmatch.training.run import native_bf16

RESULTS = Path(__file__).resolve().parent / "results"


def step_seconds(layer: torch.nn.Module, x: torch.Tensor, bf16: bool, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        layer.zero_grad()
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = layer(x)
        (out[0] if isinstance(out, tuple) else out).float().sum().backward()
        times.append(time.perf_counter() - t)
    return times


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_machines(path: Path) -> list[dict]:
    """Earlier rows; a file in the one-machine layout (``meta`` / ``step_s``) becomes one row."""
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    if "machines" in data:
        return list(data["machines"])
    return [{"meta": data["meta"], "step_s": data["step_s"], "bf16_over_fp32": data["bf16_over_fp32"]}]


def same_machine(a: dict, b: dict) -> bool:
    """Same CPU flags and model; a row whose model name was not recorded matches on the flags alone."""
    flags = ("cpu_capability", "avx512_bf16", "amx")
    if any(a.get(k) != b.get(k) for k in flags):
        return False
    recorded = a.get("cpu_model_recorded", True) and b.get("cpu_model_recorded", True)
    return not recorded or a.get("cpu_model") == b.get("cpu_model")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layer = MPNetLayer(MPNetConfig(hidden_size=768, num_attention_heads=12, intermediate_size=3072))
    x = torch.randn(16, 128, 768)
    rows = {}
    for name, bf16 in (("fp32", False), ("bf16 autocast", True)):
        ts = step_seconds(layer, x, bf16, args.reps)
        rows[name] = round(statistics.median(ts), 3)
        print(f"{name}: {rows[name]} s per layer step ({[round(t, 2) for t in ts]})", flush=True)
    meta = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
            "amx": bool(torch.cpu._is_amx_tile_supported()), "native_bf16": native_bf16(),
            "cpu_model": cpu_model(), "cores": os.cpu_count(),
            "loadavg": [round(v, 2) for v in os.getloadavg()], "threads": 1, "reps": args.reps}
    ratio = rows["bf16 autocast"] / rows["fp32"]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "bf16_cpu.json"
    machines = [m for m in load_machines(path) if not same_machine(m["meta"], meta)]
    machines.append({"meta": meta, "step_s": rows, "bf16_over_fp32": round(ratio, 2)})
    path.write_text(json.dumps({"machines": machines}, indent=2) + "\n")
    md = ["# bf16 autocast vs fp32 (one MPNet-size layer, fwd + bwd, 16 x 128, 1 thread)", "",
          "| CPU | capability | AVX512-BF16 | AMX | native bf16 | fp32 s/step | bf16 s/step | bf16 / fp32 | load avg "
          "| torch | reps |",
          "|---|---|---|---|---|---:|---:|---:|---|---|---:|"]
    for m in machines:
        mm, st = m["meta"], m["step_s"]
        md.append(f"| {mm.get('cpu_model', mm.get('processor', '?'))} | {mm['cpu_capability']} | {mm['avx512_bf16']} | "
                  f"{mm['amx']} | {mm['native_bf16']} | {st['fp32']} | {st['bf16 autocast']} | "
                  f"{m['bf16_over_fp32']:.2f}x | {mm['loadavg'][0]} | {mm['torch']} | {mm['reps']} |")
    md += ["", "Median of the reps. Load average is the 1-minute one when the row was measured (other jobs may share "
           "the cores).", "",
           "Where native bf16 is missing, `precision: bf16` falls back to fp32 with a warning "
           "(`guardmatch.training.run.mixed_precision`); the run's `run.json` records the precision its steps ran in.", ""]
    (RESULTS / "bf16_cpu.md").write_text("\n".join(md))
    print(f"bf16 / fp32 = {ratio:.2f}x -> {RESULTS / 'bf16_cpu.md'}")


if __name__ == "__main__":
    main()
