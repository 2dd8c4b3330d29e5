"""The run directory contract (architecture.md, "Run directory"): files written by rank 0."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, dump_yaml


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def check_run_dir(cfg: Config) -> Path:
    """A finished run (results.json) is refused unless ``run.overwrite=true``, which clears it;
    an unfinished one is left alone: training resumes from its latest checkpoint."""
    path = Path(cfg.run.dir)
    if (path / "results.json").exists():
        if not cfg.run.overwrite:
            raise ConfigError(
                f"run.dir {path} already holds a finished run (results.json); "
                "choose another run.dir or pass run.overwrite=true")
        shutil.rmtree(path / "checkpoints", ignore_errors=True)
        (path / "results.json").unlink()
    return path


class RunDir:
    def __init__(self, path: Path, enabled: bool, fresh: bool = True) -> None:
        self.path, self.enabled = path, enabled
        if enabled:
            path.mkdir(parents=True, exist_ok=True)
            if fresh or not (path / "metrics.jsonl").exists():
                (path / "metrics.jsonl").write_text("")

    def write_config(self, cfg: Config) -> None:
        if self.enabled:
            atomic_write_text(self.path / "config.yaml", dump_yaml(cfg))

    def write_plan(self, plan) -> None:
        if not self.enabled:
            return
        atomic_write_text(self.path / "plan.txt", str(plan) + "\n")
        summary = {
            module: {
                table: {"sharding_type": ps.sharding_type, "compute_kernel": ps.compute_kernel,
                        "ranks": ps.ranks}
                for table, ps in module_plan.items()
            }
            for module, module_plan in plan.plan.items()
        }
        atomic_write_text(self.path / "plan.json", json.dumps(summary, indent=2) + "\n")

    def log(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def write_results(self, results: dict[str, Any]) -> None:
        if self.enabled:
            atomic_write_text(self.path / "results.json", json.dumps(results, indent=2) + "\n")
