"""dsl-loss.md test 6: DSL on 2 gloo processes with B rows each == one process with the 2·B
rows (per-row losses, temperatures, gradients w.r.t. pos and neg), because μ, σ and mean(1/τ)
are all-reduced over the group."""

from __future__ import annotations

import torch
import torch.distributed as dist

from distributed import run_distributed

B, C, WORLD = 6, 40, 2
KNOBS = [
    dict(kappa_sim=-0.5, gamma=0.5, dro_scale=True),  # dsl-loss.md's values
    dict(kappa_hard=0.5, kappa_sim=-0.5, gamma=-1.0, temp_range=1.5, w_max=3.0),
    # issue-7 knobs: standardised κ logits, SL + weighted branches, other intensity and map
    dict(kappa_hard=-0.25, kappa_sim=-0.5, gamma=0.5, standardize=True, combine="mix",
         branch_weight=0.5, intensity="entropy", temp_map="linear"),
]


def make_global_inputs():
    g = torch.Generator().manual_seed(21)
    pos = torch.rand(WORLD * B, generator=g) * 2 - 1
    neg = torch.rand(WORLD * B, C, generator=g) * 2 - 1
    neg[:B] += 0.3  # rank 0 sees harder rows than rank 1: local statistics would differ
    valid = torch.rand(WORLD * B, C, generator=g) > 0.2
    valid[1] = False  # one empty row on rank 0
    sim = torch.rand(WORLD * B, C, generator=g) * 2 - 1
    log_q = torch.log(torch.rand(C, generator=g) * 0.9 + 0.05)
    return pos, neg, valid, sim, log_q


def run_dsl(pos, neg, valid, sim, log_q, knobs, group=None, world=1):
    from dsl_torchrec.losses import functional as F

    pos = pos.clone().requires_grad_()
    neg = neg.clone().requires_grad_()
    out = F.dsl_loss(pos, neg, valid, sim, log_q, group=group, **knobs)
    (out.loss / world).backward()  # DDP-style: the local mean over W gives the global mean
    return {"per_row": out.per_row.detach(), "tau": out.temperatures, "gpos": pos.grad,
            "gneg": neg.grad, "mu": out.stats["mu"], "sigma": out.stats["sigma"]}


def dist_worker(rank: int, world: int, knobs: dict):
    pos, neg, valid, sim, log_q = make_global_inputs()
    rows = slice(rank * B, (rank + 1) * B)
    args = (pos[rows], neg[rows], valid[rows], sim[rows], log_q)
    default = run_dsl(*args, knobs, group=None, world=world)
    explicit = run_dsl(*args, knobs, group=dist.group.WORLD, world=world)
    # a group of one rank each: local statistics only (shows the reduction matters)
    local_groups = [dist.new_group([r]) for r in range(world)]
    local = run_dsl(*args, knobs, group=local_groups[rank], world=world)
    return {"default": default, "explicit": explicit, "local": local}


def test_two_processes_equal_one_process_with_all_rows():
    results = run_distributed(_all_knobs_worker, WORLD)
    for k, knobs in enumerate(KNOBS):
        single = run_dsl(*make_global_inputs(), knobs)
        for key in ("per_row", "tau", "gpos", "gneg"):
            got = torch.cat([results[r][k]["default"][key] for r in range(WORLD)])
            torch.testing.assert_close(got, single[key], rtol=1e-5, atol=1e-6, msg=key)
            got = torch.cat([results[r][k]["explicit"][key] for r in range(WORLD)])
            torch.testing.assert_close(got, single[key], rtol=1e-5, atol=1e-6, msg=key)
        for r in range(WORLD):
            torch.testing.assert_close(results[r][k]["default"]["mu"], single["mu"])
            torch.testing.assert_close(results[r][k]["default"]["sigma"], single["sigma"])
        local_tau = torch.cat([results[r][k]["local"]["tau"] for r in range(WORLD)])
        assert (local_tau - single["tau"]).abs().max() > 1e-3


def _all_knobs_worker(rank: int, world: int):
    # one spawn for every configuration: starting processes is the slow part
    return [dist_worker(rank, world, knobs) for knobs in KNOBS]
