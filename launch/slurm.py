"""Launch dsl-train on SLURM through submitit (or on this machine with --cluster local).

    python -m launch.slurm --nodes 4 --gpus-per-node 8 --partition gpu --time 240 \
        --config configs/amazon2014-electronic.yaml train.epochs=50

One task per GPU (``--tasks-per-node`` on CPU); every task runs the ordinary trainer with the
distributed environment from ``submitit.helpers.TorchDistributedEnvironment``. On preemption or
timeout submitit requeues the job, and the trainer resumes from ``<run.dir>/checkpoints/latest``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import submitit


class TrainTask(submitit.helpers.Checkpointable):
    """A picklable callable: ``dsl-train`` arguments -> exit code, on every task."""

    def __init__(self, train_args: list[str]) -> None:
        self.train_args = train_args

    def __call__(self) -> int:
        import os

        env = submitit.helpers.TorchDistributedEnvironment().export(
            set_cuda_visible_devices=False)
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        from dsl_torchrec.cli import train_main

        code = train_main(self.train_args)
        if code != 0:
            raise RuntimeError(f"dsl-train exited with {code} on rank {env.rank}")
        return code

    # checkpoint(): inherited from Checkpointable — resubmits this same callable; the trainer
    # itself finds the latest checkpoint in run.dir, so nothing else needs to be carried over.


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m launch.slurm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster", choices=["slurm", "local", "debug"], default="slurm",
                   help="local: the same code path as separate processes on this machine")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=0)
    p.add_argument("--tasks-per-node", type=int, default=None,
                   help="default: --gpus-per-node, or 1 without GPUs")
    p.add_argument("--cpus-per-task", type=int, default=4)
    p.add_argument("--mem-gb", type=int, default=None)
    p.add_argument("--partition", default=None)
    p.add_argument("--time", type=int, default=60, help="minutes")
    p.add_argument("--job-name", default="dsl_torchrec")
    p.add_argument("--logs", default="runs/submitit", help="submitit's folder (logs, pickles)")
    p.add_argument("--config", required=True)
    p.add_argument("--no-wait", action="store_true", help="submit and return the job id")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    args = p.parse_args(argv)
    tasks = args.tasks_per_node or max(args.gpus_per_node, 1)
    executor = submitit.AutoExecutor(folder=args.logs, cluster=args.cluster)
    params = dict(nodes=args.nodes, tasks_per_node=tasks, cpus_per_task=args.cpus_per_task,
                  timeout_min=args.time, name=args.job_name)
    if args.gpus_per_node:
        params["gpus_per_node"] = args.gpus_per_node
    if args.mem_gb:
        params["mem_gb"] = args.mem_gb
    if args.partition:
        params["slurm_partition"] = args.partition
    if args.cluster == "slurm":
        params["slurm_signal_delay_s"] = 120  # time to checkpoint before the kill
    executor.update_parameters(**params)
    job = executor.submit(TrainTask(["--config", args.config, *args.overrides]))
    print(f"submitted job {job.job_id} ({args.nodes} node(s) × {tasks} task(s)); "
          f"logs in {Path(args.logs).resolve()}", flush=True)
    if args.no_wait:
        return 0
    codes = job.results()  # one per task; raises with the task's error if a task failed
    print(f"job {job.job_id} finished: exit codes {codes}")
    return 0 if all(c == 0 for c in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
