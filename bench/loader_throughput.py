"""Loader throughput vs one training step, to show the loader is never the bottleneck.

Makes a synthetic dataset (``dsl-data synth``) in a temporary directory, then measures, in one
process and at the same per-rank batch size B:

- batches/s of the loaders alone: ``EpochBatches`` (split in memory) and ``ParquetBatches``
  (streaming row groups through a seeded shuffle buffer; window builds included), iterating
  whole epochs (or ``--max-batches``);
- seconds per training step (forward + backward with the fused sparse update) of the
  project's own model and step (``build_sharded_model`` + ``build_train_step``) on this
  machine's device, one process (world size 1, file-store process group);

and prints the ratio loader batches/s ÷ steps/s (> 1: the loader is faster than training).

    python bench/loader_throughput.py                      # defaults: B=1024, 2M interactions
    python bench/loader_throughput.py --batch-size 4096 --interactions 5000000 \\
        --config configs/quickstart.yaml
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsl_torchrec.data import InteractionData, synth  # noqa: E402
from dsl_torchrec.data.loader import EpochBatches, ParquetBatches  # noqa: E402


def loader_rate(loader, max_batches: int, epochs: int = 2) -> tuple[float, int]:
    """(batches/s, batches) over up to ``epochs`` epochs, at most ``max_batches`` batches."""
    n = 0
    sink = 0
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for b in loader.epoch(epoch):
            sink += int(b.users[0])  # touch the data
            n += 1
            if n >= max_batches:
                break
        if n >= max_batches:
            break
    return n / (time.perf_counter() - t0), n


def step_time(data: InteractionData, batch_size: int, config: str | None,
              overrides: list[str], steps: int) -> tuple[float, str]:
    import torch.distributed as dist

    from dsl_torchrec.config import load_config
    from dsl_torchrec.model.build import build_sharded_model
    from dsl_torchrec.train.step import build_train_step

    if not dist.is_initialized():
        store = tempfile.mktemp(prefix="loader_bench_pg_")
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    cfg = load_config(config, [f"train.batch_size={batch_size}", *overrides])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sm = build_sharded_model(cfg, data.num_users, data.num_items, device)
    step_fn = build_train_step(cfg, data, sm, batch_size)
    loader = EpochBatches(*data.split("train"), batch_size, 0, 1, seed=0)
    batches = [b for _, b in zip(range(steps + 2), loader.epoch(1))]
    batches = [type(b)(b.users.to(device), b.items.to(device)) for b in batches]
    for t in range(2):  # warm-up
        step_fn(batches[t], t)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for t in range(2, len(batches)):
        out = step_fn(batches[t], t)
    float(out.loss)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / (len(batches) - 2)
    what = (f"dim={cfg.model.dim}, loss={cfg.loss.name}, num_sampled={cfg.negatives.num_sampled},"
            f" in_batch={cfg.negatives.in_batch}, sharding={cfg.sharding.type}, device={device}")
    return seconds, what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--interactions", type=int, default=2_000_000)
    ap.add_argument("--row-group-size", type=int, default=1 << 18)
    ap.add_argument("--shuffle-buffer", type=int, default=1 << 20)
    ap.add_argument("--max-batches", type=int, default=3000)
    ap.add_argument("--steps", type=int, default=10, help="timed training steps")
    ap.add_argument("--config", help="training config (default: built-in defaults)")
    ap.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    with tempfile.TemporaryDirectory(prefix="loader_bench_") as tmp:
        t0 = time.perf_counter()
        synth(args.users, args.items, args.interactions, Path(tmp) / "ds", seed=0,
              row_group_size=args.row_group_size)
        data = InteractionData(Path(tmp) / "ds")
        n = data.rows("train")
        print(f"synth: {args.users:,} users x {args.items:,} items, train {n:,} rows "
              f"({time.perf_counter() - t0:.1f}s); batch size B={args.batch_size}")

        B = args.batch_size
        t0 = time.perf_counter()
        epoch_loader = EpochBatches(*data.split("train"), B, 0, 1, seed=0)
        setup = time.perf_counter() - t0
        rate_e, nb_e = loader_rate(epoch_loader, args.max_batches)
        print(f"EpochBatches   : {rate_e:10,.0f} batches/s ({rate_e * B / 1e6:6.1f} M rows/s; "
              f"{nb_e} batches; setup {setup:.2f}s)")
        rates = {"EpochBatches": rate_e}
        for world in (1, 4):
            pq_loader = ParquetBatches(data, B, 0, world, seed=0,
                                       shuffle_buffer=args.shuffle_buffer)
            rate_p, nb_p = loader_rate(pq_loader, args.max_batches)
            print(f"ParquetBatches : {rate_p:10,.0f} batches/s ({rate_p * B / 1e6:6.1f} M rows/s; "
                  f"{nb_p} batches; rank 0 of {world}, shuffle buffer "
                  f"{pq_loader.shuffle_buffer:,} rows)")
            rates[f"ParquetBatches (rank 0 of {world})"] = rate_p

        seconds, what = step_time(data, B, args.config, args.overrides, args.steps)
        print(f"training step  : {seconds * 1e3:10.1f} ms/step = {1 / seconds:,.1f} steps/s "
              f"(forward + backward, {what})")
        for name, rate in rates.items():
            print(f"ratio {name}: loader {rate / (1 / seconds):,.0f}x faster than the step")


if __name__ == "__main__":
    main()
