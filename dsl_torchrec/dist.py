"""Process-group set-up from torchrun / SLURM / submitit environments; device choice."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def choose_device(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(timeout_s: float = 600.0) -> DistEnv:
    """Initialise the default process group from the environment (torchrun / submitit set
    RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Without them, a one-process group
    on a local file store, so the same code path runs everywhere."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = choose_device(local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torchrun keeps one agent store across elastic restarts; without a per-attempt
            # prefix, restarted gloo workers read the dead workers' addresses and hang.
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            base = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                                 world_size, is_master=False, timeout=timeout)
            store = dist.PrefixStore(f"dsl_torchrec/attempt{attempt}", base)
            dist.init_process_group(backend=backend, store=store, rank=rank,
                                    world_size=world_size, timeout=timeout)
        elif "MASTER_ADDR" in os.environ:
            dist.init_process_group(backend=backend, timeout=timeout)
        else:
            import tempfile

            store = tempfile.mktemp(prefix="dsl_torchrec_pg_")
            dist.init_process_group(
                backend=backend, init_method=f"file://{store}", rank=0, world_size=1,
                timeout=timeout,
            )
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, device, backend)


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over all ranks (a new tensor; identity at world size 1)."""
    t = t.clone()
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t
