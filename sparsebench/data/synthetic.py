"""Seeded random inputs for latency-only runs (no labels, so no accuracy)."""

import torch

from ..errors import SparsebenchError


def synthetic_inputs(
    input_shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Standard-normal inputs of `input_shape`, the same for a given seed whatever the dtype."""
    if not dtype.is_floating_point:
        raise SparsebenchError(f"synthetic inputs are floating point, not {dtype}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(input_shape), generator=generator, dtype=torch.float32).to(dtype)
