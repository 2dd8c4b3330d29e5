"""Checkpoint, resume and preemption, end to end through torchrun on gloo (issue 6, tests a-d).

Small synthetic data; each run is a real `dsl-train` under `torchrun`, compared through
results.json and `dsl-export`ed embedding tables.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

COMMON = ["train.batch_size=32", "train.epochs=2", "negatives.num_sampled=64",
          "train.checkpoint_every=15", "train.progress=false", "train.eval_every=2",
          "train.log_every=10"]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from dsl_torchrec.data.synth import synth

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    synth(users=300, items=200, interactions=5000, out=out, seed=1)
    return out


def torchrun(nproc, run_dir, data_dir, *extra, env=None, max_restarts=0, timeout=240):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", f"--max-restarts={max_restarts}",
           "-m", "dsl_torchrec.train", "--config", "configs/quickstart.yaml",
           f"data.path={data_dir}", f"run.dir={run_dir}", *COMMON, *extra]
    return subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def export(run_dir, out, nproc=1):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", str(BIN / "dsl-export"), "--run-dir", str(run_dir),
           "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    return {n: np.stack(pq.read_table(out / n).column("embedding").to_numpy(zero_copy_only=False))
            for n in ("users", "items")}


def results(run_dir):
    return json.loads((Path(run_dir) / "results.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    run = tmp_path_factory.mktemp("ref") / "run"
    r = torchrun(2, run, data_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    return run


def test_sigkill_of_one_rank_under_torchrun_restart_gives_identical_run(
        tmp_path, data_dir, uninterrupted):
    run = tmp_path / "killed"
    # rank 1 dies (SIGKILL) before step 40 of the first attempt: mid epoch 2, after the
    # checkpoint of step 30; torchrun restarts both ranks, which resume from it
    r = torchrun(2, run, data_dir, env={"DSL_TORCHREC_FAULT": "kill:1:40"}, max_restarts=1)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stdout + r.stderr
    a, b = results(uninterrupted), results(run)
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    ea, eb = export(uninterrupted, tmp_path / "ea"), export(run, tmp_path / "eb")
    for name in ("users", "items"):
        np.testing.assert_array_equal(ea[name], eb[name])


def test_sigterm_checkpoints_all_ranks_and_rerun_completes(tmp_path, data_dir, uninterrupted):
    run = tmp_path / "term"
    r = torchrun(2, run, data_dir, env={"DSL_TORCHREC_FAULT": "term:0:20"})
    assert r.returncode != 0
    assert "preempted by SIGTERM: checkpoint written at step 21" in r.stderr
    assert "Traceback" not in r.stderr.split("preempted by")[0][-2000:]
    latest = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    assert sorted(p.name for p in latest.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert sorted(p.name for p in latest.glob("rng_rank*.pt")) == ["rng_rank0.pt", "rng_rank1.pt"]
    assert not (run / "results.json").exists()
    # a mid-epoch position counts batches of 2 ranks × 32: resuming on 1 rank is refused clearly
    r = torchrun(1, run, data_dir)
    assert r.returncode != 0
    assert "written mid-epoch" in r.stderr and "same world size × train.batch_size" in r.stderr
    r = torchrun(2, run, data_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    assert results(run)["test"] == results(uninterrupted)["test"]


def test_two_rank_row_wise_checkpoint_evaluates_identically_on_one_rank(uninterrupted):
    r = subprocess.run([str(BIN / "dsl-eval"), "--run-dir", str(uninterrupted)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout)
    assert got["world_size"] == 1
    want = results(uninterrupted)["test"]
    for k in ("recall@20", "ndcg@20", "hitrate@20"):
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
    # and under another sharding plan on 2 ranks (table_wise): resharded on load
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node=2", str(BIN / "dsl-eval"), "--run-dir",
                        str(uninterrupted), "sharding.type=table_wise"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout)
    assert got["world_size"] == 2 and got["ndcg@20"] == pytest.approx(want["ndcg@20"], abs=1e-12)


def test_torn_checkpoint_is_ignored(tmp_path):
    from dsl_torchrec.train.checkpoint import CheckpointManager

    root = tmp_path / "checkpoints"
    good = root / "step_00000010"
    good.mkdir(parents=True)
    (good / "meta.json").write_text("{}")
    (root / "latest").write_text("step_00000010\n")
    # a save interrupted before its rename, and one renamed but missing its meta
    (root / "step_00000020.tmp").mkdir()
    (root / "step_00000020.tmp" / "__0_0.distcp").write_bytes(b"partial")
    (root / "step_00000030").mkdir()
    (root / "step_00000030" / "__0_0.distcp").write_bytes(b"partial")
    m = CheckpointManager(tmp_path, keep=2)
    assert m.latest() == good
    (root / "latest").write_text("step_00000030\n")  # pointer to a torn one
    assert m.latest() == good
    (root / "latest").unlink()
    assert m.latest() == good


def test_submitit_local_launcher_runs_two_tasks_to_completion(tmp_path, data_dir):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "launch.slurm", "--cluster", "local", "--tasks-per-node", "2",
           "--cpus-per-task", "1", "--logs", str(tmp_path / "submitit"),
           "--config", "configs/quickstart.yaml", f"data.path={data_dir}", f"run.dir={run}",
           *COMMON]
    r = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "exit codes [0, 0]" in r.stdout
    res = results(run)
    assert res["world_size"] == 2 and res["test"]["recall@20"] > 0
