"""Benchmark profiles: a small TOML file of models, batch sizes, reference and thresholds."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import SparsebenchError


@dataclass(frozen=True)
class ModelEntry:
    """One model: a zoo name built with a seed, a `file.py:factory`, or a checkpoint path."""

    name: str
    zoo: str | None = None
    factory: str | None = None
    path: str | None = None
    input_shape: tuple[int, ...] | None = None
    seed: int = 0
    prune: float = 0.0
    train_epochs: int = 0

    def __post_init__(self):
        sources = [s for s in (self.zoo, self.factory, self.path) if s is not None]
        if len(sources) != 1:
            raise SparsebenchError(f"model '{self.name}' needs exactly one of zoo, factory or path")
        if not 0.0 <= self.prune < 1.0:
            raise SparsebenchError(f"model '{self.name}': prune must be in [0, 1)")
        if self.seed < 0 or self.train_epochs < 0:
            raise SparsebenchError(f"model '{self.name}': seed and train_epochs must be >= 0")
        if self.factory is not None and self.input_shape is None:
            raise SparsebenchError(f"model '{self.name}': a factory needs input_shape")


@dataclass(frozen=True)
class Thresholds:
    """When a change is a regression: latency factor and significance, accuracy points."""

    max_slowdown: float = 1.25
    alpha: float = 0.01
    accuracy_points: float = 1.0

    def __post_init__(self):
        if self.max_slowdown <= 1.0:
            raise SparsebenchError("thresholds.max_slowdown must be > 1")
        if not 0.0 < self.alpha < 1.0:
            raise SparsebenchError("thresholds.alpha must be in (0, 1)")
        if self.accuracy_points < 0:
            raise SparsebenchError("thresholds.accuracy_points must be >= 0")


@dataclass(frozen=True)
class Timing:
    """Interleaved timing: rotating rounds of short blocks per variant."""

    rounds: int = 15
    block_seconds: float = 0.02
    block_iters: int = 3
    warmup: int = 3

    def __post_init__(self):
        if self.rounds < 5:
            raise SparsebenchError("timing.rounds must be >= 5 for the significance test")
        if self.block_seconds < 0 or self.block_iters < 1 or self.warmup < 0:
            raise SparsebenchError("timing needs block_seconds >= 0, block_iters >= 1, warmup >= 0")


@dataclass(frozen=True)
class CheckProfile:
    """A parsed profile; model paths and factory files are resolved against its directory."""

    name: str
    path: Path
    models: tuple[ModelEntry, ...]
    batch_sizes: tuple[int, ...] = (1,)
    device: str = "cpu"
    threads: int | None = 1
    data: str | None = None
    reference_matmul: int = 128
    thresholds: Thresholds = field(default_factory=Thresholds)
    timing: Timing = field(default_factory=Timing)

    def __post_init__(self):
        if not self.models:
            raise SparsebenchError(f"profile {self.path} lists no [[models]]")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise SparsebenchError(f"profile {self.path}: model names must be unique")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise SparsebenchError(f"profile {self.path}: batch_sizes must be positive integers")
        if self.reference_matmul < 8:
            raise SparsebenchError(f"profile {self.path}: reference_matmul must be >= 8")
        if self.threads is not None and self.threads < 1:
            raise SparsebenchError(f"profile {self.path}: threads must be >= 1")

    @property
    def baseline_path(self) -> Path:
        """Where the baseline lives by default: NAME.baseline.json beside the profile."""
        return self.path.with_name(f"{self.path.stem}.baseline.json")


def _build(cls, table: Any, where: str, **extra):
    if not isinstance(table, dict):
        raise SparsebenchError(f"{where} must be a table")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise SparsebenchError(f"{where}: unknown key(s) {', '.join(unknown)}")
    try:
        return cls(**{**table, **extra})
    except TypeError as exc:
        raise SparsebenchError(f"{where}: {exc}") from None


def _model(table: dict, base: Path, index: int) -> ModelEntry:
    where = f"models[{index}]"
    if not isinstance(table, dict) or not isinstance(table.get("name"), str):
        raise SparsebenchError(f"{where} needs a name")
    table = dict(table)
    if "path" in table:
        table["path"] = str(base / table["path"])
    if "factory" in table and ".py:" in table["factory"]:
        table["factory"] = str(base / table["factory"])
    if "input_shape" in table:
        table["input_shape"] = tuple(int(s) for s in table["input_shape"])
    return _build(ModelEntry, table, where)


def load_profile(path: str | Path) -> CheckProfile:
    """Parse and validate a profile file; any problem is one SparsebenchError line."""
    path = Path(path)
    if not path.is_file():
        raise SparsebenchError(f"no such profile: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SparsebenchError(f"profile {path} is not valid TOML: {exc}") from None
    base = path.parent
    raw = dict(raw)
    models = raw.pop("models", [])
    if not isinstance(models, list):
        raise SparsebenchError(f"profile {path}: models must be an array of tables")
    entries = tuple(_model(table, base, i) for i, table in enumerate(models))
    raw["thresholds"] = _build(Thresholds, raw.get("thresholds", {}), "[thresholds]")
    raw["timing"] = _build(Timing, raw.get("timing", {}), "[timing]")
    if "batch_sizes" in raw:
        raw["batch_sizes"] = tuple(int(b) for b in raw["batch_sizes"])
    raw.setdefault("name", path.stem)
    return _build(CheckProfile, raw, f"profile {path}", path=path, models=entries)
