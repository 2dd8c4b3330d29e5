"""Console entry points: dsl-train, dsl-eval, dsl-data.

User errors (bad config, missing dataset, bad data) print one line ``<prog>: error: ...`` and
exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from .config import ConfigError, load_config
from .data.errors import DataError

USER_ERRORS = (ConfigError, DataError, FileNotFoundError)


def quiet_library_warnings() -> None:
    """Deprecation chatter from torch / torchrec / fbgemm internals that a user cannot act on."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for pattern in (".*is_fx_tracing.*", ".*an autograd kernel was not registered.*",
                    ".*non-writable.*", ".*TypedStorage.*", ".*detach.*",
                    ".*_get_pg_default_device.*", ".*ShardedTensor.*"):
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.distributed")
    warnings.filterwarnings("ignore", category=UserWarning, module="torchrec")
    for name in ("torch.fx._symbolic_trace", "torchrec.distributed.utils",
                 "torch.distributed.run", "torch.distributed.elastic.multiprocessing.api"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _close_process_group() -> None:
    """Tear the process group down before interpreter exit."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _exit_now(main, argv) -> None:
    """Run ``main(argv)`` and leave without the interpreter's teardown. Seen here: a 2-rank
    dsl-eval under a table_wise plan aborted in C++ static destructors after finishing its work
    ("terminate called without an active exception", about 1 run in 8), which torchrun reports
    as a failure. A closed stdout (``| head``) is not an error."""
    try:
        code = main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        code = 0
    sys.stderr.flush()
    os._exit(code)


def _fail(prog: str, err: Exception) -> int:
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 2


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dsl-train",
        description="Train a two-tower retrieval model on sharded TorchRec tables. "
        "Overrides are dotted config keys, e.g. loss.temperature=0.2 train.epochs=5.",
        epilog="Multi-process: `dsl-train --nproc 2 ...` spawns torchrun itself; under torchrun "
        "run `torchrun --nproc_per_node=N -m dsl_torchrec.train --config ...`.",
    )
    p.add_argument("--config", help="YAML config file (sections data, model, sharding, "
                   "negatives, loss, optim, train, eval, run)")
    p.add_argument("--nproc", type=int, default=1,
                   help="processes on this machine (spawns torchrun when > 1; default 1)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    return p


def _preflight(cfg) -> None:
    """Fail fast, once, in the launching process, on what every rank would fail on."""
    from .data.dataset import InteractionData
    from .train.run_dir import check_run_dir

    if not cfg.data.path:
        raise ConfigError("data.path is not set (a dataset directory made by "
                          "`dsl-data prepare` or `dsl-data synth`)")
    InteractionData(cfg.data.path)
    check_run_dir(cfg)


def train_main(argv: list[str] | None = None) -> int:
    quiet_library_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _train_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            from .config import dump_yaml

            print(dump_yaml(cfg), end="")
            return 0
        under_launcher = "LOCAL_RANK" in os.environ
        if not under_launcher or int(os.environ.get("RANK", 0)) == 0:
            _preflight(cfg)
    except USER_ERRORS as e:
        return _fail("dsl-train", e)
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:
        rest = [a for a in argv if not a.startswith("--nproc")]
        if "--nproc" in argv:
            i = argv.index("--nproc")
            rest = argv[:i] + argv[i + 2:]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={args.nproc}", "-m", "dsl_torchrec.train", *rest]
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc)))
        return subprocess.call(cmd, env=env)

    from .dist import init_distributed
    from .train.preemption import REQUEUE_EXIT_CODE
    from .train.report import results_table
    from .train.trainer import Preempted, train

    try:
        env = init_distributed()
        results = train(cfg, env)
    except USER_ERRORS as e:
        return _fail("dsl-train", e)
    except Preempted as e:
        print(f"dsl-train: {e}; exiting with {REQUEUE_EXIT_CODE} so the launcher requeues "
              "(rerun the same command to resume)", file=sys.stderr)
        return REQUEUE_EXIT_CODE
    finally:
        _close_process_group()
    if env.is_main:
        print(results_table(results, list(cfg.eval.k)))
        t = results["timing"]
        print(f"best epoch {results['best_epoch']} ({results['selected_by']}); "
              f"{t['seconds_per_epoch']:.1f} s/epoch, {t['total_seconds']:.0f} s total; "
              f"results in {Path(cfg.run.dir) / 'results.json'}")
    return 0


def eval_main(argv: list[str] | None = None) -> int:
    _exit_now(_eval, argv)


def _eval(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(
        prog="dsl-eval",
        description="Evaluate a run's latest checkpoint on a split (any world size: under "
        "torchrun the tables are resharded onto the current ranks), or the popularity "
        "baseline on a dataset.")
    p.add_argument("--run-dir", help="run directory written by dsl-train")
    p.add_argument("--data", help="dataset directory (for --baseline)")
    p.add_argument("--baseline", choices=["popularity"], help="evaluate a baseline on --data")
    p.add_argument("--split", default="test")
    p.add_argument("--k", type=int, nargs="+", default=None, help="default: the run's eval.k")
    p.add_argument("--batch-size", type=int, default=1024, help="query users per rank per step")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="config overrides, e.g. sharding.type=table_wise")
    args = p.parse_args(argv)
    quiet_library_warnings()
    try:
        if not args.baseline and not args.run_dir:
            raise ConfigError("give --run-dir DIR (or --baseline popularity --data DIR)")
        if args.baseline and not args.data:
            raise ConfigError("--baseline needs --data DIR")
        from .dist import init_distributed
        from .eval import evaluate_model, evaluate_popularity

        env = init_distributed()
        if args.baseline:
            from .data.dataset import InteractionData

            data = InteractionData(args.data)
        else:
            from .train.offline import load_run

            cfg, data, sm, latest = load_run(args.run_dir, env.device, args.overrides)
        if not data.has_split(args.split):
            raise DataError(data.directory, f"no split {args.split!r}", field="splits",
                            expected="one of " + ", ".join(data.split_names))
        exclude = ["train"] + (["valid"] if args.split == "test" and data.has_split("valid")
                               else [])
        ks = args.k or ([20] if args.baseline else list(cfg.eval.k))
        if args.baseline:
            metrics = evaluate_popularity(data, args.split, exclude, ks, args.batch_size)
        else:
            metrics = evaluate_model(sm.module, data, args.split, exclude, ks, args.batch_size)
        if env.is_main:
            where = "popularity baseline" if args.baseline else str(latest)
            print(json.dumps({"split": args.split, "source": where,
                              "world_size": env.world_size, **metrics}, indent=2))
        return 0
    except USER_ERRORS as e:
        return _fail("dsl-eval", e)
    finally:
        _close_process_group()


def export_main(argv: list[str] | None = None) -> int:
    _exit_now(_export, argv)


def _export(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(
        prog="dsl-export",
        description="Write a run's user and item embeddings (latest checkpoint) to parquet, "
        "with their original ids where the dataset has vocabularies (for an ANN index).")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", required=True, help="output directory (users/, items/ parquet parts)")
    args = p.parse_args(argv)
    quiet_library_warnings()
    try:
        from .dist import init_distributed
        from .train.offline import export_embeddings

        env = init_distributed()
        out = export_embeddings(args.run_dir, args.out, env.device)
        if env.is_main:
            print(f"wrote {out}/users and {out}/items")
        return 0
    except USER_ERRORS as e:
        return _fail("dsl-export", e)
    finally:
        _close_process_group()


def data_main(argv: list[str] | None = None) -> int:
    from .data.cli import main

    return main(argv)
