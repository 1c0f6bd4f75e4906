"""AdamW with layer-wise learning-rate decay and a cosine schedule with linear warm-up."""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from transformers import get_cosine_schedule_with_warmup

from guardmatch.config import OptimConfig

_LAYER_RE = re.compile(r"(?:^|\.)layers?\.(\d+)\.")
_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "layernorm.weight", "norm.weight")


def layer_id(name: str, num_layers: int) -> int:
    """0 for embeddings, i+1 for transformer layer i, ``num_layers + 1`` for everything above."""
    if name.startswith("encoder."):
        if "embeddings" in name:
            return 0
        match = _LAYER_RE.search(name)
        if match:
            return int(match.group(1)) + 1
        return num_layers + 1  # pooler, final norms, relative embeddings tables at the top
    return num_layers + 1


def parameter_groups(model: nn.Module, cfg: OptimConfig, num_layers: int) -> list[dict]:
    """One group per (depth, decay?) pair: ``lr * layer_decay ** (num_layers + 1 - depth)``.

    Heads get ``head_lr`` (default ``lr``); biases and norm weights get no weight decay.
    """
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_id(name, num_layers)
        is_head = not name.startswith("encoder.")
        decay = not (param.ndim == 1 or any(name.endswith(s) for s in _NO_DECAY))
        key = (depth, decay) if not is_head else (num_layers + 2, decay)
        if key not in groups:
            if is_head:
                lr = cfg.head_lr or cfg.lr
            else:
                lr = cfg.lr * cfg.layer_decay ** (num_layers + 1 - depth)
            groups[key] = {"params": [], "lr": lr, "weight_decay": cfg.weight_decay if decay else 0.0}
        groups[key]["params"].append(param)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model: nn.Module, cfg: OptimConfig, num_layers: int) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameter_groups(model, cfg, num_layers), lr=cfg.lr, foreach=False)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig):
    warmup = int(round(cfg.warmup_ratio * cfg.max_steps))
    return get_cosine_schedule_with_warmup(optimizer, warmup, cfg.max_steps)


def scheduled_steps(cfg: OptimConfig, n_labeled: int, n_pool: int, processes: int = 1) -> int:
    """Training steps of a pass-based schedule: ``epochs`` over the labeled examples and/or
    ``pool_passes`` over the unlabeled pool (batches of ``batch_size`` and ``mu * batch_size`` per
    process), the longer of the two; ``max_steps`` where neither is set."""
    steps = []
    if cfg.epochs is not None:
        steps.append(math.ceil(cfg.epochs * n_labeled / (cfg.batch_size * processes)))
    if cfg.pool_passes is not None and n_pool > 0:
        steps.append(math.ceil(cfg.pool_passes * n_pool / (cfg.mu * cfg.batch_size * processes)))
    return max(1, *steps) if steps else cfg.max_steps
