"""Issue-7 design-space knobs of the CA branch: intensity statistic and temperature map."""

import math

import pytest
import torch

from dsl_torchrec.losses import functional as F


def _masked(neg, valid):
    return torch.where(valid, neg, torch.full_like(neg, float("-inf")))


def _reference_intensity(pos, neg, valid, m, tau0, kind):
    out = []
    for b in range(neg.shape[0]):
        s = sorted(neg[b][valid[b]].tolist(), reverse=True)[:m]
        if not s:
            out.append(0.0)
            continue
        p = pos[b].item()
        if kind == "lme":
            out.append(math.log(sum(math.exp((x - p) / tau0) for x in s) / len(s)))
        elif kind == "sigmoid":
            out.append(sum(1 / (1 + math.exp(-(x - p) / tau0)) for x in s) / len(s))
        else:
            z = [x / tau0 for x in s]
            mx = max(z)
            w = [math.exp(v - mx) for v in z]
            tot = sum(w)
            out.append(-sum((v / tot) * math.log(v / tot) for v in w))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("intensity", ["lme", "sigmoid", "entropy"])
@pytest.mark.parametrize("temp_map", ["exp", "linear"])
def test_intensity_and_map_match_reference_and_keep_mean_inverse_tau(intensity, temp_map):
    g = torch.Generator().manual_seed(0)
    B, C, M, tau0, gamma, r = 9, 30, 5, 0.1, 0.5, 2.0
    pos = torch.rand(B, generator=g) * 2 - 1
    neg = torch.rand(B, C, generator=g) * 2 - 1
    valid = torch.rand(B, C, generator=g) > 0.3
    valid[2] = False  # an empty row
    valid[3, 2:] = False  # fewer valid candidates than the slate
    tau, c, mu, sigma = F.competition_temperatures(
        pos, _masked(neg, valid), temperature=tau0, slate_size=M, gamma=gamma, temp_range=r,
        intensity=intensity, temp_map=temp_map)
    ref_c = _reference_intensity(pos, neg, valid, M, tau0, intensity)
    ne = valid.any(1)
    torch.testing.assert_close(c.double()[ne], ref_c[ne], atol=1e-5, rtol=1e-5)
    # the drift normalisation holds whatever the statistic and the map
    assert (1 / tau[ne].double()).mean().item() == pytest.approx(1 / tau0, rel=1e-5)
    assert tau[2] == pytest.approx(tau0)
    # reference temperatures
    cn = ref_c[ne]
    mu_r, sd_r = cn.mean(), cn.std(unbiased=False)
    ch = (cn - mu_r) / (sd_r + 1e-6)
    raw = tau0 * (torch.exp(gamma * ch) if temp_map == "exp" else 1 + gamma * ch)
    raw = raw.clamp(tau0 / r, tau0 * r)
    raw = raw * tau0 * (1 / raw).mean()
    torch.testing.assert_close(tau.double()[ne], raw, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("intensity", ["sigmoid", "lme"])
@pytest.mark.parametrize("gamma", [0.5, -0.5])
def test_more_competition_moves_tau_with_the_sign_of_gamma(intensity, gamma):
    pos = torch.tensor([0.5, 0.5, 0.5])
    neg = torch.tensor([[0.1, 0.0, -0.2], [0.4, 0.3, 0.2], [0.6, 0.55, 0.5]])
    tau, c, _, _ = F.competition_temperatures(pos, neg, temperature=0.1, slate_size=2,
                                              gamma=gamma, temp_range=3.0,
                                              intensity=intensity, temp_map="linear")
    assert c[0] < c[1] < c[2]
    if gamma > 0:
        assert tau[0] < tau[1] < tau[2]
    else:
        assert tau[0] > tau[1] > tau[2]


def test_dsl_loss_accepts_the_knobs_and_defaults_are_the_spec():
    g = torch.Generator().manual_seed(1)
    pos, neg = torch.rand(6, generator=g), torch.rand(6, 40, generator=g)
    base = F.dsl_loss(pos, neg, gamma=0.5, kappa_sim=0.0)
    same = F.dsl_loss(pos, neg, gamma=0.5, kappa_sim=0.0, intensity="lme", temp_map="exp")
    assert torch.equal(base.per_row, same.per_row)
    other = F.dsl_loss(pos, neg, gamma=0.5, kappa_sim=0.0, intensity="sigmoid",
                       temp_map="linear")
    assert torch.isfinite(other.per_row).all() and not torch.equal(base.per_row, other.per_row)
    with pytest.raises(ValueError, match="intensity"):
        F.dsl_loss(pos, neg, gamma=0.5, intensity="median")


# ----------------------------------------------------------------------------- κ-branch knobs
# standardize, combine="mix" / branch_weight, item similarity vectors


def _inputs(seed=3, B=7, C=33):
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(B, generator=g, dtype=torch.float64) * 2 - 1
    neg = torch.rand(B, C, generator=g, dtype=torch.float64) * 2 - 1
    valid = torch.rand(B, C, generator=g) > 0.25
    valid[2] = False  # an empty row
    sim = torch.rand(B, C, generator=g, dtype=torch.float64) * 2 - 1
    log_q = torch.log(torch.rand(C, generator=g, dtype=torch.float64) * 0.9 + 0.05)
    return pos, neg, valid, sim, log_q


def _plain_standardized_weights(neg, sim, valid, kh, ks):
    """n_b · softmax over valid j of κ_h·ŝ + κ_s·â, one row at a time."""
    w = torch.zeros_like(neg)
    for b in range(neg.shape[0]):
        v = valid[b]
        if not v.any():
            continue
        z = torch.zeros(int(v.sum()), dtype=neg.dtype)
        for k, x in ((kh, neg[b][v]), (ks, sim[b][v])):
            z = z + k * (x - x.mean()) / (x.std(unbiased=False) + 1e-6)
        w[b, v] = v.sum() * torch.softmax(z, 0)
    return w


def _plain_loss(pos, neg, valid, log_q, tau, w=None, rho=None):
    """ρ_b·[−p + log(exp(p) + Σ_valid w·exp(s/τ_b − c))], one row at a time (plain autograd)."""
    rows = []
    for b in range(neg.shape[0]):
        v = valid[b]
        p = pos[b] / tau[b]
        if not v.any():
            rows.append(p * 0)
            continue
        terms = neg[b][v] / tau[b] - log_q[v]
        if w is not None:
            terms = terms + w[b][v].log()
        row = torch.logsumexp(torch.cat([p.view(1), terms]), 0) - p
        rows.append(row * (1 if rho is None else rho[b]))
    return torch.stack(rows)


def _grads(fn, pos, neg):
    pos, neg = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    out = fn(pos, neg)
    per_row = out.per_row if hasattr(out, "per_row") else out
    per_row.sum().backward()
    return per_row.detach(), pos.grad, neg.grad


@pytest.mark.parametrize("knobs", [
    dict(standardize=True),
    dict(combine="mix"),
    dict(combine="mix", branch_weight=3.0, standardize=True),
])
def test_new_knobs_off_equal_sl_exactly(knobs):
    pos, neg, valid, sim, log_q = _inputs()
    sl = _grads(lambda p, n: F.sl_loss(p, n, valid, log_q, temperature=0.2), pos, neg)
    dsl = _grads(lambda p, n: F.dsl_loss(p, n, valid, sim, log_q, temperature=0.2,
                                         kappa_hard=0.0, kappa_sim=0.0, gamma=0.0, **knobs),
                 pos, neg)
    for a, b in zip(sl, dsl):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kh,ks,w_max", [(0.0, -1.0, None), (-0.5, 0.0, None),
                                         (0.7, -0.4, None), (0.7, -0.4, 2.0)])
def test_standardize_matches_plain_reference(kh, ks, w_max):
    pos, neg, valid, sim, log_q = _inputs()
    tau = torch.full((pos.shape[0],), 0.2, dtype=pos.dtype)
    w = _plain_standardized_weights(neg, sim, valid, kh, ks)
    if w_max is not None:  # cap, then mean one again (dsl-loss.md)
        w = torch.minimum(w, torch.tensor(w_max, dtype=w.dtype))
        n = valid.sum(1, keepdim=True).clamp_min(1)
        w = torch.where(valid, w * n / w.sum(1, keepdim=True).clamp_min(1e-30), 0)
    got = _grads(lambda p, n: F.dsl_loss(p, n, valid, sim, log_q, temperature=0.2,
                                         kappa_hard=kh, kappa_sim=ks, gamma=0.0, w_max=w_max,
                                         standardize=True), pos, neg)
    ref = _grads(lambda p, n: _plain_loss(p, n, valid, log_q, tau, w=w), pos, neg)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    out = F.dsl_loss(pos, neg, valid, sim, log_q, temperature=0.2, kappa_hard=kh, kappa_sim=ks,
                     gamma=0.0, w_max=w_max, standardize=True)
    torch.testing.assert_close(out.weights, w, rtol=1e-9, atol=1e-10)


def test_standardize_is_invariant_to_the_scale_of_similarity_and_keeps_its_direction():
    pos, neg, valid, sim, log_q = _inputs()
    kw = dict(temperature=0.2, kappa_sim=-0.5, gamma=0.0)
    a = F.dsl_loss(pos, neg, valid, sim, log_q, standardize=True, **kw)
    b = F.dsl_loss(pos, neg, valid, 3 * sim + 1, log_q, standardize=True, **kw)
    # equal up to the 1e-6 added to σ
    torch.testing.assert_close(a.per_row, b.per_row, rtol=1e-6, atol=1e-6)
    raw_a = F.dsl_loss(pos, neg, valid, sim, log_q, **kw)
    raw_b = F.dsl_loss(pos, neg, valid, 3 * sim + 1, log_q, **kw)
    assert (raw_a.per_row - raw_b.per_row).abs().max() > 1e-3  # unstandardised: scale matters
    # κ_s < 0: more similar -> smaller weight; κ_h > 0: higher score -> larger weight
    s = torch.tensor([[0.1, 0.5, 0.9, -0.3]], dtype=torch.float64)
    p = torch.tensor([0.2], dtype=torch.float64)
    w = F.dsl_loss(p, torch.zeros_like(s), None, s, None, kappa_sim=-0.5, gamma=0.0,
                   standardize=True).weights[0]
    assert w[3] > w[0] > w[1] > w[2]
    w = F.dsl_loss(p, s, None, None, None, kappa_hard=0.5, kappa_sim=0.0, gamma=0.0,
                   standardize=True).weights[0]
    assert w[3] < w[0] < w[1] < w[2]


@pytest.mark.parametrize("kh,ks,gamma,beta", [(-0.25, -0.5, 0.5, 1.0), (0.0, -0.5, 0.0, 0.5),
                                              (0.0, 0.0, -0.5, 2.0), (-0.25, 0.0, 0.5, 0.0)])
def test_mix_is_sl_plus_weighted_branches(kh, ks, gamma, beta):
    """combine="mix" == (ℓ_SL + β·ℓ_κ + β·ℓ_CA)/(1 + β·#on), each branch built by hand."""
    pos, neg, valid, sim, log_q = _inputs()
    tau0 = 0.2
    B = pos.shape[0]
    tau_sl = torch.full((B,), tau0, dtype=pos.dtype)
    masked = torch.where(valid, neg, torch.full_like(neg, float("-inf")))
    n_on = (kh != 0 or ks != 0) + (gamma != 0)
    kappa_w = None
    if kh != 0 or ks != 0:
        kappa_w = torch.zeros_like(neg)
        for b in range(B):
            v = valid[b]
            if v.any():
                z = (kh * neg[b][v] + ks * sim[b][v]) / tau0
                kappa_w[b, v] = v.sum() * torch.softmax(z, 0)
    tau_ca = None
    if gamma != 0:
        tau_ca, *_ = F.competition_temperatures(pos, masked, temperature=tau0, slate_size=5,
                                                gamma=gamma, temp_range=2.0)

    def ref(p, n):
        total = _plain_loss(p, n, valid, log_q, tau_sl)
        if kappa_w is not None:
            total = total + beta * _plain_loss(p, n, valid, log_q, tau_sl, w=kappa_w)
        if tau_ca is not None:
            total = total + beta * _plain_loss(p, n, valid, log_q, tau_ca, rho=tau_ca / tau0)
        return total / (1 + beta * n_on)

    got = _grads(lambda p, n: F.dsl_loss(p, n, valid, sim, log_q, temperature=tau0,
                                         kappa_hard=kh, kappa_sim=ks, gamma=gamma, slate_size=5,
                                         dro_scale=True, combine="mix", branch_weight=beta),
                 pos, neg)
    want = _grads(ref, pos, neg)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    fused = F.dsl_loss(pos, neg, valid, sim, log_q, temperature=tau0, kappa_hard=kh,
                       kappa_sim=ks, gamma=gamma, slate_size=5, dro_scale=True)
    sl = F.sl_loss(pos, neg, valid, log_q, temperature=tau0)
    if beta > 0 and n_on == 1:
        # one branch: the mix lies strictly between SL and the fused loss, row by row
        lo, hi = torch.minimum(sl.per_row, fused.per_row), torch.maximum(sl.per_row,
                                                                          fused.per_row)
        assert ((got[0] >= lo - 1e-12) & (got[0] <= hi + 1e-12)).all()


def test_mix_and_standardize_reject_bad_values():
    pos, neg, valid, sim, log_q = _inputs()
    with pytest.raises(ValueError, match="combine"):
        F.dsl_loss(pos, neg, combine="sum")
    with pytest.raises(ValueError, match="branch_weight"):
        F.dsl_loss(pos, neg, combine="mix", branch_weight=-1.0)


def test_item_similarity_item_and_centered():
    g = torch.Generator().manual_seed(5)
    e_pos = torch.randn(4, 8, generator=g, dtype=torch.float64)
    cands = torch.randn(10, 8, generator=g, dtype=torch.float64)
    cos = torch.nn.functional.cosine_similarity
    want = cos(e_pos.unsqueeze(1), cands.unsqueeze(0), dim=-1)
    torch.testing.assert_close(F.item_similarity(e_pos, cands, "item"), want)
    m = cands.mean(0)
    want_c = cos((e_pos - m).unsqueeze(1), (cands - m).unsqueeze(0), dim=-1)
    torch.testing.assert_close(F.item_similarity(e_pos, cands, "centered"), want_c)
    # a direction every item shares inflates plain cosine, not the centred one
    shift = 5 * torch.randn(8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(F.item_similarity(e_pos + shift, cands + shift, "centered"),
                               want_c)
    assert F.item_similarity(e_pos + shift, cands + shift, "item").mean() > want.mean() + 0.3
    with pytest.raises(ValueError, match="centered"):
        F.item_similarity(e_pos, cands, "euclid")


def test_config_carries_the_new_knobs_to_the_loss_module():
    from dsl_torchrec.config import ConfigError, load_config
    from dsl_torchrec.losses import build_loss

    cfg = load_config(None, ["loss.name=dsl", "loss.kappa_sim=-0.5", "loss.standardize=true",
                             "loss.combine=mix", "loss.branch_weight=0.5",
                             "loss.sim_vectors=centered"])
    mod = build_loss(cfg.loss)
    assert mod.sim_vectors == "centered" and mod.needs_item_sim
    assert mod.kwargs["standardize"] and mod.kwargs["combine"] == "mix"
    assert mod.kwargs["branch_weight"] == 0.5
    with pytest.raises(ConfigError, match="branch_weight"):
        load_config(None, ["loss.branch_weight=-1"])
    with pytest.raises(ConfigError, match="sim_vectors"):
        load_config(None, ["loss.sim_vectors=user"])


def test_defaults_are_the_sweep_winner_and_agree_across_layers():
    """docs/dsl-vs-sl.md: the CA branch alone (κ_h = κ_s = 0, γ = 0.5, no DRO scale, lme, exp,
    M = 20, r = 2) won on validation; the functional core, the module and the config agree."""
    import inspect

    from dsl_torchrec.config import LossConfig
    from dsl_torchrec.losses import DSLLoss, build_loss

    winner = dict(kappa_hard=0.0, kappa_sim=0.0, gamma=0.5, dro_scale=False, slate_size=20,
                  temp_range=2.0, intensity="lme", temp_map="exp", w_max=None,
                  standardize=False, combine="fused")
    params = inspect.signature(F.dsl_loss).parameters
    assert {k: params[k].default for k in winner} == winner
    assert {k: DSLLoss().kwargs[k] for k in winner} == winner
    assert {k: getattr(LossConfig(), k) for k in winner} == winner
    assert build_loss(LossConfig(name="dsl")).kwargs == DSLLoss(temperature=0.1).kwargs
    assert not DSLLoss().needs_item_sim  # κ_s = 0: no [B, C] similarity to compute
    pos, neg, valid, sim, log_q = _inputs()
    a = F.dsl_loss(pos, neg, valid, sim, log_q, temperature=0.2)
    b = F.dsl_loss(pos, neg, valid, None, log_q, temperature=0.2, kappa_sim=0.0, gamma=0.5,
                   dro_scale=False)
    assert torch.equal(a.per_row, b.per_row)
    sl = F.sl_loss(pos, neg, valid, log_q, temperature=0.2)
    assert (a.per_row - sl.per_row).abs().max() > 1e-4  # the CA branch is on by default


def test_centered_similarity_off_is_sl_and_on_moves_weights_away_from_shared_direction():
    from dsl_torchrec.losses import DSLLoss, SoftmaxLoss

    pos, neg, valid, sim, log_q = _inputs()
    off = DSLLoss(temperature=0.2, kappa_sim=0.0, gamma=0.0, sim_vectors="centered")
    assert not off.needs_item_sim
    torch.testing.assert_close(off(pos, neg, valid, None, log_q).per_row,
                               SoftmaxLoss(0.2)(pos, neg, valid, None, log_q).per_row,
                               rtol=0, atol=0)
    # items sharing one dominant direction: plain cosine sees them all alike (no contrast for
    # κ_s to act on), the centred one tells the positive's neighbour from the rest
    g = torch.Generator().manual_seed(2)
    shared = torch.tensor([10.0, 0, 0, 0], dtype=torch.float64)
    e_pos = (shared + torch.tensor([0, 1.0, 0, 0], dtype=torch.float64)).unsqueeze(0)
    cands = torch.stack([shared + torch.tensor([0, 0.9, 0, 0], dtype=torch.float64),
                         shared * 1.5 + torch.tensor([0, -1.0, 0, 0], dtype=torch.float64),
                         shared * 1.5 + torch.tensor([0, 0, 1.0, 0], dtype=torch.float64)])
    cands = cands + 1e-3 * torch.randn(3, 4, generator=g, dtype=torch.float64)
    item = F.item_similarity(e_pos, cands, "item")[0]
    cent = F.item_similarity(e_pos, cands, "centered")[0]
    assert item.max() - item.min() < 0.02 and cent.max() - cent.min() > 1.5
    zero = torch.zeros(1, 3, dtype=torch.float64)
    p0 = torch.zeros(1, dtype=torch.float64)
    w_item = F.dsl_loss(p0, zero, None, item.unsqueeze(0), None, kappa_sim=-0.5, gamma=0.0)
    w_cent = F.dsl_loss(p0, zero, None, cent.unsqueeze(0), None, kappa_sim=-0.5, gamma=0.0)
    assert w_cent.weights[0].argmin() == 0  # the positive's neighbour is down-weighted most
    spread = [w.weights[0].max() / w.weights[0].min() for w in (w_item, w_cent)]
    assert spread[0] < 1.1 < 5 < spread[1]
