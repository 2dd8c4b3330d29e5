"""Use a finished (or checkpointed) run without training: evaluate it, export embeddings.

Works under any world size: the model is rebuilt for the current process group and DCP
reshards the checkpoint's tables into it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from ..config import ConfigError, load_config
from ..data.dataset import InteractionData
from ..dist import barrier
from ..eval.evaluate import rank_slice_vectors
from ..eval.retrieval import item_range
from ..model.build import build_sharded_model
from .checkpoint import CheckpointManager


def load_run(run_dir: str | Path, device: torch.device, overrides: list[str] = ()):
    """(cfg, data, sharded model with the latest checkpoint's tables) for ``run_dir``."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir / 'config.yaml'} not found: not a dsl-train run dir")
    cfg = load_config(run_dir / "config.yaml", list(overrides))
    latest = CheckpointManager(run_dir, cfg.train.keep_checkpoints).latest()
    if latest is None:
        raise ConfigError(f"{run_dir}: no complete checkpoint under {run_dir / 'checkpoints'}")
    data = InteractionData(cfg.data.path)
    sm = build_sharded_model(cfg, data.num_users, data.num_items, device)
    state = {"model": sm.dmp.state_dict()}
    dcp.load(state, checkpoint_id=str(latest))
    sm.dmp.load_state_dict(state["model"])
    return cfg, data, sm, latest


def _vocab(data: InteractionData, name: str):
    """Original ids ordered by dense id, when the dataset has a vocabulary file
    (``users.parquet``: original_id, user_id; ``items.parquet``: original_id, item_id)."""
    path = data.directory / f"{name}.parquet"
    if not path.is_file():
        return None
    table = pq.read_table(path)
    dense = table.column("user_id" if name == "users" else "item_id").to_numpy()
    return table.column("original_id").take(pa.array(np.argsort(dense)))


def export_embeddings(run_dir: str | Path, out: str | Path, device: torch.device) -> Path:
    """Write ``<out>/users/part-RRRRR.parquet`` and ``<out>/items/part-RRRRR.parquet``: columns
    id (dense), original_id (when the dataset has vocabularies), embedding (fixed-size list of
    float32; the towers' output, L2-normalised for cosine). Each rank writes the parquet part of
    its own contiguous id range, so no rank holds the whole catalog; ``out`` appears only once
    every part is written."""
    cfg, data, sm, _ = load_run(run_dir, device)
    model = sm.module
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    barrier()
    for name, n, lookup in (("users", data.num_users, model.user_vectors),
                            ("items", data.num_items, model.item_vectors)):
        lo, hi = item_range(n, rank, world)
        emb = rank_slice_vectors(lookup, n).float().cpu().numpy()
        cols = {"id": pa.array(np.arange(lo, hi, dtype=np.int64))}
        vocab = _vocab(data, name)
        if vocab is not None:
            cols["original_id"] = vocab.slice(lo, hi - lo)
        cols["embedding"] = pa.FixedSizeListArray.from_arrays(
            pa.array(emb.reshape(-1), type=pa.float32()), emb.shape[1])
        (tmp / name).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), tmp / name / f"part-{rank:05d}.parquet")
    barrier()
    if rank == 0:
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    barrier()
    return out
