"""The training loop: data -> sharded model -> steps -> periodic evaluation -> results.json."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..config import Config
from ..data.dataset import InteractionData
from ..data.loader import EpochBatches
from ..dist import DistEnv, all_reduce_sum, barrier
from ..eval import evaluate_model, evaluate_popularity
from ..losses import build_loss
from ..model.build import build_sharded_model
from ..negatives import ExpectedCountLogQ, UniformSampler
from .report import plot_curves
from .run_dir import RunDir
from .step import TrainStep


def selection_metric(cfg: Config) -> str:
    return f"ndcg@{20 if 20 in cfg.eval.k else cfg.eval.k[0]}"


def _eval_plan(cfg: Config, data: InteractionData) -> list[tuple[str, list[str]]]:
    """(split, splits whose items are masked) for validation then test. The test split masks
    train and valid interactions, the valid split masks train."""
    plan = []
    train = cfg.data.train_split
    if cfg.data.valid_split and data.has_split(cfg.data.valid_split):
        plan.append(("valid", cfg.data.valid_split, [train]))
    if data.has_split(cfg.data.test_split):
        ex = [train] + [s for _, s, _ in plan]
        plan.append(("test", cfg.data.test_split, ex))
    return plan


def train(cfg: Config, env: DistEnv) -> dict[str, Any]:
    t_start = time.perf_counter()
    data = InteractionData(cfg.data.path)
    run = RunDir(Path(cfg.run.dir), enabled=env.is_main)
    run.write_config(cfg)
    torch.manual_seed(cfg.train.seed)

    sm = build_sharded_model(cfg, data.num_users, data.num_items, env.device)
    run.write_plan(sm.plan)
    model = sm.module
    users, items = data.split(cfg.data.train_split)
    batches = EpochBatches(users, items, cfg.train.batch_size, env.rank, env.world_size,
                           cfg.train.seed)
    neg = cfg.negatives
    sampler = (UniformSampler(data.num_items, neg.num_sampled, cfg.train.seed)
               if neg.num_sampled > 0 else None)
    log_q = (ExpectedCountLogQ(data.item_counts(cfg.data.train_split), batches.global_batch,
                               neg.in_batch, sampler) if neg.logq else None)
    step_fn = TrainStep(model, build_loss(cfg.loss), in_batch=neg.in_batch, sampler=sampler,
                        log_q=log_q, mask_accidental_hits=neg.mask_accidental_hits,
                        dense_optimizer=sm.dense_optimizer)

    ks, metric = list(cfg.eval.k), selection_metric(cfg)
    eval_plan = _eval_plan(cfg, data)
    t_eval = time.perf_counter()
    baseline = {name: evaluate_popularity(data, split, ex, ks, cfg.eval.batch_size)
                for name, split, ex in eval_plan}
    eval_seconds = time.perf_counter() - t_eval

    steps = batches.steps_per_epoch()
    if cfg.train.max_steps_per_epoch:
        steps = min(steps, cfg.train.max_steps_per_epoch)
    history: list[dict[str, Any]] = []
    epoch_seconds: list[float] = []
    global_step = 0
    for epoch in range(1, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        bar = tqdm(total=steps, desc=f"epoch {epoch}/{cfg.train.epochs}", unit="step",
                   disable=not (env.is_main and cfg.train.progress), leave=False,
                   mininterval=0.5 if sys.stderr.isatty() else 30.0)
        loss_sum, n_loss = 0.0, 0
        for i, batch in enumerate(batches.epoch(epoch)):
            if i >= steps:
                break
            out = step_fn(batch, global_step)
            global_step += 1
            loss_sum += float(out.loss)
            n_loss += 1
            if global_step % cfg.train.log_every == 0 or i == steps - 1:
                _log_train(run, out, global_step, epoch, loss_sum / n_loss,
                           batches.global_batch * n_loss / (time.perf_counter() - t0))
            bar.update(1)
            bar.set_postfix(loss=f"{float(out.loss):.4f}",
                            ex_s=f"{batches.global_batch * (i + 1) / (time.perf_counter() - t0):,.0f}")
        bar.close()
        epoch_seconds.append(time.perf_counter() - t0)
        due = cfg.train.eval_every and epoch % cfg.train.eval_every == 0
        if due or epoch == cfg.train.epochs:
            t_eval = time.perf_counter()
            record = {"epoch": epoch, "step": global_step}
            for name, split, ex in eval_plan:
                record[name] = evaluate_model(model, data, split, ex, ks, cfg.eval.batch_size)
                run.log({"kind": "eval", "epoch": epoch, "step": global_step, "split": name,
                         **record[name]})
            eval_seconds += time.perf_counter() - t_eval
            history.append(record)
            if env.is_main:
                shown = "  ".join(f"{n} {metric} {record[n][metric]:.4f}"
                                  for n, _, _ in eval_plan)
                tqdm.write(f"epoch {epoch}: loss {loss_sum / max(n_loss, 1):.4f}  {shown}  "
                           f"({epoch_seconds[-1]:.1f}s)")

    select = "valid" if any(n == "valid" for n, _, _ in eval_plan) else "test"
    best = max(history, key=lambda r: r[select][metric]) if history else {"epoch": 0}
    results = {
        "dataset": data.manifest.name,
        "loss": cfg.loss.name,
        "world_size": env.world_size,
        "sharding": cfg.sharding.type,
        "best_epoch": best["epoch"],
        "selected_by": f"{select} {metric}",
        "valid": best.get("valid", {}),
        "test": best.get("test", {}),
        "baselines": {"popularity": baseline},
        "timing": {
            "seconds_per_epoch": sum(epoch_seconds) / max(len(epoch_seconds), 1),
            "train_seconds": sum(epoch_seconds),
            "eval_seconds": eval_seconds,
            "total_seconds": time.perf_counter() - t_start,
            "steps_per_epoch": steps,
            "global_batch": batches.global_batch,
        },
    }
    run.write_results(results)
    if env.is_main:
        plot_curves(run.path, metric)
    barrier()
    return results


def _log_train(run: RunDir, out, step: int, epoch: int, local_mean: float, ex_s: float) -> None:
    """Logs the global mean loss (one all-reduce per log step, not per step) and diagnostics."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    loss = float(all_reduce_sum(torch.tensor([local_mean], dtype=torch.float64))[0]) / world
    stats = {k: float(v) for k, v in (getattr(out.loss_out, "stats", None) or {}).items()}
    run.log({"kind": "train", "step": step, "epoch": epoch, "loss": loss,
             "examples_per_s": ex_s, **stats})
