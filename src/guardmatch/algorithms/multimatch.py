"""MultiMatch (Sîrbu et al., EMNLP 2025): three heads that pseudo-label each other through APM."""

from __future__ import annotations

from typing import Literal, cast

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from guardmatch.algorithms.apm import APMTable
from guardmatch.algorithms.base import (
    ALGORITHMS,
    AlgorithmConfig,
    Gather,
    SSLAlgorithm,
    StepOutput,
    pseudo_label_logs,
    resolve_every,
    supervised_loss,
)
from guardmatch.algorithms.masking import ConfidencePolicy, build_policy


class MultiMatchConfig(AlgorithmConfig):
    """Defaults follow the authors' USB config (variant v4): H = 3, 5th percentile, w_d = 3, λ_u = 3,
    FreeMatch SAT with m = 0.999, δ = 0.997, ``no_low`` (negative γ allowed)."""

    num_heads: Literal[3] = Field(3, description="the pairwise rule is defined for exactly three heads")
    lambda_u: float = Field(3.0, ge=0.0, description="with L_s summed and L_u averaged over heads, 3 = Σ_h (L_s^h + L_u^h)")
    delta: float = Field(0.997, gt=0.0, le=1.0, description="APM smoothing δ")
    percentile: float = Field(5.0, ge=0.0, le=100.0, description="γ[h][c] = this percentile (0-100) of the agreement set")
    recalibrate_every: int | None = Field(None, ge=1, description="steps between γ recalibrations; None = one pass over the pool")
    disagreement_weight: float = Field(3.0, ge=0.0, description="w_d")
    no_low: bool = Field(True, description="allow negative γ (False clamps γ at 0)")
    confidence: Literal["freematch", "flexmatch", "none"] = Field("freematch", description="m_aux policy, one per head")
    sat_momentum: float = Field(0.999, ge=0.0, lt=1.0)
    threshold: float = Field(0.95, ge=0.0, le=1.0, description="FlexMatch base τ (confidence=flexmatch only)")
    flexmatch_warmup: bool = True


# OTHERS[h] = (i, j): the two heads that pseudo-label head h.
OTHERS = ((1, 2), (0, 2), (0, 1))


@ALGORITHMS.register("multimatch")
class MultiMatch(SSLAlgorithm):
    """MultiMatch with hard pseudo-labels; for head h, the other two heads i, j teach it.

    Each step, on the gathered weak logits (each id once), for every head k:
        update APM_k (δ/(1+t_u) rule, per-example visits) and remember ĉ_k(u) = argmax z_w^k(u);
        update SAT_k once.
    On the local batch, for each head h with (i, j) = the other two heads:
        pass_k = APM_k(u)[ĉ_k] ≥ γ[h][ĉ_k]                       (k ∈ {i, j})
        i, j agree:    both pass -> (ĉ_i, 1);  one passes -> (ĉ_i, w_d);  none -> weight 0
        i, j disagree: one passes -> (its label, w_d);  both or none -> weight 0
        m_aux = SAT_i mask OR SAT_j mask
        L_u^h = mean over all μB of weight · m_aux · CE(z_s^h, label_h)
    L = Σ_h CE(z_lb^h, y) + λ_u · mean_h L_u^h
    After the step, every ``recalibrate_every`` steps (default one pass over the pool):
        S_c = {u : last ĉ_i(u) = last ĉ_j(u) = c};  γ[h][c] = 5th percentile of
        {APM_i(u)_c} ∪ {APM_j(u)_c} over S_c;  empty S_c -> γ[h][c] = 0 and continue.
    Before the first calibration every weight is 0 (supervised warm-up).

    Deviations from USB (known bugs 1-4 in docs/ALGORITHMS.md): recalibration on a step count (USB's
    default ``num_recalibrate_iter=0`` crashes), an empty agreement set skips only its class (USB
    ``break``s, leaving later classes stale), each SAT updates once per step (USB: twice), APM
    smoothing by per-example visits (USB: by the global epoch).
    """

    config_cls = MultiMatchConfig
    config: MultiMatchConfig
    gamma: Tensor
    calibrated: Tensor
    last_recalibration_step: Tensor
    recalibrate_every: Tensor
    others: Tensor

    def __init__(self, config=None, num_classes: int = 2, pool_size: int = 0) -> None:
        super().__init__(config, num_classes=num_classes, pool_size=pool_size)
        cfg = self.config
        self.table = APMTable(self.num_heads, pool_size, num_classes, cfg.delta)
        self.policies = nn.ModuleList(
            build_policy(
                cfg.confidence,
                num_classes=num_classes,
                pool_size=pool_size,
                threshold=cfg.threshold,
                flexmatch_warmup=cfg.flexmatch_warmup,
                momentum=cfg.sat_momentum,
            )
            for _ in range(self.num_heads)
        )
        self.register_buffer("gamma", torch.zeros(self.num_heads, num_classes))
        self.register_buffer("calibrated", torch.tensor(False))
        self.register_buffer("last_recalibration_step", torch.tensor(-1, dtype=torch.long))
        self.register_buffer("recalibrate_every", torch.tensor(0, dtype=torch.long))
        self.register_buffer("others", torch.tensor(OTHERS, dtype=torch.long), persistent=False)

    @property
    def num_heads(self) -> int:
        return self.config.num_heads

    @property
    def head_policies(self) -> list[ConfidencePolicy]:
        """``self.policies`` typed: the ModuleList holds one :class:`ConfidencePolicy` per head."""
        return [cast(ConfidencePolicy, policy) for policy in self.policies]

    # ---------------------------------------------------------------------------- thresholds
    @torch.no_grad()
    def recalibrate(self) -> None:
        """γ[h][c] from the agreement sets of the two other heads (over the whole pool)."""
        q = self.config.percentile / 100.0
        labels, apm = self.table.last_labels, self.table.apm
        for h, (i, j) in enumerate(OTHERS):
            for c in range(self.num_classes):
                agree = (labels[i] == c) & (labels[j] == c)
                values = torch.cat([apm[i, agree, c], apm[j, agree, c]])
                if values.numel() == 0:
                    self.gamma[h, c] = 0.0
                    continue
                gamma = torch.quantile(values, q)
                self.gamma[h, c] = gamma if self.config.no_low else gamma.clamp_min(0.0)
        self.calibrated.fill_(True)

    @torch.no_grad()
    def pseudo_label_weights(self, pseudo: Tensor, apm_pseudo: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The weight table. ``pseudo`` ``[3, n]`` = ĉ_k, ``apm_pseudo`` ``[3, n]`` = APM_k(u)[ĉ_k].

        Returns (label_h ``[3, n]``, weight_h ``[3, n]``, agree ``[3, n]``) for each target head h;
        weights are 0 before the first calibration.
        """
        i, j = self.others[:, 0], self.others[:, 1]
        label_i, label_j = pseudo[i], pseudo[j]
        pass_i = apm_pseudo[i] >= self.gamma.gather(1, label_i)
        pass_j = apm_pseudo[j] >= self.gamma.gather(1, label_j)
        agree = label_i == label_j
        n_pass = pass_i.long() + pass_j.long()
        w_d = self.config.disagreement_weight
        zero = torch.zeros_like(apm_pseudo)
        weight_agree = torch.where(n_pass == 2, torch.ones_like(zero), torch.where(n_pass == 1, zero + w_d, zero))
        weight_disagree = torch.where(n_pass == 1, zero + w_d, zero)
        weight = torch.where(agree, weight_agree, weight_disagree)
        label = torch.where(agree | pass_i, label_i, label_j)
        return label, weight * self.calibrated, agree

    @torch.no_grad()
    def aux_mask(self, probs: Tensor) -> Tensor:
        """m_aux for each target head h: ``policy_i.mask(q_i) OR policy_j.mask(q_j)``, ``[3, n]``."""
        conf = torch.stack([policy.mask(probs[h]) for h, policy in enumerate(self.head_policies)])
        return torch.maximum(conf[self.others[:, 0]], conf[self.others[:, 1]])

    # --------------------------------------------------------------------------------- step
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
        H, n, C = z_w.shape

        with torch.no_grad():
            z_g, ids_g, gathered_batch = self._gather_weak(z_w, ids, gather)
            if int(self.recalibrate_every) == 0:
                self.recalibrate_every.fill_(resolve_every(self.config.recalibrate_every, self.pool_size, gathered_batch))
            self.table.update(z_g, ids_g)
            probs_g = z_g.softmax(dim=-1)
            for h, policy in enumerate(self.head_policies):
                policy.update(probs_g[h], ids_g)

            probs = z_w.softmax(dim=-1)
            pseudo = probs.argmax(dim=-1)
            apm_pseudo = self.table.lookup(ids, pseudo)
            label, weight, agree = self.pseudo_label_weights(pseudo, apm_pseudo)
            m_aux = self.aux_mask(probs)
            final = weight * m_aux

        ce = F.cross_entropy(z_s.float().reshape(H * n, C), label.reshape(-1), reduction="none").view(H, n)
        unsup = ((final * ce).sum(dim=1) / max(1, n)).mean()
        sup = supervised_loss(logits_lb, labels_lb)
        loss = sup + self.config.lambda_u * unsup

        if step - int(self.last_recalibration_step) >= int(self.recalibrate_every):
            self.recalibrate()
            self.last_recalibration_step.fill_(step)

        logs = {"sup_loss": sup.item(), "unsup_loss": unsup.item(), "total_loss": loss.item()}
        true = ulb_true_labels.unsqueeze(0).expand(H, n) if ulb_true_labels is not None else None
        logs.update(pseudo_label_logs(final, label, true))
        logs["agree_rate"] = agree.float().mean().item()
        logs["weight_one_rate"] = (final == 1).float().mean().item()
        logs["weight_wd_rate"] = ((final > 0) & (weight != 1)).float().mean().item()
        logs["aux_mask_rate"] = m_aux.float().mean().item()
        logs["calibrated"] = float(self.calibrated)
        for h in range(H):
            for c in range(C):
                logs[f"gamma_h{h}_c{c}"] = self.gamma[h, c].item()
            logs.update(self.head_policies[h].logs(prefix=f"h{h}_"))
        return StepOutput(loss, logs)
