"""Human-facing summaries of a run: the curves plot and the closing results table."""

from __future__ import annotations

import json
from pathlib import Path


def plot_curves(run_dir: Path, metric: str) -> Path | None:
    """curves.png: training loss by step and validation ``metric`` by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
               if line.strip()]
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval" and r.get("split") == "valid"]
    if not evals:
        evals = [r for r in records if r.get("kind") == "eval"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot([r["step"] for r in train], [r["loss"] for r in train])
    a.set_xlabel("step")
    a.set_ylabel("loss")
    a.set_title("training loss")
    if evals:
        b.plot([r["epoch"] for r in evals], [r.get(metric, float("nan")) for r in evals], "o-")
        b.set_title(f"{evals[0]['split']} {metric}")
    b.set_xlabel("epoch")
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def results_table(results: dict, ks: list[int]) -> str:
    """Markdown table of the model vs the popularity baseline on test."""
    cols = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
    rows = [("model (" + results["loss"] + ")", results["test"]),
            ("popularity", results["baselines"]["popularity"]["test"])]
    lines = ["| test | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(f"{m.get(c, float('nan')):.4f}" for c in cols)
                     + " |")
    return "\n".join(lines)
