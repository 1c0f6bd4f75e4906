"""FixMatch (Sohn et al., NeurIPS 2020) on precomputed weak/strong logits."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from guardmatch.algorithms.base import (
    ALGORITHMS,
    AlgorithmConfig,
    Gather,
    SSLAlgorithm,
    StepOutput,
    pseudo_label_logs,
    supervised_loss,
)
from guardmatch.algorithms.masking import build_policy

DA_EPS = 1e-6  # USB's DistAlignEMAHook


class FixMatchConfig(AlgorithmConfig):
    """Defaults reproduce FixMatch (τ = 0.95, λ_u = 1, fixed threshold)."""

    threshold: float = Field(0.95, ge=0.0, le=1.0, description="τ (fixed), or FlexMatch's base τ")
    lambda_u: float = Field(1.0, ge=0.0)
    confidence: Literal["fixed", "flexmatch", "freematch"] = Field(
        "fixed", description="fixed τ (FixMatch); flexmatch / freematch swap in those thresholds"
    )
    flexmatch_warmup: bool = True
    sat_momentum: float = Field(0.999, ge=0.0, lt=1.0)
    distribution_alignment: bool = Field(False, description=(
        "align the weak-view probabilities to a uniform class prior before pseudo-labelling (ReMixMatch's "
        "distribution alignment, Berthelot et al. 2020, as USB's DistAlignEMAHook): q <- normalize(q * "
        "(p_target + 1e-6) / (p_model + 1e-6)), p_model the first batch's mean prediction, then an EMA of "
        "it; off = plain FixMatch"))
    da_momentum: float = Field(0.999, ge=0.0, lt=1.0, description=(
        "EMA momentum of p_model (USB's 0.999 averages ~1,000 steps: keep 1 / (1 - m) well under the "
        "schedule's step count)"))


@ALGORITHMS.register("fixmatch")
class FixMatch(SSLAlgorithm):
    """FixMatch with hard pseudo-labels.

    L_s = mean CE(z_lb, y)
    q_w = softmax(z_w);  ŷ = argmax q_w;  mask = 1[max q_w ≥ τ]   (or the configured policy)
    L_u = mean over all μB unlabeled examples of mask · CE(z_s, ŷ)   (masked ones count as 0)
    L   = L_s + λ_u · L_u
    With ``confidence`` = flexmatch / freematch the policy's state is updated once per step from
    the gathered weak view (see :mod:`guardmatch.algorithms.masking`).
    """

    config_cls = FixMatchConfig
    config: FixMatchConfig

    def __init__(self, config=None, num_classes: int = 2, pool_size: int = 0) -> None:
        super().__init__(config, num_classes=num_classes, pool_size=pool_size)
        cfg = self.config
        self.policy = build_policy(
            cfg.confidence,
            num_classes=num_classes,
            pool_size=pool_size,
            threshold=cfg.threshold,
            flexmatch_warmup=cfg.flexmatch_warmup,
            momentum=cfg.sat_momentum,
        )
        if cfg.distribution_alignment:  # registered only when used: plain FixMatch state is unchanged
            # zeros = not yet seen a batch (the first batch's mean replaces it, as in USB)
            self.register_buffer("p_model", torch.zeros(num_classes))

    p_model: Tensor

    def align(self, probs: Tensor, probs_all: Tensor) -> Tensor:
        """Distribution alignment: ``p_model`` <- the (gathered) batch mean on the first call, an EMA
        of it after; then ``probs * (p_target + 1e-6) / (p_model + 1e-6)``, renormalised; ``p_target``
        is uniform (USB's DistAlignEMAHook with p_target_type="uniform")."""
        m = self.config.da_momentum
        mean = probs_all.mean(dim=0)
        if float(self.p_model.sum()) == 0.0:
            self.p_model.copy_(mean)
        else:
            self.p_model.mul_(m).add_((1.0 - m) * mean)
        aligned = probs * (1.0 / self.num_classes + DA_EPS) / (self.p_model + DA_EPS)
        return aligned / aligned.sum(dim=-1, keepdim=True)

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
        z_w, z_s, ids = self._check_unlabeled(logits_ulb_w, logits_ulb_s, ulb_ids)
        self._sync_device(z_w.device)

        align = self.config.distribution_alignment
        probs_g = None
        if self.policy.stateful or align:  # one gather serves the policy state and the alignment
            with torch.no_grad():
                z_g, ids_g, _ = self._gather_weak(z_w, ids, gather)
                probs_g = z_g[0].softmax(dim=-1)
                if self.policy.stateful:
                    self.policy.update(probs_g, ids_g)

        probs = z_w[0].softmax(dim=-1)
        if align:
            assert probs_g is not None
            with torch.no_grad():
                probs = self.align(probs.detach(), probs_g.float())
        pseudo = probs.argmax(dim=-1)
        mask = self.policy.mask(probs)
        unsup = (mask * F.cross_entropy(z_s[0].float(), pseudo, reduction="none")).sum() / max(1, ids.numel())
        sup = supervised_loss(logits_lb, labels_lb)
        loss = sup + self.config.lambda_u * unsup

        logs = {"sup_loss": sup.item(), "unsup_loss": unsup.item(), "total_loss": loss.item()}
        logs.update(pseudo_label_logs(mask, pseudo, ulb_true_labels))
        logs.update(self.policy.logs())
        return StepOutput(loss, logs)
