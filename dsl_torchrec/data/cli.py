"""``dsl-data``: prepare, synth, inspect and verify dataset directories."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

import numpy as np

from .dataset import InteractionData
from .errors import DataError
from .formats import READERS
from .manifest import Manifest
from .prepare import prepare
from .synth import SynthParams, synth

PROG = "dsl-data"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description="Make and check canonical dataset "
                                 "directories (manifest.json + one parquet file per split).")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", help="convert benchmark files (LightGCN txt, IRB tsv)")
    p.add_argument("--format", required=True, choices=sorted(READERS))
    p.add_argument("--train", required=True, metavar="FILE")
    p.add_argument("--test", required=True, metavar="FILE")
    p.add_argument("--valid", metavar="FILE", help="valid file; else carve it from train")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--valid-fraction", type=float, default=0.1,
                   help="per-user share of train carved into valid when --valid is absent "
                   "(0 = no valid split; default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="dataset name (default: the --out directory's name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset dir")

    defaults = SynthParams(users=1, items=1, interactions=1)
    s = sub.add_parser("synth", help="generate a synthetic power-law catalogue")
    s.add_argument("--users", type=int, required=True)
    s.add_argument("--items", type=int, required=True)
    s.add_argument("--interactions", type=int, required=True,
                   help="target number of distinct (user, item) pairs")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--name")
    s.add_argument("--overwrite", action="store_true")
    for knob, typ, what in (
        ("clusters", int, "latent clusters K"),
        ("clusters_per_user", int, "clusters in each user's mixture"),
        ("dirichlet_alpha", float, "Dirichlet concentration of a user's mixture"),
        ("zipf_a", float, "popularity rank exponent"),
        ("noise", float, "share of draws from global popularity"),
        ("count_sigma", float, "lognormal spread of interactions per user"),
        ("min_per_user", int, "minimum interactions per user"),
        ("test_fraction", float, "per-user share of items in test"),
        ("valid_fraction", float, "per-user share of items in valid"),
        ("chunk_rows", int, "draws generated per chunk (bounds memory)"),
    ):
        s.add_argument("--" + knob.replace("_", "-"), type=typ, default=getattr(defaults, knob),
                       help=f"{what} (default {getattr(defaults, knob)})")

    i = sub.add_parser("inspect", help="print splits, sizes, density and popularity skew")
    i.add_argument("dir", metavar="DIR")
    v = sub.add_parser("verify", help="check files, row counts and sha256 against the manifest")
    v.add_argument("dir", metavar="DIR")
    return ap


def _summary(manifest: Manifest, out: str, seconds: float) -> str:
    rows = " / ".join(f"{k} {v['rows']:,}" for k, v in manifest.splits.items())
    return (f"wrote {out}: {rows} rows; {manifest.num_users:,} users x "
            f"{manifest.num_items:,} items ({seconds:.2f}s)")


def _top_share(counts: np.ndarray, fraction: float) -> tuple[int, float]:
    k = max(1, math.ceil(fraction * counts.size))
    total = counts.sum()
    top = np.partition(counts, counts.size - k)[counts.size - k :].sum()
    return k, float(top / total) if total else 0.0


def inspect_text(directory: str) -> str:
    """The table ``dsl-data inspect`` prints."""
    data = InteractionData(directory)
    m = data.manifest
    lines = [f"dataset {m.name!r} at {directory}: {m.num_users:,} users x {m.num_items:,} items"
             f" (created by {m.created_by.get('command', '?')})",
             f"{'split':<8}{'rows':>12}{'users':>10}{'items':>10}{'density':>11}"]
    cells = max(1, m.num_users * m.num_items)
    for split in data.split_names:
        users, items = data.split(split)
        n_users = int(np.count_nonzero(np.bincount(users, minlength=m.num_users)))
        n_items = int(np.count_nonzero(np.bincount(items, minlength=m.num_items)))
        lines.append(f"{split:<8}{users.size:>12,}{n_users:>10,}{n_items:>10,}"
                     f"{users.size / cells:>11.3e}")
    counts = data.item_counts("train")
    (k1, s1), (k10, s10) = _top_share(counts, 0.01), _top_share(counts, 0.10)
    lines.append(f"train popularity: top-1% items ({k1:,}) hold {s1:.1%} of interactions, "
                 f"top-10% ({k10:,}) hold {s10:.1%}; "
                 f"{int(np.count_nonzero(counts == 0)):,} items never in train")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.command == "prepare":
        m = prepare(args.format, args.train, args.test, args.out, valid=args.valid,
                    valid_fraction=args.valid_fraction, seed=args.seed, name=args.name,
                    overwrite=args.overwrite)
        print(_summary(m, args.out, time.perf_counter() - started))
    elif args.command == "synth":
        knobs = {k: getattr(args, k) for k in SynthParams.__dataclass_fields__
                 if k not in ("users", "items", "interactions", "seed")}
        m = synth(args.users, args.items, args.interactions, args.out, seed=args.seed,
                  overwrite=args.overwrite, name=args.name, progress=print, **knobs)
        print(_summary(m, args.out, time.perf_counter() - started))
    elif args.command == "inspect":
        print(inspect_text(args.dir))
    elif args.command == "verify":
        InteractionData(args.dir, verify=True)
        print(f"ok: {args.dir} matches its manifest ({time.perf_counter() - started:.2f}s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dsl-data``; returns the exit status (2 on a data or usage error)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse already printed usage; hand the status back
        return e.code if isinstance(e.code, int) else 2
    try:
        return _run(args)
    except (DataError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
