"""One training step on 2 ranks == one process given the concatenated batch (loss and updated
embedding rows), for row_wise, table_wise and data_parallel, with in-batch + sampled negatives
and logQ on."""

import numpy as np
import pytest
import torch
import torch.distributed as dist

from distributed import run_distributed

NUM_USERS, NUM_ITEMS, DIM, B = 23, 37, 8, 6
KINDS = ["row_wise", "table_wise", "data_parallel", "column_wise"]
# row-wise Adagrad keeps one accumulator per row *per column shard* under column_wise, so only
# element-wise optimizers are exactly sharding-invariant there (see model.build)
EXACT = {"sgd": KINDS, "rowwise_adagrad": KINDS[:3]}


def _raw_rows(model, which: str, n: int) -> torch.Tensor:
    from dsl_torchrec.model.towers import ITEM_FEATURE, USER_FEATURE, one_id_per_row

    ebc, feat = (model.user_ebc, USER_FEATURE) if which == "user" else (model.item_ebc, ITEM_FEATURE)
    with torch.no_grad():
        return ebc(one_id_per_row(feat, torch.arange(n)))[feat].clone()


def _global_batch(step: int):
    g = torch.Generator().manual_seed(100 + step)
    users = torch.randint(0, NUM_USERS, (2 * B,), generator=g)
    items = torch.randint(0, NUM_ITEMS, (2 * B,), generator=g)
    items[1] = items[0]  # a duplicate positive: its in-batch copy is an accidental hit
    return users, items


def step_worker(rank: int, world: int, sparse: str, steps: int):
    from dsl_torchrec.config import load_config
    from dsl_torchrec.data.loader import Batch
    from dsl_torchrec.losses import build_loss
    from dsl_torchrec.model.build import build_sharded_model
    from dsl_torchrec.negatives import ExpectedCountLogQ, UniformSampler
    from dsl_torchrec.train.step import TrainStep

    counts = np.arange(1, NUM_ITEMS + 1)
    out = {}
    for kind in EXACT[sparse]:
        cfg = load_config(None, [f"sharding.type={kind}", f"model.dim={DIM}",
                                 f"optim.sparse={sparse}", "optim.lr=0.5", "train.seed=3"])
        sm = build_sharded_model(cfg, NUM_USERS, NUM_ITEMS, torch.device("cpu"))
        sampler = UniformSampler(NUM_ITEMS, 5, seed=1)
        logq = ExpectedCountLogQ(counts, 2 * B, True, sampler)
        step = TrainStep(sm.module, build_loss(cfg.loss), in_batch=True, sampler=sampler,
                         log_q=logq, mask_accidental_hits=True, dense_optimizer=sm.dense_optimizer)
        losses = []
        for t in range(steps):
            users, items = _global_batch(t)
            per = 2 * B // world
            batch = Batch(users[rank * per:(rank + 1) * per], items[rank * per:(rank + 1) * per])
            o = step(batch, t)
            loss = o.loss.clone()
            if world > 1:
                dist.all_reduce(loss)
            losses.append(float(loss) / world)
        out[kind] = {"loss": losses, "user": _raw_rows(sm.module, "user", NUM_USERS),
                     "item": _raw_rows(sm.module, "item", NUM_ITEMS)}
    return out


@pytest.mark.parametrize("sparse", ["sgd", "rowwise_adagrad"])
def test_two_ranks_equal_one_process(sparse):
    steps = 2
    (ref,) = run_distributed(step_worker, 1, sparse, steps)
    two = run_distributed(step_worker, 2, sparse, steps)
    from dsl_torchrec.model.build import seeded_rows

    init_items = seeded_rows(3, 0, 0, NUM_ITEMS, DIM, 0.1)
    kinds = EXACT[sparse]
    for kind in kinds:
        for r in range(2):
            got = two[r][kind]
            np.testing.assert_allclose(got["loss"], ref[kind]["loss"], rtol=1e-5, atol=1e-6,
                                       err_msg=kind)
            torch.testing.assert_close(got["user"], ref[kind]["user"], atol=1e-6, rtol=1e-5,
                                       msg=f"{kind} user table")
            torch.testing.assert_close(got["item"], ref[kind]["item"], atol=1e-6, rtol=1e-5,
                                       msg=f"{kind} item table")
        # the step did update the tables (the comparison above is not vacuous)
        assert (ref[kind]["item"] - init_items).abs().max() > 1e-3, kind
    # every sharding type computes the same thing
    for kind in kinds[1:]:
        torch.testing.assert_close(ref[kind]["item"], ref[kinds[0]]["item"], atol=1e-6, rtol=1e-5)
