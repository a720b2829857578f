"""sparsebench's own sparse kernels (installed as `sparsebench.kernels`; needs the `kernels`
extra, numba). Importing this package registers the `sparsebench::` operators.

Reached as a top-level `kernels` instead (the repository root on `sys.path`, as under
`python -m pytest` or a notebook started there), the folder stays inert: Hugging Face's
unrelated `kernels` package has that name and transformers imports whatever answers to it, and
registering the operators a second time would replace the first registration while the model's
handles still point at it."""

if __name__ == "sparsebench.kernels":
    from . import _numba  # noqa: F401 - numba's cache and threads, set before numba is imported
    from .ops import bitmask_conv2d, bitmask_linear, pack_linear

    __all__ = ["bitmask_conv2d", "bitmask_linear", "pack_linear"]
