"""The training loop: one loop for supervised and every SSL algorithm, built on Accelerate.

Per step: a labeled batch of B and (for SSL) an unlabeled batch of mu*B; weak logits (original
text) without gradient but in train mode (dropout on, as in USB); labeled and strong-view logits in
one forward pass; the algorithm turns logits into a loss and logs; AdamW with layer-wise lr decay,
cosine schedule, gradient clipping. Batches and dropout noise are pure functions of
``(seed, rank, step)``, so a run resumed from a checkpoint continues exactly as if never stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, cast

import numpy as np
import torch
from accelerate import Accelerator
from rich.console import Console

from guardmatch.config import TrainConfig
from guardmatch.data.example import Example, labels_of
from guardmatch.data.validation import DataError
from guardmatch.errors import ConfigError
from guardmatch.evaluation.metrics import binary_metrics
from guardmatch.model import GuardClassifier
from guardmatch.scoring import probs_from_logits
from guardmatch.training.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from guardmatch.training.inputs import InputPipeline, TextInputs
from guardmatch.training.loaders import StepSampler, choose_views
from guardmatch.training.optim import build_optimizer, build_scheduler

METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainResult:
    """What a finished run produced: the model, where it was saved, and its logs."""

    model: GuardClassifier
    output_dir: Path
    steps: int
    validation: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None


def num_encoder_layers(model: GuardClassifier) -> int:
    cfg = model.encoder.config
    return int(getattr(cfg, "num_hidden_layers", getattr(cfg, "n_layers", 12)))


class Trainer:
    """Train a :class:`GuardClassifier` with an SSL algorithm (``guardmatch.algorithms``).

    ``unlabeled`` is the pool (labels hidden; ``metadata['hidden_label']`` is read only for the
    pseudo-label accuracy diagnostic); ``views[i]`` are cached strong views of ``unlabeled[i]``.
    """

    def __init__(
        self,
        config: TrainConfig,
        model: GuardClassifier,
        algorithm: Any,
        labeled: Sequence[Example],
        unlabeled: Sequence[Example] = (),
        views: Sequence[Sequence[Example]] | None = None,
        validation: Sequence[Example] = (),
        *,
        accelerator: Accelerator | None = None,
        inputs: InputPipeline | None = None,
        provenance: dict[str, Any] | None = None,
        console: Console | None = None,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
    ):
        self.config = config
        self.algorithm = algorithm
        self.labeled = list(labeled)
        self.unlabeled = list(unlabeled)
        self.views = views
        self.validation = list(validation)
        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.console = console or Console(stderr=True)
        self.provenance = provenance or {}
        self.on_step = on_step
        self.output_dir = Path(config.output_dir)
        if not self.labeled:
            raise DataError("no labeled examples to train on")
        if any(ex.label is None for ex in self.labeled):
            raise DataError("labeled set contains examples without a label")
        if algorithm.uses_unlabeled:
            if not self.unlabeled:
                raise DataError(f"{algorithm.name} needs an unlabeled pool, and it is empty")
            if views is None:
                raise ConfigError(
                    f"{algorithm.name} needs strong views of the unlabeled pool: configure views.cache "
                    "(generate them with `guardmatch augment`)"
                )
            if len(views) != len(self.unlabeled):
                raise ValueError(f"{len(views)} view lists for a pool of {len(self.unlabeled)}")
        acc = self.accelerator
        self.model = model
        self.model.to(acc.device)
        self.inputs = inputs or TextInputs(model, model.task, acc.device)
        self.optimizer = build_optimizer(model, config.optim, num_encoder_layers(model))
        self.scheduler = build_scheduler(self.optimizer, config.optim)
        self.wrapped, self.optimizer = acc.prepare(self.model, self.optimizer)
        bucket = config.optim.length_buckets
        self.lb_sampler = StepSampler(
            len(self.labeled), config.optim.batch_size, config.seed, 0, acc.num_processes, acc.process_index,
            lengths=_lengths(self.labeled) if bucket else None, bucket=bucket,
        )
        self.ulb_sampler = (
            StepSampler(
                len(self.unlabeled),
                config.optim.batch_size * config.optim.mu,
                config.seed,
                1,
                acc.num_processes,
                acc.process_index,
                lengths=_lengths(self.unlabeled) if bucket else None,
                bucket=bucket,
            )
            if algorithm.uses_unlabeled
            else None
        )
        self.lb_labels = torch.tensor([ex.label for ex in self.labeled], dtype=torch.long)
        self.ulb_true = torch.tensor(
            [ex.metadata.get("hidden_label", -1) if ex.label is None else ex.label for ex in self.unlabeled],
            dtype=torch.long,
        )

    # ------------------------------------------------------------------ helpers
    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.gather(tensor.contiguous())

    def _step_seed(self, step: int) -> int:
        # dropout noise as a pure function of (seed, rank, step): exact resume without RNG files
        return int(np.random.default_rng([self.config.seed, self.accelerator.process_index, step]).integers(2**62))

    def _checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    # ------------------------------------------------------------------ one step
    def train_step(self, step: int) -> dict[str, float]:
        cfg = self.config
        acc = self.accelerator
        torch.manual_seed(self._step_seed(step))
        self.wrapped.train()
        lb_idx = self.lb_sampler.indices(step)
        lb = [self.labeled[i] for i in lb_idx]
        labels = self.lb_labels[lb_idx].to(acc.device)
        kwargs: dict[str, Any] = {}
        if self.ulb_sampler is not None:
            g_idx = self.ulb_sampler.global_indices(step)
            u = self.ulb_sampler.batch_size
            lo, hi = acc.process_index * u, (acc.process_index + 1) * u
            local_idx = g_idx[lo:hi]
            views = cast(Sequence[Sequence[Example]], self.views)  # checked in __init__ for SSL algorithms
            strong = choose_views(views, g_idx, cfg.seed, step)[lo:hi]
            weak = [self.unlabeled[i] for i in local_idx]
            with torch.no_grad():
                logits_w = self.inputs.logits(self.model, self.inputs.encode(weak))
            logits = self.inputs.logits(self.wrapped, self.inputs.encode(lb + strong))
            n_lb = len(lb)
            kwargs = dict(
                logits_ulb_w=logits_w.detach(),
                logits_ulb_s=logits[:, n_lb:],
                ulb_ids=torch.as_tensor(local_idx, dtype=torch.long, device=acc.device),
                ulb_true_labels=self.ulb_true[local_idx].to(acc.device),
            )
            logits_lb = logits[:, :n_lb]
        else:
            logits_lb = self.inputs.logits(self.wrapped, self.inputs.encode(lb))
        out = self.algorithm.step(
            logits_lb=logits_lb,
            labels_lb=labels,
            step=step,
            gather=self._gather if acc.num_processes > 1 else None,
            **kwargs,
        )
        acc.backward(out.loss)
        if cfg.optim.grad_clip:
            acc.clip_grad_norm_(self.wrapped.parameters(), cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        logs = {"loss": float(out.loss.detach()), **{k: float(v) for k, v in out.logs.items()}}
        if acc.num_processes > 1:
            logs.update(self._mean_over_ranks(logs))
        logs["lr"] = float(self.scheduler.get_last_lr()[-1])
        return logs

    _REDUCED_LOGS = ("loss", "sup_loss", "unsup_loss", "mask_rate", "pseudo_label_acc", "pseudo_harmful_rate")

    def _mean_over_ranks(self, logs: dict[str, float]) -> dict[str, float]:
        """Average the headline logs over processes (a rank without a value, e.g. no masked
        example with a known label, is left out of that key's mean)."""
        vals = torch.tensor([logs.get(k, float("nan")) for k in self._REDUCED_LOGS], dtype=torch.float64)
        have = ~torch.isnan(vals)
        packed = torch.stack([torch.where(have, vals, torch.zeros_like(vals)), have.double()]).to(self.accelerator.device)
        total = self.accelerator.reduce(packed, reduction="sum").cpu()
        return {k: float(total[0, i] / total[1, i]) for i, k in enumerate(self._REDUCED_LOGS) if total[1, i] > 0}

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict_proba(self, examples: Sequence[Example]) -> np.ndarray:
        """P(harmful) for ``examples``, sharded over processes and gathered without duplicates."""
        acc = self.accelerator
        n = len(examples)
        if n == 0:
            return np.zeros(0)
        per = -(-n // acc.num_processes)
        lo = min(n, acc.process_index * per)
        shard = list(examples[lo : lo + per])
        bs = self.config.optim.eval_batch_size
        order = np.argsort([len(ex.prompt) + len(ex.response or "") for ex in shard], kind="stable")
        logits = torch.zeros(per, self.model.config.num_classes)
        self.model.eval()
        for start in range(0, len(shard), bs):
            idx = order[start : start + bs]
            batch = self.inputs.encode([shard[i] for i in idx])
            logits[torch.as_tensor(idx)] = self.model.class_logits(self.inputs.logits(self.model, batch)).float().cpu()
        self.model.train()
        if acc.num_processes > 1:
            logits = acc.gather(logits.to(acc.device)).cpu()
        return probs_from_logits(logits[:n].numpy(), self.model.config.temperature)

    def evaluate_validation(self) -> dict[str, Any] | None:
        if not self.validation:
            return None
        probs = self.predict_proba(self.validation)
        return binary_metrics(labels_of(self.validation), probs, self.model.config.threshold)

    # ------------------------------------------------------------------ checkpoints
    def _save(self, step: int, best: dict[str, Any] | None) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if self.is_main:
            save_checkpoint(
                self._checkpoint_dir(),
                step=step,
                model_state=acc.unwrap_model(self.wrapped).state_dict(),
                optimizer=self.optimizer.optimizer if hasattr(self.optimizer, "optimizer") else self.optimizer,
                scheduler=self.scheduler,
                algorithm_state=self.algorithm.state_dict(),
                trainer_state={"best": best, "fingerprint": self.provenance.get("fingerprint")},
                keep=self.config.keep_checkpoints,
            )
        acc.wait_for_everyone()

    def _resume(self) -> tuple[int, dict[str, Any] | None]:
        ckpt = latest_checkpoint(self._checkpoint_dir()) if self.config.resume else None
        if ckpt is None:
            return 0, None
        state = load_checkpoint(ckpt)
        saved_fp = state["trainer_state"].get("fingerprint")
        if saved_fp and self.provenance.get("fingerprint") and saved_fp != self.provenance["fingerprint"]:
            raise ConfigError(
                f"{ckpt} belongs to a different run (config or split changed); use a new output_dir "
                "or --no-resume"
            )
        self.accelerator.unwrap_model(self.wrapped).load_state_dict(state["model"], strict=False)
        opt = self.optimizer.optimizer if hasattr(self.optimizer, "optimizer") else self.optimizer
        opt.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict({**self.scheduler.state_dict(), **state["scheduler"]})
        self.algorithm.load_state_dict(state["algorithm"])
        step = int(state["trainer_state"]["step"])
        self.console.print(f"[bold]resuming[/] from {ckpt} (step {step})")
        return step, state["trainer_state"].get("best")

    def _truncate_metrics(self, step: int) -> list[dict[str, Any]]:
        path = self.output_dir / METRICS_FILE
        kept: list[dict[str, Any]] = []
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    break  # torn last line from a kill
                if rec.get("step", 0) <= step:
                    kept.append(rec)
            if self.is_main:
                path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        return kept

    def save_algorithm_state(self) -> None:
        """Final algorithm state (APM tables, thresholds ...) for routing and audits.

        ``algorithm.safetensors`` from the main process; with several processes every rank also
        writes ``algorithm-rank{r}.safetensors`` so their agreement can be checked.
        """
        from guardmatch.algorithms import save_algorithm_state

        acc = self.accelerator
        if self.is_main:
            save_algorithm_state(self.algorithm, self.output_dir / "algorithm.safetensors")
        if acc.num_processes > 1:
            save_algorithm_state(self.algorithm, self.output_dir / f"algorithm-rank{acc.process_index}.safetensors")
        acc.wait_for_everyone()

    # ------------------------------------------------------------------ loop
    def train(self) -> TrainResult:
        """Run to ``optim.max_steps`` (resuming if a checkpoint exists); return the final model."""
        cfg = self.config
        acc = self.accelerator
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        start, best = self._resume()
        resumed_from = start if start else None
        history = self._truncate_metrics(start)
        metrics_path = self.output_dir / METRICS_FILE
        log_file = metrics_path.open("a") if self.is_main else None
        best_dir = self.output_dir / "best"
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from guardmatch.progress import make_progress

        progress = make_progress(  # plain periodic lines when the console is not a terminal
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            disable=not self.is_main,
            unit="steps",
        )
        t0 = time.perf_counter()
        running: dict[str, list[float]] = {}
        try:
            with progress:
                task_id = progress.add_task(
                    f"{self.algorithm.name}", total=cfg.optim.max_steps, completed=start, info=""
                )
                for step in range(start, cfg.optim.max_steps):
                    logs = self.train_step(step)
                    for k, v in logs.items():
                        running.setdefault(k, []).append(v)
                    done = step + 1
                    if done % cfg.log_every == 0 or done == cfg.optim.max_steps:
                        rec: dict[str, float] = {"step": done}
                        for k, vals in running.items():
                            finite = [v for v in vals if not math.isnan(v)]
                            if finite:
                                rec[k] = float(np.mean(finite))
                        rec["elapsed_s"] = round(time.perf_counter() - t0, 2)
                        running = {}
                        history.append(rec)
                        if log_file:
                            log_file.write(json.dumps(rec) + "\n")
                            log_file.flush()
                        info = " ".join(
                            f"{k}={rec[k]:.3f}" for k in ("sup_loss", "unsup_loss", "mask_rate") if k in rec
                        )
                        progress.update(task_id, info=info)
                        if self.on_step:
                            self.on_step(done, rec)
                    evaluate_now = self.validation and (
                        (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.optim.max_steps
                    )
                    if evaluate_now:
                        val = self.evaluate_validation()
                        val_rec = {"step": done, "val": val}
                        history.append(val_rec)
                        if log_file:
                            log_file.write(json.dumps(val_rec) + "\n")
                            log_file.flush()
                        if val is not None and (best is None or val["f1"] > best["f1"]):  # val: validation is set
                            best = {"step": done, **val}
                            if self.is_main:
                                self.model.save_pretrained(best_dir)
                    if done % cfg.save_every == 0 and done < cfg.optim.max_steps:
                        self._save(done, best)
                    progress.update(task_id, completed=done)
        finally:
            if log_file:
                log_file.close()
        acc.wait_for_everyone()
        self.save_algorithm_state()
        if best is not None and self.validation and (best_dir / "model.safetensors").exists():
            # load the selected weights into the live model (keeps any attached feature pipeline)
            from safetensors.torch import load_file

            self.model.load_state_dict(load_file(str(best_dir / "model.safetensors")), strict=False)
            self.model.config.threshold = GuardClassifier.from_pretrained(best_dir).config.threshold
        self.model.eval()
        return TrainResult(
            model=self.model,
            output_dir=self.output_dir,
            steps=cfg.optim.max_steps,
            validation=best,
            history=history,
            resumed_from=resumed_from,
        )


def _lengths(examples: Sequence[Example]) -> tuple[int, ...]:
    """Characters the encoder reads of each example (prompt, plus response for pairs)."""
    return tuple(len(ex.prompt) + len(ex.response or "") for ex in examples)
