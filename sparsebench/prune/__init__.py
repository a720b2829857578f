"""Pruning methods (one per module): they produce pruned checkpoints to profile."""

from .magnitude import magnitude_prune_

__all__ = ["magnitude_prune_"]
