"""Candidate sources, single process: cross-batch memory (FIFO, ages, checkpoint state), the
popularity sampler (identical draws, chi-square), the streaming frequency estimator (exact
sequential semantics, convergence on a power-law stream), logQ over the whole mix, and the
mask (accidental hits + same-user positives) against brute force."""

from collections import deque

import numpy as np
import pytest
import torch

from dsl_torchrec.negatives import (
    SOURCE_IN_BATCH,
    SOURCE_MEMORY,
    SOURCE_SAMPLED,
    CrossBatchMemory,
    ExpectedCountLogQ,
    PopularitySampler,
    StreamingFrequency,
    UniformSampler,
    assemble_candidates,
)

# ------------------------------------------------------------------ memory


def _push(m: CrossBatchMemory, ids, step):
    ids = torch.as_tensor(ids)
    m.push(ids.float().unsqueeze(1).repeat(1, 2), ids, step)  # vector = (id, id)


def test_memory_is_fifo_with_correct_ages():
    m = CrossBatchMemory(5, dim=2, max_age=2)
    v, i, s = m.read(0)
    assert i.numel() == 0 and v.shape == (0, 2)
    _push(m, [0, 1, 2], 0)
    _push(m, [3, 4, 5], 1)  # wraps: slot 0 now holds 5
    assert m.ids.tolist() == [5, 1, 2, 3, 4] and m.stamps.tolist() == [1, 0, 0, 1, 1]
    assert m.ages(2).tolist() == [1, 2, 2, 1, 1]
    v, i, s = m.read(2)
    assert i.tolist() == [5, 1, 2, 3, 4] and torch.equal(v[:, 0].long(), i)
    v, i, s = m.read(3)  # entries of step 0 are 3 steps old > max_age
    assert i.tolist() == [5, 3, 4] and s.tolist() == [1, 1, 1]
    _push(m, list(range(10, 17)), 2)  # G = 7 > Q = 5: only the last 5 are kept
    assert sorted(m.read(3)[1].tolist()) == [12, 13, 14, 15, 16]


def test_memory_matches_a_deque_model_and_round_trips():
    Q, max_age = 7, 3
    m, ref = CrossBatchMemory(Q, dim=2, max_age=max_age), deque(maxlen=Q)
    g = torch.Generator().manual_seed(0)
    for t in range(12):
        got = sorted(zip(m.read(t)[1].tolist(), (t - m.read(t)[2]).tolist()))
        want = sorted((i, t - s) for i, s in ref if t - s <= max_age)
        assert got == want, t
        assert all(a >= 1 for _, a in got)
        ids = torch.randint(0, 50, (int(torch.randint(1, 5, (1,), generator=g)),), generator=g)
        _push(m, ids, t)
        ref.extend((i, t) for i in ids.tolist())
    m2 = CrossBatchMemory(Q, dim=2, max_age=max_age)
    m2.load_state_dict({k: v.clone() for k, v in m.state_dict().items()})
    _push(m, [1, 2, 3], 12)
    _push(m2, [1, 2, 3], 12)
    for a, b in zip(m.read(13), m2.read(13)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError):
        CrossBatchMemory(Q + 1, dim=2).load_state_dict(m.state_dict())


# ------------------------------------------------------------------ popularity sampler


def test_popularity_sampler_identical_and_follows_count_pow_alpha():
    n, alpha, R, steps = 300, 0.75, 1000, 200
    counts = (1000.0 / np.arange(1, n + 1) ** 1.2).astype(np.int64)
    counts[7] = 0  # never drawn
    a, b = PopularitySampler(counts, R, alpha, seed=5), PopularitySampler(counts, R, alpha, seed=5)
    assert torch.equal(a.sample(11), b.sample(11))  # every rank draws the same ids
    assert not torch.equal(a.sample(11), a.sample(12))
    assert not torch.equal(a.sample(11), PopularitySampler(counts, R, alpha, seed=6).sample(11))
    draws = torch.cat([a.sample(t) for t in range(steps)])
    obs = torch.bincount(draws, minlength=n).double()
    assert obs[7] == 0
    q = counts.astype(np.float64) ** alpha
    q /= q.sum()
    exp = torch.as_tensor(q * R * steps)
    ok = exp >= 5  # chi-square over the cells with expected count >= 5 (here all but one)
    chi2 = float(((obs[ok] - exp[ok]) ** 2 / exp[ok]).sum())
    dof = int(ok.sum()) - 1
    assert chi2 < dof + 5 * (2 * dof) ** 0.5, (chi2, dof)
    torch.testing.assert_close(a.expected_count(torch.tensor([0, 7, 299])),
                               torch.as_tensor(R * q[[0, 7, 299]]))


def test_popularity_alpha_zero_is_uniform():
    s = PopularitySampler(np.array([5, 1, 0, 9]), 40_000, 0.0, seed=0)
    obs = torch.bincount(s.sample(0), minlength=4).double()
    assert ((obs - 10_000).abs() < 5 * 87).all()  # binomial sd ~87


# ------------------------------------------------------------------ streaming frequency


def _sequential_reference(stream, H, m, lr, est):
    """Yi et al. Alg. 2 occurrence by occurrence, a step's c occurrences of a bucket each with
    gap (t − last)/c, lr_i = max(α, 1/i)."""
    last = np.full(m * H, -1)
    gap, seen = np.zeros(m * H), np.zeros(m * H, dtype=np.int64)
    for t, ids in enumerate(stream):
        h = est.buckets(torch.as_tensor(ids)).reshape(-1).numpy()
        uniq, cnt = np.unique(h, return_counts=True)
        for u, c in zip(uniq, cnt):
            x = (t - (last[u] if last[u] >= 0 else -1)) / c
            for _ in range(c):
                seen[u] += 1
                gap[u] += max(lr, 1.0 / seen[u]) * (x - gap[u])
            last[u] = t
    return gap, last


def test_streaming_update_equals_sequential_algorithm():
    H, m, lr = 8, 2, 0.25  # tiny: many collisions and duplicates, both lr phases
    g = np.random.default_rng(1)
    stream = [g.integers(0, 20, size=6) for _ in range(30)]
    est = StreamingFrequency(H, 6, num_hashes=m, lr=lr, seed=4)
    for t, ids in enumerate(stream):
        est.update(torch.as_tensor(ids), t)
    gap, last = _sequential_reference(stream, H, m, lr, est)
    np.testing.assert_allclose(est.gap.numpy(), gap, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(est.last.numpy(), last)
    # checkpoint round trip continues identically
    est2 = StreamingFrequency(H, 6, num_hashes=m, lr=lr, seed=4)
    est2.load_state_dict({k: v.clone() for k, v in est.state_dict().items()})
    for e in (est, est2):
        e.update(torch.tensor([1, 2, 3, 3]), 30)
    torch.testing.assert_close(est.prob(torch.arange(20)), est2.prob(torch.arange(20)))


def streaming_error(N=2000, G=512, T=2000, H=8192, m=2, lr=0.01, zipf=1.0, seed=0):
    p = 1.0 / np.arange(1, N + 1) ** zipf
    rng = np.random.default_rng(seed)
    pt = np.empty(N)
    pt[rng.permutation(N)] = p / p.sum()  # popularity not aligned with the ids
    draws = torch.as_tensor(rng.choice(N, size=(T, G), p=pt))
    est = StreamingFrequency(H, G, num_hashes=m, lr=lr, seed=1)
    for t in range(T):
        est.update(draws[t], t)
    ph = est.prob(torch.arange(N)).numpy()
    rel, per_step = np.abs(ph - pt) / pt, pt * G
    return {
        "tv": 0.5 * np.abs(ph / ph.sum() - pt).sum(),
        "head": float(np.median(rel[per_step >= 1])),  # >= 1 occurrence per step
        "mid": float(np.median(rel[(per_step >= 0.1) & (per_step < 1)])),
        "tail": float(np.median(rel[per_step < 0.1])),
    }


def test_streaming_estimate_converges_on_power_law_stream():
    err = streaming_error()
    print(f"\nstreaming frequency, zipf(1.0) N=2000, G=512, 2000 steps, H=8192 x 2, α=0.01: "
          f"total variation {err['tv']:.3f}, median relative error head {err['head']:.3f} "
          f"mid {err['mid']:.3f} tail {err['tail']:.3f}")
    assert err["tv"] < 0.05
    assert err["head"] < 0.08 and err["mid"] < 0.1 and err["tail"] < 0.15


# ------------------------------------------------------------------ logQ over the mix


def test_logq_over_the_whole_mix():
    counts = np.array([10, 30, 60, 0])
    sampler = PopularitySampler(counts, 8, 0.5, seed=0)
    lq = ExpectedCountLogQ(counts, global_batch=20, in_batch=True, sampler=sampler)
    ids = torch.tensor([0, 1, 2, 3])
    p = counts / counts.sum()
    q = np.sqrt(counts) / np.sqrt(counts).sum()
    for M in (0, 7):
        expected = (20 + M) * p + 8 * q
        got = lq(ids, memory_entries=M)
        torch.testing.assert_close(got[:3], torch.tensor(np.log(expected[:3]), dtype=torch.float32))
    # streaming: the same formula with p_j = 1 / (G · gap_j)
    est = StreamingFrequency(64, 4, num_hashes=1, lr=0.5)
    for t in range(6):
        est.update(torch.tensor([0, 0, 1, 2]), t)
    lq = ExpectedCountLogQ(est, 4, True, UniformSampler(4, 8, seed=0))
    expected = (4 + 3) * est.prob(ids) + 8 / 4
    torch.testing.assert_close(lq(ids, memory_entries=3), expected.log().float())
    torch.testing.assert_close(est.prob(torch.tensor([0, 1])).double(),
                               torch.tensor([0.5, 0.25], dtype=torch.float64))


# ------------------------------------------------------------------ mask


def _brute_mask(cand, pos, users, g_pos, g_users, same_user, accidental, own_col=None):
    B = len(pos)
    out = torch.ones(B, len(cand), dtype=torch.bool)
    for b in range(B):
        forbidden = ({g_pos[k] for k in range(len(g_pos)) if g_users[k] == users[b]}
                     if same_user else set())
        for j, c in enumerate(cand):
            own = own_col is not None and j == own_col[b]
            if (accidental and c == pos[b]) or c in forbidden or own:
                out[b, j] = False
    return out


@pytest.mark.parametrize("accidental", [True, False])
def test_mask_is_exactly_the_brute_force_mask(accidental):
    g = torch.Generator().manual_seed(3)
    B, d = 16, 4
    users = torch.randint(0, 6, (B,), generator=g)
    pos = torch.randint(0, 12, (B,), generator=g)
    memory = CrossBatchMemory(10, dim=d)
    memory.push(torch.randn(10, d, generator=g), torch.randint(0, 12, (10,), generator=g), 0)
    sampled = torch.randint(0, 12, (9,), generator=g)
    c = assemble_candidates(torch.randn(B, d), pos, torch.randn(9, d), sampled, in_batch=True,
                            mask_accidental_hits=accidental, memory=memory, mask_same_user=True,
                            users=users, step=1)
    assert c.source.tolist() == [SOURCE_IN_BATCH] * B + [SOURCE_MEMORY] * 10 + [SOURCE_SAMPLED] * 9
    brute = _brute_mask(c.ids.tolist(), pos.tolist(), users.tolist(), pos.tolist(), users.tolist(),
                        True, accidental, own_col=list(range(B)))
    if not accidental:  # the memory's copies of the row's positive stay masked
        for b in range(B):
            for j in range(B, B + 10):
                brute[b, j] &= bool(c.ids[j] != pos[b])
    assert torch.equal(c.valid, brute)
    assert (~c.valid).sum() > (c.ids.unsqueeze(0) == pos.unsqueeze(1)).sum() * int(accidental)
    assert memory.read(2)[1][:B].tolist() == pos.tolist()[-10:]  # pushed after the read


def test_train_step_state_round_trip():
    from dsl_torchrec.train.step import TrainStep

    def make():
        est = StreamingFrequency(32, 4, lr=0.1)
        return TrainStep(None, None, in_batch=True, sampler=None,
                         log_q=ExpectedCountLogQ(est, 4, True, None), mask_accidental_hits=True,
                         memory=CrossBatchMemory(6, dim=3, max_age=2))

    a, b = make(), make()
    a.memory.push(torch.randn(4, 3), torch.tensor([1, 2, 3, 4]), 0)
    a.log_q.observe(torch.tensor([1, 2, 3, 4]), 0)
    state = a.state_dict()
    assert set(state) == {"memory", "frequency"}
    assert all(isinstance(v, torch.Tensor) for part in state.values() for v in part.values())
    b.load_state_dict(state)
    for part in state:
        for k, v in b.state_dict()[part].items():
            assert torch.equal(v, state[part][k]), (part, k)
    plain = TrainStep(None, None, in_batch=True, sampler=None,
                      log_q=ExpectedCountLogQ(np.ones(5), 4, True, None), mask_accidental_hits=True)
    assert plain.state_dict() == {}


def test_train_step_state_survives_a_dcp_round_trip(tmp_path):
    import torch.distributed.checkpoint as dcp

    from dsl_torchrec.train.step import TrainStep

    def make(batch):
        est = StreamingFrequency(32, batch, lr=0.1)
        return TrainStep(None, None, in_batch=True, sampler=None,
                         log_q=ExpectedCountLogQ(est, batch, True, None),
                         mask_accidental_hits=True,
                         memory=CrossBatchMemory(6, dim=3, max_age=2))

    a = make(4)
    for t in range(3):
        ids = torch.tensor([1, 2, 3, 4]) + t
        a.memory.push(torch.randn(4, 3), ids, t)
        a.log_q.observe(ids, t)
    dcp.save({"step": a.state_dict()}, checkpoint_id=str(tmp_path / "ck"))
    b = make(4)
    state = {"step": b.state_dict()}  # DCP fills these tensors in place ...
    dcp.load(state, checkpoint_id=str(tmp_path / "ck"))
    b.load_state_dict(state["step"])  # ... and the step takes them over
    for x, y in zip(a.memory.read(3), b.memory.read(3)):
        assert torch.equal(x, y)
    ids = torch.arange(10)
    torch.testing.assert_close(a.log_q(ids, memory_entries=5), b.log_q(ids, memory_entries=5))
    # resumed with a global batch twice as large: the same rate per interaction
    c = make(8)
    state = {"step": c.state_dict()}
    dcp.load(state, checkpoint_id=str(tmp_path / "ck"))
    c.load_state_dict(state["step"])
    seen = torch.arange(1, 7)  # (never-seen ids fall back to "once in the stream so far")
    torch.testing.assert_close(c.log_q.frequency.prob(seen), a.log_q.frequency.prob(seen))
