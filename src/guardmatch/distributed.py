"""The process group of a data-parallel job started by ``torchrun`` or ``accelerate launch``.

Scoring jobs (``predict``, ``review route``) shard their rows over the processes. They use
``torch.distributed`` directly: accelerate's ``PartialState`` reports a single process for a CPU
job started by plain ``torchrun``. Training keeps using accelerate (see ``training/run.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Group:
    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def group() -> Group:
    """This process's rank and the world size (0, 1 when not launched data-parallel); joins the
    process group (gloo on CPU, NCCL on GPUs: each rank then takes cuda:LOCAL_RANK) on first use."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group(0, 1)
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return Group(dist.get_rank(), dist.get_world_size())
