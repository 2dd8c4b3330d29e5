"""``dsl-data``: prepare, split, synth, inspect and verify dataset directories.

Examples::

    dsl-data prepare --format movielens --input ml-100k/u.data --min-rating 4 --out data/ml100k
    dsl-data split --in data/ml100k --protocol temporal --test-fraction 0.2 --out data/ml100k-t
    dsl-data prepare --format log --input clicks.parquet --user-col visitor --item-col sku \\
        --time-col ts --kcore 5 --out data/clicks
    dsl-data prepare --format irb --train train.tsv --test test.tsv --out data/beauty
    dsl-data synth --users 1000000 --items 10000000 --interactions 100000000 --out data/big
    dsl-data inspect data/ml100k-t --plot
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from .dataset import InteractionData
from .errors import DataError
from .formats import READERS
from .logs import LOG_FORMATS, describe_drops, prepare_log
from .manifest import Manifest
from .prepare import prepare
from .split import PROTOCOLS, split_dataset
from .summary import inspect_text, plot_popularity
from .synth import SynthParams, synth

PROG = "dsl-data"


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description="Make and check canonical dataset "
                                 "directories (manifest.json + one parquet file per split).")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "prepare", help="convert benchmark splits (lightgcn, irb) or raw logs (movielens, log)",
        description="lightgcn / irb: already split benchmark files (--train, --test [--valid]). "
        "movielens / log: one raw log (--input), filtered, de-duplicated and dictionary-encoded "
        "into dense ids with vocabularies users.parquet / items.parquet; the result is one "
        "split 'all' for `dsl-data split`.")
    p.add_argument("--format", required=True, choices=sorted(READERS) + list(LOG_FORMATS))
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--name", help="dataset name (default: the --out directory's name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset dir")
    g = p.add_argument_group("lightgcn / irb")
    g.add_argument("--train", metavar="FILE")
    g.add_argument("--test", metavar="FILE")
    g.add_argument("--valid", metavar="FILE", help="valid file; else carve it from train")
    g.add_argument("--valid-fraction", type=float, default=0.1,
                   help="per-user share of train carved into valid when --valid is absent "
                   "(0 = no valid split; default 0.1)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--allow-unseen-users", action="store_true",
                   help="accept test/valid users that have no train interaction")
    g = p.add_argument_group("movielens / log")
    g.add_argument("--input", "--in", dest="input", metavar="FILE",
                   help="u.data / ratings.dat (movielens); .csv / .tsv / .parquet (log)")
    g.add_argument("--user-col", help="user column (default: user_id, user, userId, ...)")
    g.add_argument("--item-col", help="item column (default: item_id, item, movieId, ...)")
    g.add_argument("--time-col", help="timestamp column (default: timestamp, time, ts, ...)")
    g.add_argument("--rating-col", help="rating column (default: rating, score, ...)")
    g.add_argument("--delimiter", help="field separator of a text log (default: ',' for "
                   ".csv, tab otherwise)")
    g.add_argument("--no-header", action="store_true", help="the text log has no header line")
    g.add_argument("--columns", help="comma-separated column names for --no-header")
    g.add_argument("--min-rating", type=float, help="drop rows with rating below this")
    g.add_argument("--kcore", type=int, default=0, metavar="N",
                   help="iterated N-core: drop users and items with < N interactions until "
                   "none is left (default 0 = off)")
    g.add_argument("--dedup", choices=["earliest", "latest"], default="earliest",
                   help="which of duplicate (user, item) rows to keep, by timestamp "
                   "(default earliest; the first in file order without timestamps)")

    s = sub.add_parser(
        "split", help="split a dataset into train / valid / test",
        description="Splits the union of all splits of --in. random: per user, "
        "round(F*n_u) test rows at random. temporal: each user's last rows by timestamp, "
        "--leave-last N of them (e.g. 1 = leave-one-out), or else max(1, round(F*n_u)). "
        "ood-popularity: item-uniform test draws (PSL popularity shift). Every user keeps >= 1 "
        "train row (ood-popularity: every item too). Valid is carved from train with the same "
        "protocol, V being the share of train (temporal with --leave-last: the N rows before "
        "the test ones).")
    s.add_argument("--in", dest="input", required=True, metavar="DIR")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--protocol", required=True, choices=PROTOCOLS)
    s.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                   help="share of interactions in test (default 0.2)")
    s.add_argument("--valid-fraction", type=float, default=0.1, metavar="V",
                   help="share of train moved to valid (default 0.1; 0 = no valid)")
    s.add_argument("--leave-last", type=int, metavar="N",
                   help="temporal: leave each user's last N interactions for test "
                   "(overrides --test-fraction)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--name")
    s.add_argument("--overwrite", action="store_true")

    defaults = SynthParams(users=1, items=1, interactions=1)
    y = sub.add_parser("synth", help="generate a synthetic power-law catalogue")
    y.add_argument("--users", type=int, required=True)
    y.add_argument("--items", type=int, required=True)
    y.add_argument("--interactions", type=int, required=True,
                   help="target number of distinct (user, item) pairs")
    y.add_argument("--out", required=True, metavar="DIR")
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--name")
    y.add_argument("--overwrite", action="store_true")
    y.add_argument("--timestamps", action="store_true",
                   help="add a timestamp column (test rows are each user's latest)")
    y.add_argument("--row-group-size", type=int, default=0,
                   help="rows per parquet row group (default 2^20)")
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
        ("time_start", int, "first timestamp (unix seconds)"),
        ("time_span", int, "timestamps span this many seconds"),
    ):
        y.add_argument("--" + knob.replace("_", "-"), type=typ, default=getattr(defaults, knob),
                       help=f"{what} (default {getattr(defaults, knob)})")

    i = sub.add_parser("inspect", help="print splits, sizes, density, popularity skew, overlaps")
    i.add_argument("dir", metavar="DIR")
    i.add_argument("--plot", action="store_true", help="also save a popularity histogram PNG")
    i.add_argument("--plot-path", metavar="PNG",
                   help="where to save it (default: ./<dataset name>-popularity.png)")
    v = sub.add_parser("verify", help="check files, row counts, sha256 and that every test user "
                       "has train interactions")
    v.add_argument("dir", metavar="DIR")
    return ap


def _summary(manifest: Manifest, out: str, seconds: float) -> str:
    rows = " / ".join(f"{k} {v['rows']:,}" for k, v in manifest.splits.items())
    return (f"wrote {out}: {rows} rows; {manifest.num_users:,} users x "
            f"{manifest.num_items:,} items ({seconds:.2f}s)")


def _prepare(args: argparse.Namespace) -> Manifest:
    if args.format in LOG_FORMATS:
        if not args.input:
            raise _UsageError(f"--input FILE is required with --format {args.format}")
        for flag in ("train", "test", "valid"):
            if getattr(args, flag):
                raise _UsageError(f"--{flag} is for --format lightgcn/irb; use --input with "
                                  f"--format {args.format} and `dsl-data split` afterwards")
        if args.format == "movielens" and any(getattr(args, a) for a in (
                "user_col", "item_col", "time_col", "rating_col", "columns", "delimiter")):
            raise _UsageError("column options are for --format log (movielens files have fixed "
                              "columns user, item, rating, timestamp)")
        columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
        if args.no_header != bool(columns):
            raise _UsageError("--no-header and --columns NAME,NAME,... go together (a log "
                              "with a header names its own columns)")
        delimiter = args.delimiter.replace("\\t", "\t") if args.delimiter else None
        return prepare_log(
            args.format, args.input, args.out, user_col=args.user_col, item_col=args.item_col,
            time_col=args.time_col, rating_col=args.rating_col, delimiter=delimiter,
            header=not args.no_header, columns=columns, min_rating=args.min_rating,
            kcore=args.kcore, dedup=args.dedup, name=args.name, overwrite=args.overwrite)
    if not (args.train and args.test):
        raise _UsageError(f"--train FILE and --test FILE are required with --format "
                          f"{args.format}")
    if args.input or args.min_rating is not None or args.kcore:
        raise _UsageError("--input / --min-rating / --kcore are for --format movielens/log")
    return prepare(args.format, args.train, args.test, args.out, valid=args.valid,
                   valid_fraction=args.valid_fraction, seed=args.seed, name=args.name,
                   overwrite=args.overwrite, allow_unseen_users=args.allow_unseen_users)


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.command == "prepare":
        m = _prepare(args)
        print(_summary(m, args.out, time.perf_counter() - started))
        if "rows_read" in m.created_by:
            print(f"prepare: {describe_drops(m.created_by)}")
            print(f"vocabularies: {args.out}/users.parquet ({m.num_users:,} ids), "
                  f"{args.out}/items.parquet ({m.num_items:,} ids); next: dsl-data split "
                  f"--in {args.out} --protocol random|temporal|ood-popularity --out DIR")
        elif m.created_by.get("dropped", {}).get("duplicate_pairs"):
            print(f"prepare: dropped duplicate (user, item) pairs per file: "
                  f"{m.created_by['duplicates_dropped']}")
    elif args.command == "split":
        m = split_dataset(args.input, args.out, args.protocol, test_fraction=args.test_fraction,
                          valid_fraction=args.valid_fraction, seed=args.seed,
                          leave_last=args.leave_last, name=args.name, overwrite=args.overwrite)
        print(_summary(m, args.out, time.perf_counter() - started))
        for split, c in m.created_by["counts"].items():
            extra = "" if split == "train" else (
                f", {c['users_unseen_in_train']:,} users / {c['items_unseen_in_train']:,} "
                "items unseen in train")
            print(f"  {split}: {c['rows']:,} rows, {c['users']:,} users, {c['items']:,} items, "
                  f"gini of item counts {c['gini_item_counts']:.3f}{extra}")
    elif args.command == "synth":
        knobs = {k: getattr(args, k) for k in SynthParams.__dataclass_fields__
                 if k not in ("users", "items", "interactions", "seed")}
        m = synth(args.users, args.items, args.interactions, args.out, seed=args.seed,
                  overwrite=args.overwrite, name=args.name, progress=print,
                  row_group_size=args.row_group_size, **knobs)
        print(_summary(m, args.out, time.perf_counter() - started))
    elif args.command == "inspect":
        print(inspect_text(args.dir))
        if args.plot:
            name = InteractionData(args.dir, require_train=False).manifest.name
            path = plot_popularity(args.dir, args.plot_path or f"{name}-popularity.png")
            print(f"saved popularity histogram to {path.absolute()}")
    elif args.command == "verify":
        InteractionData(args.dir, verify=True)
        print(f"ok: {args.dir} matches its manifest ({time.perf_counter() - started:.2f}s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dsl-data``; returns the exit status (2 on a data or usage error)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed usage; hand the status back
        return e.code if isinstance(e.code, int) else 2
    try:
        return _run(args)
    except _UsageError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (DataError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
