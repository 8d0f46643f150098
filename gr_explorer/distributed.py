"""Running under PyTorch's launcher: `torchrun --nproc_per_node=N -m gr_explorer sweep ...`.

Why torchrun and not a scheduler of our own: it already starts one process per
GPU (or CPU worker) on one or many machines, sets RANK / WORLD_SIZE /
LOCAL_RANK and the rendezvous, and tears the whole job down when one process
fails. Each rank extracts a disjoint share of the batches (features.py); rank
0 merges them in the shared cache folder, fits the probes and writes the
outputs, so results and run.json are those of a single process.

Backends: NCCL between the GPUs (each rank binds its GPU, LOCAL_RANK, before the
group is formed, so collectives never touch another rank's GPU), gloo on CPUs.
A one-process torchrun job forms its group of one too, so the NCCL path runs
even where one GPU is all there is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import GRExplorerError


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank, number of processes, and its rank on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def current(cls) -> "World":
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
        return cls()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def gather(self, value) -> list:
        """Every rank's `value` (a small picklable object), in rank order, on every rank."""
        if self.size == 1:
            return [value]
        out: list = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def agree_min(self, value: int, device: torch.device) -> int:
        """The smallest `value` of all ranks (e.g. a batch size each chose from its own GPU's memory)."""
        if not (dist.is_available() and dist.is_initialized()):
            return value
        t = torch.tensor([value], dtype=torch.int64, device=device if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or "TORCHELASTIC_RUN_ID" in os.environ


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def join(device: torch.device) -> World:
    """Join the process group torchrun prepared (NCCL for CUDA, gloo for CPU); a single process stays alone."""
    if not launched_by_torchrun():
        return World()

    if not dist.is_initialized():
        backend = backend_for(device)
        options = {}
        if backend == "nccl":  # bind this rank's GPU first: NCCL's communicator belongs to one device
            local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(local)
            options["device_id"] = local
        try:
            dist.init_process_group(backend, **options)
        except Exception as e:  # missing MASTER_ADDR, unreachable rendezvous ...
            raise GRExplorerError(f"Could not join the torchrun job ({type(e).__name__}: {e}). Start it with "
                                  "torchrun --nproc_per_node=N -m gr_explorer sweep ... (see README, 'Many GPUs').") from e
    return World.current()


def rank_device(device: torch.device, world: World) -> torch.device:
    """Each rank on its own GPU of its machine."""
    if world.size > 1 and device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
        return torch.device("cuda", world.local_rank)
    return device
