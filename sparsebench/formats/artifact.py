"""Artifacts: a sparsebench checkpoint whose metadata names its format and the export report.

An artifact carries, besides the converted state_dict, the outputs of the verified model on
a deterministic synthetic batch (`synthetic_inputs(shape, seed)`), so `load` re-checks every
artifact against the dense reference it was verified with: a tampered or corrupted artifact
fails before anything is measured.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checkpoint import CheckpointMeta
from ..data.synthetic import synthetic_inputs
from ..errors import SparsebenchError
from .base import get_exporter
from .verify import compare_outputs, require_passed

CHECK_SEED = 1234
CHECK_SAMPLES = 8
REFERENCE_KEY = "reference_outputs"


def check_inputs(input_shape: list[int] | tuple[int, ...]) -> torch.Tensor:
    """The deterministic batch an artifact's reference outputs were computed on."""
    return synthetic_inputs((CHECK_SAMPLES, *input_shape[1:]), seed=CHECK_SEED)


def restore_artifact(
    meta: CheckpointMeta, model: nn.Module, state: dict, tensors: dict, device: str
) -> nn.Module:
    """Rebuild the runnable model of an artifact and re-verify it against its reference."""
    exporter = get_exporter(meta.format)
    restored = exporter.restore(model, meta.export.get("payload", {}), state, device)
    reference = tensors.get(REFERENCE_KEY)
    if reference is None:
        raise SparsebenchError(f"{meta.format} artifact has no reference outputs to verify against")
    shape = meta.input_shape or []

    class _Stored(nn.Module):
        def forward(self, x):
            return reference

    tolerance = meta.export.get("verification", {}).get("tolerance", exporter.tolerance)
    check = compare_outputs(
        _Stored(), restored, check_inputs(shape), tolerance, "artifact check", device
    )
    require_passed(check, f"{meta.format} artifact (tampered or corrupted?)")
    return restored
