"""torchrun's environment as one object: rank, world size, the device, and the few collectives training uses.

A plain process (no torchrun) is rank 0 of a world of 1, and every collective is the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "Distributed":
        """Join the process group torchrun describes: NCCL on GPUs, gloo on CPU."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        cuda = torch.cuda.is_available()
        if world_size == 1:
            return cls(device="cuda" if cuda else "cpu")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            torch.cuda.set_device(local_rank)
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
        return cls(torch.distributed.get_rank(), world_size, f"cuda:{local_rank}" if cuda else "cpu")

    def gather(self, value) -> list:
        """Every rank's `value` (any picklable object), in rank order, on every rank."""
        if not self.enabled:
            return [value]
        gathered = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, value)
        return gathered

    def mean(self, values: list[float]) -> float | None:
        """The mean over every rank's values together."""
        totals = self.gather((float(np.sum(values)), len(values)))
        count = sum(n for _, n in totals)
        return sum(s for s, _ in totals) / count if count else None

    def close(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
