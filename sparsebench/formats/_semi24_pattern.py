"""The 2:4 pattern as plain tensor functions: detect it, enforce it, size its compressed form.

A 2-D weight (out_features, in_features) is 2:4 sparse when every group of 4 consecutive
elements of a row (along the input dimension, the last one) holds at least 2 zeros: the
pattern NVIDIA's sparse tensor cores (sm80+) multiply at up to twice the dense rate.
Nothing here needs a GPU.
"""

from __future__ import annotations

import torch

GROUP = 4  # elements per group along the input dimension
KEEP = 2  # at most this many non-zeros per group


def _groups(weight: torch.Tensor) -> torch.Tensor:
    """`weight` viewed as (rows, cols // 4, 4); ValueError when it is not 2-D with cols % 4 == 0."""
    if weight.dim() != 2:
        raise ValueError(f"2:4 sparsity is defined for 2-D weights, got {weight.dim()}-D")
    rows, cols = weight.shape
    if cols % GROUP:
        raise ValueError(f"rows of length {cols} do not split into groups of {GROUP}")
    return weight.reshape(rows, cols // GROUP, GROUP)


def _groups_ok(weight: torch.Tensor) -> torch.Tensor:
    """A bool per group of 4: whether it has at least 2 zeros."""
    return (_groups(weight) != 0).sum(dim=-1) <= KEEP


def is_24_sparse(weight: torch.Tensor) -> bool:
    """Whether every group of 4 consecutive elements along the last dimension has >= 2 zeros."""
    return bool(_groups_ok(weight).all())


def fraction_24_groups(weight: torch.Tensor) -> float:
    """Fraction of the groups of 4 that already have at least 2 zeros (1.0 for a 2:4 weight)."""
    ok = _groups_ok(weight)
    return float(ok.float().mean()) if ok.numel() else 1.0


def mask_24(weight: torch.Tensor) -> torch.Tensor:
    """Bool mask keeping the 2 largest |w| of each group of 4 (ties keep the earlier element)."""
    groups = _groups(weight.detach()).abs()
    order = torch.sort(groups, dim=-1, descending=True, stable=True).indices
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, order[..., :KEEP], True)
    return keep.reshape(weight.shape)


def enforce_24_(weight: torch.Tensor) -> int:
    """Magnitude 2:4 pruning in place; returns how many non-zero weights it set to zero.

    Weights that are already 2:4 sparse are left unchanged (and 0 is returned).
    """
    keep = mask_24(weight)
    with torch.no_grad():
        dropped = (~keep) & (weight != 0)
        zeroed = int(dropped.sum())
        if zeroed:
            weight.masked_fill_(dropped, 0)
    return zeroed


def _metadata_bits_per_element(dtype: torch.dtype) -> int:
    # CUTLASS packs float32 as 1:2 pairs: a 16-bit meta word per 8 dense elements (2 bits each);
    # 16- and 8-bit types use a 4-bit code per group of 4, i.e. 2 bits per kept value.
    return 2 if dtype == torch.float32 else 1


def compressed_bytes(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype) -> int:
    """Bytes of a 2:4 compressed weight of `shape` and `dtype`: kept values plus metadata.

    values   = rows * cols / 2 elements of `dtype` (the 2 kept of every 4);
    metadata = 2 bits per kept value = a 4-bit code per group of 4 = rows * cols / 8 bytes
               (CUTLASS: one int16 per 16 fp16/bf16 elements, one int32 per 32 int8 elements;
               cuSPARSELt stores the same bits after the values in one buffer, and may pad it).
    float32 (CUTLASS only) is packed as 1:2 pairs, with rows * cols / 4 bytes of metadata.
    """
    if len(shape) != 2:
        raise ValueError(f"2:4 compression is defined for 2-D weights, got shape {tuple(shape)}")
    rows, cols = (int(n) for n in shape)
    if cols % 16:
        raise ValueError(f"2:4 compression needs rows of a multiple of 16 elements, got {cols}")
    numel = rows * cols
    values = numel // 2 * dtype.itemsize
    metadata = numel * _metadata_bits_per_element(dtype) // 8
    return values + metadata
