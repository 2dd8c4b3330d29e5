"""Losses (dsl-loss.md, "What the tests must show" 1-5 and 7; 6 is in test_losses_dist.py),
against plain per-row float64 references written out below, plus gradchecks, numerics and the
registry."""

from __future__ import annotations

import math

import pytest
import torch

from dsl_torchrec.config import LossConfig
from dsl_torchrec.losses import (
    BPRLoss, BSLLoss, DSLLoss, LossOutput, PSLLoss, SoftmaxLoss, build_loss, functional as F,
)

# dsl-loss.md's table: the knobs these tests exercise, passed explicitly so that the tests do not
# depend on the code's defaults (which the issue-7 sweep chose)
SPEC = dict(temperature=0.1, include_positive=True, kappa_hard=0.0, kappa_sim=-0.5,
            w_max=None, slate_size=20, gamma=0.5, temp_range=2.0, dro_scale=True)


def dsl_loss(*args, **kw):
    """F.dsl_loss with dsl-loss.md's values for every knob not given."""
    return F.dsl_loss(*args, **{**SPEC, **kw})


# --------------------------------------------------------------------------- references


def ref_weights(pos, neg, valid, item_sim, *, temperature, kappa_hard, kappa_sim, w_max):
    """w_bj = n_b · softmax_{j valid}((κ_h (s_bj − s⁺_b) + κ_s a_bj)/τ₀), optional cap."""
    B, C = neg.shape
    w = torch.zeros(B, C, dtype=torch.float64)
    for b in range(B):
        idx = [j for j in range(C) if valid[b, j]]
        if not idx:
            continue
        z = []
        for j in idx:
            a = float(item_sim[b, j]) if item_sim is not None else 0.0
            z.append((kappa_hard * (float(neg[b, j]) - float(pos[b])) + kappa_sim * a)
                     / temperature)
        mx = max(z)
        e = [math.exp(v - mx) for v in z]
        row = [len(idx) * v / sum(e) for v in e]
        if w_max is not None:
            row = [min(v, w_max) for v in row]
            row = [len(idx) * v / sum(row) for v in row]
        for j, v in zip(idx, row):
            w[b, j] = v
    return w


def ref_temperatures(pos, neg, valid, *, temperature, slate_size, gamma, temp_range):
    """τ_b from the top-M slate (sorted in Python), μ/σ over non-empty rows, clip, drift."""
    B, C = neg.shape
    tau0 = temperature
    c = {}
    for b in range(B):
        scores = sorted((float(neg[b, j]) for j in range(C) if valid[b, j]), reverse=True)
        if not scores:
            continue
        top = scores[:slate_size]
        c[b] = math.log(sum(math.exp((s - float(pos[b])) / tau0) for s in top) / len(top))
    tau = [tau0] * B
    if gamma == 0 or not c:
        return torch.tensor(tau, dtype=torch.float64), c
    vals = list(c.values())
    mu = sum(vals) / len(vals)
    sigma = math.sqrt(max(sum(v * v for v in vals) / len(vals) - mu * mu, 0.0))
    for b, cb in c.items():
        t = tau0 * math.exp(gamma * (cb - mu) / (sigma + 1e-6))
        tau[b] = min(max(t, tau0 / temp_range), tau0 * temp_range)
    mean_inv = sum(1.0 / tau[b] for b in c) / len(c)
    for b in c:
        tau[b] = tau[b] * tau0 * mean_inv
    return torch.tensor(tau, dtype=torch.float64), c


def ref_weighted_rows(pos, neg, valid, log_q, weights, taus, *, temperature, include_positive,
                      dro_scale):
    """ℓ_b = ρ_b [−s⁺/τ_b + log(exp(s⁺/τ_b) + Σ_valid w exp(s/τ_b − c))], one row at a time;
    weights and taus are constants (float64), gradients flow to pos and neg."""
    B, C = neg.shape
    rows = []
    for b in range(B):
        idx = [j for j in range(C) if valid[b, j]]
        if not idx:
            rows.append(pos[b] * 0.0)
            continue
        tb = float(taus[b])
        p = pos[b] / tb
        terms = [p] if include_positive else []
        for j in idx:
            c = 0.0 if log_q is None else float(log_q[b, j] if log_q.dim() == 2 else log_q[j])
            terms.append(math.log(float(weights[b, j])) + neg[b, j] / tb - c)
        lse = torch.logsumexp(torch.stack(terms), 0)
        rho = tb / temperature if dro_scale else 1.0
        rows.append(rho * (lse - p))
    return torch.stack(rows)


def ref_dsl(pos, neg, valid=None, item_sim=None, log_q=None, **kw):
    """Whole DSL in float64 from the formulas: (per_row with grads, weights, temperatures)."""
    kw = {**SPEC, **kw}
    pos, neg = pos.double(), neg.double()
    if valid is None:
        valid = torch.ones(neg.shape, dtype=torch.bool)
    w = ref_weights(pos.detach(), neg.detach(), valid, item_sim, temperature=kw["temperature"],
                    kappa_hard=kw["kappa_hard"], kappa_sim=kw["kappa_sim"], w_max=kw["w_max"])
    taus, _ = ref_temperatures(pos.detach(), neg.detach(), valid, temperature=kw["temperature"],
                               slate_size=kw["slate_size"], gamma=kw["gamma"],
                               temp_range=kw["temp_range"])
    rows = ref_weighted_rows(pos, neg, valid, log_q, w, taus, temperature=kw["temperature"],
                             include_positive=kw["include_positive"],
                             dro_scale=kw["dro_scale"] and kw["gamma"] != 0)
    return rows, w, taus


def ref_sl(pos, neg, valid, log_q, *, temperature, include_positive=True):
    ones = torch.ones(neg.shape, dtype=torch.float64)
    taus = torch.full((neg.shape[0],), temperature, dtype=torch.float64)
    if valid is None:
        valid = torch.ones(neg.shape, dtype=torch.bool)
    return ref_weighted_rows(pos.double(), neg.double(), valid, log_q, ones, taus,
                             temperature=temperature, include_positive=include_positive,
                             dro_scale=False)


# --------------------------------------------------------------------------- inputs


def make_inputs(B=6, C=37, seed=0, p_invalid=0.2, empty_rows=(), dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    pos = (torch.rand(B, generator=g) * 2 - 1).to(dtype)
    neg = (torch.rand(B, C, generator=g) * 2 - 1).to(dtype)
    valid = torch.rand(B, C, generator=g) > p_invalid
    for b in empty_rows:
        valid[b] = False
    sim = torch.rand(B, C, generator=g) * 2 - 1
    log_q = torch.log(torch.rand(C, generator=g) * 0.9 + 0.05)
    return pos, neg, valid, sim, log_q


def close(a, b, **kw):
    """assert_close on float64 copies (the references compute in float64)."""
    torch.testing.assert_close(torch.as_tensor(a).double(), torch.as_tensor(b).double(), **kw)


def grads(fn, pos, neg):
    """Output of fn(pos, neg) and d(sum of its per_row · fixed random weights)/d(pos, neg)."""
    pos = pos.detach().clone().requires_grad_()
    neg = neg.detach().clone().requires_grad_()
    out = fn(pos, neg)
    per_row = out.per_row if isinstance(out, LossOutput) else out
    coef = torch.linspace(0.5, 1.5, per_row.numel(), dtype=per_row.dtype)
    (per_row * coef).sum().backward()
    return out, pos.grad, neg.grad


# --------------------------------------------------------------------------- 1. DSL off == SL


@pytest.mark.parametrize("include_positive", [True, False])
@pytest.mark.parametrize("use_log_q", [False, True])
def test_dsl_with_knobs_off_equals_sl(include_positive, use_log_q):
    pos, neg, valid, sim, log_q = make_inputs(empty_rows=(3,))
    lq = log_q if use_log_q else None
    off = dict(kappa_hard=0.0, kappa_sim=0.0, gamma=0.0, include_positive=include_positive)
    o_dsl, gp_dsl, gn_dsl = grads(lambda p, n: dsl_loss(p, n, valid, sim, lq, **off), pos, neg)
    o_sl, gp_sl, gn_sl = grads(
        lambda p, n: F.sl_loss(p, n, valid, lq, temperature=0.1,
                               include_positive=include_positive), pos, neg)
    close(o_dsl.per_row, o_sl.per_row, atol=1e-6, rtol=0)
    close(gp_dsl, gp_sl, atol=1e-6, rtol=0)
    close(gn_dsl, gn_sl, atol=1e-6, rtol=0)
    close(o_dsl.temperatures, torch.full((6,), 0.1))
    # and SL itself is the formula
    r, gp_r, gn_r = grads(lambda p, n: ref_sl(p, n, valid, lq, temperature=0.1,
                                              include_positive=include_positive), pos, neg)
    close(o_sl.per_row.double(), r.detach(), atol=1e-5, rtol=1e-5)
    close(gn_sl.double(), gn_r, atol=1e-6, rtol=1e-5)
    close(gp_sl.double(), gp_r, atol=1e-6, rtol=1e-5)


def test_dsl_knobs_off_is_bitwise_sl_and_item_sim_ignored():
    pos, neg, valid, sim, log_q = make_inputs(B=9, C=64, seed=3)
    a = dsl_loss(pos, neg, valid, sim, log_q, kappa_hard=0.0, kappa_sim=0.0, gamma=0.0)
    b = F.sl_loss(pos, neg, valid, log_q, temperature=0.1)
    assert torch.equal(a.per_row, b.per_row)
    # κ_s without item_sim is κ off as well
    c = dsl_loss(pos, neg, valid, None, log_q, kappa_sim=-0.5, gamma=0.0)
    assert torch.equal(c.per_row, b.per_row)


# --------------------------------------------------------------------------- full DSL vs reference


@pytest.mark.parametrize("knobs", [
    dict(),  # the defaults: κ_s = −0.5, γ = 0.5
    dict(kappa_hard=1.0, kappa_sim=0.5, gamma=-0.5, temp_range=3.0),
    dict(kappa_hard=-0.25, kappa_sim=-0.5, gamma=0.5, w_max=2.0, slate_size=5),
    dict(kappa_hard=0.5, kappa_sim=0.0, gamma=1.0, dro_scale=False, include_positive=False),
    dict(kappa_sim=-0.5, gamma=0.5, temp_range=1.2, slate_size=50),
    dict(kappa_hard=-1.0, kappa_sim=-0.5, gamma=0.5),  # 1/τ_b + κ_h/τ₀ < 0 on some rows
    dict(kappa_sim=-10.0, gamma=0.0),  # z spans 200: exp overflows without the right shift
])
@pytest.mark.parametrize("log_q_kind", [None, "C", "BC"])
def test_dsl_matches_reference(knobs, log_q_kind):
    pos, neg, valid, sim, log_q = make_inputs(B=7, C=41, seed=1, empty_rows=(5,))
    valid[2, 3:] = False  # a row with fewer valid candidates than the slate
    lq = {None: None, "C": log_q, "BC": log_q.unsqueeze(0) + 0.1 * torch.randn(7, 41)}[log_q_kind]
    out, gp, gn = grads(lambda p, n: dsl_loss(p, n, valid, sim, lq, **knobs), pos, neg)
    ref, gp_r, gn_r = grads(lambda p, n: ref_dsl(p, n, valid, sim, lq, **knobs)[0], pos, neg)
    _, w_ref, tau_ref = ref_dsl(pos, neg, valid, sim, lq, **knobs)
    close(out.temperatures.double(), tau_ref, rtol=1e-5, atol=1e-7)
    close(out.weights.double(), w_ref, rtol=1e-4, atol=1e-6)
    close(out.per_row.double(), ref.detach(), rtol=1e-5, atol=1e-5)
    close(gp.double(), gp_r, rtol=1e-4, atol=1e-6)
    close(gn.double(), gn_r, rtol=1e-4, atol=1e-6)
    assert out.loss.shape == () and torch.isclose(out.loss, out.per_row.mean())


# --------------------------------------------------------------------------- 2. weights


@pytest.mark.parametrize("knobs", [
    dict(kappa_hard=1.0, kappa_sim=-0.5), dict(kappa_hard=-1.0, kappa_sim=2.0, w_max=1.5),
    dict(kappa_sim=-0.5), dict(kappa_hard=0.0, kappa_sim=0.0),
])
def test_weights_mean_one_over_valid_and_zero_where_masked(knobs):
    pos, neg, valid, sim, _ = make_inputs(B=8, C=48, seed=2, p_invalid=0.4, empty_rows=(1,))
    w = dsl_loss(pos, neg, valid, sim, gamma=0.0, **knobs).weights
    n = valid.sum(1)
    assert torch.all(w[~valid] == 0)
    assert torch.all(w[valid] > 0)
    ne = n > 0
    close((w.sum(1)[ne] / n[ne]), torch.ones(int(ne.sum())), rtol=1e-5,
                               atol=0)
    if "w_max" not in knobs and any(knobs.values()):
        assert w.max() > 1.5  # really reweighted


def test_weight_cap_is_applied_before_the_renormalisation():
    pos, neg, valid, sim, _ = make_inputs(B=4, C=30, seed=9, p_invalid=0.0)
    free = dsl_loss(pos, neg, valid, sim, kappa_sim=3.0, gamma=0.0).weights
    capped = dsl_loss(pos, neg, valid, sim, kappa_sim=3.0, gamma=0.0, w_max=2.0).weights
    assert free.max() > 4.0
    assert capped.max() < free.max()
    ref = ref_weights(pos, neg, valid, sim, temperature=0.1, kappa_hard=0.0, kappa_sim=3.0,
                      w_max=2.0)
    close(capped.double(), ref, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- 3. mean(1/τ) = 1/τ₀


@pytest.mark.parametrize("gamma,temp_range", [(0.5, 2.0), (-0.5, 2.0), (2.0, 1.3), (1.0, 50.0)])
def test_mean_inverse_temperature_is_inverse_tau0(gamma, temp_range):
    pos, neg, valid, _, _ = make_inputs(B=16, C=40, seed=4, empty_rows=(0, 7))
    neg[3] += 0.8  # spread the competition so that clipping happens for small temp_range
    tau = dsl_loss(pos, neg, valid, None, gamma=gamma, temp_range=temp_range,
                     temperature=0.07).temperatures
    ne = valid.any(1)
    close((1.0 / tau[ne]).mean(), torch.tensor(1 / 0.07), rtol=1e-6, atol=0)
    assert torch.all(tau[~ne] == torch.tensor(0.07))
    assert tau[ne].std() > 1e-3  # per-example temperatures really vary


# --------------------------------------------------------------------------- 4. no grad via w, τ


@pytest.mark.parametrize("knobs", [
    dict(kappa_hard=1.0, kappa_sim=-0.5, gamma=0.5),
    dict(kappa_hard=-0.5, kappa_sim=0.5, gamma=-1.0, w_max=3.0, include_positive=False),
])
def test_no_gradient_through_weights_or_temperatures(knobs):
    pos, neg, valid, sim, log_q = make_inputs(B=6, C=33, seed=5, empty_rows=(4,))
    out, gp, gn = grads(lambda p, n: dsl_loss(p, n, valid, sim, log_q, **knobs), pos, neg)
    w, tau = out.weights.detach(), out.temperatures.detach()
    rho = tau / 0.1
    # the same loss with w and τ as precomputed constants: the library's helper ...
    const, gp_c, gn_c = grads(lambda p, n: F.weighted_softmax_loss(
        p, n, tau, w, valid, log_q, include_positive=knobs.get("include_positive", True),
        scale=rho), pos, neg)
    close(out.per_row, const, rtol=1e-5, atol=1e-6)
    close(gp, gp_c, rtol=1e-5, atol=1e-6)
    close(gn, gn_c, rtol=1e-5, atol=1e-6)
    # ... and the float64 per-row formula with those constants
    _, gp_r, gn_r = grads(lambda p, n: ref_weighted_rows(
        p.double(), n.double(), valid, log_q, w.double(), tau.double(), temperature=0.1,
        include_positive=knobs.get("include_positive", True), dro_scale=True), pos, neg)
    close(gn.double(), gn_r, rtol=1e-4, atol=1e-6)
    close(gp.double(), gp_r, rtol=1e-4, atol=1e-6)

    # the comparison can fail: letting the gradient flow through w and τ changes it
    def leaky(p, n):
        z = (knobs["kappa_hard"] * (n - p[:, None]) + knobs["kappa_sim"] * sim) / 0.1
        wl = torch.softmax(z.masked_fill(~valid, -1e4), 1) * valid.sum(1, keepdim=True)
        wl = torch.where(valid, wl, 1.0)
        taul = tau * (1 + 0.1 * (n.mean(1) - n.mean(1).detach()))
        logits = (torch.log(wl) + n / taul[:, None] - log_q).masked_fill(~valid, -1e4)
        pp = (p / taul)[:, None]
        terms = torch.cat([pp, logits], 1) if knobs.get("include_positive", True) else logits
        return rho * (torch.logsumexp(terms, 1) - pp[:, 0])

    _, _, gn_leak = grads(leaky, pos, neg)
    assert (gn_leak - gn).abs().max() > 1e-3


# --------------------------------------------------------------------------- 5. fully masked row


ALL_LOSSES = {
    "sl": lambda p, n, v, s, q: F.sl_loss(p, n, v, q, temperature=0.1),
    "sl_neg_only": lambda p, n, v, s, q: F.sl_loss(p, n, v, q, temperature=0.1,
                                                   include_positive=False),
    "dsl": lambda p, n, v, s, q: dsl_loss(p, n, v, s, q, kappa_hard=0.5),
    "dsl_cap_neg_only": lambda p, n, v, s, q: dsl_loss(p, n, v, s, q, w_max=2.0,
                                                         include_positive=False),
    "bsl": lambda p, n, v, s, q: F.bsl_loss(p, n, v, q, temperature=0.1, temperature2=0.2),
    "psl_tanh": lambda p, n, v, s, q: F.psl_loss(p, n, v, q, temperature=0.1),
    "psl_atan": lambda p, n, v, s, q: F.psl_loss(p, n, v, q, temperature=0.1, activation="atan"),
    "psl_relu": lambda p, n, v, s, q: F.psl_loss(p, n, v, q, temperature=0.1, activation="relu"),
    "bpr": lambda p, n, v, s, q: F.bpr_loss(p, n, v, q),
}


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_fully_masked_row_has_zero_loss_and_zero_gradient(name):
    pos, neg, valid, sim, log_q = make_inputs(B=5, C=24, seed=6, empty_rows=(1, 3))
    out, gp, gn = grads(lambda p, n: ALL_LOSSES[name](p, n, valid, sim, log_q), pos, neg)
    assert torch.isfinite(out.loss) and torch.isfinite(out.per_row).all()
    assert torch.all(out.per_row[[1, 3]] == 0)
    assert torch.isfinite(gp).all() and torch.isfinite(gn).all()
    assert torch.all(gp[[1, 3]] == 0) and torch.all(gn[[1, 3]] == 0)
    assert gn[[0, 2, 4]].abs().sum() > 0
    # every row masked
    none = torch.zeros_like(valid)
    out, gp, gn = grads(lambda p, n: ALL_LOSSES[name](p, n, none, sim, log_q), pos, neg)
    assert torch.all(out.per_row == 0) and out.loss == 0
    assert torch.all(gp == 0) and torch.all(gn == 0)


# --------------------------------------------------------------------------- 7. directions


def _weight_of(neg, sim, j, **kw):
    pos = torch.zeros(3)
    valid = torch.ones(neg.shape, dtype=torch.bool)
    return dsl_loss(pos, neg, valid, sim, gamma=0.0, **kw).weights[0, j]


@pytest.mark.parametrize("kappa_hard,sign", [(1.0, 1), (0.25, 1), (-0.25, -1), (-1.0, -1)])
def test_hardness_raising_a_negative_score_moves_its_weight_with_the_sign(kappa_hard, sign):
    _, neg, _, sim, _ = make_inputs(B=3, C=20, seed=7)
    before = _weight_of(neg, sim, 4, kappa_hard=kappa_hard, kappa_sim=0.0)
    neg2 = neg.clone()
    neg2[0, 4] += 0.3
    after = _weight_of(neg2, sim, 4, kappa_hard=kappa_hard, kappa_sim=0.0)
    assert sign * (after - before) > 1e-4


@pytest.mark.parametrize("kappa_sim,sign", [(-0.5, -1), (-2.0, -1), (0.5, 1)])
def test_similarity_more_similar_candidate_gets_weight_with_the_sign(kappa_sim, sign):
    neg = torch.full((3, 10), 0.2)  # equal scores: only the similarity differs
    sim = torch.linspace(-0.9, 0.9, 10).repeat(3, 1)
    w = dsl_loss(torch.zeros(3), neg, None, sim, kappa_sim=kappa_sim, gamma=0.0).weights
    diffs = w[0, 1:] - w[0, :-1]  # candidates in increasing similarity
    assert torch.all(sign * diffs > 0)
    # and for one candidate made more similar
    sim2 = sim.clone()
    sim2[0, 2] += 0.5
    w2 = dsl_loss(torch.zeros(3), neg, None, sim2, kappa_sim=kappa_sim, gamma=0.0).weights
    assert sign * (w2[0, 2] - w[0, 2]) > 0


@pytest.mark.parametrize("gamma,sign", [(0.5, 1), (1.0, 1), (-0.5, -1)])
def test_competition_raises_temperature_with_the_sign_of_gamma(gamma, sign):
    pos, neg, valid, _, _ = make_inputs(B=10, C=30, seed=8, p_invalid=0.0)
    kw = dict(gamma=gamma, temp_range=100.0, kappa_sim=0.0, slate_size=5)
    out = dsl_loss(pos, neg, valid, None, **kw)
    _, c = ref_temperatures(pos, neg, valid, temperature=0.1, slate_size=5, gamma=gamma,
                            temp_range=100.0)
    # within a batch, τ_b is ordered like the competition c_b (reversed for γ < 0)
    order = torch.argsort(torch.tensor([c[b] for b in range(10)]))
    taus = out.temperatures[order]
    assert torch.all(sign * (taus[1:] - taus[:-1]) > 0)
    # raising one example's competition (its top competitors get closer to its positive)
    neg2 = neg.clone()
    top = neg2[6].topk(5).indices
    neg2[6, top] += 0.05
    out2 = dsl_loss(pos, neg2, valid, None, **kw)
    assert sign * (out2.temperatures[6] - out.temperatures[6]) > 0


# --------------------------------------------------------------------------- gradchecks (float64)


def _gc_inputs(B=3, C=6, seed=11):
    g = torch.Generator().manual_seed(seed)
    pos = (torch.rand(B, generator=g, dtype=torch.float64) * 0.6 + 0.2).requires_grad_()
    neg = (torch.rand(B, C, generator=g, dtype=torch.float64) * 1.2 - 0.6).requires_grad_()
    valid = torch.rand(B, C, generator=g) > 0.25
    valid[:, 0] = True
    valid[B - 1] = False  # an empty row takes part too
    sim = torch.rand(B, C, generator=g, dtype=torch.float64) * 2 - 1
    log_q = torch.log(torch.rand(C, generator=g, dtype=torch.float64) * 0.5 + 0.1)
    return pos, neg, valid, sim, log_q


@pytest.mark.parametrize("name,fn", [
    ("sl", lambda p, n, v, q: F.sl_loss(p, n, v, q, temperature=0.2).per_row),
    ("sl_neg_only", lambda p, n, v, q: F.sl_loss(p, n, v, q, temperature=0.2,
                                                 include_positive=False).per_row),
    ("bsl", lambda p, n, v, q: F.bsl_loss(p, n, v, q, temperature=0.2,
                                          temperature2=0.3).per_row),
    ("psl_tanh", lambda p, n, v, q: F.psl_loss(p, n, v, q, temperature=0.3).per_row),
    ("psl_atan", lambda p, n, v, q: F.psl_loss(p, n, v, q, temperature=0.3,
                                               activation="atan").per_row),
    ("psl_relu", lambda p, n, v, q: F.psl_loss(p, n, v, q, temperature=0.3,
                                               activation="relu").per_row),
    ("bpr", lambda p, n, v, q: F.bpr_loss(p, n, v, q).per_row),
])
def test_gradcheck_baselines(name, fn):
    pos, neg, valid, _, log_q = _gc_inputs()
    assert torch.autograd.gradcheck(lambda p, n: fn(p, n, valid, log_q), (pos, neg))


@pytest.mark.parametrize("include_positive", [True, False])
def test_gradcheck_dsl_with_weights_and_temperatures_as_constants(include_positive):
    pos, neg, valid, sim, log_q = _gc_inputs()
    kw = dict(kappa_hard=0.5, kappa_sim=-0.5, gamma=0.5, temperature=0.2, slate_size=3,
              include_positive=include_positive)
    out = dsl_loss(pos, neg, valid, sim, log_q, **kw)
    w, tau = out.weights.detach(), out.temperatures.detach()
    assert out.per_row.dtype == torch.float64 and tau.std() > 0 and w.max() > 1.01

    def fused(p, n):
        return F.weighted_softmax_loss(p, n, tau, w, valid, log_q,
                                       include_positive=include_positive, scale=tau / 0.2)

    assert torch.autograd.gradcheck(fused, (pos, neg))
    # dsl_loss's own analytic gradient is that of the constant-w/τ function
    g1 = torch.autograd.grad(out.per_row.sum(), (pos, neg))
    g2 = torch.autograd.grad(fused(pos, neg).sum(), (pos, neg))
    for a, b in zip(g1, g2):
        close(a, b, rtol=1e-10, atol=1e-12)


def test_gradcheck_dsl_knobs_off():
    pos, neg, valid, sim, log_q = _gc_inputs()
    assert torch.autograd.gradcheck(
        lambda p, n: dsl_loss(p, n, valid, sim, log_q, kappa_sim=0.0, gamma=0.0,
                                temperature=0.2).per_row, (pos, neg))


# --------------------------------------------------------------------------- baselines vs formulas


def test_bsl_psl_bpr_match_their_formulas():
    pos, neg, valid, _, log_q = make_inputs(B=5, C=17, seed=12, empty_rows=(2,))
    t1, t2 = 0.1, 0.25
    bsl = F.bsl_loss(pos, neg, valid, log_q, temperature=t1, temperature2=t2).per_row
    for name, act in [("tanh", lambda d: math.tanh(d) + 1), ("atan", lambda d: math.atan(d) + 1),
                      ("relu", lambda d: max(d + 1, 0.0))]:
        psl = F.psl_loss(pos, neg, valid, log_q, temperature=0.2, activation=name).per_row
        for b in range(5):
            idx = [j for j in range(17) if valid[b, j]]
            if not idx:
                assert psl[b] == 0
                continue
            terms = [math.log(max(act(float(neg[b, j] - pos[b])), 1e-300)) / 0.2 - float(log_q[j])
                     for j in idx]
            mx = max(terms)
            ref = mx + math.log(sum(math.exp(t - mx) for t in terms))
            assert psl[b].item() == pytest.approx(ref, rel=1e-5, abs=1e-4), name
    bpr = F.bpr_loss(pos, neg, valid, log_q).per_row
    for b in range(5):
        idx = [j for j in range(17) if valid[b, j]]
        if not idx:
            assert bsl[b] == 0 and bpr[b] == 0
            continue
        lse = math.log(sum(math.exp(float(neg[b, j]) / t2 - float(log_q[j])) for j in idx))
        assert bsl[b].item() == pytest.approx(-float(pos[b]) / t1 + t2 / t1 * lse, rel=1e-5)
        sp = [math.log1p(math.exp(float(neg[b, j] - log_q[j] - pos[b]))) for j in idx]
        assert bpr[b].item() == pytest.approx(sum(sp) / len(sp), rel=1e-5)


# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_extreme_temperature_masks_duplicates_and_single_row(name):
    fn = ALL_LOSSES[name]
    g = torch.Generator().manual_seed(13)
    B, C = 4, 50
    pos = torch.tensor([1.0, -1.0, 0.3, -0.99])
    neg = torch.rand(B, C, generator=g) * 2 - 1
    neg[:, :10] = neg[:, :1]  # duplicate candidates
    neg[0, 20] = -1.0
    neg[1, 20] = 1.0  # a negative far above a positive at −1: logits up to 200 at τ = 0.01
    valid = torch.rand(B, C, generator=g) > 0.3
    valid[2] = False
    sim = torch.rand(B, C, generator=g) * 2 - 1
    small_tau = {k: v for k, v in [
        ("sl", lambda p, n, v, s, q: F.sl_loss(p, n, v, q, temperature=0.01)),
        ("dsl", lambda p, n, v, s, q: dsl_loss(p, n, v, s, q, temperature=0.01,
                                                 kappa_hard=1.0, kappa_sim=-2.0, gamma=2.0)),
        ("psl_relu", lambda p, n, v, s, q: F.psl_loss(p, n, v, q, temperature=0.01,
                                                      activation="relu")),
    ]}.get(name, fn)
    for f in (fn, small_tau):
        for args in [(pos, neg, valid), (pos[:1], neg[:1], valid[:1]), (pos[2:3], neg[2:3],
                                                                         valid[2:3])]:
            p, n, v = args
            out, gp, gn = grads(lambda p_, n_: f(p_, n_, v, sim[: len(p)], None), p, n)
            assert torch.isfinite(out.loss) and torch.isfinite(out.per_row).all(), name
            assert torch.isfinite(gp).all() and torch.isfinite(gn).all(), name
            assert torch.isfinite(out.temperatures).all()


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_half_precision_inputs_are_upcast(name):
    pos, neg, valid, sim, log_q = make_inputs(B=4, C=32, seed=14, empty_rows=(1,))
    p16 = pos.to(torch.bfloat16).requires_grad_()
    n16 = neg.to(torch.bfloat16).requires_grad_()
    out = ALL_LOSSES[name](p16, n16, valid, sim.to(torch.bfloat16), log_q.half())
    assert out.loss.dtype == torch.float32 and out.per_row.dtype == torch.float32
    assert torch.isfinite(out.per_row).all()
    out.loss.backward()
    assert n16.grad.dtype == torch.bfloat16 and torch.isfinite(n16.grad.float()).all()
    ref = ALL_LOSSES[name](p16.detach().float(), n16.detach().float(), valid,
                           sim.to(torch.bfloat16).float(), log_q.half().float())
    close(out.per_row, ref.per_row)


@pytest.mark.parametrize("B,C,k,group_size", [
    (5, 6000, 20, 64), (3, 1027, 7, 16), (4, 640, 20, 8), (2, 300, 3, 5), (3, 50, 20, 64),
    (3, 4096, 20, None), (2, 3001, 5, None),
])
def test_top_values_is_exact(B, C, k, group_size):
    g = torch.Generator().manual_seed(15)
    x = torch.randn(B, C, generator=g)
    x[:, 100:140] = x[:, 5:6]  # ties
    x[0] = -math.inf
    x[1, 70:] = -math.inf  # fewer finite values than groups
    x[-1, : C // 2] = -math.inf  # the top values all in the second half / ragged tail
    x[-1, -3:] = 9.0
    got = F.top_values(x, k, group_size=group_size).sort(1, descending=True).values
    assert torch.equal(got, x.topk(min(k, C), 1).values)
    xt = x.T.contiguous().T  # same values, column-major
    got = F.top_values(xt, k, group_size=group_size).sort(1, descending=True).values
    assert torch.equal(got, x.topk(min(k, C), 1).values)


def test_non_contiguous_scores_and_repeated_backward():
    pos, neg, valid, sim, log_q = make_inputs(B=5, C=1200, seed=23, empty_rows=(2,))
    a = dsl_loss(pos, neg, valid, sim, log_q, kappa_hard=0.2)
    negt = neg.T.contiguous().T.requires_grad_()
    b = dsl_loss(pos, negt, valid, sim.T.contiguous().T, log_q, kappa_hard=0.2)
    close(a.per_row, b.per_row, rtol=1e-6, atol=1e-6)
    close(a.temperatures, b.temperatures, rtol=1e-6, atol=0)
    # backward twice through one graph: the gradient buffer reused from forward must not be
    # handed out twice (the first gradient would change under the caller's feet)
    out = dsl_loss(pos, negt, valid, sim, log_q)
    g1 = torch.autograd.grad(out.loss, negt, retain_graph=True)[0]
    g1_copy = g1.clone()
    g2 = torch.autograd.grad(out.loss, negt, grad_outputs=torch.tensor(2.0))[0]
    assert torch.equal(g1, g1_copy)
    close(g2, 2 * g1, rtol=1e-6, atol=0)


def test_dsl_matches_reference_on_a_wide_row():
    # C large enough for the grouped top-M path of the slate (C // 64 >= 4·M)
    pos, neg, valid, sim, log_q = make_inputs(B=3, C=1300, seed=22, p_invalid=0.3)
    knobs = dict(slate_size=5, kappa_hard=0.3)
    out = dsl_loss(pos, neg, valid, sim, log_q, **knobs)
    ref, _, tau_ref = ref_dsl(pos, neg, valid, sim, log_q, **knobs)
    close(out.temperatures, tau_ref, rtol=1e-5, atol=1e-7)
    close(out.per_row, ref.detach(), rtol=1e-5, atol=1e-5)


def test_stats_are_finite_and_describe_the_batch():
    pos, neg, valid, sim, _ = make_inputs(B=8, C=40, seed=16, empty_rows=(2,))
    out = dsl_loss(pos, neg, valid, sim, kappa_hard=0.5)
    s = out.stats
    assert {"tau_mean", "tau_min", "tau_max", "weight_max", "weight_entropy", "mu",
            "sigma"} <= set(s)
    assert all(torch.isfinite(v) and v.dim() == 0 for v in s.values())
    assert s["tau_min"] <= s["tau_mean"] <= s["tau_max"]
    assert s["weight_max"] == out.weights.max()
    n = valid.sum(1)
    assert s["weight_entropy"] < torch.log(n[n > 0].double()).mean()  # non-uniform weights
    uniform = dsl_loss(pos, neg, valid, sim, kappa_sim=0.0).stats
    close(uniform["weight_entropy"].double(),
                               torch.log(n[n > 0].double()).mean(), rtol=1e-5, atol=0)


def test_count_valid_fast_path_matches_sum():
    g = torch.Generator().manual_seed(17)
    for C in (64, 63, 8):
        v = torch.rand(5, C, generator=g) > 0.5
        got = F._count_valid(v, 5, C, torch.zeros(1))
        assert torch.equal(got, v.sum(1).float())
        got = F._count_valid(v[:, 1:], 5, C - 1, torch.zeros(1))
        assert torch.equal(got, v[:, 1:].sum(1).float())
        ws = torch.empty(5, C)
        assert torch.equal(F._count_valid(v, 5, C, ws, workspace=ws), v.sum(1).float())


# --------------------------------------------------------------------------- modules, registry


def test_build_loss_maps_names_and_rejects_unknown():
    cases = {"sl": SoftmaxLoss, "dsl": DSLLoss, "bsl": BSLLoss, "psl": PSLLoss, "bpr": BPRLoss}
    for name, cls in cases.items():
        assert type(build_loss(LossConfig(name=name))) is cls
    m = build_loss(LossConfig(name="dsl", temperature=0.2, kappa_hard=0.3, slate_size=7,
                              w_max=4.0, dro_scale=False))
    assert m.kwargs["temperature"] == 0.2 and m.kwargs["kappa_hard"] == 0.3
    assert m.kwargs["slate_size"] == 7 and m.kwargs["w_max"] == 4.0
    assert m.kwargs["dro_scale"] is False
    psl = build_loss(LossConfig(name="psl", psl_activation="relu", temperature=0.3))
    assert psl.activation == "relu" and psl.temperature == 0.3
    bsl = build_loss(LossConfig(name="bsl", temperature2=0.4))
    assert bsl.temperature2 == 0.4
    cfg = LossConfig()
    cfg.name = "nope"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="nope"):
        build_loss(cfg)


def test_needs_item_sim():
    assert DSLLoss(kappa_sim=-0.5).needs_item_sim is True
    assert DSLLoss(kappa_sim=0.0).needs_item_sim is False
    for cls in (SoftmaxLoss, BSLLoss, PSLLoss, BPRLoss):
        assert cls().needs_item_sim is False


def test_build_loss_dsl_with_knobs_off_equals_sl_module():
    pos, neg, valid, sim, log_q = make_inputs(B=6, C=30, seed=18, empty_rows=(0,))
    sl = build_loss(LossConfig(name="sl", temperature=0.15))
    dsl = build_loss(LossConfig(name="dsl", temperature=0.15, kappa_hard=0.0, kappa_sim=0.0,
                                gamma=0.0))
    a, ga_p, ga_n = grads(lambda p, n: sl(p, n, valid, sim, log_q), pos, neg)
    b, gb_p, gb_n = grads(lambda p, n: dsl(p, n, valid, sim, log_q), pos, neg)
    assert torch.equal(a.per_row, b.per_row) and torch.equal(ga_n, gb_n) and torch.equal(ga_p,
                                                                                        gb_p)
    # the default DSL differs from SL
    c = build_loss(LossConfig(name="dsl", temperature=0.15))(pos, neg, valid, sim, log_q)
    assert (c.per_row - a.per_row).abs().max() > 1e-3


def test_loss_output_fields_and_lazy_weights():
    pos, neg, valid, sim, _ = make_inputs(B=3, C=16, seed=19)
    out = SoftmaxLoss(0.1)(pos, neg, valid)
    assert isinstance(out, LossOutput)
    assert torch.equal(out.weights, valid.float())
    assert out.weights is out.weights  # evaluated once
    assert out.stats == {}
    assert "LossOutput(" in repr(out)
    built = LossOutput(loss=out.loss, per_row=out.per_row, weights=out.weights,
                       temperatures=out.temperatures, stats={"a": torch.tensor(1.0)})
    assert built.stats["a"] == 1.0 and torch.equal(built.weights, valid.float())
    with pytest.raises(TypeError):
        LossOutput(out.loss, out.per_row)  # type: ignore[call-arg]


def test_invalid_arguments_are_rejected_with_the_name():
    pos, neg, valid, sim, log_q = make_inputs(B=3, C=8, seed=24)
    with pytest.raises(ValueError, match="C = 0"):
        F.sl_loss(pos, neg[:, :0], temperature=0.1)
    with pytest.raises(ValueError, match="pos"):
        dsl_loss(pos[:2], neg)
    with pytest.raises(ValueError, match="valid"):
        dsl_loss(pos, neg, valid.int())
    with pytest.raises(ValueError, match="log_q"):
        F.sl_loss(pos, neg, valid, log_q[:3], temperature=0.1)
    with pytest.raises(ValueError, match="item_sim"):
        dsl_loss(pos, neg, valid, sim[:, :3])
    with pytest.raises(ValueError, match="temperature"):
        F.sl_loss(pos, neg, temperature=0.0)
    with pytest.raises(ValueError, match="slate_size"):
        dsl_loss(pos, neg, slate_size=0)
    with pytest.raises(ValueError, match="activation"):
        PSLLoss(activation="sigmoid")
