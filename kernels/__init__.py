"""sparsebench's own sparse kernels (installed as `sparsebench.kernels`; needs the `kernels`
extra, numba). Importing this package registers the `sparsebench::` operators."""

from .ops import bitmask_linear, pack_linear

__all__ = ["bitmask_linear", "pack_linear"]
