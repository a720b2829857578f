"""Benchmark profiles: a small TOML file of models, batch sizes, reference and thresholds.

`load_profile` type-checks every key of the file against `SCHEMA` (unknown keys are refused
with the closest known one), and the dataclasses check ranges, the device and every model's
source, so a bad profile fails in one line before anything is built or timed.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..device import check_device, check_threads
from ..errors import SparsebenchError
from ..measure.interleaved import TimingConfig
from ..options import check_count, check_number, check_seconds
from .reference import KINDS


def _resolve_source(entry: ModelEntry) -> None:
    """Refuse an unknown zoo name, a missing checkpoint or a missing factory file."""
    where = f"model '{entry.name}'"
    if entry.zoo is not None:
        from ..zoo import get_model_spec

        try:
            get_model_spec(entry.zoo)
        except SparsebenchError as exc:
            raise SparsebenchError(f"{where}: {exc}") from None
    if entry.path is not None and not Path(entry.path).is_file():
        raise SparsebenchError(f"{where}: no such file: {entry.path}")
    module, _, attr = (entry.factory or "").rpartition(":")
    if entry.factory is not None and (not module or not attr):
        raise SparsebenchError(f"{where}: factory must look like file.py:name or module:name")
    if module.endswith(".py") and not Path(module).is_file():
        raise SparsebenchError(f"{where}: no such file: {module}")


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
    prune_method: str = "magnitude"  # any of `sparsebench prune-methods`
    prune_scope: str = "layer"
    prune_epochs: int = 0  # what the method trains (fine-tuning, IMP rounds...) on `data`
    prune_options: tuple[tuple[str, Any], ...] = ()  # the method's own options

    def __post_init__(self):
        sources = [s for s in (self.zoo, self.factory, self.path) if s is not None]
        if len(sources) != 1:
            raise SparsebenchError(f"model '{self.name}' needs exactly one of zoo, factory or path")
        if not 0.0 <= self.prune < 1.0:
            raise SparsebenchError(f"model '{self.name}': prune must be in [0, 1)")
        check_count(f"model '{self.name}': seed", self.seed, 0)
        check_count(f"model '{self.name}': train_epochs", self.train_epochs, 0)
        if self.input_shape is not None and min(self.input_shape, default=0) < 1:
            raise SparsebenchError(f"model '{self.name}': input_shape needs positive dimensions")
        if self.factory is not None and self.input_shape is None:
            raise SparsebenchError(f"model '{self.name}': a factory needs input_shape")
        check_count(f"model '{self.name}': prune_epochs", self.prune_epochs, 0)
        if self.prunes and self.pruning.trains and self.prune_epochs < 1:
            raise SparsebenchError(
                f"model '{self.name}': method '{self.prune_method}' prunes while it trains: "
                "set prune_epochs to 1 or more"
            )
        self.pruning_config()  # an unknown method, scope or option fails at load
        _resolve_source(self)

    @property
    def pruning(self):
        """The registered pruning method `prune_method` names."""
        from ..prune import METHODS

        try:
            return METHODS.get(self.prune_method)
        except SparsebenchError as exc:
            raise SparsebenchError(f"model '{self.name}': {exc}") from None

    @property
    def prunes(self) -> bool:
        return bool(self.prune) or self.pruning.fixed_sparsity is not None

    @property
    def prune_needs_data(self) -> bool:
        return self.prunes and (self.pruning.needs_data or self.prune_epochs > 0)

    def pruning_config(self):
        """The PruneConfig of `prune`, `prune_scope` and `prune_options`, checked."""
        from ..prune import PruneConfig

        method = self.pruning
        sparsity = method.fixed_sparsity if method.fixed_sparsity is not None else self.prune
        try:
            config = PruneConfig(sparsity, self.prune_scope, self.seed, dict(self.prune_options))
            method.check_options(config)
        except SparsebenchError as exc:
            raise SparsebenchError(f"model '{self.name}': {exc}") from None
        return config


@dataclass(frozen=True)
class Thresholds:
    """When a change is a regression (see `decision.py`): the slowdown factor a latency
    ratio may grow by, the confidence of its interval, the noise floor above which a run is
    inconclusive (default: the margin `max_slowdown - 1`), and the accuracy points."""

    max_slowdown: float = 1.10
    confidence: float = 0.95
    max_noise: float | None = None
    accuracy_points: float = 1.0

    def __post_init__(self):
        check_number("thresholds.max_slowdown", self.max_slowdown, above=1)
        check_number("thresholds.confidence", self.confidence, above=0.5, below=1)
        if self.max_noise is not None:
            check_number("thresholds.max_noise", self.max_noise, above=0)
        check_number("thresholds.accuracy_points", self.accuracy_points, at_least=0)

    @property
    def noise_limit(self) -> float:
        return self.max_noise if self.max_noise is not None else self.max_slowdown - 1


@dataclass(frozen=True)
class Timing(TimingConfig):
    """The `[timing]` table of a profile: the shared `TimingConfig` with the check's defaults:
    many short blocks (the minimum of each is what is compared), at least 5 rounds for the
    confidence interval, and up to `max_seconds` of extra rounds while fewer than `rounds`
    of them were quiet."""

    names = "timing."
    rounds: int = 40
    block_seconds: float = 0.005
    block_iters: int = 10
    warmup: int = 3
    max_seconds: float = 15.0

    def __post_init__(self):
        check_count("timing.rounds", self.rounds, 5,
                    rule="timing.rounds must be >= 5 for the confidence interval")  # fmt: skip
        check_seconds("timing.max_seconds", self.max_seconds, allow_zero=True)
        super().__post_init__()


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
    reference: str = "mlp"
    reference_matmul: int = 128
    thresholds: Thresholds = field(default_factory=Thresholds)
    timing: Timing = field(default_factory=Timing)

    def __post_init__(self):
        where = f"profile {self.path}"
        if not self.models:
            raise SparsebenchError(f"{where} lists no [[models]]")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise SparsebenchError(f"{where}: model names must be unique")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise SparsebenchError(f"{where}: batch_sizes must be positive integers")
        if len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise SparsebenchError(f"{where}: batch_sizes lists a size twice")
        if self.reference not in KINDS:
            raise SparsebenchError(
                f"{where}: reference must be one of {', '.join(KINDS)} (got {self.reference!r})"
            )
        if self.reference_matmul < 8:
            raise SparsebenchError(f"{where}: reference_matmul must be >= 8")
        for model in self.models if self.data is None else ():
            why = None
            if model.train_epochs:
                why = "sets train_epochs"
            elif model.prune_needs_data:
                why = f"prunes with '{model.prune_method}', which trains or scores on data"
            if why:
                raise SparsebenchError(
                    f"{where}: model '{model.name}' {why} but the profile has no data"
                )
        try:
            check_device(self.device)
        except SparsebenchError as exc:
            raise SparsebenchError(f"{where}: {exc}") from None
        object.__setattr__(self, "threads", check_threads(self.threads, f"{where}: threads"))

    @property
    def baseline_path(self) -> Path:
        """Where the baseline lives by default: NAME.baseline.json beside the profile."""
        return self.path.with_name(f"{self.path.stem}.baseline.json")


# The type of every key a profile may hold, per table; ranges are the dataclasses' to check.
SCHEMA: dict[str, dict[str, str]] = {
    "profile": {"name": "str", "batch_sizes": "sizes", "device": "str", "threads": "int",
                "data": "str", "reference": "str", "reference_matmul": "int", "thresholds": "table",
                "timing": "table", "models": "tables"},
    "[thresholds]": {"max_slowdown": "number", "confidence": "number", "max_noise": "number",
                     "accuracy_points": "number"},
    "[timing]": {"rounds": "int", "block_seconds": "number", "block_iters": "int",
                 "warmup": "int", "max_seconds": "number"},
    "models": {"name": "str", "zoo": "str", "factory": "str", "path": "str",
               "input_shape": "sizes", "seed": "int", "prune": "number", "train_epochs": "int",
               "prune_method": "str", "prune_scope": "str", "prune_epochs": "int",
               "prune_options": "table"},
}  # fmt: skip

_RENAMED = {"alpha": "confidence"}  # keys of older profiles, and what replaced them

_KINDS = {
    "str": "a string",
    "int": "an integer",
    "number": "a finite number",
    "sizes": "a list of positive integers, e.g. [1, 32]",
    "table": "a table",
    "tables": "an array of tables ([[models]])",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits(kind: str, value: Any) -> bool:
    """Whether a TOML value has the schema kind (TOML has no null: absent keys take defaults)."""
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return _is_int(value)
    if kind == "number":
        return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
    if kind == "sizes":
        return isinstance(value, list) and bool(value) and all(_is_int(v) and v > 0 for v in value)
    if kind == "table":
        return isinstance(value, dict)
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def check_table(table: Any, section: str, where: str) -> dict:
    """Refuse a non-table, unknown keys (naming the closest known key) and mistyped values."""
    schema = SCHEMA[section]
    if not isinstance(table, dict):
        raise SparsebenchError(f"{where} must be a table")
    for key, value in table.items():
        if key not in schema:
            close = [_RENAMED[key]] if key in _RENAMED else []
            close = close or difflib.get_close_matches(key, schema, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(schema)}"
            raise SparsebenchError(f"{where}: unknown key '{key}'{hint}")
        if not _fits(schema[key], value):
            raise SparsebenchError(f"{where}: {key} must be {_KINDS[schema[key]]} (got {value!r})")
    return table


def _build(cls, table: dict, where: str, **extra):
    try:
        return cls(**{**table, **extra})
    except TypeError as exc:  # a required key is missing
        raise SparsebenchError(f"{where}: {exc}") from None


def _model(table: Any, base: Path, index: int) -> ModelEntry:
    where = f"models[{index}]"
    if isinstance(table, dict) and isinstance(table.get("name"), str):
        where = f"model '{table['name']}'"
    table = dict(check_table(table, "models", where))
    if "name" not in table:
        raise SparsebenchError(f"{where} needs a name")
    if "path" in table:
        table["path"] = str(base / table["path"])
    if "factory" in table and ".py:" in table["factory"]:
        table["factory"] = str(base / table["factory"])
    if "input_shape" in table:
        table["input_shape"] = tuple(table["input_shape"])
    if "prune_options" in table:
        table["prune_options"] = tuple(sorted(table["prune_options"].items()))
    return _build(ModelEntry, table, where)


def _read_toml(path: Path) -> dict:
    if not path.is_file():
        raise SparsebenchError(f"no such profile: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SparsebenchError(f"profile {path} is not valid TOML: {exc}") from None


def load_profile(path: str | Path) -> CheckProfile:
    """Parse and validate a profile file; any problem is one SparsebenchError line.

    Every key is type-checked and every model's source (zoo name, checkpoint, factory file)
    and the device are resolved here, before anything is measured.
    """
    path = Path(path)
    raw = dict(check_table(_read_toml(path), "profile", f"profile {path}"))
    models = raw.pop("models", [])
    entries = tuple(_model(table, path.parent, i) for i, table in enumerate(models))
    thresholds = check_table(raw.get("thresholds", {}), "[thresholds]", "[thresholds]")
    raw["thresholds"] = _build(Thresholds, thresholds, "[thresholds]")
    raw["timing"] = _build(Timing, check_table(raw.get("timing", {}), "[timing]", "[timing]"),
                           "[timing]")  # fmt: skip
    if "batch_sizes" in raw:
        raw["batch_sizes"] = tuple(raw["batch_sizes"])
    raw.setdefault("name", path.stem)
    return _build(CheckProfile, raw, f"profile {path}", path=path, models=entries)
