"""Confidence policies: which weak-view pseudo-labels are confident enough to train on.

Swappable pieces with one protocol, as USB's masking hooks, but with the update separated from the
mask so that state changes exactly once per step and only from the gathered batch:

1. ``policy.update(probs_gathered, ids_gathered)``: once per step, gathered and deduplicated
   (``probs`` ``[N, C]``, rows sum to 1; ``ids`` global pool indices).
2. ``policy.mask(probs_local)`` -> float 0/1 ``[n]``, with the state as updated in 1.

The order is the same for every policy (update, then mask). USB's FreeMatch hook does the same;
USB's FlexMatch hook masks with the class thresholds of the previous step and updates afterwards,
a one-step lag that we do not keep (documented deviation, no measurable effect expected).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from guardmatch.registry import Registry

PolicyName = Literal["fixed", "flexmatch", "freematch", "none"]


class ConfidencePolicy(nn.Module):
    """Base policy; subclasses hold their state as buffers (saved in the algorithm's state_dict)."""

    stateful: bool = True

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    @classmethod
    def build(cls, *, num_classes: int, pool_size: int, threshold: float, flexmatch_warmup: bool,
              momentum: float) -> "ConfidencePolicy":
        """The policy from the options :func:`build_policy` takes (each policy reads the ones it needs)."""
        return cls(num_classes)

    @torch.no_grad()
    def update(self, probs: Tensor, ids: Tensor) -> None:
        """Update state from the gathered, deduplicated batch (once per step)."""

    def class_thresholds(self) -> Tensor:
        """The threshold on ``max q`` for each predicted class, ``[C]``."""
        raise NotImplementedError

    @torch.no_grad()
    def mask(self, probs: Tensor) -> Tensor:
        """``1[max q ≥ threshold[argmax q]]`` as a float tensor ``[n]``."""
        max_probs, pred = probs.max(dim=-1)
        return (max_probs >= self.class_thresholds().to(probs.device)[pred]).to(probs.dtype)

    def logs(self, prefix: str = "") -> dict[str, float]:
        """The per-class thresholds, e.g. ``{"threshold_c0": 0.95, "threshold_c1": 0.95}``."""
        thresholds = self.class_thresholds().tolist()
        return {f"{prefix}threshold_c{c}": float(t) for c, t in enumerate(thresholds)}


POLICIES: Registry[ConfidencePolicy] = Registry("confidence policy")
"""Every confidence policy by name."""


@POLICIES.register("none")
class NoConfidenceMask(ConfidencePolicy):
    """Every pseudo-label passes (MultiMatch ablation ``threshold_algo='none'``)."""

    stateful = False

    def class_thresholds(self) -> Tensor:
        return torch.zeros(self.num_classes)


@POLICIES.register("fixed")
class FixedThreshold(ConfidencePolicy):
    """FixMatch: ``mask = 1[max q ≥ τ]``; no state."""

    stateful = False

    def __init__(self, num_classes: int, threshold: float = 0.95) -> None:
        super().__init__(num_classes)
        self.threshold = float(threshold)

    @classmethod
    def build(cls, *, num_classes: int, threshold: float, **_: object) -> "FixedThreshold":
        return cls(num_classes, threshold)

    def class_thresholds(self) -> Tensor:
        return torch.full((self.num_classes,), self.threshold)


@POLICIES.register("flexmatch")
class FlexMatchThreshold(ConfidencePolicy):
    """FlexMatch curriculum pseudo-labelling (Zhang et al., 2021), convex mapping.

    State per pool example: its last confident prediction (``selected_label``, -1 = none yet).
    update:  for u in batch with max q(u) ≥ τ: selected_label[u] ← argmax q(u)
             σ(c) = #{u : selected_label[u] = c}   (learning effect, over the whole pool)
             β(c) = σ(c) / max(max_c σ, #unused)   (warm-up; without it: σ(c) / max_c σ)
    mask:    1[max q ≥ τ · β(ĉ) / (2 − β(ĉ))]
    A class never predicted confidently has β = 0, i.e. threshold 0 (FlexMatch's deliberate
    behaviour: hard classes get low thresholds). Unlike USB, the normalisation is also applied when
    every example already holds a confident label (USB skips the update then, leaving it stale).
    """

    selected_label: Tensor
    classwise_acc: Tensor

    def __init__(self, num_classes: int, pool_size: int, threshold: float = 0.95, warmup: bool = True) -> None:
        super().__init__(num_classes)
        if pool_size <= 0:
            raise ValueError("FlexMatchThreshold needs pool_size > 0")
        self.threshold = float(threshold)
        self.warmup = warmup
        self.register_buffer("selected_label", torch.full((pool_size,), -1, dtype=torch.long))
        self.register_buffer("classwise_acc", torch.zeros(num_classes))

    @classmethod
    def build(cls, *, num_classes: int, pool_size: int, threshold: float, flexmatch_warmup: bool,
              **_: object) -> "FlexMatchThreshold":
        return cls(num_classes, pool_size, threshold, warmup=flexmatch_warmup)

    @torch.no_grad()
    def update(self, probs: Tensor, ids: Tensor) -> None:
        max_probs, pred = probs.max(dim=-1)
        confident = max_probs >= self.threshold
        self.selected_label[ids[confident]] = pred[confident]
        counts = torch.bincount(self.selected_label + 1, minlength=self.num_classes + 1).to(self.classwise_acc.dtype)
        unused, sigma = counts[0], counts[1:]
        denom = torch.maximum(sigma.max(), unused) if self.warmup else sigma.max()
        self.classwise_acc.copy_(sigma / denom.clamp_min(1.0))

    def class_thresholds(self) -> Tensor:
        beta = self.classwise_acc
        return self.threshold * beta / (2.0 - beta)

    def logs(self, prefix: str = "") -> dict[str, float]:
        logs = super().logs(prefix)
        logs[f"{prefix}flex_selected_frac"] = (self.selected_label >= 0).float().mean().item()
        return logs


@POLICIES.register("freematch")
class FreeMatchSAT(ConfidencePolicy):
    """FreeMatch self-adaptive threshold (Wang et al., 2023), one instance per head.

    update (once per step, gathered batch):  τ_t ← m τ_t + (1 − m) mean_u max q(u)
                                             p̃  ← m p̃  + (1 − m) mean_u q(u)
    mask:  1[max q ≥ τ_t · p̃[ĉ] / max_c p̃]
    Initial τ_t = 1/C and p̃ = 1/C as in the paper (USB starts both at 1; only the early EMA
    differs). Updated once per step: USB MultiMatch updates each head's SAT twice (known bug 3 in
    docs/ALGORITHMS.md).
    """

    tau: Tensor
    p_tilde: Tensor

    def __init__(self, num_classes: int, momentum: float = 0.999) -> None:
        super().__init__(num_classes)
        self.momentum = float(momentum)
        self.register_buffer("tau", torch.tensor(1.0 / num_classes))
        self.register_buffer("p_tilde", torch.full((num_classes,), 1.0 / num_classes))

    @classmethod
    def build(cls, *, num_classes: int, momentum: float, **_: object) -> "FreeMatchSAT":
        return cls(num_classes, momentum)

    @torch.no_grad()
    def update(self, probs: Tensor, ids: Tensor) -> None:
        if probs.shape[0] == 0:
            return
        m = self.momentum
        self.tau.mul_(m).add_((1.0 - m) * probs.max(dim=-1).values.mean())
        self.p_tilde.mul_(m).add_((1.0 - m) * probs.mean(dim=0))

    def class_thresholds(self) -> Tensor:
        return self.tau * self.p_tilde / self.p_tilde.max()

    def logs(self, prefix: str = "") -> dict[str, float]:
        logs = super().logs(prefix)
        logs[f"{prefix}sat_tau"] = self.tau.item()
        return logs


def build_policy(
    kind: PolicyName,
    *,
    num_classes: int,
    pool_size: int,
    threshold: float = 0.95,
    flexmatch_warmup: bool = True,
    momentum: float = 0.999,
) -> ConfidencePolicy:
    """A confidence policy by name (:data:`POLICIES`: ``fixed``, ``flexmatch``, ``freematch``, ``none``)."""
    return POLICIES.get(kind).build(num_classes=num_classes, pool_size=pool_size, threshold=threshold,
                                    flexmatch_warmup=flexmatch_warmup, momentum=momentum)
