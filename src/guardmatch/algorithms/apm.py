"""Pseudo-margins and the Average Pseudo-Margin (APM) table shared by MarginMatch and MultiMatch."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def pseudo_margins(logits: Tensor) -> Tensor:
    """``PM_c = z_c − max_{j≠c} z_j`` for every class ``c`` of the last dimension.

    For the arg-max class this is its lead over the runner-up (≥ 0); for every other class it is
    its gap to the arg-max (≤ 0). Ties give 0 for the tied classes.
    """
    if logits.shape[-1] < 2:
        raise ValueError("pseudo-margins need at least two outputs")
    top = logits.topk(2, dim=-1)
    classes = torch.arange(logits.shape[-1], device=logits.device)
    is_top = classes == top.indices[..., :1]
    best_other = torch.where(is_top, top.values[..., 1:2], top.values[..., :1])
    return logits - best_other


class APMTable(nn.Module):
    """Per-head, per-example, per-class Average Pseudo-Margin with per-example visit counts.

    For each visited example u (ids unique within one call), every head h and class c:
        APM_h(u)_c ← (δ/(1+t_u))·PM_h(u)_c + (1 − δ/(1+t_u))·APM_h(u)_c ;   t_u ← t_u + 1
    δ = 1 is the plain running mean; δ < 1 slightly favours history. The counter is per example,
    not the global epoch (reference-code bug 4 in docs/ALGORITHMS.md), so a first visit already
    gives APM = δ·PM.
    ``last_labels`` keeps each head's latest weak pseudo-label (-1 = never visited).
    """

    apm: Tensor
    visits: Tensor
    last_labels: Tensor

    def __init__(self, num_heads: int, pool_size: int, num_outputs: int, delta: float) -> None:
        super().__init__()
        self.delta = float(delta)
        self.register_buffer("apm", torch.zeros(num_heads, pool_size, num_outputs))
        self.register_buffer("visits", torch.zeros(pool_size, dtype=torch.long))
        self.register_buffer("last_labels", torch.full((num_heads, pool_size), -1, dtype=torch.long))

    @torch.no_grad()
    def update(self, logits: Tensor, ids: Tensor, labels: Tensor | None = None) -> None:
        """Visit ``ids`` (unique) with weak logits ``[H, n, C']``; ``labels`` ``[H, n]`` default arg-max."""
        if ids.numel() == 0:
            return
        pm = pseudo_margins(logits.to(self.apm.dtype))
        weight = (self.delta / (1.0 + self.visits[ids].to(self.apm.dtype))).view(1, -1, 1)
        self.apm[:, ids] = weight * pm + (1.0 - weight) * self.apm[:, ids]
        self.visits[ids] += 1
        self.last_labels[:, ids] = logits.argmax(dim=-1) if labels is None else labels

    def lookup(self, ids: Tensor, labels: Tensor) -> Tensor:
        """``APM_h(ids[k])[labels[h, k]]`` as ``[H, n]``."""
        return self.apm[:, ids].gather(-1, labels.unsqueeze(-1)).squeeze(-1)
