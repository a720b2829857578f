"""Pruning methods (one per module in `methods/`, behind `base.PruningMethod` and the
`METHODS` registry): they produce pruned checkpoints to profile."""

from . import methods  # noqa: F401 - registers the methods
from .base import METHODS, PruneConfig, PruneResult, PruningMethod, prune, register_method
from .data import PruneData, load_prune_data
from .magnitude import magnitude_prune_, prune_warnings

__all__ = ["METHODS", "PruneConfig", "PruneData", "PruneResult", "PruningMethod",
           "load_prune_data", "magnitude_prune_", "prune", "prune_warnings",
           "register_method"]  # fmt: skip
