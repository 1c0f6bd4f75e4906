"""The trainer end to end on tiny real models and real data slices."""

from __future__ import annotations

import json

import numpy as np
import torch
from trainer_fixtures import tiny_model, word_drop_views

from guardmatch.algorithms import build_algorithm
from guardmatch.config import TrainConfig
from guardmatch.data.splits import make_split
from guardmatch.training.checkpoints import list_checkpoints
from guardmatch.training.loaders import StepSampler, choose_views
from guardmatch.training.optim import layer_id, parameter_groups
from guardmatch.training.trainer import Trainer


def _config(tmp_path, **kw) -> TrainConfig:
    base = dict(output_dir=str(tmp_path / "run"), seed=0, save_every=4, log_every=2,
                optim={"max_steps": 8, "batch_size": 4, "mu": 2, "lr": 1e-3, "eval_batch_size": 16})
    base.update(kw)
    return TrainConfig.model_validate(base)


def test_step_sampler_is_a_pure_function_of_step():
    s = StepSampler(size=10, batch_size=4, seed=3)
    first_epoch = np.concatenate([s.global_indices(0), s.global_indices(1), s.global_indices(2)[:2]])
    assert sorted(first_epoch.tolist()) == list(range(10))  # one epoch = a permutation
    again = StepSampler(size=10, batch_size=4, seed=3)
    assert again.global_indices(7).tolist() == s.global_indices(7).tolist()
    # two ranks split the same global batch
    r0 = StepSampler(10, 2, 3, world_size=2, rank=0)
    r1 = StepSampler(10, 2, 3, world_size=2, rank=1)
    assert np.concatenate([r0.indices(5), r1.indices(5)]).tolist() == s.global_indices(5).tolist()


def test_choose_views_reproducible(prompt_slice):
    views = [word_drop_views(ex, k=3) for ex in prompt_slice[:10]]
    idx = np.arange(10)
    a = choose_views(views, idx, seed=0, step=5)
    b = choose_views(views, idx, seed=0, step=5)
    assert [v.metadata["view"] for v in a] == [v.metadata["view"] for v in b]
    assert len({v.metadata["view"] for v in choose_views(views, np.arange(10), 0, 6)}) > 1


def test_layer_wise_lr_decay_groups():
    model = tiny_model()
    assert layer_id("encoder.embeddings.word_embeddings.weight", 2) == 0
    assert layer_id("encoder.encoder.layer.1.output.dense.weight", 2) == 2
    assert layer_id("heads.0.1.weight", 2) == 3
    cfg = TrainConfig().optim.model_copy(update={"lr": 1.0, "layer_decay": 0.5})
    lrs = sorted({g["lr"] for g in parameter_groups(model, cfg, 2)})
    # embeddings 0.5^3, layer0 0.5^2, layer1 0.5, top (pooler) and heads 1.0
    assert lrs == [0.125, 0.25, 0.5, 1.0]


def test_supervised_training_learns_and_checkpoints(tmp_path, prompt_slice):
    split = make_split(prompt_slice, 40, seed=0, validation=8)
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = _config(tmp_path, optim={"max_steps": 12, "batch_size": 8, "lr": 3e-3, "eval_batch_size": 16},
                  eval_every=6)
    trainer = Trainer(cfg, model, build_algorithm("supervised"), split.labeled, validation=split.validation)
    result = trainer.train()
    losses = [r["sup_loss"] for r in result.history if "sup_loss" in r]
    assert all(np.isfinite(losses))
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("heads.") for k in changed) and any(k.startswith("encoder.") for k in changed)
    assert [c.name for c in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step-000004", "step-000008"]
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val" in r] == [6, 12]
    assert result.validation is not None and result.validation["step"] in (6, 12)


def test_fixmatch_training_reads_views_and_logs_mask(tmp_path, prompt_slice):
    split = make_split(prompt_slice, 20, seed=0)
    views = [word_drop_views(ex) for ex in split.unlabeled]
    algo = build_algorithm("fixmatch", {"threshold": 0.5}, num_classes=2, pool_size=len(split.unlabeled))
    cfg = _config(tmp_path)
    trainer = Trainer(cfg, tiny_model(), algo, split.labeled, split.unlabeled, views)
    result = trainer.train()
    logged = [r for r in result.history if "mask_rate" in r]
    assert logged and all(0.0 <= r["mask_rate"] <= 1.0 for r in logged)
    # hidden labels of the pool feed only the diagnostic
    assert any("pseudo_label_acc" in r for r in logged)


def test_ssl_without_views_is_a_clear_error(tmp_path, prompt_slice):
    split = make_split(prompt_slice, 20, seed=0)
    algo = build_algorithm("fixmatch", None, num_classes=2, pool_size=len(split.unlabeled))
    try:
        Trainer(_config(tmp_path), tiny_model(), algo, split.labeled, split.unlabeled, None)
    except ValueError as exc:
        assert "guardmatch augment" in str(exc)
    else:
        raise AssertionError("expected a ValueError")


def test_multimatch_runs_three_heads(tmp_path, prompt_slice):
    split = make_split(prompt_slice, 20, seed=0)
    views = [word_drop_views(ex) for ex in split.unlabeled]
    algo = build_algorithm("multimatch", {"recalibrate_every": 3}, num_classes=2, pool_size=len(split.unlabeled))
    model = tiny_model(num_heads=algo.num_heads)
    result = Trainer(_config(tmp_path), model, algo, split.labeled, split.unlabeled, views).train()
    assert model.config.num_heads == 3
    assert result.history[-1]["step"] == 8


def test_resume_in_process_matches_uninterrupted(tmp_path, prompt_slice):
    """Stop after a checkpoint, start a new Trainer on the same dir: same final weights."""
    split = make_split(prompt_slice, 20, seed=0)
    views = [word_drop_views(ex) for ex in split.unlabeled]

    def run(out, steps):
        cfg = _config(tmp_path, output_dir=str(out), optim={"max_steps": steps, "batch_size": 4, "mu": 2,
                                                             "lr": 1e-3, "eval_batch_size": 16})
        algo = build_algorithm("marginmatch", {"apm_warmup": 2}, 2, len(split.unlabeled))
        trainer = Trainer(cfg, tiny_model(), algo, split.labeled, split.unlabeled, views)
        trainer.train()
        return trainer

    full = run(tmp_path / "a", 8)
    # an interrupted run: the same config, stopped at step 4 (its checkpoint), then resumed to 8
    cfg_half = _config(tmp_path, output_dir=str(tmp_path / "b"), optim={"max_steps": 8, "batch_size": 4, "mu": 2,
                                                                        "lr": 1e-3, "eval_batch_size": 16})
    algo = build_algorithm("marginmatch", {"apm_warmup": 2}, 2, len(split.unlabeled))
    t = Trainer(cfg_half, tiny_model(), algo, split.labeled, split.unlabeled, views)
    for step in range(4):
        t.train_step(step)
    t._save(4, None)
    resumed = run(tmp_path / "b", 8)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    for k, v in full.algorithm.state_dict().items():
        assert torch.equal(v, resumed.algorithm.state_dict()[k]), k
