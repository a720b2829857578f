"""`nm`: N:M semi-structured magnitude pruning, 2:4 by default: in every group of M consecutive
weights along the input dimension keep the N largest |w|, the pattern the semi-structured
(`semi24`) kernels run without `--enforce`.

Mishra et al., "Accelerating Sparse Deep Neural Networks", arXiv:2104.08378 (2021) (NVIDIA's
2:4 sparsity); Zhou et al., "Learning N:M Fine-grained Structured Sparse Neural Networks From
Scratch", ICLR 2021. The sparsity is 1 - N/M whatever `sparsity` asks; a layer whose input
width is not a multiple of M keeps its last partial group dense.
"""

from __future__ import annotations

import torch

from ...errors import SparsebenchError
from ..base import PruningMethod, register_method


@register_method
class NM(PruningMethod):
    name = "nm"
    description = "keep the N largest |w| of every M along the inputs (2:4 by default)"
    paper = "Mishra et al. 2021 (2:4), Zhou et al. 2021 (N:M)"
    n, m = 2, 4
    fixed_sparsity = 1 - n / m
    uses_scope = False

    def scores(self, model, layers, config, data=None):
        return {name: module.weight.detach().abs() for name, module in layers}

    def masks(self, scores, config):
        if not 0 < self.n <= self.m:
            raise SparsebenchError(f"N:M needs 0 < N <= M, got {self.n}:{self.m}")
        return {name: nm_mask(score, self.n, self.m) for name, score in scores.items()}


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep-mask with the N largest of each M consecutive entries of each row (dim 1 onward
    flattened, as a conv's input channels x kernel); a trailing partial group stays dense."""
    rows = score.reshape(score.shape[0], -1)
    whole = rows.shape[1] // m * m
    mask = torch.ones_like(rows, dtype=torch.bool)
    if whole:
        groups = rows[:, :whole].reshape(rows.shape[0], -1, m)
        keep = torch.zeros_like(groups, dtype=torch.bool)
        keep.scatter_(2, torch.topk(groups, n, dim=2).indices, True)
        mask[:, :whole] = keep.reshape(rows.shape[0], whole)
    return mask.reshape(score.shape)
