"""Several processes for phase one, through PyTorch's own launcher (torchrun).

Offers:
    Ranks.from_environment() -> Ranks   reads RANK / WORLD_SIZE / LOCAL_RANK;
                                              joins the process group when WORLD_SIZE > 1
    Ranks.rank, .world, .local_rank, .leader
    Ranks.barrier(), .gather(obj) -> list (on every rank), .close()
    Ranks.mine(shards) -> the shards this rank owns (whole shards, none shared, none padded)

One process (no torchrun) is world 1 and every call is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    joined: bool = False

    @classmethod
    def from_environment(cls) -> "Ranks":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        ranks = cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
        if world > 1:
            import datetime

            import torch.distributed as dist

            if not dist.is_initialized():
                # gloo serves barriers and small gathers on CPU and GPU alike; the
                # activations themselves never travel between ranks.
                dist.init_process_group("gloo", timeout=datetime.timedelta(hours=2))
            ranks.joined = True
        return ranks

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def mine(self, shards: list[int]) -> list[int]:
        return shards[self.rank::self.world]

    def barrier(self) -> None:
        if self.joined:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, value) -> list:
        if not self.joined:
            return [value]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def close(self) -> None:
        if self.joined:
            import torch.distributed as dist

            dist.destroy_process_group()
