"""The kernels as PyTorch operators (`torch.library`), so a converted model stays an ordinary
`nn.Module`, runs under `inference_mode` and shows up by name in `torch.profiler`."""

from __future__ import annotations

if __name__ != "sparsebench.kernels.ops":  # see the package docstring
    raise ImportError("import the kernels as sparsebench.kernels, not from the repository folder")

import torch  # noqa: E402

from . import bitmask  # noqa: E402

OP_NAMESPACE = "sparsebench"


@torch.library.custom_op(f"{OP_NAMESPACE}::bitmask_linear", mutates_args=())
def bitmask_linear(
    x: torch.Tensor,
    rowstart: torch.Tensor,
    masks: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None,
    in_features: int,
) -> torch.Tensor:
    """`x @ W.T (+ bias)` for W packed by `bitmask.pack` (CPU, float32)."""
    flat = x.detach().reshape(-1, in_features).to(torch.float32).contiguous()
    out = bitmask.matmul(rowstart.numpy(), masks.numpy(), values.numpy(), flat.numpy())
    result = torch.from_numpy(out)
    if bias is not None:
        result += bias.detach()
    return result.reshape(*x.shape[:-1], masks.shape[0])


@bitmask_linear.register_fake
def _(x, rowstart, masks, values, bias, in_features):
    return x.new_empty((*x.shape[:-1], masks.shape[0]))


def pack_linear(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """The tensors `bitmask_linear` takes for a Linear weight (M, K)."""
    rowstart, masks, values = bitmask.pack(weight.detach().to(torch.float32).cpu().numpy())
    return {
        "rowstart": torch.from_numpy(rowstart),
        "masks": torch.from_numpy(masks),
        "values": torch.from_numpy(values),
    }
