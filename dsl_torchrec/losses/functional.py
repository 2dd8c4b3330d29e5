"""Functional core of the softmax-family losses (dsl-loss.md): SL, DSL, BSL, PSL, BPR.

No TorchRec and no process group needed. Shapes, shared by every loss:
``pos`` [B] positive scores, ``neg`` [B, C] candidate scores, ``valid`` bool [B, C] or None
(False = not a negative of that row), ``item_sim`` [B, C] or None, ``log_q`` [C] or [B, C] or
None (subtracted from the logit: s_bj/τ − log_q_bj). Scores are NOT pre-divided by τ.
Every loss computes in float32 (float64 inputs stay float64), returns a ``LossOutput`` whose
``loss`` is the mean of ``per_row`` over the local rows, and gives a row with no valid candidate
a loss of exactly 0 and a zero gradient.

Memory and speed: SL allocates one [B, C] buffer in forward (the logits, turned into their
exponentials in place and kept for backward) and one in backward (the gradient). DSL allocates
the same two, both in forward: the logits buffer (holding the masked scores for the slate
first) and a scratch buffer for the κ logits, which backward then fills with the gradient. On
top of SL it costs a few in-place [B, C] passes (reading ``item_sim``, one more exp and
reductions) and the exact top-M slate; no Python loop over rows, no host synchronisation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "LossOutput",
    "sl_loss",
    "dsl_loss",
    "bsl_loss",
    "psl_loss",
    "bpr_loss",
    "weighted_softmax_loss",
    "competition_temperatures",
    "item_similarity",
    "standardize_rows",
    "top_values",
]

_NEG_INF = float("-inf")
_PSL_EPS = 1e-12  # floor of the PSL surrogate before its log (atan + 1 and relu(d + 1) reach 0)


# --------------------------------------------------------------------------- output type


class _Lazy:
    """Dataclass field descriptor: the field holds a value or a zero-argument callable that
    makes it; the callable runs on first read and its result replaces it. Diagnostics that need
    an extra [B, C] pass (the weights, their entropy) then cost nothing on steps that never look
    at them."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr = "_lazy_" + name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            raise AttributeError(self._attr)  # tells @dataclass the field has no default
        value = obj.__dict__[self._attr]
        if callable(value):
            value = value()
            obj.__dict__[self._attr] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self._attr] = value


@dataclass(eq=False, repr=False)
class LossOutput:
    """``loss`` scalar (mean of ``per_row``); ``per_row`` [B]; ``weights`` [B, C] (the κ weights,
    mean one over a row's valid entries, 0 where invalid); ``temperatures`` [B] (τ_b);
    ``stats`` dict of 0-dim float tensors (diagnostics; empty for the baselines).

    ``weights`` and ``stats`` may be given as zero-argument callables: they are evaluated on
    first access (and kept alive, with the inputs they close over, as long as this object)."""

    loss: Tensor
    per_row: Tensor
    weights: Tensor = _Lazy()  # type: ignore[assignment]
    temperatures: Tensor
    stats: dict[str, Tensor] = _Lazy()  # type: ignore[assignment]

    def __repr__(self) -> str:  # shapes only, and without forcing the lazy fields
        return (f"LossOutput(loss={float(self.loss.detach()):.6g}, "
                f"per_row={tuple(self.per_row.shape)}, "
                f"temperatures={tuple(self.temperatures.shape)})")


# --------------------------------------------------------------------------- helpers


def _compute_dtype(*ts: Tensor | None) -> torch.dtype:
    dt = torch.float32
    for t in ts:
        if t is not None and t.is_floating_point():
            dt = torch.promote_types(dt, t.dtype)
    return dt


def _prepare(
    pos: Tensor, neg: Tensor, valid: Tensor | None, item_sim: Tensor | None, log_q: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Check shapes and upcast to the compute dtype (bf16/fp16 -> float32)."""
    if neg.dim() != 2:
        raise ValueError(f"neg must be [B, C], got shape {tuple(neg.shape)}")
    B, C = neg.shape
    if C == 0:
        raise ValueError("neg has no candidate columns (C = 0)")
    if pos.shape != (B,):
        raise ValueError(f"pos must be [B]={B}, got shape {tuple(pos.shape)}")
    if valid is not None:
        if valid.shape != (B, C):
            raise ValueError(f"valid must be [B, C]={(B, C)}, got {tuple(valid.shape)}")
        if valid.dtype != torch.bool:
            raise ValueError(f"valid must be bool, got {valid.dtype}")
    if item_sim is not None and item_sim.shape != (B, C):
        raise ValueError(f"item_sim must be [B, C]={(B, C)}, got {tuple(item_sim.shape)}")
    if log_q is not None and log_q.shape not in ((C,), (B, C)):
        raise ValueError(f"log_q must be [C] or [B, C], got {tuple(log_q.shape)}")
    dt = _compute_dtype(pos, neg)
    pos, neg = pos.to(dt), neg.to(dt)
    if item_sim is not None:
        item_sim = item_sim.detach().to(dt)
    if log_q is not None:
        log_q = log_q.detach().to(dt)
    return pos, neg, valid, item_sim, log_q


def _resolve_group(group: Any) -> Any:
    """The group to all-reduce over, or None when no collective is needed (world size 1)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    if group is None:
        return dist.group.WORLD if dist.get_world_size() > 1 else None
    return group if dist.get_world_size(group) > 1 else None


def _all_reduce_sum(t: Tensor, group: Any) -> Tensor:
    if group is not None:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


def _count_valid(valid: Tensor | None, B: int, C: int, like: Tensor,
                 workspace: Tensor | None = None) -> Tensor:
    """n_b [B] in ``like``'s dtype. A bool sum casts every element and is several times slower
    than a pass over the data on CPU; reading the flags as int64 words and adding their 8 bytes
    with one multiply (each byte is 0 or 1, so the top byte holds the count; the product wraps
    modulo 2^64) is not. ``workspace``: an optional contiguous float32/64 [B, C] buffer, free
    to overwrite, that holds the [B, C/8] products instead of a new allocation."""
    if valid is None:
        return torch.full((B,), float(C), dtype=like.dtype, device=like.device)
    if C % 8 == 0 and valid.is_contiguous() and valid.storage_offset() % 8 == 0:
        words = valid.view(torch.int64)
        if (workspace is not None and workspace.is_contiguous()
                and workspace.element_size() >= 4 and workspace.numel() >= B * C):
            out = workspace.view(-1).view(torch.int64)[: words.numel()].view(words.shape)
            prod = torch.mul(words, 0x0101010101010101, out=out)
        else:
            prod = words * 0x0101010101010101
        return prod.bitwise_right_shift_(56).sum(1).to(like.dtype)
    return valid.sum(1).to(like.dtype)


def _valid_weights(valid: Tensor | None, B: int, C: int, like: Tensor) -> Callable[[], Tensor]:
    """Lazy weights of an unweighted loss: 1 on valid entries, 0 elsewhere."""
    if valid is None:
        return lambda: torch.ones((), dtype=like.dtype, device=like.device).expand(B, C)
    return lambda: valid.to(like.dtype)


def _mean(per_row: Tensor) -> Tensor:
    return per_row.sum() / max(per_row.numel(), 1)


class _RowLogSumExp(torch.autograd.Function):
    """lse_b = log Σ_j exp(logits_bj), with the gradient routed to ``neg``:
    ∂lse_b/∂neg_bj = softmax(logits)_bj · grad_scale_b.

    ``logits`` [B, C] is a detached buffer built by the caller from ``neg`` [B, C] (logits =
    neg · scale + constant offsets, −inf where masked); it is CONSUMED: its exponentials
    overwrite it and are saved for backward, so forward allocates nothing of size [B, C].
    ``grad_buffer`` (optional, [B, C], free to overwrite) receives the gradient in backward
    instead of a new allocation (a scratch buffer of the caller's forward, reused).
    A row that is all −inf gives −inf and a zero gradient (no NaN)."""

    @staticmethod
    def forward(ctx: Any, neg: Tensor, logits: Tensor, grad_scale: Tensor,
                grad_buffer: Tensor | None) -> Tensor:
        ctx.grad_buffer = grad_buffer
        m = logits.amax(1, keepdim=True)
        m = torch.where(torch.isinf(m), torch.zeros_like(m), m)  # all −inf rows: exp(−inf) = 0
        e = logits.sub_(m).exp_()
        s = e.sum(1)
        ctx.save_for_backward(e, s, grad_scale)
        return m.squeeze(1) + s.log()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, None, None, None]:
        buf, ctx.grad_buffer = ctx.grad_buffer, None  # a second backward gets a fresh tensor
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        e, s, grad_scale = ctx.saved_tensors
        # softmax = e / s; rows with s = 0 (fully masked) get 0, not 0/0
        scale = torch.where(s > 0, g * grad_scale / torch.where(s > 0, s, 1), 0).unsqueeze(1)
        grad = torch.mul(e, scale) if buf is None else torch.mul(e, scale, out=buf)
        return grad, None, None, None


def _softmax_rows(
    pos: Tensor,
    neg: Tensor,
    logits: Tensor,
    inv_tau: Tensor,
    *,
    include_positive: bool,
    row_shift: Tensor | None = None,
    rho: Tensor | None = None,
    grad_buffer: Tensor | None = None,
) -> Tensor:
    """Per-row ρ_b · [−p_b + log(exp(p_b) + exp(L_b))], p_b = s⁺_b/τ_b, L_b = lse_b + row_shift_b
    (negatives-only form: ρ_b · (L_b − p_b)). ``logits`` [B, C] is consumed (see _RowLogSumExp).
    Gradients: w.r.t. ``neg`` through the softmax times 1/τ_b, w.r.t. ``pos`` through p_b;
    ``inv_tau``, ``row_shift`` and ``rho`` are constants."""
    lse = _RowLogSumExp.apply(neg, logits, inv_tau, grad_buffer)
    empty = torch.isneginf(lse)
    big_l = lse if row_shift is None else lse + torch.where(empty, 0, row_shift)
    p = pos * inv_tau
    if include_positive:
        row = torch.logaddexp(p, big_l) - p
    else:
        row = big_l - p
    row = torch.where(empty, torch.zeros_like(row), row)
    if rho is not None:
        row = row * rho
    return row


def _build_logits(
    neg_d: Tensor,
    scale: Tensor,
    valid: Tensor | None,
    log_q: Tensor | None,
    *,
    sim: Tensor | None = None,
    sim_coef: float = 0.0,
    log_offsets: Tensor | None = None,
    out: Tensor | None = None,
    premasked: bool = False,
    scale_positive: bool = True,
) -> Tensor:
    """logits = neg · scale_b (+ sim_coef · sim) (+ log_offsets) − log_q, −inf where invalid.

    Written into ``out`` when given (a [B, C] buffer free to overwrite); ``premasked``: ``out``
    already holds where(valid, neg, −inf). The mask is applied first and carried through the
    in-place ops (−inf · scale stays −inf while scale > 0), which saves a pass; with
    ``scale_positive=False`` it is applied again at the end."""
    with torch.no_grad():
        col = scale.unsqueeze(1)
        if premasked:
            assert out is not None
            logits = out.mul_(col)
        elif valid is None:
            logits = torch.mul(neg_d, col) if out is None else torch.mul(neg_d, col, out=out)
        else:
            ninf = neg_d.new_full((), _NEG_INF)
            logits = (torch.where(valid, neg_d, ninf) if out is None
                      else torch.where(valid, neg_d, ninf, out=out))
            logits.mul_(col)
        if sim is not None and sim_coef != 0.0:
            logits.add_(sim, alpha=sim_coef)
        if log_offsets is not None:
            logits.add_(log_offsets)
        if log_q is not None:
            logits.sub_(log_q)
        if valid is not None and not scale_positive:
            torch.where(valid, logits, logits.new_full((), _NEG_INF), out=logits)
    return logits


def _check_temperature(name: str, t: float) -> float:
    t = float(t)
    if not t > 0 or not math.isfinite(t):
        raise ValueError(f"{name} must be a positive finite number, got {t}")
    return t


# --------------------------------------------------------------------------- SL


def sl_loss(
    pos: Tensor,
    neg: Tensor,
    valid: Tensor | None = None,
    log_q: Tensor | None = None,
    *,
    temperature: float,
    include_positive: bool = True,
) -> LossOutput:
    """Softmax loss: ℓ_b = −s⁺/τ + log(exp(s⁺/τ) + Σ_{j valid} exp(s_bj/τ − c_bj)); with
    ``include_positive=False``: ℓ_b = log Σ_{j valid} exp(s_bj/τ − c_bj) − s⁺/τ."""
    tau = _check_temperature("temperature", temperature)
    pos, neg, valid, _, log_q = _prepare(pos, neg, valid, None, log_q)
    B, C = neg.shape
    inv_tau = torch.full((B,), 1.0 / tau, dtype=neg.dtype, device=neg.device)
    logits = _build_logits(neg.detach(), inv_tau, valid, log_q)
    per_row = _softmax_rows(pos, neg, logits, inv_tau, include_positive=include_positive)
    return LossOutput(
        loss=_mean(per_row),
        per_row=per_row,
        weights=_valid_weights(valid, B, C, neg),
        temperatures=torch.full((B,), tau, dtype=neg.dtype, device=neg.device),
        stats={},
    )


def weighted_softmax_loss(
    pos: Tensor,
    neg: Tensor,
    temperatures: Tensor,
    weights: Tensor | None = None,
    valid: Tensor | None = None,
    log_q: Tensor | None = None,
    *,
    include_positive: bool = True,
    scale: Tensor | None = None,
) -> Tensor:
    """Per-row [B] fused DSL loss for GIVEN constants: temperatures τ_b [B], weights w_bj [B, C]
    (None = all ones) and scale ρ_b [B] (None = 1):
    ℓ_b = ρ_b · [−s⁺_b/τ_b + log(exp(s⁺_b/τ_b) + Σ_{j valid} w_bj · exp(s_bj/τ_b − c_bj))].
    Gradients flow to ``pos`` and ``neg`` only. ``dsl_loss`` is this with the constants it
    derives under no_grad (it folds them into the same buffer instead of calling this)."""
    pos, neg, valid, _, log_q = _prepare(pos, neg, valid, None, log_q)
    inv_tau = temperatures.detach().to(neg.dtype).reciprocal()
    log_w = None if weights is None else weights.detach().to(neg.dtype).log()
    logits = _build_logits(neg.detach(), inv_tau, valid, log_q, log_offsets=log_w)
    rho = None if scale is None else scale.detach().to(neg.dtype)
    return _softmax_rows(pos, neg, logits, inv_tau, include_positive=include_positive, rho=rho)


# --------------------------------------------------------------------------- DSL branches


@torch.no_grad()
def item_similarity(pos_vectors: Tensor, cand_vectors: Tensor, kind: str = "item") -> Tensor:
    """a_bj [B, C] from the positives' item vectors [B, d] and the candidates' [C, d]: their
    cosine (``item``), or the cosine after subtracting the mean candidate vector from both
    (``centered``). The candidates are the same on every rank, so the mean is too."""
    if kind == "centered":
        m = cand_vectors.mean(0, keepdim=True)
        pos_vectors, cand_vectors = pos_vectors - m, cand_vectors - m
    elif kind != "item":
        raise ValueError(f"item similarity must be item or centered, got {kind!r}")
    normalize = torch.nn.functional.normalize
    return normalize(pos_vectors, dim=-1) @ normalize(cand_vectors, dim=-1).T


def top_values(masked: Tensor, k: int, group_size: int | None = None) -> Tensor:
    """The k largest values of each row of ``masked`` [B, C] (−inf = excluded), [B, k], unsorted.

    Exact, and several times cheaper than one top-k over C columns on CPU: partition the row
    into G groups, keep the k groups with the largest maxima and repeat on their values (+ the
    ragged tail) until few are left. The k-th largest kept maximum bounds the k-th value from
    below and every group left out has its maximum below it, so no top-k value is lost. Groups
    are runs of contiguous columns when those are long (fast to copy out), else columns
    j ≡ c mod G (fast to reduce). ``group_size`` fixes the first level's group size (tests);
    by default a power of two leaving about 4k groups."""
    B = masked.shape[0]
    x = masked
    k = max(min(k, x.shape[1]), 1)
    rows = torch.arange(B, device=x.device).unsqueeze(1)
    while True:
        n = x.shape[1]
        g = group_size or (1 << max(int(math.log2(max(n // (4 * k), 1))), 0))
        n_groups = n // g
        # a top-k over a few hundred values costs about as much as one more level
        if g < 2 or n_groups <= k or (group_size is None and n <= 16 * k):
            break
        group_size = None
        if g >= 32 and n_groups * g == n and x.is_contiguous():
            gidx = x.view(B, n_groups, g).amax(2).topk(k, dim=1, sorted=False).indices
            pool = x.view(B * n_groups, g).index_select(0, (gidx + rows * n_groups).flatten())
            x = pool.view(B, k * g)
            continue
        main = x[:, : g * n_groups].unflatten(1, (g, n_groups))  # [B, g, G], group = column
        gidx = main.amax(1).topk(k, dim=1, sorted=False).indices  # [B, k]
        pool = main.gather(2, gidx.unsqueeze(1).expand(B, g, k)).flatten(1)  # [B, g·k]
        if g * n_groups < n:
            pool = torch.cat([pool, x[:, g * n_groups :]], dim=1)
        x = pool
    return x.topk(k, dim=1, sorted=False).values


@torch.no_grad()
def competition_temperatures(
    pos: Tensor,
    masked_neg: Tensor,
    *,
    temperature: float,
    slate_size: int,
    gamma: float,
    temp_range: float,
    group: Any = None,
    intensity: str = "lme",
    temp_map: str = "exp",
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CA branch: per-row τ_b [B] from the competition intensity of the top-M slate.

    ``pos`` [B]; ``masked_neg`` [B, C] the scores with −inf on invalid entries. ``group`` is the
    group to all-reduce the statistics over (None: none, i.e. already resolved by the caller).
    ``intensity``: ``lme`` log-mean-exp of the slate margins (dsl-loss.md), ``sigmoid`` their
    mean σ((s_bj − s⁺_b)/τ₀), ``entropy`` the entropy of softmax(s_bj/τ₀) over the slate (nats).
    ``temp_map``: ``exp`` τ₀·exp(γ·ĉ) (dsl-loss.md) or ``linear`` τ₀·(1 + γ·ĉ), both clipped.
    Returns (τ_b [B], c_b [B], μ, σ); rows with no valid candidate get τ₀ and are left out of μ,
    σ and the drift normalisation."""
    tau0 = temperature
    top = top_values(masked_neg, slate_size)  # [B, M]
    m_b = torch.isfinite(top).sum(1)
    nonempty = m_b > 0
    margins = (top - pos.unsqueeze(1)) / tau0  # −inf past a short row's slate
    if intensity == "lme":
        raw = torch.logsumexp(margins, dim=1) - m_b.clamp_min(1).to(top.dtype).log()
    elif intensity == "sigmoid":
        raw = torch.sigmoid(margins).sum(1) / m_b.clamp_min(1).to(top.dtype)
    elif intensity == "entropy":
        logp = torch.log_softmax(top / tau0, dim=1)
        raw = -(logp.exp() * torch.where(torch.isfinite(logp), logp, 0.0)).sum(1)
    else:
        raise ValueError(f"intensity must be lme, sigmoid or entropy, got {intensity!r}")
    c = torch.where(nonempty, raw, 0)

    # float64 sums: Σc² − nμ² cancels, and ranks must agree with one process to float tolerance
    c64, ne64 = c.double(), nonempty.double()
    sums = _all_reduce_sum(torch.stack([(c64 * ne64).sum(), (c64 * c64 * ne64).sum(),
                                        ne64.sum()]), group)
    count = sums[2].clamp_min(1.0)
    mu = sums[0] / count
    sigma = (sums[1] / count - mu * mu).clamp_min(0.0).sqrt()
    c_hat = (c64 - mu) / (sigma + 1e-6)
    if temp_map == "exp":
        tau = tau0 * torch.exp(gamma * c_hat)
    elif temp_map == "linear":
        tau = tau0 * (1.0 + gamma * c_hat)
    else:
        raise ValueError(f"temp_map must be exp or linear, got {temp_map!r}")
    tau = tau.clamp(tau0 / temp_range, tau0 * temp_range)
    tau = torch.where(nonempty, tau, tau0)

    inv_sums = _all_reduce_sum(torch.stack([(ne64 / tau).sum(), ne64.sum()]), group)
    mean_inv = inv_sums[0] / inv_sums[1].clamp_min(1.0)
    tau = torch.where(nonempty, tau * (tau0 * mean_inv), tau0)
    dt = masked_neg.dtype
    return tau.to(dt), c, mu.to(dt), sigma.to(dt)


def standardize_rows(x: Tensor, valid: Tensor | None) -> Tensor:
    """(x_bj − μ_b) / (σ_b + 1e-6), μ_b and σ_b (population) over row b's valid entries; [B, C]
    (invalid entries hold garbage, masked by the caller). Per row, so never all-reduced."""
    if valid is None:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).square_().mean(1, keepdim=True)
    else:
        n = valid.sum(1, keepdim=True).clamp_min(1).to(x.dtype)
        mu = torch.where(valid, x, 0).sum(1, keepdim=True) / n
        var = torch.where(valid, (x - mu).square_(), 0).sum(1, keepdim=True) / n
    return (x - mu) / (var.sqrt() + 1e-6)


def _kappa_logits_(
    out: Tensor, neg_d: Tensor | None, item_sim: Tensor | None, kappa_hard: float,
    kappa_sim: float, tau0: float, valid: Tensor | None, standardize: bool = False,
) -> Tensor:
    """z_bj = (κ_h·s_bj + κ_s·a_bj)/τ₀ into ``out``, −inf where invalid. The −κ_h·s⁺_b/τ₀ of the
    hardness is a per-row constant, which the softmax over the row cancels, so it is omitted.
    ``standardize``: z_bj = κ_h·ŝ_bj + κ_s·â_bj with ŝ, â standardised within the row over its
    valid entries (unitless, so no 1/τ₀)."""
    if standardize:
        out.zero_()
        if kappa_hard != 0.0:
            assert neg_d is not None
            out.add_(standardize_rows(neg_d, valid), alpha=kappa_hard)
        if item_sim is not None and kappa_sim != 0.0:
            out.add_(standardize_rows(item_sim, valid), alpha=kappa_sim)
    elif item_sim is not None and kappa_sim != 0.0:
        torch.mul(item_sim, kappa_sim / tau0, out=out)
        if kappa_hard != 0.0:
            assert neg_d is not None
            out.add_(neg_d, alpha=kappa_hard / tau0)
    else:
        assert neg_d is not None
        torch.mul(neg_d, kappa_hard / tau0, out=out)
    if valid is not None:
        torch.where(valid, out, out.new_full((), _NEG_INF), out=out)
    return out


def _logsumexp_(x: Tensor) -> Tensor:
    """Row logsumexp of [B, C] that overwrites ``x`` (with exp(x − max)); −inf for all −inf rows."""
    m = x.amax(1, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return m.squeeze(1) + x.sub_(m).exp_().sum(1).log()


def _weight_stats(weights: Tensor, n: Tensor) -> dict[str, Tensor]:
    """weight_max over the batch; weight_entropy: mean over non-empty rows of the entropy (nats)
    of the row's distribution w_bj / n_b (log n_b when the weights are uniform)."""
    nonempty = n > 0
    p = weights / n.clamp_min(1).unsqueeze(1)
    h = -torch.special.xlogy(p, p).sum(1)
    cnt = nonempty.sum().clamp_min(1)
    return {
        "weight_max": weights.max() if weights.numel() else weights.new_zeros(()),
        "weight_entropy": torch.where(nonempty, h, 0).sum() / cnt,
    }


# --------------------------------------------------------------------------- DSL


def dsl_loss(
    pos: Tensor,
    neg: Tensor,
    valid: Tensor | None = None,
    item_sim: Tensor | None = None,
    log_q: Tensor | None = None,
    *,
    temperature: float = 0.1,
    include_positive: bool = True,
    kappa_hard: float = 0.0,
    kappa_sim: float = 0.0,
    w_max: float | None = None,
    slate_size: int = 20,
    gamma: float = 0.5,
    temp_range: float = 2.0,
    dro_scale: bool = False,
    group: Any = None,
    intensity: str = "lme",
    temp_map: str = "exp",
    standardize: bool = False,
    combine: str = "fused",
    branch_weight: float = 1.0,
) -> LossOutput:
    """Dual-scale softmax loss (dsl-loss.md):
    ℓ_b = ρ_b · [−s⁺_b/τ_b + log(exp(s⁺_b/τ_b) + Σ_{j valid} w_bj · exp(s_bj/τ_b − c_bj))]
    with κ weights w_bj (within-row reweighting by hardness and item similarity) and per-row
    temperatures τ_b (competition of the top-``slate_size`` slate, statistics all-reduced over
    ``group``; None = the default group when initialised with world size > 1, else no
    collective). Weights and temperatures are constants for autograd. κ_h = κ_s = 0 and γ = 0
    give ``sl_loss`` exactly. The defaults are the issue-7 sweep's validation winner (the CA
    branch alone, no DRO scaling; docs/dsl-vs-sl.md), not dsl-loss.md's table (κ_s = −0.5,
    dro_scale = True).

    Issue-7 design space, all off by default: ``standardize`` forms the κ logits from row-wise
    standardised hardness and similarity (see ``_kappa_logits_``); ``combine="mix"`` replaces
    the single fused log-sum-exp by SL plus the two branches as separate losses,
    ℓ_b = (ℓ_SL + β·ℓ_κ + β·ℓ_CA) / (1 + β·#branches on), β = ``branch_weight``, where ℓ_κ is
    the fused loss with γ = 0 and ℓ_CA the fused loss with κ_h = κ_s = 0 (a branch that is off
    is left out, so with both off it is SL)."""
    tau0 = _check_temperature("temperature", temperature)
    if slate_size < 1:
        raise ValueError(f"slate_size must be >= 1, got {slate_size}")
    if not temp_range >= 1.0:
        raise ValueError(f"temp_range must be >= 1, got {temp_range}")
    if w_max is not None and not w_max > 0:
        raise ValueError(f"w_max must be > 0 or None, got {w_max}")
    if combine not in ("fused", "mix"):
        raise ValueError(f"combine must be fused or mix, got {combine!r}")
    if not branch_weight >= 0.0:
        raise ValueError(f"branch_weight must be >= 0, got {branch_weight}")
    kappa_on = kappa_hard != 0.0 or (kappa_sim != 0.0 and item_sim is not None)
    ca_on = gamma != 0.0
    if combine == "mix":
        return _mixed_branches(
            pos, neg, valid, item_sim, log_q, kappa_on=kappa_on, ca_on=ca_on,
            branch_weight=branch_weight, temperature=tau0, include_positive=include_positive,
            kappa_hard=kappa_hard, kappa_sim=kappa_sim, w_max=w_max, slate_size=slate_size,
            gamma=gamma, temp_range=temp_range, dro_scale=dro_scale, group=group,
            intensity=intensity, temp_map=temp_map, standardize=standardize)
    pos, neg, valid, item_sim, log_q = _prepare(pos, neg, valid, item_sim, log_q)
    B, C = neg.shape
    dt, dev = neg.dtype, neg.device
    neg_d, pos_d = neg.detach(), pos.detach()
    # z = α·a: the default, fastest path
    sim_only = kappa_on and kappa_hard == 0.0 and w_max is None and not standardize
    stats: dict[str, Tensor] = {}
    # Two [B, C] buffers, as many as SL allocates: ``buf`` becomes the logits (the masked scores
    # first, for the slate) and ``scratch`` holds the κ logits, then the gradient in backward.
    buf: Tensor | None = None
    scratch: Tensor | None = None
    n: Tensor | None = None
    row_shift: Tensor | None = None

    with torch.no_grad():
        mask_add: Tensor | None = None
        if sim_only:
            scratch = torch.empty_like(neg_d, memory_format=torch.contiguous_format)
            if valid is not None:
                # the mask as an additive 0 / −inf: a uint8 -> float copy and a log are two
                # fast passes, where a bool-conditioned where() is several times slower on CPU
                mask_add = scratch.copy_(valid.view(torch.uint8)).log_()

        if ca_on:
            if mask_add is not None:
                buf = neg_d + mask_add
            elif valid is not None:
                buf = torch.where(valid, neg_d, neg_d.new_full((), _NEG_INF))
            tau, _, mu, sigma = competition_temperatures(
                pos_d, neg_d if buf is None else buf, temperature=tau0, slate_size=slate_size,
                gamma=gamma, temp_range=temp_range, group=_resolve_group(group),
                intensity=intensity, temp_map=temp_map,
            )
            stats.update(mu=mu, sigma=sigma)
        else:
            tau = torch.full((B,), tau0, dtype=dt, device=dev)
        inv_tau = tau.reciprocal()
        rho = tau / tau0 if (ca_on and dro_scale) else None

        weights: Callable[[], Tensor]
        if sim_only:
            # log w_bj = z_bj − lse_z_b + log n_b: z is added to the logits (logits = s/τ_b + z,
            # one fused pass) and the per-row rest kept as a shift of the row's logsumexp, so
            # the weights need no buffer and are only materialised if read
            assert scratch is not None and item_sim is not None
            alpha = kappa_sim / tau0
            if mask_add is not None:
                z = scratch.add_(item_sim, alpha=alpha)
            else:
                z = torch.mul(item_sim, alpha, out=scratch)
            col = inv_tau.unsqueeze(1)
            logits = (torch.addcmul(z, neg_d, col) if buf is None
                      else torch.addcmul(z, neg_d, col, out=buf))
            if log_q is not None:
                logits.sub_(log_q)
            lse_z = _logsumexp_(z)
            n = _count_valid(valid, B, C, neg_d, workspace=scratch)
            log_n = n.log()
            row_shift = torch.where(n > 0, log_n - lse_z, 0)
            weights = _lazy_kappa_weights(None, item_sim, 0.0, kappa_sim, tau0, valid, lse_z,
                                          log_n)
        elif kappa_on:
            # hardness (κ_h ≠ 0) or a cap: the general form
            scratch = torch.empty_like(neg_d, memory_format=torch.contiguous_format)
            n = _count_valid(valid, B, C, neg_d)
            log_n = n.log()
            z = _kappa_logits_(scratch, neg_d, item_sim, kappa_hard, kappa_sim, tau0, valid,
                               standardize)
            log_w: Tensor | None = None
            if w_max is None and not standardize:
                # the hardness part of z is linear in s: scale s by 1/τ_b + κ_h/τ₀ in the
                # logits instead of adding it (the gradient still uses 1/τ_b)
                lse_z = _logsumexp_(z)
                row_shift = torch.where(n > 0, log_n - lse_z, 0)
                fwd_scale, sim_coef = inv_tau + kappa_hard / tau0, kappa_sim / tau0
                weights = _lazy_kappa_weights(neg_d, item_sim, kappa_hard, kappa_sim, tau0,
                                              valid, lse_z, log_n)
            else:
                # a cap or standardised logits: log w itself stays in scratch
                log_w = z
                for cap in ((None,) if w_max is None else (math.log(w_max), None)):
                    log_w.sub_(torch.where(n > 0, torch.logsumexp(log_w, 1) - log_n, 0)
                               .unsqueeze(1))
                    if cap is not None:
                        log_w.clamp_(max=cap)
                fwd_scale, sim_coef = inv_tau, 0.0
                weights = functools.cache(log_w.exp)
                scratch = None  # read by the lazy weights, so not free for the gradient
            logits = _build_logits(neg_d, fwd_scale, valid, log_q, sim=item_sim,
                                   sim_coef=sim_coef, log_offsets=log_w, out=buf,
                                   premasked=buf is not None, scale_positive=kappa_hard >= 0.0)
        else:
            weights = functools.cache(_valid_weights(valid, B, C, neg_d.new_empty(())))
            logits = _build_logits(neg_d, inv_tau, valid, log_q, out=buf,
                                   premasked=buf is not None)

    per_row = _softmax_rows(pos, neg, logits, inv_tau, include_positive=include_positive,
                            row_shift=row_shift, rho=rho, grad_buffer=scratch)

    stats.update(tau_mean=tau.mean(), tau_min=tau.min(), tau_max=tau.max())

    like = neg_d.new_empty(())  # the closures below must not keep the [B, C] scores alive

    def all_stats() -> dict[str, Tensor]:
        n_ = n if n is not None else _count_valid(valid, B, C, like)
        with torch.no_grad():
            return {**stats, **_weight_stats(weights(), n_)}

    return LossOutput(
        loss=_mean(per_row), per_row=per_row, weights=weights, temperatures=tau, stats=all_stats
    )


def _mixed_branches(
    pos: Tensor, neg: Tensor, valid: Tensor | None, item_sim: Tensor | None,
    log_q: Tensor | None, *, kappa_on: bool, ca_on: bool, branch_weight: float,
    **kw: Any,
) -> LossOutput:
    """``dsl_loss(combine="mix")``: SL plus the branches that are on, each its own fused loss."""
    tau0, include_positive = kw["temperature"], kw["include_positive"]
    base = sl_loss(pos, neg, valid, log_q, temperature=tau0, include_positive=include_positive)
    branches: dict[str, LossOutput] = {}
    if kappa_on:
        branches["kappa"] = dsl_loss(pos, neg, valid, item_sim, log_q, **{**kw, "gamma": 0.0})
    if ca_on:
        branches["ca"] = dsl_loss(pos, neg, valid, None, log_q,
                                  **{**kw, "kappa_hard": 0.0, "kappa_sim": 0.0})
    per_row = base.per_row
    for out in branches.values():
        per_row = per_row + branch_weight * out.per_row
    per_row = per_row / (1.0 + branch_weight * len(branches))
    weights_from = branches.get("kappa", base)
    temps = branches["ca"].temperatures if ca_on else base.temperatures

    def stats() -> dict[str, Tensor]:
        merged: dict[str, Tensor] = {}
        for out in branches.values():
            merged.update(out.stats)
        return merged

    return LossOutput(loss=_mean(per_row), per_row=per_row,
                      weights=lambda: weights_from.weights, temperatures=temps, stats=stats)


def _lazy_kappa_weights(
    neg_d: Tensor | None, item_sim: Tensor | None, kappa_hard: float, kappa_sim: float,
    tau0: float, valid: Tensor | None, lse_z: Tensor, log_n: Tensor,
) -> Callable[[], Tensor]:
    """w_bj = exp(z_bj − lse_z_b + log n_b), recomputed from the inputs when first read
    (``neg_d`` may be None when κ_h = 0)."""

    @functools.cache
    def make() -> Tensor:
        with torch.no_grad():
            ref = neg_d if neg_d is not None else item_sim
            assert ref is not None
            z = _kappa_logits_(torch.empty_like(ref, memory_format=torch.contiguous_format),
                               neg_d, item_sim, kappa_hard, kappa_sim, tau0, valid)
            shift = torch.where(torch.isfinite(lse_z), lse_z - log_n, math.inf)  # empty rows: 0
            return z.sub_(shift.unsqueeze(1)).exp_()

    return make


# --------------------------------------------------------------------------- baselines


def _safe_logsumexp(x: Tensor) -> Tensor:
    """Row logsumexp through plain autograd: −inf (and a zero, not NaN, gradient) for a row that
    is all −inf."""
    m = x.detach().amax(1, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    s = (x - m).exp().sum(1)
    pos_s = s > 0
    return torch.where(pos_s, m.squeeze(1) + torch.where(pos_s, s, 1).log(), _NEG_INF)


def bsl_loss(
    pos: Tensor,
    neg: Tensor,
    valid: Tensor | None = None,
    log_q: Tensor | None = None,
    *,
    temperature: float,
    temperature2: float,
) -> LossOutput:
    """Bilateral softmax loss (Wu et al., ICDE 2024):
    ℓ_b = −s⁺_b/τ₁ + (τ₂/τ₁) · log Σ_{j valid} exp(s_bj/τ₂ − c_bj). ``temperatures`` reports τ₂
    (the negatives' temperature)."""
    t1 = _check_temperature("temperature", temperature)
    t2 = _check_temperature("temperature2", temperature2)
    pos, neg, valid, _, log_q = _prepare(pos, neg, valid, None, log_q)
    B, C = neg.shape
    inv2 = torch.full((B,), 1.0 / t2, dtype=neg.dtype, device=neg.device)
    logits = _build_logits(neg.detach(), inv2, valid, log_q)
    lse = _RowLogSumExp.apply(neg, logits, inv2, None)
    empty = torch.isneginf(lse)
    row = (t2 / t1) * torch.where(empty, 0, lse) - pos / t1
    row = torch.where(empty, torch.zeros_like(row), row)
    return LossOutput(
        loss=_mean(row), per_row=row, weights=_valid_weights(valid, B, C, neg),
        temperatures=torch.full((B,), t2, dtype=neg.dtype, device=neg.device), stats={},
    )


def _psl_log_sigma(d: Tensor, activation: str) -> Tensor:
    """log σ(d) for the PSL surrogates σ = tanh(d) + 1, atan(d) + 1, relu(d + 1)."""
    if activation == "tanh":
        # tanh(d) + 1 = 2·sigmoid(2d): exact, and finite where tanh(d) + 1 underflows
        return math.log(2.0) + torch.nn.functional.logsigmoid(2.0 * d)
    if activation == "atan":
        return torch.log(torch.clamp_min(torch.atan(d) + 1.0, _PSL_EPS))
    if activation == "relu":
        return torch.log(torch.clamp_min(d + 1.0, _PSL_EPS))
    raise ValueError(f"unknown PSL activation {activation!r} (expected tanh, atan or relu)")


def psl_loss(
    pos: Tensor,
    neg: Tensor,
    valid: Tensor | None = None,
    log_q: Tensor | None = None,
    *,
    temperature: float,
    activation: str = "tanh",
) -> LossOutput:
    """Pairwise softmax loss (Yang et al., NeurIPS 2024): ℓ_b = log Σ_{j valid} σ(d_bj)^{1/τ},
    d_bj = s_bj − s⁺_b, computed as logsumexp of log σ(d_bj)/τ − c_bj. σ ∈ {tanh + 1,
    atan + 1, relu(d + 1)}; σ is floored at 1e-12 before the log (atan + 1 and relu(d + 1) reach
    0 for d ≤ −1.557 / d ≤ −1; the floor's gradient is 0 there, as relu's is)."""
    tau = _check_temperature("temperature", temperature)
    if activation not in ("tanh", "atan", "relu"):
        raise ValueError(f"unknown PSL activation {activation!r} (expected tanh, atan or relu)")
    pos, neg, valid, _, log_q = _prepare(pos, neg, valid, None, log_q)
    B, C = neg.shape
    logits = _psl_log_sigma(neg - pos.unsqueeze(1), activation) / tau
    if log_q is not None:
        logits = logits - log_q
    if valid is not None:
        logits = logits.masked_fill(~valid, _NEG_INF)
    lse = _safe_logsumexp(logits)
    row = torch.where(torch.isneginf(lse), 0, lse)
    return LossOutput(
        loss=_mean(row), per_row=row, weights=_valid_weights(valid, B, C, neg),
        temperatures=torch.full((B,), tau, dtype=neg.dtype, device=neg.device), stats={},
    )


def bpr_loss(
    pos: Tensor, neg: Tensor, valid: Tensor | None = None, log_q: Tensor | None = None
) -> LossOutput:
    """BPR: ℓ_b = mean over valid j of softplus(s_bj − c_bj − s⁺_b) (c = log_q in score units;
    0 when None). ``temperatures`` are 1."""
    pos, neg, valid, _, log_q = _prepare(pos, neg, valid, None, log_q)
    B, C = neg.shape
    d = neg - pos.unsqueeze(1)
    if log_q is not None:
        d = d - log_q
    sp = torch.nn.functional.softplus(d)
    if valid is not None:
        sp = sp.masked_fill(~valid, 0.0)
    n = _count_valid(valid, B, C, neg)
    row = sp.sum(1) / n.clamp_min(1.0)
    return LossOutput(
        loss=_mean(row), per_row=row, weights=_valid_weights(valid, B, C, neg),
        temperatures=torch.ones((B,), dtype=neg.dtype, device=neg.device), stats={},
    )
