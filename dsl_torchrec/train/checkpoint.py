"""Checkpoints on ``torch.distributed.checkpoint`` (DCP): sharded tables, fused and dense
optimizer state, the step's stateful candidate sources, loader position, RNG, history.

Layout under ``<run_dir>/checkpoints/``::

    step_00000420/        one DCP checkpoint (every rank writes its shards), plus
      rng_rank<R>.pt      each rank's RNG state
      meta.json           written by rank 0 last: step, epoch, position, history, plan, config
    latest                name of the newest complete checkpoint (atomic rename)

A save goes to ``step_N.tmp/`` and is renamed only after every rank has finished writing, then
``latest`` is replaced, so a crash during a save leaves the previous checkpoint the valid one.
Loading reshards: DCP fills the state dict of the *current* sharding plan and world size.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from ..dist import barrier


@dataclass
class TrainPosition:
    """Where training stands: the next batch to run is batch ``step_in_epoch`` of ``epoch``."""

    epoch: int = 1
    step_in_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)


def _is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _broadcast_object(obj):
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return obj


class CheckpointManager:
    def __init__(self, run_dir: Path, keep: int) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.keep = max(keep, 1)
        self.latest_step: int | None = None  # global step of the last save or load

    # ----------------------------------------------------------------- discovery
    def latest(self) -> Path | None:
        """The newest complete checkpoint, as rank 0 sees it (broadcast to all ranks)."""
        found = None
        if _is_main():
            pointer = self.root / "latest"
            if pointer.is_file():
                cand = self.root / pointer.read_text().strip()
                if (cand / "meta.json").is_file():
                    found = str(cand)
            if found is None:  # pointer lost or torn: fall back to the newest complete one
                done = sorted(p for p in self.root.glob("step_*")
                              if p.is_dir() and not p.name.endswith(".tmp")
                              and (p / "meta.json").is_file())
                found = str(done[-1]) if done else None
        found = _broadcast_object(found)
        return Path(found) if found else None

    # ----------------------------------------------------------------- save / load
    def save(self, app_state: dict[str, Any], position: TrainPosition,
             meta: dict[str, Any]) -> Path:
        name = f"step_{position.global_step:08d}"
        final, tmp = self.root / name, self.root / f"{name}.tmp"
        if _is_main():
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        dcp.save(app_state, checkpoint_id=str(tmp))
        torch.save(_rng_state(), tmp / f"rng_rank{_rank()}.pt")
        barrier()
        if _is_main():
            record = {
                "position": position.__dict__,
                "saved_at": time.time(),
                "world_size": dist.get_world_size() if dist.is_initialized() else 1,
                **meta,
            }
            (tmp / "meta.json").write_text(json.dumps(record, indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            pointer_tmp = self.root / ".latest.tmp"
            pointer_tmp.write_text(name + "\n")
            os.replace(pointer_tmp, self.root / "latest")
            self._prune(keep_name=name)
        barrier()
        self.latest_step = position.global_step
        return final

    def load(self, path: Path, app_state: dict[str, Any]) -> tuple[TrainPosition, dict[str, Any]]:
        """Fill ``app_state`` (a state dict of the current model/plan) in place from ``path``."""
        dcp.load(app_state, checkpoint_id=str(path))
        meta = json.loads((path / "meta.json").read_text())
        self.latest_step = meta["position"]["global_step"]
        rng_file = path / f"rng_rank{_rank()}.pt"
        if rng_file.is_file():  # absent for ranks beyond the saving world size
            _set_rng_state(torch.load(rng_file, weights_only=True))
        return TrainPosition(**meta["position"]), meta

    def _prune(self, keep_name: str) -> None:
        done = sorted(p for p in self.root.glob("step_*") if p.is_dir()
                      and not p.name.endswith(".tmp"))
        for old in done[:-self.keep]:
            if old.name != keep_name:
                shutil.rmtree(old, ignore_errors=True)
        for torn in self.root.glob("step_*.tmp"):
            shutil.rmtree(torn, ignore_errors=True)


def model_state(sm) -> dict[str, Any]:
    """The model's part of the checkpoint: sharded tables and their fused optimizer state."""
    state: dict[str, Any] = {"model": sm.dmp.state_dict(),
                             "fused_optim": sm.dmp.fused_optimizer.state_dict()}
    if sm.dense_optimizer is not None:
        state["dense_optim"] = sm.dense_optimizer.state_dict()
    return state


def restore_model_state(sm, state: dict[str, Any]) -> None:
    """After ``dcp.load`` filled ``state`` (from ``model_state``): push it into the modules
    (the sharded tensors were filled in place; the optimizers copy from their dicts)."""
    sm.dmp.load_state_dict(state["model"])
    sm.dmp.fused_optimizer.load_state_dict(state["fused_optim"])
    if sm.dense_optimizer is not None and "dense_optim" in state:
        sm.dense_optimizer.load_state_dict(state["dense_optim"])
