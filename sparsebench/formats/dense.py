"""`dense`: masks folded into plain weights; the reference every other format is compared with."""

from __future__ import annotations

import torch
from torch import nn

from ..arch import load_state_dict_strict
from ..measure.sparsity import prunable_layers
from .base import Conversion, ExportConfig, Exporter, LayerReport, register_format, tensor_bytes


@register_format
class DenseExporter(Exporter):
    """Plain dense tensors: what every runtime runs, zeros included."""

    name = "dense"
    description = "masks folded into plain dense weights (the reference)"

    def convert(self, model: nn.Module, example: torch.Tensor, config: ExportConfig) -> Conversion:
        layers = [
            LayerReport(n, type(m).__name__, "kept", "dense weights, zeros stored")
            for n, m in prunable_layers(model)
        ]
        stored = tensor_bytes(*model.state_dict().values())
        return Conversion(model=model, layers=layers, stored_bytes=stored)

    def restore(self, model: nn.Module, payload: dict, state_dict: dict, device: str) -> nn.Module:
        load_state_dict_strict(model, state_dict, "dense artifact")
        return model.eval().to(device)
