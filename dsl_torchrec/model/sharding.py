"""Sharding plans for the two-tower model: the planner (``auto``) or a hand-built plan per type.

TorchRec's planner offers only data-parallel / table-wise / column-wise on CPU; row-wise works on
gloo when a plan asks for it, so fixed types are built with ``construct_module_sharding_plan``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
from torchrec.distributed.sharding_plan import (
    column_wise,
    construct_module_sharding_plan,
    data_parallel,
    row_wise,
    table_wise,
)
from torchrec.distributed.types import ShardingPlan, ShardingType

from .towers import ITEM_TABLE, USER_TABLE, TwoTower


class CpuRowWiseEBCSharder(EmbeddingBagCollectionSharder):
    """EBC sharder that also offers row-wise sharding on CPU (gloo supports the collectives)."""

    def sharding_types(self, compute_device_type: str) -> list[str]:
        types = super().sharding_types(compute_device_type)
        for extra in (ShardingType.ROW_WISE.value, ShardingType.TABLE_ROW_WISE.value):
            if extra not in types:
                types.append(extra)
        return types


def _generator(kind: str, rank_for_table: int):
    if kind == "row_wise":
        return row_wise()
    if kind == "table_wise":
        return table_wise(rank=rank_for_table)
    if kind == "column_wise":
        return column_wise(ranks=list(range(dist.get_world_size())))
    if kind == "data_parallel":
        return data_parallel()
    raise ValueError(f"sharding.type: unknown type {kind!r}")


def build_plan(
    model: TwoTower, kind: str, device: torch.device, sharder: nn.Module
) -> ShardingPlan:
    """Plan for ``model.user_ebc`` and ``model.item_ebc``. ``table_wise`` puts the user table on
    rank 0 and the item table on the last rank; ``column_wise`` splits each table's columns over
    all ranks (dim must be divisible accordingly)."""
    world = dist.get_world_size()
    if kind == "auto":
        topology = Topology(world_size=world, compute_device=device.type,
                            local_world_size=world if device.type == "cpu" else None)
        planner = EmbeddingShardingPlanner(topology=topology)
        return planner.collective_plan(model, [sharder], dist.GroupMember.WORLD)
    plans = {}
    placements = (("user_ebc", USER_TABLE, 0), ("item_ebc", ITEM_TABLE, world - 1))
    for module_name, table, rank in placements:
        module = getattr(model, module_name)
        plans[module_name] = construct_module_sharding_plan(
            module, {table: _generator(kind, rank)}, sharder=sharder,
            local_size=world if device.type == "cpu" else None, world_size=world,
            device_type=device.type,
        )
    return ShardingPlan(plan=plans)
