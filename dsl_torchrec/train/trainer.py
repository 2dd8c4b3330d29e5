"""The training loop: data -> sharded model -> steps -> periodic evaluation -> results.json."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..config import Config, ConfigError, to_dict
from ..data.dataset import InteractionData
from ..data.loader import make_batches
from ..dist import DistEnv, all_reduce_sum, barrier
from ..eval import evaluate_model, evaluate_popularity
from ..model.build import build_sharded_model
from .checkpoint import CheckpointManager, TrainPosition, model_state, restore_model_state
from .preemption import PreemptionFlag
from .report import plot_curves
from .run_dir import RunDir
from .step import build_train_step


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
    """Train (resuming from ``<run.dir>/checkpoints/latest`` when it exists), evaluate, and
    write results.json. Raises ``Preempted`` after checkpointing when a rank got SIGTERM/SIGUSR1."""
    t_start = time.perf_counter()
    # the run directory's config.yaml must stay usable from any working directory
    cfg.data.path = os.path.abspath(cfg.data.path)
    data = InteractionData(cfg.data.path)
    ckpt = CheckpointManager(Path(cfg.run.dir), cfg.train.keep_checkpoints)
    latest = ckpt.latest()
    run = RunDir(Path(cfg.run.dir), enabled=env.is_main, fresh=latest is None)
    run.write_config(cfg)
    torch.manual_seed(cfg.train.seed)

    sm = build_sharded_model(cfg, data.num_users, data.num_items, env.device)
    run.write_plan(sm.plan)
    model = sm.module
    batches = make_batches(data, cfg.data.train_split, cfg.train.batch_size, env.rank,
                           env.world_size, cfg.train.seed,
                           memory_budget_rows=cfg.data.memory_budget_rows)
    step_fn = build_train_step(cfg, data, sm, batches.global_batch)

    def app_state() -> dict[str, Any]:
        state = model_state(sm)
        if hasattr(step_fn, "state_dict"):
            state["step"] = step_fn.state_dict()
        return state

    pos = TrainPosition()
    if latest is not None:
        state = app_state()
        t_load = time.perf_counter()
        pos, meta = ckpt.load(latest, state)
        _check_resumable(meta, pos, env.world_size * cfg.train.batch_size, latest)
        restore_model_state(sm, state)
        if "step" in state:
            step_fn.load_state_dict(state["step"])
        run.log({"kind": "checkpoint_load", "path": str(latest), "step": pos.global_step,
                 "seconds": time.perf_counter() - t_load})
        if env.is_main:
            tqdm.write(f"resumed from {latest} (epoch {pos.epoch}, step {pos.global_step})")
    ckpt_meta = {"config": to_dict(cfg), "plan": str(sm.plan)}

    def save() -> None:
        if ckpt.latest_step == pos.global_step:
            return  # e.g. the end of training right after a periodic save
        t = time.perf_counter()
        path = ckpt.save(app_state(), pos, ckpt_meta)
        run.log({"kind": "checkpoint", "step": pos.global_step, "path": str(path),
                 "seconds": time.perf_counter() - t,
                 "bytes": sum(f.stat().st_size for f in path.iterdir()) if env.is_main else 0})

    ks, metric = list(cfg.eval.k), selection_metric(cfg)
    eval_plan = _eval_plan(cfg, data)
    t_eval = time.perf_counter()
    baseline = {name: evaluate_popularity(data, split, ex, ks, cfg.eval.batch_size)
                for name, split, ex in eval_plan}
    eval_seconds = time.perf_counter() - t_eval

    steps = batches.steps_per_epoch()
    if cfg.train.max_steps_per_epoch:
        steps = min(steps, cfg.train.max_steps_per_epoch)
    preempt = PreemptionFlag()
    try:
        while pos.epoch <= cfg.train.epochs:
            epoch = pos.epoch
            t0 = time.perf_counter()
            bar = tqdm(total=steps, initial=pos.step_in_epoch, unit="step", leave=False,
                       desc=f"epoch {epoch}/{cfg.train.epochs}",
                       disable=not (env.is_main and cfg.train.progress),
                       mininterval=0.5 if sys.stderr.isatty() else 30.0)
            loss_sum, n_loss = 0.0, 0
            for batch in batches.epoch(epoch, start_step=pos.step_in_epoch):
                if pos.step_in_epoch >= steps:
                    break
                _maybe_inject_fault(env.rank, pos.global_step)
                out = step_fn(batch, pos.global_step)
                pos.global_step += 1
                pos.step_in_epoch += 1
                loss_sum += float(out.loss)
                n_loss += 1
                if pos.global_step % cfg.train.log_every == 0 or pos.step_in_epoch == steps:
                    _log_train(run, out, pos.global_step, epoch, loss_sum / n_loss,
                               batches.global_batch * n_loss / (time.perf_counter() - t0))
                ex_s = batches.global_batch * n_loss / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{float(out.loss):.4f}", ex_s=f"{ex_s:,.0f}", refresh=False)
                bar.update(1)
                if preempt.should_stop():
                    save()
                    raise Preempted(preempt.signal_name or "a signal on another rank",
                                    pos.global_step)
                if cfg.train.checkpoint_every and pos.global_step % cfg.train.checkpoint_every == 0:
                    save()
            bar.close()
            pos.epoch_seconds.append(time.perf_counter() - t0)
            due = cfg.train.eval_every and epoch % cfg.train.eval_every == 0
            if due or epoch == cfg.train.epochs:
                t_eval = time.perf_counter()
                record = {"epoch": epoch, "step": pos.global_step}
                for name, split, ex in eval_plan:
                    record[name] = evaluate_model(model, data, split, ex, ks, cfg.eval.batch_size)
                    run.log({"kind": "eval", "epoch": epoch, "step": pos.global_step,
                             "split": name, **record[name]})
                eval_seconds += time.perf_counter() - t_eval
                pos.history.append(record)
                if env.is_main:
                    shown = "  ".join(f"{n} {metric} {record[n][metric]:.4f}"
                                      for n, _, _ in eval_plan)
                    tqdm.write(f"epoch {epoch}: loss {loss_sum / max(n_loss, 1):.4f}  {shown}  "
                               f"({pos.epoch_seconds[-1]:.1f}s)")
            pos.epoch += 1
            pos.step_in_epoch = 0
        save()
    finally:
        preempt.restore()

    select = "valid" if any(n == "valid" for n, _, _ in eval_plan) else "test"
    history = pos.history
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
            "seconds_per_epoch": sum(pos.epoch_seconds) / max(len(pos.epoch_seconds), 1),
            "train_seconds": sum(pos.epoch_seconds),
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


def _check_resumable(meta: dict, pos: TrainPosition, global_batch: int, path: Path) -> None:
    """Tables and optimizer state reshard onto any world size / sharding type, but a position
    inside an epoch counts batches of the old global batch size."""
    old = meta["config"]["train"]["batch_size"] * meta["world_size"]
    if pos.step_in_epoch and old != global_batch:
        raise ConfigError(
            f"{path} was written mid-epoch (step {pos.step_in_epoch} of epoch {pos.epoch}) with "
            f"a global batch of {old} ({meta['world_size']} ranks × "
            f"{meta['config']['train']['batch_size']}); resume it with the same world size × "
            f"train.batch_size (now {global_batch}), or from an end-of-epoch checkpoint")


class Preempted(Exception):
    """Training stopped on a preemption signal after writing a checkpoint."""

    def __init__(self, signal_name: str, step: int) -> None:
        super().__init__(f"preempted by {signal_name}: checkpoint written at step {step}")


def _maybe_inject_fault(rank: int, step: int) -> None:
    """Test hook: DSL_TORCHREC_FAULT="kill:RANK:STEP" (or "term:...") sends SIGKILL (SIGTERM)
    to that rank before that step, on the first attempt only (TORCHELASTIC_RESTART_COUNT 0)."""
    spec = os.environ.get("DSL_TORCHREC_FAULT")
    if not spec or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return
    kind, r, s = spec.split(":")
    if int(r) == rank and int(s) == step:
        os.kill(os.getpid(), {"kill": signal.SIGKILL, "term": signal.SIGTERM}[kind])


def _log_train(run: RunDir, out, step: int, epoch: int, local_mean: float, ex_s: float) -> None:
    """Logs the global mean loss (one all-reduce per log step, not per step) and diagnostics."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    loss = float(all_reduce_sum(torch.tensor([local_mean], dtype=torch.float64))[0]) / world
    stats = {k: float(v) for k, v in (getattr(out.loss_out, "stats", None) or {}).items()}
    run.log({"kind": "train", "step": step, "epoch": epoch, "loss": loss,
             "examples_per_s": ex_s, **stats})
