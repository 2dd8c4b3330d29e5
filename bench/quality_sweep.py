"""Quality sweep: named cells of config overrides × datasets × seeds, one `dsl-train` run
directory per point, resumable (a point with results.json is never rerun).

    python bench/quality_sweep.py --out runs/sweep --config configs/quickstart.yaml \
        --data health=data/amazon2014-health --seeds 0 --nproc 2 \
        --set train.epochs=30 \
        --cell "sl-0.1: loss.name=sl loss.temperature=0.1" \
        --cell "dsl-0.1: loss.name=dsl loss.temperature=0.1"

Writes <out>/sweep.csv (one row per point) and <out>/table.md (valid and test Recall/NDCG@20,
mean ± std over seeds, per dataset). Selection is by validation NDCG@20 only.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

METRICS = ("recall@20", "ndcg@20")


def parse_cell(text: str) -> tuple[str, list[str]]:
    if ":" not in text:
        raise SystemExit(f"--cell {text!r}: expected 'NAME: key=value key=value ...'")
    name, rest = text.split(":", 1)
    return name.strip(), rest.split()


def run_point(args, dataset: str, path: str, cell: str, overrides: list[str], seed: int) -> Path:
    run_dir = Path(args.out) / dataset / cell / f"seed{seed}"
    if (run_dir / "results.json").exists():
        print(f"[skip] {run_dir} (finished)", flush=True)
        return run_dir
    cmd = [
        str(Path(sys.executable).with_name("dsl-train")), "--nproc", str(args.nproc),
        "--config", args.config, f"data.path={path}", f"run.dir={run_dir}",
        "run.overwrite=true", f"train.seed={seed}", "train.progress=false",
        *args.set, *overrides]
    print(f"[run] {dataset} {cell} seed {seed}: {' '.join(cmd[1:])}", flush=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(run_dir.parent / f"seed{seed}.log", "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if rc != 0:
        print(f"[fail] {run_dir} exited {rc}; see {run_dir.parent / f'seed{seed}.log'}")
    else:
        print(f"[done] {run_dir} in {time.perf_counter() - t0:.0f}s", flush=True)
    return run_dir


def collect(out: Path, points) -> list[dict]:
    rows = []
    for dataset, cell, seed, run_dir in points:
        f = run_dir / "results.json"
        if not f.exists():
            continue
        r = json.loads(f.read_text())
        row = {"dataset": dataset, "cell": cell, "seed": seed, "best_epoch": r["best_epoch"],
               "seconds_per_epoch": round(r["timing"]["seconds_per_epoch"], 2)}
        for split in ("valid", "test"):
            for m in METRICS:
                row[f"{split}_{m}"] = r.get(split, {}).get(m, float("nan"))
        rows.append(row)
    if rows:
        with open(out / "sweep.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return rows


def _fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def table(rows: list[dict]) -> str:
    cols = [f"{s}_{m}" for s in ("valid", "test") for m in METRICS]
    lines = ["| dataset | cell | seeds | " + " | ".join(c.replace("_", " ") for c in cols)
             + " | s/epoch |", "|---|---|---|" + "---|" * (len(cols) + 1)]
    keys = sorted({(r["dataset"], r["cell"]) for r in rows}, key=lambda k: k[0])
    order = {c: i for i, c in enumerate(dict.fromkeys(r["cell"] for r in rows))}
    for ds, cell in sorted(keys, key=lambda k: (k[0], order[k[1]])):
        sel = [r for r in rows if r["dataset"] == ds and r["cell"] == cell]
        vals = [_fmt([r[c] for r in sel]) for c in cols]
        spe = statistics.mean(r["seconds_per_epoch"] for r in sel)
        lines.append(f"| {ds} | {cell} | {len(sel)} | " + " | ".join(vals) + f" | {spe:.1f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--data", action="append", required=True, metavar="NAME=DIR")
    p.add_argument("--cell", action="append", required=True, metavar="'NAME: k=v ...'")
    p.add_argument("--set", action="append", default=[], metavar="k=v",
                   help="overrides applied to every cell")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--nproc", type=int, default=2)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = [d.split("=", 1) for d in args.data]
    cells = [parse_cell(c) for c in args.cell]
    points = []
    for name, path in datasets:
        for cell, overrides in cells:
            for seed in args.seeds:
                points.append((name, cell, seed, run_point(args, name, path, cell, overrides,
                                                           seed)))
    rows = collect(out, points)
    md = table(rows)
    (out / "table.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
