"""bench/quality_sweep.py: resumability (a finished point is never rerun) and the report
(tuned SL = best SL cell on valid NDCG@20, gains of the test metrics over it, mean ± std)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sweep(monkeypatch):
    spec = importlib.util.spec_from_file_location("quality_sweep", ROOT / "bench/quality_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod.time, "sleep", lambda s: None)
    return mod


def _fake_result(run_dir: Path, valid_ndcg: float, test_ndcg: float, test_recall: float):
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps({
        "best_epoch": 3, "timing": {"seconds_per_epoch": 1.0},
        "valid": {"ndcg@20": valid_ndcg, "recall@20": 2 * valid_ndcg},
        "test": {"ndcg@20": test_ndcg, "recall@20": test_recall},
    }))


CELLS = ["--cell", "sl-0.1: loss.name=sl loss.temperature=0.1",
         "--cell", "sl-0.2: loss.name=sl loss.temperature=0.2",
         "--cell", "dsl-a: loss.name=dsl loss.gamma=0.5"]

RESULTS = {  # cell -> seed -> (valid N, test N, test R)
    "sl-0.1": {0: (0.10, 0.20, 0.40), 1: (0.10, 0.20, 0.40)},
    "sl-0.2": {0: (0.12, 0.10, 0.30), 1: (0.14, 0.10, 0.30)},  # best valid, worse test
    "dsl-a": {0: (0.11, 0.11, 0.33), 1: (0.11, 0.13, 0.33)},
}


def _argv(out: Path, *extra: str) -> list[str]:
    return ["quality_sweep.py", "--out", str(out),
            "--config", str(ROOT / "configs/quickstart.yaml"), "--data", "toy=/nonexistent",
            "--seeds", "0", "1", *CELLS, *extra]


def test_report_picks_tuned_sl_on_valid_and_states_gains(sweep, tmp_path, monkeypatch):
    for cell, seeds in RESULTS.items():
        for seed, r in seeds.items():
            _fake_result(tmp_path / "toy" / cell / f"seed{seed}", *r)
    monkeypatch.setattr(sys, "argv", _argv(tmp_path, "--report-only"))
    assert sweep.main() == 0
    table = (tmp_path / "table.md").read_text()
    assert "tuned SL = `sl-0.2`" in table  # selection on valid, although sl-0.1 tests better
    assert "configurations per loss: dsl: 1, sl: 2" in table
    dsl_row = next(line for line in table.splitlines() if line.startswith("| dsl-a"))
    assert "+20.0%" in dsl_row and "+10.0%" in dsl_row  # test N 0.12 vs 0.10; R 0.33 vs 0.30
    assert "0.1200 ± 0.0141" in dsl_row  # test N over the 2 seeds (0.11, 0.13)
    assert "### across datasets" not in table  # one dataset: nothing to average
    rows = (tmp_path / "sweep.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 and (tmp_path / "sweep.png").stat().st_size > 0


def test_finished_points_are_never_rerun(sweep, tmp_path, monkeypatch):
    for cell, seeds in RESULTS.items():
        for seed, r in seeds.items():
            if (cell, seed) != ("dsl-a", 1):
                _fake_result(tmp_path / "toy" / cell / f"seed{seed}", *r)
    launched = []

    class FakePopen:
        def __init__(self, cmd, **kw):
            run_dir = Path(next(a for a in cmd if a.startswith("run.dir=")).split("=", 1)[1])
            launched.append((run_dir, cmd, kw["env"]))
            _fake_result(run_dir, *RESULTS["dsl-a"][1])
            self.returncode = 0

        def poll(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(sys, "argv", _argv(tmp_path, "--parallel", "2"))
    assert sweep.main() == 0
    assert [r for r, _, _ in launched] == [tmp_path / "toy" / "dsl-a" / "seed1"]
    cmd, env = launched[0][1], launched[0][2]
    assert "train.seed=1" in cmd and "loss.gamma=0.5" in cmd and "data.path=/nonexistent" in cmd
    assert env["OMP_NUM_THREADS"] == "4"  # 8 cores shared by 2 points of 1 process each
    launched.clear()
    assert sweep.main() == 0  # everything finished now: nothing runs
    assert launched == []


def test_space_grid_and_random_draws(sweep, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("loss.name: [dsl]\nloss.gamma: [0.0, 0.5]\nloss.kappa_hard: [-0.25, 0.0]\n")
    grid = sweep.space_cells(str(space), "grid", 0, 0)
    assert len(grid) == 4 and all(o[0] == "loss.name=dsl" for _, o in grid)
    draws = sweep.space_cells(str(space), "random", 3, 7)
    assert len(draws) == 3 and draws == sweep.space_cells(str(space), "random", 3, 7)
    assert {n for n, _ in draws} <= {n for n, _ in grid}


def test_across_datasets_ranks_cells_by_mean_valid_gain(sweep):
    def row(ds, cell, loss, v, t):
        return {"dataset": ds, "cell": cell, "loss": loss, "seed": 0, "best_epoch": 1,
                "seconds_per_epoch": 1.0, "valid_recall@20": v, "valid_ndcg@20": v,
                "test_recall@20": t, "test_ndcg@20": t}

    rows = [row("a", "sl", "sl", 0.10, 0.10), row("b", "sl", "sl", 0.20, 0.20),
            row("a", "x", "dsl", 0.11, 0.09), row("b", "x", "dsl", 0.19, 0.22),  # +10%, -5%
            row("a", "y", "dsl", 0.104, 0.10), row("b", "y", "dsl", 0.204, 0.20),  # +4%, +2%
            row("a", "only-a", "dsl", 0.5, 0.5)]
    md, tuned = sweep.summarize(rows)
    assert tuned == {"a": "sl", "b": "sl"}
    across = md.split("### across datasets")[1]
    lines = [ln for ln in across.splitlines() if ln.startswith("| ") and "cell" not in ln]
    assert [ln.split(" | ")[0][2:] for ln in lines] == ["y", "x", "sl"]  # only-a left out
    assert lines[0].split(" | ")[1] == "+3.0%" and lines[1].split(" | ")[1] == "+2.5%"
    assert "-10.0% / -10.0%" in lines[1] and "+10.0% / +10.0%" in lines[1]


def test_tune_key_chosen_per_dataset_like_sl_temperature(sweep):
    def row(ds, t, loss, v):
        cell = f"{loss}-{t}"
        return {"dataset": ds, "cell": cell, "loss": loss, "seed": 0, "best_epoch": 1,
                "seconds_per_epoch": 1.0, "valid_recall@20": v, "valid_ndcg@20": v,
                "test_recall@20": v, "test_ndcg@20": v,
                "overrides": f"loss.name={loss} loss.temperature={t}"}

    rows = [row("a", 0.1, "sl", 0.10), row("a", 0.2, "sl", 0.08),   # a: SL best at 0.1
            row("b", 0.1, "sl", 0.15), row("b", 0.2, "sl", 0.20),   # b: SL best at 0.2
            row("a", 0.2, "dsl", 0.105), row("a", 0.3, "dsl", 0.09),  # a: DSL 0.2, +5%
            row("b", 0.2, "dsl", 0.19), row("b", 0.3, "dsl", 0.22)]  # b: DSL 0.3, +10%
    md, tuned = sweep.summarize(rows, "loss.temperature")
    assert tuned == {"a": "sl-0.1", "b": "sl-0.2"}
    part = md.split("`loss.temperature` tuned per dataset")[1]
    line = next(ln for ln in part.splitlines() if ln.startswith("| loss.name=dsl"))
    assert "(a: dsl-0.2, b: dsl-0.3)" in line and line.split(" | ")[1] == "+7.5%"
    sl_line = next(ln for ln in part.splitlines() if ln.startswith("| loss.name=sl"))
    assert sl_line.split(" | ")[1] == "+0.0%"
    # a key given twice counts once, with its last value
    rows = [{**r, "overrides": r["overrides"] + " loss.gamma=0.0 loss.gamma=0.5"} for r in rows]
    md, _ = sweep.summarize(rows, "loss.temperature")
    assert "| loss.name=dsl loss.gamma=0.5 (a: dsl-0.2, b: dsl-0.3)" in md
