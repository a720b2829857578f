"""Eager PyTorch: runs every format whose exporter restores an `nn.Module` in place."""

from __future__ import annotations

from .base import Runtime, register_runtime


@register_runtime
class TorchRuntime(Runtime):
    """The model as a PyTorch module, called eagerly (the reference every format is checked on)."""

    name = "torch"
    description = "eager PyTorch (dense, csr, channels, semi24)"
    accepts = ("dense", "csr", "channels", "semi24")
