"""Eager PyTorch: runs every format whose exporter restores an `nn.Module` in place."""

from __future__ import annotations

from .base import Runtime, register_runtime


@register_runtime
class TorchRuntime(Runtime):
    """The model as a PyTorch module, called eagerly (the reference every format is checked on).

    It accepts any format a checkpoint artifact restores (dense, csr, channels, semi24 and
    any format added later): a new in-process format needs no line here.
    """

    name = "torch"
    description = "eager PyTorch"
    accepts = ()  # see accepts_format: every in-process format

    def accepts_format(self, format_name: str) -> bool:
        """Every format restored as an `nn.Module` runs eagerly."""
        return True
