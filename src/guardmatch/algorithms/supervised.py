"""The supervised baseline: labeled cross-entropy only (summed over heads for H > 1)."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from guardmatch.algorithms.base import ALGORITHMS, AlgorithmConfig, Gather, SSLAlgorithm, StepOutput, supervised_loss


class SupervisedConfig(AlgorithmConfig):
    """``num_heads`` > 1 trains a multi-head model on labels alone (MultiMatch's warm-up shape)."""

    num_heads: int = Field(1, ge=1)


@ALGORITHMS.register("supervised")
class Supervised(SSLAlgorithm):
    """Supervised training on the labeled batch.

    L = Σ_h mean CE(z_lb^h, y)     (one head: the plain labeled CE)
    Unlabeled arguments are ignored (``uses_unlabeled = False``: the trainer need not compute them).
    """

    uses_unlabeled = False
    config_cls = SupervisedConfig
    config: SupervisedConfig

    @property
    def num_heads(self) -> int:
        return self.config.num_heads

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
        self._check_labeled(logits_lb, labels_lb)
        loss = supervised_loss(logits_lb, labels_lb)
        value = loss.item()
        return StepOutput(loss, {"sup_loss": value, "unsup_loss": 0.0, "total_loss": value})
