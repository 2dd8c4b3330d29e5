"""Config loading/validation and the CLI's user-error path (clear message, exit 2, no traceback)."""

import subprocess
import sys

import pytest

from dsl_torchrec.config import ConfigError, dump_yaml, load_config


def test_defaults_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("loss:\n  name: dsl\n  temperature: 0.2\ntrain:\n  epochs: 3\n")
    cfg = load_config(p, ["loss.gamma=-0.25", "eval.k=[10,20]", "loss.w_max=3",
                          "sharding.type=table_wise"])
    assert cfg.loss.name == "dsl" and cfg.loss.temperature == 0.2 and cfg.train.epochs == 3
    assert cfg.loss.gamma == -0.25 and cfg.eval.k == [10, 20]
    assert cfg.loss.w_max == 3.0 and isinstance(cfg.loss.w_max, float)
    assert cfg.sharding.type == "table_wise"
    # the resolved config round-trips through YAML
    again = tmp_path / "again.yaml"
    again.write_text(dump_yaml(cfg))
    assert load_config(again) == cfg


@pytest.mark.parametrize("override, needle", [
    ("loss.temprature=0.1", "unknown config key 'loss.temprature'"),
    ("lose.name=sl", "unknown config key 'lose'"),
    ("train.epochs=ten", "train.epochs: expected int, got 'ten'"),
    ("train.epochs=1.5", "train.epochs: expected int"),
    ("negatives.logq=maybe", "negatives.logq: expected bool"),
    ("sharding.type=diagonal", "sharding.type: expected one of"),
    ("loss.temperature=0", "loss.temperature must be > 0"),
    ("loss=3", "loss: expected a section"),
    ("nonsense", "not of the form key.sub=value"),
])
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert needle in str(e.value)


def test_bad_yaml_file_names_file_and_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  dimm: 32\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and "model.dimm" in str(e.value)


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "dsl_torchrec.train", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, needle", [
    (["train.epochs=abc"], "train.epochs: expected int"),
    (["data.path=/nonexistent/dataset"], "/nonexistent/dataset"),
    (["--config", "missing.yaml"], "config file not found: missing.yaml"),
    ([], "data.path is not set"),
])
def test_cli_user_errors_exit_2_without_traceback(tmp_path, args, needle):
    r = _run(*args, "run.dir=" + str(tmp_path / "run"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr
    assert r.stderr.startswith("dsl-train: error:")
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_every_shipped_config_loads():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(configs) >= 10
    for path in configs:
        cfg = load_config(path)
        # presets never use in-batch negatives without logQ (measured to halve recall)
        assert cfg.negatives.logq or not cfg.negatives.in_batch, path.name
