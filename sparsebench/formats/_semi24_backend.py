"""What torch's 2:4 kernels accept: layer eligibility, the GPU check and the backend choice.

The shape and dtype constraints are read from the installed torch
(`SparseSemiStructuredTensor{CUSPARSELT,CUTLASS}._DTYPE_SHAPE_CONSTRAINTS`), so the table
follows torch upgrades. Nothing here touches CUDA at import time.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.sparse import SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS
from torch.sparse.semi_structured import SparseSemiStructuredTensor

from ..errors import SparsebenchError
from ._semi24_pattern import fraction_24_groups, is_24_sparse

BACKENDS: dict[str, type[SparseSemiStructuredTensor]] = {
    "cusparselt": SparseSemiStructuredTensorCUSPARSELT,
    "cutlass": SparseSemiStructuredTensorCUTLASS,
}
MIN_CAPABILITY = (8, 0)
NO_GPU = (
    "2:4 semi-structured kernels need an NVIDIA GPU with compute capability 8.0 or newer "
    "(cuSPARSELt/CUTLASS); this machine has no CUDA GPU"
)


class Semi24Unavailable(SparsebenchError):
    """semi24 cannot convert here; carries the eligibility table and would-be size for the CLI."""

    def __init__(self, reason: str, layers: list | None = None, stored_bytes: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.layers = list(layers or [])
        self.stored_bytes = stored_bytes


class HardwareUnavailable(Semi24Unavailable):
    """No GPU here can run torch's 2:4 kernels."""


class NoEligibleLayers(Semi24Unavailable):
    """No layer of the model can take a 2:4 weight (wrong type, shape or zero pattern)."""


def default_backend() -> str:
    """The backend `to_sparse_semi_structured` would pick: cuSPARSELt unless absent or forced off.

    Without a GPU this still answers for the installed torch build (a CPU build has no
    cuSPARSELt, so the stricter CUTLASS constraints apply).
    """
    if SparseSemiStructuredTensor._FORCE_CUTLASS or not torch.backends.cusparselt.is_available():
        return "cutlass"
    return "cusparselt"


def constraints(backend: str, dtype: torch.dtype):
    """(sparse_min_rows, sparse_min_cols, ...) of `backend` for `dtype`, or None if unsupported."""
    return BACKENDS[backend]._DTYPE_SHAPE_CONSTRAINTS.get(dtype)


def shape_reasons(module: nn.Module, dtype: torch.dtype | str, backend: str) -> list[str]:
    """Every reason `module` cannot hold a `backend` 2:4 weight of `dtype`, ignoring its zeros."""
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if not isinstance(module, nn.Linear):
        return ["only nn.Linear"]
    limits = constraints(backend, dtype)
    if limits is None:
        supported = ", ".join(
            str(d).removeprefix("torch.") for d in BACKENDS[backend]._DTYPE_SHAPE_CONSTRAINTS
        )
        return [
            f"{backend} has no 2:4 kernel for {str(dtype).removeprefix('torch.')} ({supported})"
        ]
    reasons = []
    rows, cols = module.weight.shape
    for what, size, step in (
        ("out_features", rows, limits.sparse_min_rows),
        ("in_features", cols, limits.sparse_min_cols),
    ):
        if size < step or size % step:
            reasons.append(f"{what} {size} is not a positive multiple of {step} ({backend})")
    return reasons


def eligibility(
    module: nn.Module,
    dtype: torch.dtype | str,
    backend: str | None = None,
    need_pattern: bool = True,
) -> tuple[bool, str]:
    """Whether `module` can become a 2:4 layer, and why not (all failed constraints, '; '-joined).

    `need_pattern=False` skips the 2:4 zero-pattern check (for layers about to be enforced).
    """
    backend = backend or default_backend()
    reasons = shape_reasons(module, dtype, backend)
    if not reasons and need_pattern and not is_24_sparse(module.weight):
        share = fraction_24_groups(module.weight)
        reasons.append(
            f"weight is not 2:4 sparse ({share:.0%} of groups of 4 have 2+ zeros); "
            "--enforce prunes it to 2:4"
        )
    return not reasons, "; ".join(reasons)


def _cuda_index(device: str) -> int:
    return int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()


def semi_structured_supported(device: str) -> tuple[bool, str]:
    """Whether `device` can run torch's 2:4 kernels, with the reason (or the GPU and backend)."""
    if not torch.cuda.is_available():
        return False, NO_GPU
    if not device.startswith("cuda"):
        return (
            False,
            f"2:4 semi-structured kernels run on CUDA only; use --device cuda, not {device}",
        )
    if torch.version.hip:
        return False, "2:4 on ROCm (hipSPARSELt) is not supported by sparsebench's semi24 format"
    index = _cuda_index(device)
    if index >= torch.cuda.device_count():
        return False, f"{device}: only {torch.cuda.device_count()} GPU(s)"
    capability = torch.cuda.get_device_capability(index)
    name = torch.cuda.get_device_name(index)
    if capability < MIN_CAPABILITY:
        return False, (
            "2:4 semi-structured kernels need compute capability 8.0 or newer "
            f"(cuSPARSELt/CUTLASS); {name} has {capability[0]}.{capability[1]}"
        )
    backend = select_backend(capability)
    if backend is None:
        missing = (
            "is forced off (SparseSemiStructuredTensor._FORCE_CUTLASS)"
            if SparseSemiStructuredTensor._FORCE_CUTLASS
            else "is missing from this torch build"
        )
        return False, (
            f"{name} (sm{capability[0]}{capability[1]}): torch's CUTLASS 2:4 kernels are built "
            f"for sm8x only and cuSPARSELt {missing}"
        )
    return True, f"{name} (sm{capability[0]}{capability[1]}), backend {backend}"


def backend_usable(backend: str, capability: tuple[int, int]) -> bool:
    """Whether torch can run `backend`'s 2:4 kernels on a GPU of `capability`."""
    if capability < MIN_CAPABILITY:
        return False
    if backend == "cusparselt":
        return torch.backends.cusparselt.is_available()
    return backend == "cutlass" and capability[0] == 8  # torch builds its CUTLASS GEMMs for Sm80


def select_backend(capability: tuple[int, int], preferred: str | None = None) -> str | None:
    """`preferred` when usable, else torch's default choice when usable, else None."""
    for backend in (preferred, default_backend()):
        if backend and backend_usable(backend, capability):
            return backend
    return None


def check_hardware(device: str, preferred: str | None = None) -> tuple[bool, str, str]:
    """(supported, reason, backend): the backend that runs on `device`, else torch's default.

    `preferred` (an artifact's backend, say) is used when it runs on this GPU.
    """
    ok, reason = semi_structured_supported(device)
    if not ok:
        return False, reason, default_backend()
    capability = torch.cuda.get_device_capability(torch.device(device))
    return True, reason, select_backend(capability, preferred)


def from_dense(weight: torch.Tensor, backend: str) -> SparseSemiStructuredTensor:
    """Compress a 2:4 CUDA weight with `backend` (no global `_FORCE_CUTLASS` flag is touched)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*SparseSemiStructuredTensor.*prototype")
        return BACKENDS[backend].from_dense(weight.detach().contiguous())


def packed_bytes(weight: torch.Tensor) -> int:
    """Bytes a semi-structured tensor really holds (values, metadata and any transposed copy)."""
    parts = ("packed", "meta", "packed_t", "meta_t", "compressed_swizzled_bitmask")
    tensors = [getattr(weight, part, None) for part in parts]
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def count_nonzero(weight: torch.Tensor) -> int:
    """Non-zeros of a weight, dense or semi-structured (whose kept values may include zeros).

    Generic code cannot call `count_nonzero` (or `!= 0`) on a `SparseSemiStructuredTensor`.
    """
    if isinstance(weight, SparseSemiStructuredTensor):
        return int(torch.count_nonzero(weight.detach().values()))
    return int(torch.count_nonzero(weight.detach()))
