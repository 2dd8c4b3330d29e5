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
