"""The kernels as PyTorch operators (`torch.library`), so a converted model stays an ordinary
`nn.Module`, runs under `inference_mode` and shows up by name in `torch.profiler`."""

from __future__ import annotations

if __name__ != "sparsebench.kernels.ops":  # see the package docstring
    raise ImportError("import the kernels as sparsebench.kernels, not from the repository folder")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

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
    if x.dim() < 1 or x.shape[-1] != in_features:
        raise ValueError(f"bitmask_linear expects inputs of {in_features} features, got "
                         f"shape {list(x.shape)}")  # fmt: skip
    bitmask.set_threads(torch.get_num_threads())  # as many threads as torch was given
    flat = x.detach().reshape(-1, in_features).to(torch.float32)
    packed = rowstart.numpy(), masks.numpy(), values.numpy()
    result = torch.from_numpy(bitmask.matmul(*packed, flat.contiguous().numpy()))
    if bias is not None:
        result += bias.detach()
    return result.reshape(*x.shape[:-1], masks.shape[0])


@bitmask_linear.register_fake
def _(x, rowstart, masks, values, bias, in_features):
    return x.new_empty((*x.shape[:-1], masks.shape[0]), dtype=torch.float32)


def _conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@torch.library.custom_op(f"{OP_NAMESPACE}::bitmask_conv2d", mutates_args=())
def bitmask_conv2d(
    x: torch.Tensor,
    rowstart: torch.Tensor,
    masks: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    in_channels: int,
) -> torch.Tensor:
    """A zero-padded, ungrouped `conv2d` whose (O, C kh kw) weight is packed by `bitmask.pack`:
    the input unfolded (im2col) into (C kh kw, images x positions), one SpMM, folded back."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"bitmask_conv2d expects (N, {in_channels}, H, W) inputs, got shape "
                         f"{list(x.shape)}")  # fmt: skip
    bitmask.set_threads(torch.get_num_threads())
    images, _, height, width = x.shape
    cols = F.unfold(x.detach().to(torch.float32), kernel_size, dilation, padding, stride)
    positions = cols.shape[-1]
    xt = cols.permute(1, 0, 2).reshape(cols.shape[1], images * positions).contiguous()
    out = torch.from_numpy(bitmask.matmul_t(rowstart.numpy(), masks.numpy(), values.numpy(),
                                            xt.numpy()))  # fmt: skip
    if bias is not None:
        out += bias.detach()[:, None]
    sizes = [_conv_output_size(size, *args) for size, *args in
             zip((height, width), kernel_size, stride, padding, dilation, strict=True)]  # fmt: skip
    return out.reshape(masks.shape[0], images, *sizes).permute(1, 0, 2, 3).contiguous()


@bitmask_conv2d.register_fake
def _(x, rowstart, masks, values, bias, kernel_size, stride, padding, dilation, in_channels):
    sizes = [_conv_output_size(size, *args) for size, *args in
             zip(x.shape[2:], kernel_size, stride, padding, dilation, strict=True)]  # fmt: skip
    return x.new_empty((x.shape[0], masks.shape[0], *sizes), dtype=torch.float32)


def pack_linear(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """The tensors `bitmask_linear` takes for a Linear weight (M, K), or `bitmask_conv2d` for a
    convolution weight (O, C, kh, kw), flattened to (O, C kh kw) as im2col orders it."""
    flat = weight.detach().to(torch.float32).cpu().reshape(weight.shape[0], -1)
    rowstart, masks, values = bitmask.pack(flat.numpy())
    return {
        "rowstart": torch.from_numpy(rowstart),
        "masks": torch.from_numpy(masks),
        "values": torch.from_numpy(values),
    }
