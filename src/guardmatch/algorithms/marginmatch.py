"""MarginMatch (Sosea & Caragea, CVPR 2023): FixMatch filtered by the Average Pseudo-Margin."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from guardmatch.algorithms.apm import APMTable, pseudo_margins
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
from guardmatch.algorithms.masking import build_policy
from guardmatch.errors import ConfigError


class MarginMatchConfig(AlgorithmConfig):
    """Defaults: δ = 0.997, γ = 0 (``zero`` mode), fixed τ = 0.95, λ_u = 1."""

    lambda_u: float = Field(1.0, ge=0.0)
    delta: float = Field(0.997, gt=0.0, le=1.0, description="APM smoothing δ (1 = plain running mean)")
    gamma_mode: Literal["zero", "virtual_class"] = "zero"
    percentile: float = Field(
        99.0, ge=0.0, le=100.0,
        description="virtual_class: γ = this percentile (0-100, used as stated) of the threshold "
        "examples' fake-class APM",
    )
    apm_warmup: int = Field(0, ge=0, description="steps before the APM filter (and threshold examples) start")
    confidence: Literal["fixed", "flexmatch"] = "fixed"
    threshold: float = Field(0.95, ge=0.0, le=1.0, description="τ of mask_conf (FlexMatch's base τ)")
    flexmatch_warmup: bool = True
    threshold_fraction: float = Field(0.01, gt=0.0, le=0.5, description="share of the pool used as threshold examples")
    threshold_period: int | None = Field(
        None, ge=1, description="steps between re-samplings of threshold examples; None = one pass over the pool"
    )
    threshold_stop_step: int | None = Field(
        None, ge=0, description="from this step on, no threshold examples (the official code stops at 90%)"
    )
    min_threshold_visited: int = Field(10, ge=1, description="visited threshold examples needed to (re)compute γ")
    seed: int = Field(0, description="seed of the threshold-example sampler (its state is checkpointed)")


@ALGORITHMS.register("marginmatch")
class MarginMatch(SSLAlgorithm):
    """MarginMatch with hard pseudo-labels and per-example APM.

    Each step, on the gathered weak logits z_w (each id once):
        PM_c(u) = z_c(u) − max_{j≠c} z_j(u)                     for every output c
        APM(u)  ← (δ/(1+t_u))·PM(u) + (1 − δ/(1+t_u))·APM(u);   t_u ← t_u + 1
    On the local batch:
        q = softmax(z_w[:C]);  ŷ = argmax q
        mask = mask_conf(q) · 1[APM_ŷ(u) ≥ γ]       (mask = mask_conf while step < apm_warmup)
        L_u  = mean over all μB of mask · CE(z_s, ŷ);   L = L_s + λ_u L_u

    γ modes:
    - ``zero``: γ = 0 (the historical average must also prefer the current pseudo-label).
    - ``virtual_class`` (the official AUM trick): the model has C+1 outputs. From step
      ``apm_warmup`` on, every ``threshold_period`` steps (default one pass over the pool) a fresh
      random set of ``threshold_fraction``·P pool ids becomes the threshold examples; their
      fake-class APM restarts from 0 in a separate table (their real APM is kept untouched). A
      threshold example in the batch gets no pseudo-label; instead its strong view is trained
      towards the fake class with weight = the batch's mask rate on the other examples (as the
      official code does), and its weak view updates the fake-class APM. After each step
      γ = the ``percentile``-th percentile of the fake-class APM of the threshold examples visited
      in the current period, once at least ``min_threshold_visited`` are visited (before that, the
      previous γ; initially 0).

    Until examples are revisited MarginMatch *is* FixMatch under γ = ``zero``: on a first visit
    APM_ŷ(u) = δ·PM_ŷ(u) ≥ 0 because ŷ is the arg-max, so the APM mask keeps every example. Its
    filter needs several passes over the pool (measured in ``benchmarks/results/ssl_dynamics.md``).

    Deviations from the official code (tsosea2/MarginMatch): the percentile is used as stated (the
    official code divides it by 100 twice, so its "95" is ~ the 99th); the APM of ŷ uses ŷ over the
    real classes (the official code indexes with the arg-max over C+1 outputs); γ only uses visited
    threshold examples; the stored APM is never overwritten (bug 5 of a port, docs/ALGORITHMS.md).
    """

    config_cls = MarginMatchConfig
    config: MarginMatchConfig
    gamma: Tensor
    # registered only with gamma_mode == "virtual_class"
    is_threshold: Tensor
    threshold_apm: Tensor
    threshold_visits: Tensor
    last_resample_step: Tensor
    threshold_period: Tensor
    rng_state: Tensor

    def __init__(self, config=None, num_classes: int = 2, pool_size: int = 0) -> None:
        super().__init__(config, num_classes=num_classes, pool_size=pool_size)
        cfg = self.config
        self.virtual = cfg.gamma_mode == "virtual_class"
        self.table = APMTable(1, pool_size, self.num_outputs(), cfg.delta)
        self.policy = build_policy(
            cfg.confidence,
            num_classes=num_classes,
            pool_size=pool_size,
            threshold=cfg.threshold,
            flexmatch_warmup=cfg.flexmatch_warmup,
        )
        self.register_buffer("gamma", torch.tensor(0.0))
        if self.virtual:
            self.num_threshold_examples = int(cfg.threshold_fraction * pool_size)
            if self.num_threshold_examples < 1:
                raise ConfigError(
                    f"virtual_class needs threshold_fraction * pool_size >= 1, got "
                    f"{cfg.threshold_fraction} * {pool_size}"
                )
            generator = torch.Generator().manual_seed(cfg.seed)
            self.register_buffer("is_threshold", torch.zeros(pool_size, dtype=torch.bool))
            self.register_buffer("threshold_apm", torch.zeros(pool_size))
            self.register_buffer("threshold_visits", torch.zeros(pool_size, dtype=torch.long))
            self.register_buffer("last_resample_step", torch.tensor(-1, dtype=torch.long))
            self.register_buffer("threshold_period", torch.tensor(0, dtype=torch.long))
            self.register_buffer("rng_state", generator.get_state())

    def num_outputs(self, num_classes: int | None = None) -> int:
        classes = self.num_classes if num_classes is None else num_classes
        return classes + 1 if self.config.gamma_mode == "virtual_class" else classes

    # ------------------------------------------------------------------ threshold examples
    def _threshold_active(self, step: int) -> bool:
        stop = self.config.threshold_stop_step
        return step >= self.config.apm_warmup and (stop is None or step < stop)

    @torch.no_grad()
    def _schedule_threshold_examples(self, step: int, gathered_batch: int) -> None:
        if int(self.threshold_period) == 0:
            self.threshold_period.fill_(resolve_every(self.config.threshold_period, self.pool_size, gathered_batch))
        last = int(self.last_resample_step)
        if not self._threshold_active(step):
            if last >= 0:  # stop: release the set, keep γ
                self.is_threshold.zero_()
                self.last_resample_step.fill_(-1)
            return
        if last >= 0 and step - last < int(self.threshold_period):
            return
        generator = torch.Generator()
        generator.set_state(self.rng_state.cpu())
        chosen = torch.randperm(self.pool_size, generator=generator)[: self.num_threshold_examples]
        self.rng_state.copy_(generator.get_state())
        self.is_threshold.zero_()
        self.is_threshold[chosen.to(self.is_threshold.device)] = True
        self.threshold_apm.zero_()
        self.threshold_visits.zero_()
        self.last_resample_step.fill_(step)

    @torch.no_grad()
    def _update_threshold_apm(self, logits: Tensor, ids: Tensor) -> None:
        """Fake-class APM of threshold examples (same δ/(1+t) rule, own visit counts)."""
        if ids.numel() == 0:
            return
        fake_pm = pseudo_margins(logits)[:, self.num_classes]
        weight = self.config.delta / (1.0 + self.threshold_visits[ids].to(fake_pm.dtype))
        self.threshold_apm[ids] = weight * fake_pm + (1.0 - weight) * self.threshold_apm[ids]
        self.threshold_visits[ids] += 1

    @torch.no_grad()
    def _update_gamma(self) -> None:
        visited = self.is_threshold & (self.threshold_visits > 0)
        values = self.threshold_apm[visited]
        if values.numel() >= self.config.min_threshold_visited:
            self.gamma.copy_(torch.quantile(values, self.config.percentile / 100.0))

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
        C = self.num_classes

        with torch.no_grad():
            z_g, ids_g, gathered_batch = self._gather_weak(z_w, ids, gather)
            z_g = z_g[0]
            if self.virtual:
                self._schedule_threshold_examples(step, gathered_batch)
                thr_g = self.is_threshold[ids_g]
                self._update_threshold_apm(z_g[thr_g], ids_g[thr_g])
                regular = ~thr_g
                z_g, ids_g = z_g[regular], ids_g[regular]
            self.table.update(z_g.unsqueeze(0), ids_g)
            self.policy.update(z_g[:, :C].softmax(dim=-1), ids_g)
            if self.virtual:
                self._update_gamma()

            probs = z_w[0, :, :C].softmax(dim=-1)
            pseudo = probs.argmax(dim=-1)
            mask_conf = self.policy.mask(probs)
            apm_pseudo = self.table.lookup(ids, pseudo.unsqueeze(0))[0]
            mask_apm = (apm_pseudo >= self.gamma).to(mask_conf.dtype)
            mask = mask_conf * mask_apm if step >= self.config.apm_warmup else mask_conf
            is_thr = self.is_threshold[ids] if self.virtual else torch.zeros_like(pseudo, dtype=torch.bool)
            regular_local = ~is_thr
            mask = mask * regular_local

        n = max(1, ids.numel())
        strong = z_s[0].float()
        per_example = mask * F.cross_entropy(strong, pseudo, reduction="none")
        logs: dict[str, float] = {}
        if self.virtual and bool(is_thr.any()):
            n_regular = int(regular_local.sum())
            thr_weight = (mask.sum() / n_regular) if n_regular else mask.new_zeros(())
            fake = torch.full_like(pseudo, C)
            per_example = per_example + is_thr * thr_weight * F.cross_entropy(strong, fake, reduction="none")
            logs["threshold_loss_weight"] = float(thr_weight)
        unsup = per_example.sum() / n
        sup = supervised_loss(logits_lb, labels_lb)
        loss = sup + self.config.lambda_u * unsup

        logs.update({"sup_loss": sup.item(), "unsup_loss": unsup.item(), "total_loss": loss.item()})
        true = ulb_true_labels[regular_local] if ulb_true_labels is not None else None
        logs.update(pseudo_label_logs(mask[regular_local], pseudo[regular_local], true))
        logs["mask_conf_rate"] = mask_conf[regular_local].mean().item() if bool(regular_local.any()) else 0.0
        logs["mask_apm_rate"] = mask_apm[regular_local].mean().item() if bool(regular_local.any()) else 0.0
        logs["gamma"] = self.gamma.item()
        if self.virtual:
            logs["threshold_examples_in_batch"] = float(is_thr.sum())
            logs["threshold_examples_visited"] = float((self.is_threshold & (self.threshold_visits > 0)).sum())
        logs.update(self.policy.logs())
        return StepOutput(loss, logs)
