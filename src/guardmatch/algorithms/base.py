"""The interface every semi-supervised algorithm implements, its registry, and shared helpers.

An algorithm turns logits into a loss and logs; it never sees the model or the data loader.
Logits are always shaped ``[H, N, C']`` (H heads, C' model outputs). All state (APM tables,
thresholds, ...) lives in registered buffers, so ``state_dict()`` is a flat dict of tensors that
:func:`save_algorithm_state` writes with safetensors.

Distributed contract: ``gather(t)`` concatenates ``t`` along dim 0 across processes (identity when
single-process). Every state update uses the *gathered* weak logits and ids, deduplicated by
:func:`first_occurrence`, so all ranks hold identical state, equal to one process on the
concatenated batch. Losses use the local part only.

Duplicate-id rule: an id that appears more than once in one gathered batch (sampler padding at the
end of the pool) updates state once per step, from its *first* occurrence in gathered order.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from guardmatch.config import StrictModel
from guardmatch.registry import Registry

Gather = Callable[[Tensor], Tensor]
"""All-gather along dim 0 across processes (``accelerator.gather``); identity when single-process."""

ConfigT = TypeVar("ConfigT", bound="AlgorithmConfig")


class AlgorithmConfig(StrictModel):
    """Base of the per-algorithm configs: typed, validated, unknown keys are an error, frozen."""

    model_config = ConfigDict(frozen=True)


@dataclass
class StepOutput:
    """What :meth:`SSLAlgorithm.step` returns: the scalar loss (with grad) and float logs."""

    loss: Tensor
    logs: dict[str, float] = field(default_factory=dict)


def identity_gather(tensor: Tensor) -> Tensor:
    """The single-process ``gather``."""
    return tensor


def gather_heads(x: Tensor, gather: Gather) -> Tensor:
    """All-gather a ``[H, n, ...]`` tensor along ``n`` with a dim-0 ``gather``."""
    return gather(x.transpose(0, 1).contiguous()).transpose(0, 1)


def first_occurrence(ids: Tensor) -> Tensor:
    """Positions of the first occurrence of each distinct id in ``ids`` (ordered by id).

    ``ids[first_occurrence(ids)]`` is the sorted set of distinct ids; used so that a duplicated id
    counts as one visit per step.
    """
    n = ids.shape[0]
    uniq, inverse = torch.unique(ids, return_inverse=True)
    positions = torch.arange(n, device=ids.device)
    first = torch.full((uniq.shape[0],), n, dtype=torch.long, device=ids.device)
    return first.scatter_reduce(0, inverse, positions, reduce="amin", include_self=True)


def supervised_loss(logits_lb: Tensor, labels_lb: Tensor) -> Tensor:
    """``Σ_h mean CE(z_lb^h, y)`` (one head: the plain labeled CE)."""
    num_heads, batch, outputs = logits_lb.shape
    if batch == 0:
        return logits_lb.sum() * 0.0
    ce = F.cross_entropy(logits_lb.float().reshape(-1, outputs), labels_lb.repeat(num_heads), reduction="none")
    return ce.view(num_heads, batch).mean(dim=1).sum()


def pseudo_label_logs(mask: Tensor, pseudo_labels: Tensor, true_labels: Tensor | None) -> dict[str, float]:
    """``mask_rate``, ``pseudo_harmful_rate`` (the share of used pseudo-labels that say harmful,
    class 1: drift from the labels' prior is confirmation bias one can see without true labels) and,
    where some masked example has a known true label, ``pseudo_label_acc``.

    ``mask`` may be a weight (> 0 counts as used); shapes of the three tensors match. True labels
    are -1 where unknown. Diagnostics only: never used for training.
    """
    used = mask > 0
    logs = {"mask_rate": used.float().mean().item() if used.numel() else 0.0}
    n_used = int(used.sum().item())
    if n_used:
        logs["pseudo_harmful_rate"] = ((pseudo_labels == 1) & used).sum().item() / n_used
    if true_labels is not None:
        known = used & (true_labels >= 0)
        count = int(known.sum().item())
        if count:
            correct = ((pseudo_labels == true_labels) & known).sum().item()
            logs["pseudo_label_acc"] = correct / count
            logs["pseudo_label_count"] = float(count)
    return logs


def coerce_config(config_cls: type[ConfigT], config: dict[str, Any] | BaseModel | None) -> ConfigT:
    """``None`` -> defaults, a dict -> validated config, a config of the right type -> itself."""
    if config is None:
        return config_cls()
    if isinstance(config, config_cls):
        return config
    if isinstance(config, BaseModel):
        raise TypeError(f"expected a {config_cls.__name__}, got a {type(config).__name__}")
    if isinstance(config, dict):
        return config_cls.model_validate(config)
    raise TypeError(f"config must be a dict, a {config_cls.__name__} or None, got {type(config).__name__}")


def resolve_every(configured: int | None, pool_size: int, gathered_batch: int) -> int:
    """A period in steps: the configured one, or one pass over the pool (``ceil(P / batch)``)."""
    if configured is not None:
        return configured
    return max(1, math.ceil(pool_size / max(1, gathered_batch)))


class SSLAlgorithm(nn.Module, ABC):
    """One semi-supervised algorithm: logits in, loss and logs out, explicit checkpointable state.

    Subclasses set ``name`` (by ``@ALGORITHMS.register``), ``uses_unlabeled``, ``config_cls`` and
    implement :meth:`step`. State is registered as buffers (``nn.Module`` is used only for its
    buffer bookkeeping: ``state_dict``, ``load_state_dict``, ``.to(device)``).
    """

    name: ClassVar[str] = "base"
    uses_unlabeled: ClassVar[bool] = True
    config_cls: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig

    def __init__(
        self,
        config: dict[str, Any] | BaseModel | None = None,
        num_classes: int = 2,
        pool_size: int = 0,
    ) -> None:
        super().__init__()
        self.config = coerce_config(self.config_cls, config)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if pool_size < 0 or (self.uses_unlabeled and pool_size == 0):
            raise ValueError(f"{self.name} needs the unlabeled pool size (pool_size > 0), got {pool_size}")
        self.num_classes = num_classes
        self.pool_size = pool_size

    # ----------------------------------------------------------------------------- interface
    @property
    def num_heads(self) -> int:
        """Number of model heads the algorithm expects (``H`` in ``[H, N, C']``)."""
        return 1

    def num_outputs(self, num_classes: int | None = None) -> int:
        """Model outputs per head for ``num_classes`` classes (C, or C+1 with a virtual class)."""
        return self.num_classes if num_classes is None else num_classes

    @abstractmethod
    def step(
        self,
        *,
        logits_lb: Tensor,
        labels_lb: Tensor,
        logits_ulb_w: Tensor | None = None,
        logits_ulb_s: Tensor | None = None,
        ulb_ids: Tensor | None = None,
        step: int,
        gather: Gather | None = None,
        ulb_true_labels: Tensor | None = None,
    ) -> StepOutput:
        """One training step's loss. ``step`` is the 0-based index of the optimizer step."""

    def predict_logits(self, logits: Tensor) -> Tensor:
        """``[H, N, C']`` -> ``[N, C]``: mean of the heads' logits, any virtual class dropped."""
        if logits.dim() != 3:
            raise ValueError(f"logits must be [H, N, C'], got shape {tuple(logits.shape)}")
        return logits[..., : self.num_classes].float().mean(dim=0)

    # ------------------------------------------------------------------------------- helpers
    def _sync_device(self, device: torch.device) -> None:
        """Keep the state on the logits' device (moved once, on the first step there)."""
        for buf in self.buffers():
            if buf.device != device:
                self.to(device)
            return

    def _check_labeled(self, logits_lb: Tensor, labels_lb: Tensor) -> None:
        self._check_logits("logits_lb", logits_lb)
        if labels_lb.dim() != 1 or labels_lb.shape[0] != logits_lb.shape[1]:
            raise ValueError(
                f"labels_lb must be [N] with N = {logits_lb.shape[1]}, got shape {tuple(labels_lb.shape)}"
            )
        if labels_lb.dtype != torch.long:
            raise ValueError(f"labels_lb must be a LongTensor, got {labels_lb.dtype}")
        if labels_lb.numel() and (labels_lb.min() < 0 or labels_lb.max() >= self.num_classes):
            raise ValueError(f"labels_lb must be in [0, {self.num_classes}), got {labels_lb.unique().tolist()}")

    def _check_logits(self, what: str, logits: Tensor, n: int | None = None) -> None:
        expected = (self.num_heads, n if n is not None else "N", self.num_outputs())
        if (
            logits.dim() != 3
            or logits.shape[0] != self.num_heads
            or logits.shape[2] != self.num_outputs()
            or (n is not None and logits.shape[1] != n)
        ):
            raise ValueError(f"{self.name}: {what} must be shaped {expected}, got {tuple(logits.shape)}")

    def _check_unlabeled(
        self, logits_ulb_w: Tensor | None, logits_ulb_s: Tensor | None, ulb_ids: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        if logits_ulb_w is None or logits_ulb_s is None or ulb_ids is None:
            raise ValueError(f"{self.name} needs logits_ulb_w, logits_ulb_s and ulb_ids")
        if ulb_ids.dim() != 1 or ulb_ids.dtype != torch.long:
            raise ValueError(f"ulb_ids must be a 1-D LongTensor, got {ulb_ids.dtype} {tuple(ulb_ids.shape)}")
        n = ulb_ids.shape[0]
        self._check_logits("logits_ulb_w", logits_ulb_w, n)
        self._check_logits("logits_ulb_s", logits_ulb_s, n)
        if n and (ulb_ids.min() < 0 or ulb_ids.max() >= self.pool_size):
            raise ValueError(f"ulb_ids must be in [0, pool_size={self.pool_size}), got min "
                             f"{ulb_ids.min().item()} max {ulb_ids.max().item()}")
        return logits_ulb_w.detach().float(), logits_ulb_s, ulb_ids

    def _gather_weak(self, logits_w: Tensor, ids: Tensor, gather: Gather | None) -> tuple[Tensor, Tensor, int]:
        """Gathered weak logits ``[H, N', C']`` and ids ``[N']`` with each id kept once (first
        occurrence), and the gathered batch size N before deduplication."""
        gather = gather or identity_gather
        logits_g = gather_heads(logits_w, gather)
        ids_g = gather(ids)
        keep = first_occurrence(ids_g)
        return logits_g[:, keep], ids_g[keep], ids_g.shape[0]


ALGORITHMS: Registry[SSLAlgorithm] = Registry("algorithm", modules=("guardmatch.algorithms",))
"""Every SSL algorithm by name (the algorithm modules register themselves when the package is imported)."""


def get_algorithm(name: str) -> type[SSLAlgorithm]:
    """The registered algorithm class called ``name``."""
    return ALGORITHMS.get(name)


def build_algorithm(
    name: str,
    config: dict[str, Any] | BaseModel | None = None,
    num_classes: int = 2,
    pool_size: int = 0,
) -> SSLAlgorithm:
    """Instantiate algorithm ``name`` with a validated config (dict, config object or defaults)."""
    cls = get_algorithm(name)
    return cls(config, num_classes=num_classes, pool_size=pool_size)


def save_algorithm_state(algo: SSLAlgorithm, path: str | Path) -> Path:
    """Write ``algo.state_dict()`` to a safetensors file, with name, sizes and config as metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in algo.state_dict().items()}
    metadata = {
        "algorithm": algo.name,
        "num_classes": str(algo.num_classes),
        "pool_size": str(algo.pool_size),
        "config": json.dumps(algo.config.model_dump(mode="json"), sort_keys=True),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def load_algorithm_state(algo: SSLAlgorithm, path: str | Path) -> None:
    """Load a file written by :func:`save_algorithm_state` into ``algo`` (strict: names and shapes)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    saved = metadata.get("algorithm")
    if saved is not None and saved != algo.name:
        raise ValueError(f"{path}: algorithm state of {saved!r}, cannot load into {algo.name!r}")
    for key, value in (("num_classes", algo.num_classes), ("pool_size", algo.pool_size)):
        if key in metadata and int(metadata[key]) != value:
            raise ValueError(f"{path}: saved {key}={metadata[key]}, this algorithm has {key}={value}")
    algo.load_state_dict(load_file(str(path)))
