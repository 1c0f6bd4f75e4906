"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint directory ``step-000123/`` holds ``model.safetensors`` (trainable module state),
``optimizer.safetensors`` + ``optimizer.json``, ``scheduler.json``, ``algorithm.safetensors``,
``rng.safetensors`` and ``trainer_state.json``. It is written to a temporary directory and
renamed into place, so a kill mid-write never leaves a half checkpoint that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "trainer_state.json"


def flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and a JSON skeleton."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    directory: Path,
    *,
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    algorithm_state: dict[str, torch.Tensor],
    trainer_state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``directory/step-{step:06d}`` atomically and prune to the newest ``keep`` checkpoints."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:06d}"
    tmp = directory / f".tmp-step-{step:06d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()}, str(tmp / "model.safetensors"))
    opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(opt_meta))
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    (tmp / "scheduler.json").write_text(json.dumps(sched))
    save_file({k: v.detach().cpu().contiguous() for k, v in algorithm_state.items()}, str(tmp / "algorithm.safetensors"))
    save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    (tmp / STATE_FILE).write_text(json.dumps({**trainer_state, "step": step}, indent=2))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints (those with a trainer state), oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob("step-*") if (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Everything :func:`save_checkpoint` wrote, as plain dicts and tensors."""
    return {
        "model": load_file(str(path / "model.safetensors")),
        "optimizer": unflatten_optimizer_state(
            load_file(str(path / "optimizer.safetensors")), json.loads((path / "optimizer.json").read_text())
        ),
        "scheduler": json.loads((path / "scheduler.json").read_text()),
        "algorithm": load_file(str(path / "algorithm.safetensors")),
        "rng": load_file(str(path / "rng.safetensors"))["torch"],
        "trainer_state": json.loads((path / STATE_FILE).read_text()),
    }
