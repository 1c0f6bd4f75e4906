"""State: safetensors round trip, multi-rank gather consistency, finiteness over many random steps."""

from __future__ import annotations

import threading

import pytest
import torch

from guardmatch.algorithms import build_algorithm, load_algorithm_state, save_algorithm_state

POOL = 12
CASES = {
    "fixmatch-flexmatch": ("fixmatch", {"confidence": "flexmatch", "threshold": 0.7}),
    "fixmatch-sat": ("fixmatch", {"confidence": "freematch"}),
    "marginmatch-zero": ("marginmatch", {"confidence": "flexmatch", "threshold": 0.7}),
    "marginmatch-virtual": (
        "marginmatch",
        {"gamma_mode": "virtual_class", "threshold_fraction": 0.25, "threshold_period": 2, "min_threshold_visited": 1},
    ),
    "multimatch": ("multimatch", {"recalibrate_every": 2}),
    "fixmatch-da": ("fixmatch", {"distribution_alignment": True, "da_momentum": 0.9}),
}


def _random_batch(algo, gen, n_lb=4, n_ulb=8, scale=3.0, ids=None):
    H, C = algo.num_heads, algo.num_outputs()
    return dict(
        logits_lb=torch.randn(H, n_lb, C, generator=gen) * scale,
        labels_lb=torch.randint(0, algo.num_classes, (n_lb,), generator=gen),
        logits_ulb_w=torch.randn(H, n_ulb, C, generator=gen) * scale,
        logits_ulb_s=torch.randn(H, n_ulb, C, generator=gen) * scale,
        ulb_ids=torch.randint(0, POOL, (n_ulb,), generator=gen) if ids is None else ids,
        ulb_true_labels=torch.randint(-1, algo.num_classes, (n_ulb,), generator=gen),
    )


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_dict_round_trip_with_safetensors(case, tmp_path):
    name, cfg = CASES[case]
    gen = torch.Generator().manual_seed(0)
    algo = build_algorithm(name, cfg, num_classes=2, pool_size=POOL)
    for step in range(3):
        algo.step(**_random_batch(algo, gen), step=step)
    path = save_algorithm_state(algo, tmp_path / "algo.safetensors")
    restored = build_algorithm(name, cfg, num_classes=2, pool_size=POOL)
    load_algorithm_state(restored, path)
    _assert_same_state(algo, restored)
    # the next step (which re-samples threshold examples / recalibrates here) is identical
    batch = _random_batch(algo, gen)
    out_a, out_b = algo.step(**batch, step=3), restored.step(**batch, step=3)
    assert out_a.loss.item() == out_b.loss.item()
    assert out_a.logs == out_b.logs
    _assert_same_state(algo, restored)


def test_loading_into_the_wrong_algorithm_or_pool_fails(tmp_path):
    path = save_algorithm_state(build_algorithm("multimatch", None, 2, POOL), tmp_path / "mm.safetensors")
    with pytest.raises(ValueError, match="'multimatch', cannot load into 'marginmatch'"):
        load_algorithm_state(build_algorithm("marginmatch", None, 2, POOL), path)
    with pytest.raises(ValueError, match="pool_size=12"):
        load_algorithm_state(build_algorithm("multimatch", None, 2, POOL + 1), path)
    empty = save_algorithm_state(build_algorithm("fixmatch", None, 2, POOL), tmp_path / "fm.safetensors")
    load_algorithm_state(build_algorithm("fixmatch", None, 2, POOL), empty)  # stateless: empty file is fine


class ThreadGather:
    """A real all-gather between threads (one per simulated rank): cat along dim 0 in rank order."""

    def __init__(self, world: int) -> None:
        self.slots: list[torch.Tensor | None] = [None] * world
        self.barrier = threading.Barrier(world, timeout=30)

    def for_rank(self, rank: int):
        def gather(tensor: torch.Tensor) -> torch.Tensor:
            self.slots[rank] = tensor
            self.barrier.wait()
            out = torch.cat(self.slots, dim=0)  # type: ignore[arg-type]
            self.barrier.wait()
            return out

        return gather


def _half(batch, rank):
    def part(t, dim):
        return t.chunk(2, dim=dim)[rank]

    return dict(
        logits_lb=part(batch["logits_lb"], 1), labels_lb=part(batch["labels_lb"], 0),
        logits_ulb_w=part(batch["logits_ulb_w"], 1), logits_ulb_s=part(batch["logits_ulb_s"], 1),
        ulb_ids=part(batch["ulb_ids"], 0), ulb_true_labels=part(batch["ulb_true_labels"], 0),
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_ranks_hold_the_single_process_state(case):
    name, cfg = CASES[case]
    gen = torch.Generator().manual_seed(1)
    single = build_algorithm(name, cfg, num_classes=2, pool_size=POOL)
    ranks = [build_algorithm(name, cfg, num_classes=2, pool_size=POOL) for _ in range(2)]
    batches = []
    for _step in range(6):
        ids = torch.randint(0, POOL, (8,), generator=gen)
        ids[4] = ids[0]  # the same id on both ranks (sampler padding): one visit
        batches.append(_random_batch(single, gen, ids=ids))
    single_losses = [single.step(**b, step=s).loss.item() for s, b in enumerate(batches)]

    comm = ThreadGather(2)
    rank_losses: list[list[float]] = [[], []]
    errors: list[BaseException] = []

    def run(rank: int) -> None:
        try:
            for step, batch in enumerate(batches):
                out = ranks[rank].step(**_half(batch, rank), step=step, gather=comm.for_rank(rank))
                rank_losses[rank].append(out.loss.item())
        except BaseException as exc:  # surface thread failures in the test
            errors.append(exc)
            comm.barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    _assert_same_state(ranks[0], ranks[1])
    _assert_same_state(single, ranks[0])
    if case != "marginmatch-virtual":  # there the fake-class weight is each rank's own mask rate
        for s in range(len(batches)):
            assert (rank_losses[0][s] + rank_losses[1][s]) / 2 == pytest.approx(single_losses[s], rel=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_stays_finite_over_many_random_steps(case):
    name, cfg = CASES[case]
    gen = torch.Generator().manual_seed(2)
    algo = build_algorithm(name, cfg, num_classes=2, pool_size=POOL)
    for step in range(150):
        scale = [0.0, 1.0, 5.0, 60.0][step % 4]  # exact ties, typical, confident, saturated logits
        batch = _random_batch(algo, gen, scale=scale)
        if step % 5 == 0:  # mixed-precision logits from an autocast forward
            for key in ("logits_lb", "logits_ulb_w", "logits_ulb_s"):
                batch[key] = batch[key].to(torch.bfloat16)
        out = algo.step(**batch, step=step)
        assert torch.isfinite(out.loss)
    for key, value in algo.state_dict().items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key
    if hasattr(algo, "table"):
        assert algo.table.visits.sum() > 0
    for module in algo.modules():
        if hasattr(module, "classwise_acc"):
            assert ((module.classwise_acc >= 0) & (module.classwise_acc <= 1)).all()
        if hasattr(module, "p_tilde"):
            assert module.p_tilde.sum().item() == pytest.approx(1.0, abs=1e-4)
            assert 0.5 - 1e-6 <= module.tau.item() <= 1.0 + 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", sorted(CASES))
def test_cuda_state_matches_cpu(case):
    name, cfg = CASES[case]
    gen = torch.Generator().manual_seed(3)
    cpu = build_algorithm(name, cfg, num_classes=2, pool_size=POOL)
    gpu = build_algorithm(name, cfg, num_classes=2, pool_size=POOL)
    for step in range(8):
        batch = _random_batch(cpu, gen)
        out_cpu = cpu.step(**batch, step=step)
        out_gpu = gpu.step(**{k: v.cuda() for k, v in batch.items()}, step=step)
        assert out_gpu.loss.device.type == "cuda"
        assert out_gpu.loss.item() == pytest.approx(out_cpu.loss.item(), rel=1e-4, abs=1e-6)
    for key, value in cpu.state_dict().items():
        other = gpu.state_dict()[key].cpu()
        if value.is_floating_point():
            assert torch.allclose(value, other, rtol=1e-4, atol=1e-5), key
        else:
            assert torch.equal(value, other), key
