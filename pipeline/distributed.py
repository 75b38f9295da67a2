"""Several processes for phase one, through PyTorch's own launcher (torchrun).

Offers:
    Ranks.from_environment() -> Ranks   reads RANK / WORLD_SIZE / LOCAL_RANK;
                                              joins the process group when WORLD_SIZE > 1
    Ranks.rank, .world, .local_rank, .leader
    Ranks.barrier(), .gather(obj) -> list (on every rank), .share(obj) -> the leader's obj, .close()
    Ranks.mine(shards) -> the shards this rank owns (whole shards, none shared, none padded)
    Ranks.stop_together(failure)       every rank stops if one refused its arguments; the leader says why
    Ranks.writable_store(stack, path, make) -> the store: made by the leader, then opened by all

One process (no torchrun) is world 1 and every call is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import FollowerStopped, InputError, PipelineError


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

    def share(self, value):
        """The leader's ``value``, on every rank (what the others pass is ignored)."""
        return self.gather(value if self.leader else None)[0]

    def close(self) -> None:
        if self.joined:
            import torch.distributed as dist

            dist.destroy_process_group()

    def stop_together(self, failure) -> None:
        """Stop every rank if any refused its arguments (``failure``, a PipelineError or None):
        the leader says why, once (its own reason, or the first other rank's), the others stop
        silently. Each rank checks before the ranks meet: a missing folder was said once per rank."""
        if not self.joined:
            if failure is not None:
                raise failure
            return
        said = self.gather(None if failure is None else str(failure))
        refused = [(rank, text) for rank, text in enumerate(said) if text is not None]
        if not refused:
            return
        self.close()
        if not self.leader:
            raise FollowerStopped()
        if failure is not None:
            raise failure
        raise InputError(f"rank {refused[0][0]}: {refused[0][1]}")

    def writable_store(self, stack, store_path, open_for_writing):
        """The store, opened for writing: made or checked by the leader under the writer lock
        (held on ``stack``), then opened by the other ranks."""
        from .store import open_group
        from .writers import writer_lock

        refusal, group = None, None
        if self.leader:
            try:
                stack.enter_context(writer_lock(store_path))
                group = open_for_writing()
            except PipelineError as exc:
                refusal = exc
        # Every rank learns of the leader's refusal, and stops without a word: waiting at a barrier
        # instead, they died of the closed connection, with tracebacks, once the leader had exited.
        # The gather is also the barrier: no rank opens the store before the leader has made it.
        if any(self.gather(refusal is not None)):
            self.close()
            raise refusal if refusal is not None else FollowerStopped()
        return group if self.leader else open_group(store_path, mode="r+")
