"""Pruning methods (one per module): they produce pruned checkpoints to profile."""

from .magnitude import magnitude_prune_, prune_warnings

__all__ = ["magnitude_prune_", "prune_warnings"]
