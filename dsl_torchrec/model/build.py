"""Build the sharded model: meta-device towers -> fused sparse optimizer -> DMP -> seeded init."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.types import ShardingEnv, ShardingPlan
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from ..config import Config
from .sharding import CpuRowWiseEBCSharder, build_plan
from .towers import TwoTower

_INIT_BLOCK_ROWS = 1 << 16


@dataclass
class ShardedModel:
    dmp: DistributedModelParallel
    plan: ShardingPlan
    # steps every parameter that is not updated inside backward: data-parallel tables (with the
    # sparse optimizer's rule) and dense tower parameters (with optim.dense); None if there are none
    dense_optimizer: CombinedOptimizer | None

    @property
    def module(self) -> TwoTower:
        return self.dmp.module


def sparse_optimizer(name: str, lr: float, eps: float, weight_decay: float, device: torch.device):
    if name == "rowwise_adagrad":
        return RowWiseAdagrad, {"lr": lr, "eps": eps, "weight_decay": weight_decay}
    if name == "adagrad":
        return torch.optim.Adagrad, {"lr": lr, "eps": eps, "weight_decay": weight_decay}
    if name == "sgd":
        return torch.optim.SGD, {"lr": lr, "weight_decay": weight_decay}
    if name == "adam":
        if device.type != "cuda":
            raise ValueError("optim.sparse=adam needs a CUDA device (TorchRec's fused CPU "
                             "kernels support sgd, adagrad, rowwise_adagrad)")
        return torch.optim.Adam, {"lr": lr, "eps": eps, "weight_decay": weight_decay}
    raise ValueError(f"optim.sparse: unknown optimizer {name!r}")


def seeded_rows(seed: int, table_index: int, row_start: int, row_end: int, dim: int,
                std: float) -> torch.Tensor:
    """Rows [row_start, row_end) of a table whose values depend only on (seed, table, row), not
    on how the table is sharded: N(0, std²) generated in fixed blocks of rows."""
    out = []
    first, last = row_start // _INIT_BLOCK_ROWS, (row_end - 1) // _INIT_BLOCK_ROWS
    for block in range(first, last + 1):
        g = torch.Generator().manual_seed(seed * 1_000_003 + table_index * 7919 + block)
        b0 = block * _INIT_BLOCK_ROWS
        rows = torch.randn(_INIT_BLOCK_ROWS, dim, generator=g) * std
        out.append(rows[max(row_start - b0, 0): min(row_end - b0, _INIT_BLOCK_ROWS)])
    return torch.cat(out) if out else torch.empty(0, dim)


@torch.no_grad()
def init_tables(dmp: DistributedModelParallel, seed: int, std: float) -> None:
    """Overwrite every local shard with its seeded rows (identical on any world size)."""
    for table_index, (name, tensor) in enumerate(_table_weights(dmp)):
        dim = tensor.size(1)
        for t, (r0, c0) in _local_pieces(tensor):
            rows = seeded_rows(seed, table_index, r0, r0 + t.shape[0], dim, std)
            t.copy_(rows[:, c0: c0 + t.shape[1]].to(t.device, t.dtype))


def _table_weights(dmp: DistributedModelParallel):
    sd = dmp.state_dict()
    return sorted((k, v) for k, v in sd.items() if k.endswith(".weight") and "embedding_bags" in k)


def _local_pieces(tensor):
    """(local tensor, (row offset, col offset)) for a ShardedTensor, DTensor or plain tensor."""
    if hasattr(tensor, "local_shards"):
        return [(s.tensor, tuple(s.metadata.shard_offsets)) for s in tensor.local_shards()]
    return [(tensor, (0, 0))]


def build_sharded_model(cfg: Config, num_users: int, num_items: int,
                        device: torch.device) -> ShardedModel:
    model = TwoTower(num_users, num_items, cfg.model.dim, cfg.model.score, device="meta")
    opt_cls, opt_kwargs = sparse_optimizer(
        cfg.optim.sparse, cfg.optim.lr, cfg.optim.eps, cfg.optim.weight_decay, device)
    # (copies: apply_optimizer_in_backward stores and extends the dict it is given)
    apply_optimizer_in_backward(opt_cls, model.user_ebc.parameters(), dict(opt_kwargs))
    apply_optimizer_in_backward(opt_cls, model.item_ebc.parameters(), dict(opt_kwargs))
    if cfg.sharding.type == "column_wise" and cfg.optim.sparse == "rowwise_adagrad":
        warnings.warn("sharding.type=column_wise with optim.sparse=rowwise_adagrad: the row-wise "
                      "accumulator is kept per column shard, so updates differ from the "
                      "unsharded optimizer (use adagrad or sgd for sharding-invariant updates)",
                      stacklevel=2)
    sharder = CpuRowWiseEBCSharder()
    plan = build_plan(model, cfg.sharding.type, device, sharder)
    dmp = DistributedModelParallel(
        model, env=ShardingEnv.from_process_group(dist.GroupMember.WORLD), device=device,
        plan=plan, sharders=[sharder],
    )
    init_tables(dmp, cfg.train.seed, cfg.model.init_std)
    return ShardedModel(dmp, plan, _non_fused_optimizer(dmp, cfg, opt_cls, opt_kwargs))


def _non_fused_optimizer(dmp, cfg: Config, table_cls, table_kwargs) -> CombinedOptimizer | None:
    rest = dict(in_backward_optimizer_filter(dmp.named_parameters()))
    tables = {k: v for k, v in rest.items() if ".embedding_bags." in k}
    dense = {k: v for k, v in rest.items() if k not in tables}
    dense_cls = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad,
                 "sgd": torch.optim.SGD}[cfg.optim.dense]
    parts = []
    if tables:
        parts.append(KeyedOptimizerWrapper(tables, lambda p: table_cls(p, **table_kwargs)))
    if dense:
        parts.append(KeyedOptimizerWrapper(dense, lambda p: dense_cls(p, lr=cfg.optim.dense_lr)))
    return CombinedOptimizer(parts) if parts else None
