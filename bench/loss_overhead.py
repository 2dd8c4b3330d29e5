"""Forward+backward time of SL vs DSL (both branches on, dsl-loss.md's values) on [B, C]
logits from a d = 64 matmul.

    python bench/loss_overhead.py            # B ∈ {256, 1024, 4096} × C ∈ {2048, 8192, 32768}
    python bench/loss_overhead.py --quick    # B ∈ {256, 1024} × C ∈ {2048, 8192}

Per cell: random L2-normalised queries q [B, d] and candidates [C, d] (both with gradient), the
positive's own column masked (in-batch style), logQ on; one step = scores (q @ candidates.T),
loss, backward. Three variants, interleaved repeat by repeat so that machine noise hits them
alike: SL; DSL with item_sim given (the loss's own cost); DSL+sim, which also computes item_sim
= cos(positive item, candidate) [B, C] in the step, as the trainer does. Prints medians and
ratios to SL. A figure, never an assertion.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as Fnn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsl_torchrec.losses import DSLLoss, SoftmaxLoss  # noqa: E402

D = 64


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_cell(B: int, C: int, repeats: int, device: torch.device, seed: int = 0,
               clock=time.perf_counter) -> dict[str, list[float]]:
    g = torch.Generator(device="cpu").manual_seed(seed)
    q = Fnn.normalize(torch.randn(B, D, generator=g), dim=1).to(device).requires_grad_()
    cand = Fnn.normalize(torch.randn(C, D, generator=g), dim=1).to(device).requires_grad_()
    p_emb = Fnn.normalize(torch.randn(B, D, generator=g), dim=1).to(device)
    valid = torch.ones(B, C, dtype=torch.bool, device=device)
    own = torch.arange(B, device=device)
    valid[own, own % C] = False  # the row's own positive among the in-batch candidates
    log_q = torch.log(torch.rand(C, generator=g) * 0.9 + 0.05).to(device)
    with torch.no_grad():
        item_sim_given = p_emb @ cand.T
    # both branches on (dsl-loss.md's values), whatever the code defaults are
    sl, dsl = SoftmaxLoss(0.1), DSLLoss(kappa_sim=-0.5, gamma=0.5, dro_scale=True)

    def step(kind: str) -> None:
        q.grad = cand.grad = None
        neg = q @ cand.T
        pos = (q * p_emb).sum(-1)
        if kind == "SL":
            out = sl(pos, neg, valid, None, log_q)
        elif kind == "DSL":
            out = dsl(pos, neg, valid, item_sim_given, log_q)
        else:
            with torch.no_grad():
                item_sim = p_emb @ cand.detach().T
            out = dsl(pos, neg, valid, item_sim, log_q)
        out.loss.backward()

    kinds = ["SL", "DSL", "DSL+sim"]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for k in kinds:  # warm-up
        step(k)
    for r in range(repeats):
        order = kinds[r % 3:] + kinds[: r % 3]  # rotate so no variant always runs first
        for k in order:
            _sync(device)
            t0 = clock()
            step(k)
            _sync(device)
            times[k].append(clock() - t0)
    return times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="B ∈ {256, 1024}, C ∈ {2048, 8192}")
    ap.add_argument("--repeats", type=int, default=7, help="timed repeats per variant and cell")
    ap.add_argument("--max-cells", type=int, default=0, help="stop after this many cells (0: all)")
    ap.add_argument("--b", default="", help="comma-separated B values (overrides the grid's)")
    ap.add_argument("--c", default="", help="comma-separated C values (overrides the grid's)")
    ap.add_argument("--max-gb", type=float, default=0.0,
                    help="skip cells whose estimated memory exceeds this (default: 60%% of the "
                         "available memory)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: this process's CPU time, which other jobs on a shared machine "
                         "disturb less; meant for --threads 1 (threads that spin add to it)")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        ap.error("--clock cpu measures CPU time; use the wall clock on an accelerator")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    bs = [256, 1024] if args.quick else [256, 1024, 4096]
    cs = [2048, 8192] if args.quick else [2048, 8192, 32768]
    if args.b:
        bs = [int(v) for v in args.b.split(",")]
    if args.c:
        cs = [int(v) for v in args.c.split(",")]
    if device.type == "cuda":
        budget = torch.cuda.mem_get_info(device)[0]
    else:
        budget = _available_bytes()
    budget = int(args.max_gb * (1 << 30)) if args.max_gb else int(0.6 * budget)

    print(f"device={device} threads={torch.get_num_threads()} d={D} repeats={args.repeats} "
          f"clock={args.clock} torch={torch.__version__} "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')})")
    print("median fwd+bwd ms per step; ratios are to SL of the same cell (min: ratio of the "
          "fastest repeats, steadier on a loaded machine)")
    header = (f"{'B':>6} {'C':>6} | {'SL ms':>9} {'DSL ms':>9} {'DSL/SL':>7} {'min':>6} | "
              f"{'DSL+sim ms':>10} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    done = 0
    for B in bs:
        for C in cs:
            if args.max_cells and done >= args.max_cells:
                print(f"(stopping: --max-cells {args.max_cells})")
                return
            # neg, logits buffer, gradient, item_sim: 4 float [B, C] plus the bool mask
            need = B * C * (4 * 4 + 1) + (64 << 20)
            if need > budget:
                print(f"{B:>6} {C:>6} | skipped: needs ~{need / 2**30:.1f} GiB, budget "
                      f"{budget / 2**30:.1f} GiB (--max-gb)")
                continue
            t = bench_cell(B, C, args.repeats, device, clock=clock)
            sl, dsl, dsls = (statistics.median(t[k]) * 1e3 for k in ("SL", "DSL", "DSL+sim"))
            rmin = min(t["DSL"]) / min(t["SL"])
            print(f"{B:>6} {C:>6} | {sl:>9.2f} {dsl:>9.2f} {dsl / sl:>7.3f} {rmin:>6.3f} | "
                  f"{dsls:>10.2f} {dsls / sl:>6.3f}", flush=True)
            done += 1


if __name__ == "__main__":
    main()
