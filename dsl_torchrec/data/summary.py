"""``dsl-data inspect``: counts, density, popularity skew and split overlap of a dataset dir."""

from __future__ import annotations

import math
from os import PathLike
from pathlib import Path

import numpy as np

from .dataset import InteractionData
from .split import gini


def top_share(counts: np.ndarray, fraction: float) -> tuple[int, float]:
    """(k, share of all interactions held by the k = ceil(fraction·n) most popular items)."""
    k = max(1, math.ceil(fraction * counts.size))
    total = counts.sum()
    top = np.partition(counts, counts.size - k)[counts.size - k:].sum()
    return k, float(top / total) if total else 0.0


def _reference_split(data: InteractionData) -> str:
    return "train" if data.has_split("train") else data.split_names[0]


def inspect_text(directory: str | PathLike[str]) -> str:
    """The table ``dsl-data inspect`` prints."""
    data = InteractionData(directory, require_train=False)
    m = data.manifest
    ref = _reference_split(data)
    made = m.created_by.get("command", "?")
    if made == "split":
        made += f" --protocol {m.created_by.get('protocol')} --seed {m.created_by.get('seed')}"
    elif m.created_by.get("format"):
        made += f" --format {m.created_by['format']}"
    lines = [f"dataset {m.name!r} at {directory}: {m.num_users:,} users x {m.num_items:,} items"
             f" (made by {made})"]
    if m.files:
        lines.append("vocabularies: " + ", ".join(f"{k} ({v['file']}, {v['rows']:,} ids)"
                                                  for k, v in m.files.items()))
    lines.append(f"{'split':<8}{'rows':>13}{'users':>11}{'items':>11}{'density':>11}"
                 f"{'gini':>7}  timestamps")
    cells = max(1, m.num_users * m.num_items)
    for split in data.split_names:
        users, items = data.split(split)
        n_users = int(np.count_nonzero(np.bincount(users, minlength=m.num_users)))
        ic = np.bincount(items, minlength=m.num_items)
        ts = data.timestamps(split)
        span = "-" if ts is None else f"{int(ts.min())}..{int(ts.max())}"
        lines.append(f"{split:<8}{users.size:>13,}{n_users:>11,}{int(np.count_nonzero(ic)):>11,}"
                     f"{users.size / cells:>11.3e}{gini(ic):>7.3f}  {span}")
    counts = data.item_counts(ref)
    shares = [top_share(counts, f) for f in (0.01, 0.1, 0.2)]
    q = np.quantile(counts, [0.5, 0.9, 0.99]) if counts.size else np.zeros(3)
    nonzero = np.sort(counts)
    tail_k = max(1, nonzero.size // 2)
    tail = float(nonzero[:tail_k].sum() / max(1, counts.sum()))
    lines.append(f"{ref} popularity: top-1% items ({shares[0][0]:,}) hold {shares[0][1]:.1%} of "
                 f"interactions, top-10% ({shares[1][0]:,}) {shares[1][1]:.1%}, top-20% "
                 f"({shares[2][0]:,}) {shares[2][1]:.1%}; the bottom 50% hold {tail:.1%}")
    lines.append(f"{ref} interactions per item: median {q[0]:g}, p90 {q[1]:g}, p99 {q[2]:g}, "
                 f"max {int(counts.max()) if counts.size else 0:,}; "
                 f"{int(np.count_nonzero(counts == 0)):,} items never in {ref}")
    lines.extend(_overlaps(data, ref))
    return "\n".join(lines)


def _overlaps(data: InteractionData, ref: str) -> list[str]:
    """Pair overlap between every two splits; users / items of each split unseen in ``ref``."""
    names = data.split_names
    if len(names) < 2:
        return ["overlap checks: one split only (unsplit; `dsl-data split` makes train/valid/test)"]
    keys = {}
    for s in names:
        u, i = data.split(s)
        keys[s] = np.unique(u * max(data.num_items, 1) + i)
    out = ["overlap checks:"]
    for a_idx, a in enumerate(names):
        for b in names[a_idx + 1:]:
            n = np.intersect1d(keys[a], keys[b], assume_unique=True).size
            flag = "ok" if n == 0 else "OVERLAP"
            out.append(f"  {a} ∩ {b}: {n:,} (user, item) pairs  {flag}")
    has_u = np.bincount(data.split(ref)[0], minlength=data.num_users) > 0
    has_i = np.bincount(data.split(ref)[1], minlength=data.num_items) > 0
    for s in names:
        if s == ref:
            continue
        u, i = data.split(s)
        cold_u = int(np.count_nonzero(~has_u[np.unique(u)]))
        cold_i = int(np.count_nonzero(~has_i[np.unique(i)]))
        flag = "ok" if cold_u == 0 else "USERS UNSEEN IN " + ref.upper()
        out.append(f"  {s}: {cold_u:,} users and {cold_i:,} items not in {ref}  {flag}")
    return out


def plot_popularity(directory: str | PathLike[str], path: str | PathLike[str]) -> Path:
    """Save a log-log histogram of interactions per item (one curve per split) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = InteractionData(directory, require_train=False)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for split in data.split_names:
        counts = data.item_counts(split)
        pos = counts[counts > 0]
        if pos.size == 0:
            continue
        bins = np.unique(np.logspace(0, np.log10(pos.max() + 1), 40).astype(int))
        ax1.hist(pos, bins=bins, histtype="step", label=split)
        ranked = np.sort(counts)[::-1]
        ax2.plot(np.arange(1, ranked.size + 1), np.maximum(ranked, 0.5), label=split)
    ax1.set(xscale="log", yscale="log", xlabel="interactions per item", ylabel="items",
            title="popularity histogram")
    ax2.set(xscale="log", yscale="log", xlabel="item rank", ylabel="interactions",
            title="rank-frequency")
    for ax in (ax1, ax2):
        ax.legend()
    fig.suptitle(f"{data.manifest.name}: {data.num_users:,} users x {data.num_items:,} items")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
