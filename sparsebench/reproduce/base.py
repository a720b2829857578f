"""A recipe, what it is given (`ReproduceConfig`, `Workspace`) and what it returns (`Outcome`).

A recipe names its seed document, quotes the claim it checks, runs the experiment with the
pruning methods and the training loop, and returns tables, plots, the figures for
results.json, a verdict with its rule, and the checkpoints the final `compare` measures.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..arch import build_model
from ..checkpoint import CheckpointMeta, save_checkpoint
from ..errors import SparsebenchError
from ..options import check_count
from ..registry import Registry

VERDICTS = ("reproduced", "partly reproduced", "not reproduced")


@dataclass(frozen=True)
class ReproduceConfig:
    """`quick`: the few-epoch, few-seed version the tests run; `seeds` None takes the recipe's
    own count; `data` replaces the recipe's offline dataset where it takes one."""

    quick: bool = False
    seeds: int | None = None
    data: str | None = None

    def __post_init__(self):
        if self.seeds is not None:
            check_count("--seeds", self.seeds, 1)


@dataclass
class Outcome:
    """What a recipe measured; `run.py` writes it as report.md and results.json."""

    sections: list[str] = field(default_factory=list)  # markdown paragraphs and tables
    results: dict[str, Any] = field(default_factory=dict)  # the figures, for results.json
    verdict: str = "not reproduced"
    reason: str = ""  # why the verdict, with the rule applied
    plots: list[str] = field(default_factory=list)  # file names in the output folder
    compare: list[str] = field(default_factory=list)  # checkpoints for the final compare
    compare_formats: tuple[str, ...] = ("dense", "csr", "bitmask")
    data_note: str = ""  # which data was used (an offline stand-in says so)
    compare_data: str | None = None  # dataset spec for the compare's accuracy column

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}")


class Recipe:
    """One seed experiment: `name`, `seed` (the document), `title`, the `claim` quoted, and
    `run(config, workspace) -> Outcome`."""

    name = ""
    seed = ""
    title = ""
    claim = ""
    default_seeds = 3
    takes_data: tuple[str, ...] = ()  # dataset kinds --data may name (cifar10, cifar100)

    def run(self, config: ReproduceConfig, workspace: Workspace) -> Outcome:
        raise NotImplementedError

    def seeds(self, config: ReproduceConfig) -> int:
        return config.seeds or (1 if config.quick else self.default_seeds)


RECIPES: Registry[Recipe] = Registry("recipe", "sparsebench reproduce --list")


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    RECIPES.register(cls.name, cls())
    return cls


class Workspace:
    """The output folder: checkpoints go in `checkpoints/`, plots beside report.md."""

    def __init__(self, folder: Path, log=None):
        self.folder = folder
        self.checkpoints = folder / "checkpoints"
        self.started = time.perf_counter()
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))

    def log(self, line: str) -> None:
        """A progress line on stderr, with the seconds since the run started."""
        self._log(f"[{time.perf_counter() - self.started:6.1f} s] {line}")

    def save(self, model: nn.Module, name: str, arch: str, input_shape, arch_kwargs=None,
             dataset: str | None = None, extra: dict | None = None) -> str:  # fmt: skip
        """Save a sparsebench checkpoint `checkpoints/NAME.pt`; returns its path."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        path = self.checkpoints / f"{name}.pt"
        meta = CheckpointMeta(arch=arch, arch_kwargs=arch_kwargs or {},
                              input_shape=list(input_shape), dataset=dataset,
                              extra=extra or {})  # fmt: skip
        save_checkpoint(path, model, meta, force=True)
        return str(path)

    def plot_path(self, name: str) -> Path:
        return self.folder / name


def fresh(arch: str, seed: int, kwargs: dict | None = None) -> nn.Module:
    """The zoo model `arch` with the initial weights of `seed`."""
    torch.manual_seed(seed)
    return build_model(arch, kwargs)


def one_of(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise SparsebenchError(f"{what} must be one of {', '.join(choices)}, not '{value}'")
    return value
