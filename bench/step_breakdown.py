"""Where the time of one training step goes, per candidate mix, on W gloo processes.

    python bench/step_breakdown.py                 # B = 1024 per rank, 2 ranks, 5 mixes
    python bench/step_breakdown.py --steps 20 --world 2 --batch 1024 --threads 1

A synthetic dataset (dsl_torchrec.data.synth) is written to a temporary directory; for every mix
each rank builds the sharded model (row_wise by default), runs ``--warmup`` steps (enough for the
cross-batch memory to fill) and times ``--steps`` steps of the real ``TrainStep`` phase by phase:

    lookup      user + item (positives and sampled ids) lookups through the sharded EBCs
    all-gather  the positives' vectors (autograd) and ids (+ user ids) all-gathers
    candidates  sampling ids, memory read/write, mask, logQ (incl. the streaming estimator)
    loss        scores (B × C matmul), loss forward
    backward    autograd backward, which also runs the all-gather's reduce-scatter, TorchRec's
                backward all-to-all AND the fused sparse optimizer update of the table rows
    optimizer   the dense / data-parallel optimizer step (none for MF on sharded tables: the
                sparse update is fused into backward, see above)

Per-phase times are means over steps and ranks; the step time is the slowest rank's mean;
examples/s = W·B / step time. A figure, never an assertion.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHASES = ["lookup", "all_gather", "candidates", "loss", "backward", "optimizer"]
MIXES = [
    ("in-batch + uniform R=2048", ["negatives.num_sampled=2048"]),
    ("+ memory Q=8192", ["negatives.num_sampled=2048", "negatives.memory_size=8192"]),
    ("+ popularity R=4096", ["negatives.num_sampled=4096", "negatives.memory_size=8192",
                             "negatives.sampling=popularity"]),
    ("+ same-user mask, streaming logQ",
     ["negatives.num_sampled=4096", "negatives.memory_size=8192",
      "negatives.sampling=popularity", "negatives.mask_same_user=true",
      "negatives.frequency=streaming"]),
    ("+ memory_vectors=fresh (re-lookup)",
     ["negatives.num_sampled=4096", "negatives.memory_size=8192",
      "negatives.sampling=popularity", "negatives.mask_same_user=true",
      "negatives.frequency=streaming", "negatives.memory_vectors=fresh"]),
]


class PhaseTimer:
    def __init__(self, sync) -> None:
        self.sync, self.total = sync, defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.total[name] += time.perf_counter() - t0


def _worker(rank: int, world: int, store: str, args, data_dir: str, out: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        from dsl_torchrec.config import load_config
        from dsl_torchrec.data.dataset import InteractionData
        from dsl_torchrec.data.loader import EpochBatches
        from dsl_torchrec.model.build import build_sharded_model
        from dsl_torchrec.train.step import build_train_step

        data = InteractionData(data_dir)
        users, items = data.split("train")
        device = torch.device("cpu")
        rows = []
        for name, overrides in MIXES:
            if args.mixes and name not in [MIXES[i][0] for i in args.mixes]:
                continue
            cfg = load_config(None, [f"sharding.type={args.sharding}", f"model.dim={args.dim}",
                                     f"train.batch_size={args.batch}", f"loss.name={args.loss}",
                                     *overrides])
            sm = build_sharded_model(cfg, data.num_users, data.num_items, device)
            batches = EpochBatches(users, items, args.batch, rank, world, seed=0)
            step = build_train_step(cfg, data, sm, batches.global_batch)
            timer = PhaseTimer(lambda: None)
            it = batches.epoch(1)
            walls, n_cand = [], 0
            for t in range(args.warmup + args.steps):
                batch = next(it)
                if t == args.warmup:
                    timer.total.clear()
                    step.set_timer(timer)
                dist.barrier()
                t0 = time.perf_counter()
                o = step(batch, t)
                if t >= args.warmup:
                    walls.append(time.perf_counter() - t0)
                n_cand = o.candidates.ids.numel()
            phases = {p: timer.total[p] / args.steps for p in PHASES}
            rows.append({"mix": name, "C": n_cand, "step": sum(walls) / len(walls), **phases})
            del step, sm
        gathered = [None] * world
        dist.all_gather_object(gathered, rows)
        if rank == 0:
            torch.save(gathered, out)
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1024, help="per rank")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--interactions", type=int, default=400_000)
    ap.add_argument("--sharding", default="row_wise")
    ap.add_argument("--loss", default="sl")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    ap.add_argument("--mixes", type=int, nargs="*", help="indices of the mixes to run")
    args = ap.parse_args()

    from dsl_torchrec.data.synth import synth

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synth(users=args.users, items=args.items, interactions=args.interactions,
              out=Path(tmp) / "data", seed=0)
        print(f"synthetic data: {args.users:,} users, {args.items:,} items, "
              f"{args.interactions:,} interactions ({time.perf_counter() - t0:.1f}s)")
        out = os.path.join(tmp, "rows.pt")
        mp.start_processes(_worker, args=(args.world, os.path.join(tmp, "store"), args,
                                          str(Path(tmp) / "data"), out),
                           nprocs=args.world, join=True, start_method="spawn")
        per_rank = torch.load(out, weights_only=False)

    print(f"\nstep breakdown: B={args.batch}/rank x {args.world} ranks (gloo, CPU, "
          f"{args.threads} thread/rank), d={args.dim}, {args.sharding}, loss={args.loss}, "
          f"mean of {args.steps} steps after {args.warmup} warm-up; ms per step, rank mean")
    head = (f"{'mix':34s} {'C':>6s} " + " ".join(f"{p.replace('_', '-'):>10s}" for p in PHASES)
            + f" {'step':>8s} {'ex/s':>8s}")
    print(head)
    print("-" * len(head))
    for i, row in enumerate(per_rank[0]):
        rows = [r[i] for r in per_rank]
        ms = {p: 1e3 * sum(r[p] for r in rows) / len(rows) for p in PHASES}
        step = max(r["step"] for r in rows)
        print(f"{row['mix']:34s} {row['C']:6d} " + " ".join(f"{ms[p]:10.1f}" for p in PHASES)
              + f" {1e3 * step:8.1f} {args.world * args.batch / step:8.0f}")
    print("backward includes the fused sparse optimizer (TorchRec applies the row updates inside "
          "backward); optimizer = dense / data-parallel parameters only.")


if __name__ == "__main__":
    main()
