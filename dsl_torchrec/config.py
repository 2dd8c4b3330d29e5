"""Typed run configuration: dataclass sections, YAML loading, dotted CLI overrides.

A config is a ``Config`` of nine sections. YAML files and ``key.sub=value`` overrides are merged
onto the defaults; unknown keys and values of the wrong type raise ``ConfigError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


@dataclass
class DataConfig:
    path: str = ""  # canonical dataset directory (manifest.json + parquet splits)
    train_split: str = "train"
    valid_split: str = "valid"  # "" to skip validation
    test_split: str = "test"
    # splits with more rows than this stream from parquet (per-rank row groups, seeded shuffle
    # buffer) instead of being held in memory
    memory_budget_rows: int = 1 << 25


@dataclass
class ModelConfig:
    dim: int = 64
    score: Literal["cosine", "dot"] = "cosine"
    init_std: float = 0.1


@dataclass
class ShardingConfig:
    type: Literal["auto", "table_wise", "row_wise", "column_wise", "data_parallel"] = "row_wise"


@dataclass
class NegativesConfig:
    in_batch: bool = True  # global in-batch positives as candidates
    num_sampled: int = 2048  # R shared uniform negatives per step (0 = off)
    logq: bool = True  # subtract log expected count of each candidate
    mask_accidental_hits: bool = True
    # cross-batch memory: the last Q global in-batch positives of earlier steps (0 = off)
    memory_size: int = 0
    memory_max_age: int = 0  # steps; older entries are not candidates (0 = no limit but Q)
    # stored: the memory's detached vectors (no extra lookup, no gradient to those rows);
    # fresh: the memory's ids looked up again each step, with gradient (+M lookups)
    memory_vectors: Literal["stored", "fresh"] = "stored"
    # shared sampled negatives: uniform over the catalogue, or q_j ∝ train_count_j^α
    sampling: Literal["uniform", "popularity"] = "uniform"
    popularity_alpha: float = 0.75
    # also mask candidates that are positives of the same user within the global batch
    mask_same_user: bool = False
    # where the in-batch / memory item frequencies of logQ come from: exact training counts,
    # or a streaming estimate (Yi et al. 2019 hashed "last seen / average gap" arrays)
    frequency: Literal["exact", "streaming"] = "exact"
    streaming_buckets: int = 1 << 20  # H, buckets per hash array
    streaming_hashes: int = 2  # m hash arrays; the estimate takes the largest gap
    streaming_lr: float = 0.01  # α of the gap moving average (a running mean until 1/α hits)


@dataclass
class LossConfig:
    name: Literal["sl", "dsl", "bsl", "psl", "bpr"] = "sl"
    temperature: float = 0.1
    include_positive: bool = True
    # DSL knobs (dsl-loss.md); ignored by the other losses. Defaults: the issue-7 sweep's
    # validation winner (docs/dsl-vs-sl.md), the CA branch alone: κ_h = κ_s = 0, γ = 0.5 without
    # DRO scaling (dsl-loss.md's table had κ_s = −0.5 and dro_scale = true). τ₀ = temperature,
    # tuned per dataset as SL's τ is.
    kappa_hard: float = 0.0
    kappa_sim: float = 0.0
    w_max: float | None = None
    slate_size: int = 20
    gamma: float = 0.5
    temp_range: float = 2.0
    dro_scale: bool = False
    # issue-7 design space (defaults = dsl-loss.md's): the competition-intensity statistic of the
    # slate and the map from standardised intensity to temperature
    intensity: Literal["lme", "sigmoid", "entropy"] = "lme"
    temp_map: Literal["exp", "linear"] = "exp"
    # κ logits from row-wise standardised hardness and similarity (unitless, no 1/τ₀)
    standardize: bool = False
    # the vectors of the item–item similarity a_bj: cosine of the item vectors ("item"), or of
    # the item vectors centred on the mean candidate vector ("centered", removes the direction
    # all items share)
    sim_vectors: Literal["item", "centered"] = "item"
    # one fused log-sum-exp, or SL plus each branch as its own loss weighted by branch_weight
    combine: Literal["fused", "mix"] = "fused"
    branch_weight: float = 1.0
    # BSL second temperature, PSL activation
    temperature2: float = 0.1
    psl_activation: Literal["tanh", "atan", "relu"] = "tanh"


@dataclass
class OptimConfig:
    sparse: Literal["rowwise_adagrad", "adagrad", "sgd", "adam"] = "rowwise_adagrad"
    lr: float = 0.05
    eps: float = 1e-8
    weight_decay: float = 0.0
    dense: Literal["adam", "adagrad", "sgd"] = "adam"
    dense_lr: float = 1e-3


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 1024  # per rank
    eval_every: int = 1  # epochs; 0 = only at the end
    log_every: int = 50  # steps
    seed: int = 0
    max_steps_per_epoch: int = 0  # 0 = whole epoch (for smoke tests)
    progress: bool = True
    checkpoint_every: int = 1000  # steps; 0 = only at the end of training (and on preemption)
    keep_checkpoints: int = 2


@dataclass
class EvalConfig:
    k: list[int] = field(default_factory=lambda: [20])
    batch_size: int = 1024  # query users per evaluation step, per rank


@dataclass
class RunConfig:
    dir: str = "runs/default"
    name: str = ""
    overwrite: bool = False


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    negatives: NegativesConfig = field(default_factory=NegativesConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, arg, value)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            value = [value]
        return [_coerce(f"{key}[{i}]", item_tp, v) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected bool (true/false), got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected float, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected str, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {tp}")


def _merge(obj: Any, updates: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in updates.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise ConfigError(
                f"unknown config key '{key}' (known: {', '.join(sorted(names))})"
            )
        cur = getattr(obj, k)
        if dataclasses.is_dataclass(cur):
            if not isinstance(v, dict):
                raise ConfigError(f"{key}: expected a section (mapping), got {v!r}")
            _merge(cur, v, prefix=f"{key}.")
        else:
            setattr(obj, k, _coerce(key, hints[k], v))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"loss.temperature=0.2"`` -> (["loss", "temperature"], 0.2); values parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {key}: cannot parse value {raw!r}: {e}") from None
    return key.split("."), value


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML file at ``path``, then each ``key.sub=value`` override."""
    cfg = Config()
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping of sections at top level")
        try:
            _merge(cfg, data)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        _merge(cfg, nested)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks that a type annotation cannot express."""
    checks = [
        (cfg.model.dim > 0, "model.dim must be > 0"),
        (cfg.train.batch_size > 0, "train.batch_size must be > 0"),
        (cfg.train.epochs >= 0, "train.epochs must be >= 0"),
        (cfg.loss.temperature > 0, "loss.temperature must be > 0"),
        (cfg.negatives.num_sampled >= 0, "negatives.num_sampled must be >= 0"),
        (
            cfg.negatives.in_batch or cfg.negatives.num_sampled > 0
            or cfg.negatives.memory_size > 0,
            "negatives: enable in_batch, num_sampled > 0 or memory_size > 0 "
            "(no candidates otherwise)",
        ),
        (all(k > 0 for k in cfg.eval.k) and cfg.eval.k, "eval.k must be a list of positive ints"),
        (cfg.loss.temp_range >= 1.0, "loss.temp_range must be >= 1"),
        (cfg.loss.branch_weight >= 0.0, "loss.branch_weight must be >= 0"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
