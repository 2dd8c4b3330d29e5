"""Candidate assembly, logQ, the shared sampler and the per-rank batch split (single process)."""

import numpy as np
import torch

from dsl_torchrec.data.loader import EpochBatches
from dsl_torchrec.negatives import ExpectedCountLogQ, UniformSampler, assemble_candidates


def test_sampler_is_a_pure_function_of_seed_and_step():
    a, b = UniformSampler(1000, 64, seed=3), UniformSampler(1000, 64, seed=3)
    assert torch.equal(a.sample(17), b.sample(17))  # what every rank draws
    assert not torch.equal(a.sample(17), a.sample(18))
    assert not torch.equal(a.sample(17), UniformSampler(1000, 64, seed=4).sample(17))
    draws = torch.cat([a.sample(t) for t in range(200)])
    counts = torch.bincount(draws, minlength=1000).double()
    # uniform: chi-square with 999 dof has mean 999, sd ~45
    chi2 = float(((counts - counts.mean()) ** 2 / counts.mean()).sum())
    assert chi2 < 999 + 5 * 45


def test_logq_is_log_expected_count_under_both_sources():
    counts = np.array([10, 30, 60, 0])
    sampler = UniformSampler(4, 8, seed=0)
    lq = ExpectedCountLogQ(counts, global_batch=20, in_batch=True, sampler=sampler)
    ids = torch.tensor([0, 1, 2, 3])
    expected = 20 * counts / counts.sum() + 8 / 4
    torch.testing.assert_close(lq(ids), torch.tensor(np.log(expected), dtype=torch.float32))
    only_batch = ExpectedCountLogQ(counts, 20, True, None)
    assert torch.isclose(only_batch(torch.tensor([2])), torch.log(torch.tensor([12.0]))).all()
    only_sampled = ExpectedCountLogQ(counts, 20, False, sampler)
    torch.testing.assert_close(only_sampled(ids), torch.full((4,), float(np.log(2.0))))


def test_candidates_mask_exactly_the_accidental_hits():
    pos_ids = torch.tensor([3, 5, 3, 9])
    sampled = torch.tensor([5, 1, 3])
    d = 4
    c = assemble_candidates(torch.randn(4, d), pos_ids, torch.randn(3, d), sampled,
                            in_batch=True, log_q_fn=None)
    assert c.ids.tolist() == [3, 5, 3, 9, 5, 1, 3]
    assert c.source.tolist() == [0, 0, 0, 0, 1, 1, 1]
    brute = torch.tensor([[cid != p for cid in c.ids.tolist()] for p in pos_ids.tolist()])
    assert torch.equal(c.valid, brute)
    assert c.vectors.shape == (7, d)


def test_ranks_split_each_global_batch_disjointly():
    n = 103
    users, items = np.arange(n), np.arange(n) * 10
    ranks = [EpochBatches(users, items, batch_size=8, rank=r, world_size=3, seed=1)
             for r in range(3)]
    single = EpochBatches(users, items, batch_size=24, rank=0, world_size=1, seed=1)
    assert all(r.steps_per_epoch() == 4 for r in ranks)  # tail of 7 rows dropped on every rank
    for epoch in (1, 2):
        per_rank = [list(r.epoch(epoch)) for r in ranks]
        for t, ref in enumerate(single.epoch(epoch)):
            joined = torch.cat([per_rank[r][t].users for r in range(3)])
            assert torch.equal(joined, ref.users)  # W ranks == one process with W·B
        seen = torch.cat([b.users for bs in per_rank for b in bs])
        assert seen.unique().numel() == seen.numel() == 96
    e1 = torch.cat([b.users for b in ranks[0].epoch(1)])
    e2 = torch.cat([b.users for b in ranks[0].epoch(2)])
    assert not torch.equal(e1, e2)  # a new permutation every epoch
