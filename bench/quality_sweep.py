"""Quality sweep: cells of config overrides × datasets × seeds, one `dsl-train` run directory per
point, resumable (a point with results.json is never rerun; an interrupted one resumes from its
checkpoint), selection by validation NDCG@20 only.

Cells come from --cell (named override lists) and/or a search space (--space YAML mapping
dotted keys to lists of values) expanded as a full --grid or a seeded --random N sample:

    python bench/quality_sweep.py --out runs/sweep --config configs/quickstart.yaml \\
        --data health=data/amazon2014-health --seeds 0 1 --nproc 1 --parallel 2 \\
        --set train.epochs=40 \\
        --cell "sl-0.1: loss.name=sl loss.temperature=0.1" \\
        --cell "sl-0.2: loss.name=sl loss.temperature=0.2" \\
        --space dsl-space.yaml --random 12

Writes <out>/sweep.csv (one row per point), <out>/table.md (per dataset: valid and test
Recall/NDCG@20 as mean ± std over seeds, and each cell's test gain over the SL cell that is
best on validation, the tuned SL), and <out>/sweep.png.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

METRICS = ("recall@20", "ndcg@20")
SELECT = "valid_ndcg@20"


def parse_cell(text: str) -> tuple[str, list[str]]:
    if ":" not in text:
        raise SystemExit(f"--cell {text!r}: expected 'NAME: key=value key=value ...'")
    name, rest = text.split(":", 1)
    return name.strip(), rest.split()


def space_cells(path: str, mode: str, n: int, seed: int) -> list[tuple[str, list[str]]]:
    """Cells from a YAML space {dotted.key: [values]}: the full product, or n seeded draws."""
    space = yaml.safe_load(Path(path).read_text())
    if not isinstance(space, dict) or not all(isinstance(v, list) for v in space.values()):
        raise SystemExit(f"{path}: expected a mapping of dotted config keys to lists of values")
    keys = list(space)
    combos = list(itertools.product(*(space[k] for k in keys)))
    if mode == "random":
        combos = random.Random(seed).sample(combos, min(n, len(combos)))
    cells = []
    for combo in combos:
        overrides = [f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                     for k, v in zip(keys, combo)]
        name = ",".join(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, combo))
        cells.append((name, overrides))
    return cells


def family(overrides: list[str], default: str) -> str:
    for o in overrides:
        if o.startswith("loss.name="):
            return o.split("=", 1)[1]
    return default


def point_cmd(args, path: str, overrides: list[str], seed: int, run_dir: Path) -> list[str]:
    return [str(Path(sys.executable).with_name("dsl-train")), "--nproc", str(args.nproc),
            "--config", args.config, f"data.path={path}", f"run.dir={run_dir}",
            f"train.seed={seed}", "train.progress=false", *args.set, *overrides]


def run_points(args, todo: list[tuple[Path, list[str]]]) -> None:
    """Run up to --parallel points side by side; a failed point is reported, not retried."""
    running: list[tuple[subprocess.Popen, Path, float]] = []
    queue = list(todo)
    # points side by side share the cores: one thread per core each, not every core each
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS",
                   str(max(1, (os.cpu_count() or 1) // (args.parallel * args.nproc))))
    while queue or running:
        while queue and len(running) < args.parallel:
            run_dir, cmd = queue.pop(0)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            log = open(run_dir.with_suffix(".log"), "w")
            print(f"[run] {run_dir}", flush=True)
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                            run_dir, time.perf_counter()))
        time.sleep(1.0)
        for proc, run_dir, t0 in list(running):
            if proc.poll() is None:
                continue
            running.remove((proc, run_dir, t0))
            status = "done" if proc.returncode == 0 else f"fail (exit {proc.returncode})"
            print(f"[{status}] {run_dir} in {time.perf_counter() - t0:.0f}s; log "
                  f"{run_dir.with_suffix('.log')}", flush=True)


def collect(points) -> list[dict]:
    rows = []
    for dataset, cell, fam, seed, run_dir, overrides in points:
        f = run_dir / "results.json"
        if not f.exists():
            continue
        r = json.loads(f.read_text())
        row = {"dataset": dataset, "cell": cell, "loss": fam, "seed": seed,
               "overrides": " ".join(overrides),
               "best_epoch": r["best_epoch"],
               "seconds_per_epoch": round(r["timing"]["seconds_per_epoch"], 2)}
        for split in ("valid", "test"):
            for m in METRICS:
                row[f"{split}_{m}"] = r.get(split, {}).get(m, float("nan"))
        rows.append(row)
    return rows


def _mean(xs):
    return statistics.mean(xs) if xs else float("nan")


def _fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def summarize(rows: list[dict], tune: str | None = None) -> tuple[str, dict]:
    cols = [f"{s}_{m}" for s in ("valid", "test") for m in METRICS]
    order = {c: i for i, c in enumerate(dict.fromkeys(r["cell"] for r in rows))}
    lines, tuned = [], {}
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        sel = [r for r in rows if r["dataset"] == ds]
        cells = sorted({r["cell"] for r in sel}, key=order.get)
        stats = {c: {k: [r[k] for r in sel if r["cell"] == c] for k in cols} for c in cells}
        fam = {c: next(r["loss"] for r in sel if r["cell"] == c) for c in cells}
        sl = [c for c in cells if fam[c] == "sl"]
        ref = max(sl, key=lambda c: _mean(stats[c][SELECT])) if sl else None
        tuned[ds] = ref
        best = {f: max((c for c in cells if fam[c] == f), key=lambda c: _mean(stats[c][SELECT]))
                for f in set(fam.values())}
        budget = ", ".join(f"{f}: {sum(1 for c in cells if fam[c] == f)}"
                           for f in sorted(set(fam.values())))
        lines += [f"### {ds}", "",
                  f"configurations per loss: {budget}; tuned SL = `{ref}` (best valid NDCG@20); "
                  "★ = best of its loss on valid NDCG@20", "",
                  "| cell | loss | seeds | " + " | ".join(c.replace("_", " ") for c in cols)
                  + " | Δ test R@20 | Δ test N@20 | s/epoch |",
                  "|---|---|---|" + "---|" * (len(cols) + 3)]
        for c in cells:
            st = stats[c]
            gains = []
            for m in ("test_recall@20", "test_ndcg@20"):
                if ref is None:
                    gains.append("")
                else:
                    base = _mean(stats[ref][m])
                    gains.append(f"{100 * (_mean(st[m]) / base - 1):+.1f}%" if base else "")
            spe = _mean([r["seconds_per_epoch"] for r in sel if r["cell"] == c])
            star = " ★" if best.get(fam[c]) == c else ""
            lines.append(f"| {c}{star} | {fam[c]} | {len(st[SELECT])} | "
                         + " | ".join(_fmt(st[k]) for k in cols)
                         + f" | {gains[0]} | {gains[1]} | {spe:.1f} |")
        lines.append("")
    lines += _across_datasets(rows, tuned)
    if tune:
        lines += _across_datasets(_tuned_groups(rows, tune), tuned, tune)
    return "\n".join(lines), tuned


def _tuned_groups(rows: list[dict], key: str) -> list[dict]:
    """Cells that differ only in the override ``key`` merged into one group per dataset: the
    group keeps, on each dataset, the cell best on mean valid NDCG@20 (``key`` tuned per
    dataset, as SL's temperature is). The group is named by its other overrides and the
    chosen cell is recorded."""
    def group_of(r: dict) -> str:
        last = dict(o.split("=", 1) for o in r.get("overrides", "").split())  # last one wins
        last.pop(key, None)
        return " ".join(f"{k}={v}" for k, v in last.items()) or "(defaults)"

    by: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for r in rows:
        by.setdefault((r["dataset"], group_of(r)), {}).setdefault(r["cell"], []).append(r)
    out = []
    for (ds, group), cells in by.items():
        best = max(cells, key=lambda c: _mean([r[SELECT] for r in cells[c]]))
        out += [{**r, "cell": group, "chosen": best} for r in cells[best]]
    return out


def _across_datasets(rows: list[dict], tuned: dict, tune: str | None = None) -> list[str]:
    """Cells run on every dataset, ranked by their mean relative valid NDCG@20 gain over each
    dataset's tuned SL: the selection of one configuration for all datasets. With ``tune``,
    ``rows`` are groups from _tuned_groups and each entry names the cell chosen per dataset."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    if len(datasets) < 2 or not all(tuned.get(d) for d in datasets):
        return []
    means = {}
    for r in rows:
        means.setdefault((r["dataset"], r["cell"]), []).append(r)
    ref = dict(tuned)
    if tune:  # the tuned SL's group holds the tuned SL cell itself
        for (d, c), rs in means.items():
            if rs[0]["chosen"] == tuned[d]:
                ref[d] = c
    cells = [c for c in dict.fromkeys(r["cell"] for r in rows)
             if all((d, c) in means for d in datasets)]

    def gain(d: str, c: str, key: str) -> float:
        base = _mean([r[key] for r in means[(d, ref[d])]])
        return 100 * (_mean([r[key] for r in means[(d, c)]]) / base - 1)

    table = []
    for c in cells:
        v = [gain(d, c, SELECT) for d in datasets]
        t = [gain(d, c, "test_ndcg@20") for d in datasets]
        tr = [gain(d, c, "test_recall@20") for d in datasets]
        table.append((_mean(v), c, v, t, tr))
    table.sort(key=lambda x: -x[0])
    title = "### across datasets" + (f", `{tune}` tuned per dataset" if tune else "")
    what = (f"Configurations (cells equal but for `{tune}`, which is chosen per dataset on "
            "valid NDCG@20 like SL's temperature)" if tune else "Cells run on every dataset")
    out = [title, "",
           f"{what}, by mean relative valid NDCG@20 gain over each dataset's tuned SL (the "
           "selection); test gains per dataset as N@20 / R@20.", "",
           "| cell | mean Δ valid N@20 | " + " | ".join(f"{d} Δ valid N" for d in datasets)
           + " | " + " | ".join(f"{d} Δ test N / R" for d in datasets) + " |",
           "|---|---|" + "---|" * (2 * len(datasets))]
    for m, c, v, t, tr in table:
        name = c
        if tune:
            name += " (" + ", ".join(f"{d}: {means[(d, c)][0]['chosen']}" for d in datasets) + ")"
        out.append(f"| {name} | {m:+.1f}% | " + " | ".join(f"{x:+.1f}%" for x in v) + " | "
                   + " | ".join(f"{a:+.1f}% / {b:+.1f}%" for a, b in zip(t, tr)) + " |")
    out.append("")
    return out


def plot(rows: list[dict], tuned: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        sel = [r for r in rows if r["dataset"] == ds]
        cells = list(dict.fromkeys(r["cell"] for r in sel))
        v = [_mean([r[SELECT] for r in sel if r["cell"] == c]) for c in cells]
        t = [_mean([r["test_ndcg@20"] for r in sel if r["cell"] == c]) for c in cells]
        colors = ["tab:blue" if next(r["loss"] for r in sel if r["cell"] == c) == "sl"
                  else "tab:orange" for c in cells]
        ax.scatter(v, t, c=colors)
        if tuned.get(ds):
            i = cells.index(tuned[ds])
            ax.axhline(t[i], color="tab:blue", lw=0.8, ls="--", label="tuned SL (test)")
            ax.axvline(v[i], color="tab:blue", lw=0.8, ls=":", label="tuned SL (valid)")
            ax.legend(fontsize=8)
        ax.set_xlabel("valid NDCG@20 (selection)")
        ax.set_ylabel("test NDCG@20")
        ax.set_title(f"{ds}: SL blue, others orange")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--data", action="append", required=True, metavar="NAME=DIR")
    p.add_argument("--cell", action="append", default=[], metavar="'NAME: k=v ...'")
    p.add_argument("--space", help="YAML {dotted.key: [values]} to expand into cells")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--grid", action="store_true", help="every combination of --space")
    mode.add_argument("--random", type=int, metavar="N", help="N seeded draws from --space")
    p.add_argument("--search-seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="k=v",
                   help="overrides applied to every cell")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--nproc", type=int, default=1, help="processes per point")
    p.add_argument("--parallel", type=int, default=1, help="points run side by side")
    p.add_argument("--report-only", action="store_true", help="collect and report, run nothing")
    p.add_argument("--tune", metavar="KEY",
                   help="also rank configurations with this override (e.g. loss.temperature) "
                        "chosen per dataset on validation")
    args = p.parse_args()
    cells = [parse_cell(c) for c in args.cell]
    if args.space:
        cells += space_cells(args.space, "random" if args.random else "grid", args.random or 0,
                             args.search_seed)
    if not cells:
        raise SystemExit("no cells: give --cell and/or --space")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dsl_torchrec.config import load_config

    default_loss = load_config(args.config, args.set).loss.name
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    points, todo = [], []
    for name, path in (d.split("=", 1) for d in args.data):
        for cell, overrides in cells:
            load_config(args.config, [*args.set, *overrides])  # fail before running anything
            for seed in args.seeds:
                run_dir = out / name / cell / f"seed{seed}"
                points.append((name, cell, family(overrides, default_loss), seed, run_dir,
                               overrides))
                if not (run_dir / "results.json").exists():
                    todo.append((run_dir, point_cmd(args, path, overrides, seed, run_dir)))
    print(f"{len(points)} points, {len(points) - len(todo)} already finished", flush=True)
    if not args.report_only:
        run_points(args, todo)
    rows = collect(points)
    if not rows:
        print("no finished points yet")
        return 1
    with open(out / "sweep.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    md, tuned = summarize(rows, args.tune)
    (out / "table.md").write_text(md + "\n")
    plot(rows, tuned, out / "sweep.png")
    print(md)
    print(f"wrote {out / 'sweep.csv'}, {out / 'table.md'}, {out / 'sweep.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
