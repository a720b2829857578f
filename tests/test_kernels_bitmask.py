"""The bitmask kernel (kernels/bitmask.py) and its operator equal the dense reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("numba", reason="the kernels extra (numba) is not installed")

from sparsebench.kernels import bitmask, bitmask_linear, pack_linear, spmm  # noqa: E402

PATHS = [pytest.param(False, id="scalar")]
if bitmask.has_avx512():
    PATHS.append(pytest.param(True, id="avx512"))


def _weight(rows: int, cols: int, sparsity: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, cols, generator=generator)
    weight[torch.rand(rows, cols, generator=generator) < sparsity] = 0
    return weight


def _check(weight: torch.Tensor, x: torch.Tensor, avx512: bool) -> None:
    packed = pack_linear(weight)
    got = bitmask.matmul(packed["rowstart"].numpy(), packed["masks"].numpy(),
                         packed["values"].numpy(), x.contiguous().numpy(), avx512)  # fmt: skip
    expected = x @ weight.t()
    assert got.shape == tuple(expected.shape)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("avx512", PATHS)
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8, 0.95, 1.0])
@pytest.mark.parametrize("shape", [(64, 64), (37, 53), (5, 16), (130, 200), (1, 1)])
@pytest.mark.parametrize("batch", [1, 3])
def test_matches_dense(avx512, sparsity, shape, batch):
    weight = _weight(*shape, sparsity)
    _check(weight, torch.randn(batch, shape[1]), avx512)


@pytest.mark.parametrize("avx512", PATHS)
@pytest.mark.parametrize("sparsity", [0.0, 0.8, 1.0])
@pytest.mark.parametrize(("shape", "batch"), [((37, 53), 8), ((130, 200), 70), ((1, 1), 16),
                                              ((300, 40), 33)])  # fmt: skip
def test_the_batch_n_spmm_matches_dense(avx512, sparsity, shape, batch):
    weight = _weight(*shape, sparsity, seed=4)
    x = torch.randn(batch, shape[1])
    packed = [packed.numpy() for packed in pack_linear(weight).values()]
    expected = x @ weight.t()
    got = bitmask.matmul(*packed, x.numpy(), avx512, spmm=True)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-4)
    columns = bitmask.matmul_t(*packed, x.t().numpy(), spmm=True, avx512=avx512)  # strided
    torch.testing.assert_close(torch.from_numpy(columns), expected.t(), rtol=1e-4, atol=1e-4)


def test_the_spmm_splits_rows_into_blocks_by_non_zeros():
    weight = _weight(900, 100, 0.0)  # 90,000 non-zeros: several blocks of about SPMM_BLOCK_NNZ
    rowstart, _, values = (packed.numpy() for packed in pack_linear(weight).values())
    bounds, buffer = spmm._spmm_blocks(rowstart, values, 900)
    assert bounds[0] == 0 and bounds[-1] == 900 and np.all(np.diff(bounds) > 0)
    assert len(bounds) - 1 >= 90_000 // spmm.SPMM_BLOCK_NNZ
    assert buffer >= np.diff(np.append(rowstart, 90_000)[bounds]).max() + 16


@pytest.mark.parametrize("avx512", PATHS)
def test_empty_rows_and_columns(avx512):
    weight = _weight(48, 70, 0.6, seed=1)
    weight[5] = 0
    weight[:, 17] = 0
    weight[:, 64:] = 0  # a whole trailing segment empty
    _check(weight, torch.randn(4, 70), avx512)


def test_operator_is_a_linear_with_bias_and_any_leading_dims():
    weight, bias = _weight(33, 40, 0.8, seed=2), torch.randn(33)
    packed = pack_linear(weight)
    x = torch.randn(40, 2, 3).permute(1, 2, 0)  # non-contiguous (2, 3, 40)
    with torch.inference_mode():
        got = bitmask_linear(x, packed["rowstart"], packed["masks"], packed["values"], bias, 40)
    torch.testing.assert_close(got, torch.nn.functional.linear(x, weight, bias), rtol=1e-4,
                               atol=1e-4)  # fmt: skip
    assert got.shape == (2, 3, 33)


def test_operator_shows_up_by_name_in_the_profiler():
    weight = _weight(16, 32, 0.9)
    packed = pack_linear(weight)
    x = torch.randn(1, 32)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        bitmask_linear(x, packed["rowstart"], packed["masks"], packed["values"], None, 32)
    assert "sparsebench::bitmask_linear" in {event.key for event in prof.key_averages()}


def test_operator_has_a_fake_kernel_for_tracing():
    weight = _weight(8, 20, 0.5)
    packed = pack_linear(weight)
    torch.library.opcheck(
        bitmask_linear,
        (torch.randn(3, 20), packed["rowstart"], packed["masks"], packed["values"], None, 20),
        test_utils=("test_schema", "test_faketensor"),
    )


def test_packed_bytes_follow_the_layout():
    weight = _weight(10, 40, 0.75)
    packed = pack_linear(weight)
    nnz = int((weight != 0).sum())
    assert packed["values"].numel() == nnz + bitmask.SEGMENT
    assert packed["masks"].shape == (10, 3) and packed["masks"].dtype == torch.int16
    assert packed["rowstart"].tolist()[1] == int((weight[0] != 0).sum())


def test_check_packed_accepts_packed_and_refuses_crafted_arrays():
    weight = _weight(12, 37, 0.7)
    rowstart, masks, values = bitmask.pack(weight.numpy())
    bitmask.check_packed(rowstart, masks, values, 37)
    bad_start = rowstart.copy()
    bad_start[3] += 1
    wide = masks.copy()
    wide[0, -1] = -1  # bits beyond column 37
    for args, message in [
        ((bad_start, masks, values, 37), "rowstart"),
        ((rowstart, wide, values, 37), "beyond in_features"),
        ((rowstart, masks, values[:-1], 37), "padding"),
        ((rowstart, masks, values, 80), "do not fit"),
        ((rowstart.astype(np.int32), masks, values, 37), "int64 rowstart"),
    ]:
        with pytest.raises(ValueError, match=message):
            bitmask.check_packed(*args)


@pytest.mark.parametrize("avx512", PATHS)
@pytest.mark.parametrize(("shape", "batch"), [((2048, 512), 1), ((300, 400), 9)])
def test_the_parallel_kernel_matches_dense_on_layers_above_the_serial_threshold(
    avx512, shape, batch
):
    assert (shape[0] * -(-shape[1] // 16)) * batch >= bitmask.SERIAL_BELOW
    _check(_weight(*shape, 0.8, seed=3), torch.randn(batch, shape[1]), avx512)


def test_the_repository_folder_reached_as_a_top_level_kernels_package_stays_inert():
    """Under `python -m pytest` the repository root is on sys.path, so `import kernels` finds the
    folder; transformers imports it while probing for Hugging Face's `kernels` package. It must
    not register the operator a second time (that replaced the registration this process's
    handles point at, and a later call failed with `vector::reserve`)."""
    code = (
        "import torch, kernels\n"
        "from sparsebench.kernels import bitmask_linear, pack_linear\n"
        "assert not hasattr(kernels, 'bitmask_linear')\n"
        "from transformers.utils import is_kernels_available\n"
        "assert not is_kernels_available()\n"
        "try:\n"
        "    import kernels.ops\n"
        "except ImportError as error:\n"
        "    assert 'sparsebench.kernels' in str(error)\n"
        "else:\n"
        "    raise AssertionError('kernels.ops imported under a second name')\n"
        "assert torch.ops.sparsebench.bitmask_linear.default is bitmask_linear._opoverload\n"
        "packed = pack_linear(torch.eye(4))\n"
        "x = torch.randn(2, 4)\n"
        "got = bitmask_linear(x, packed['rowstart'], packed['masks'], packed['values'], None, 4)\n"
        "assert torch.equal(got, x)\n"
    )
    root = Path(__file__).resolve().parents[1]
    pytest.importorskip("transformers", reason="the hf extra (transformers) is not installed")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_the_operators_use_as_many_threads_as_torch():
    import numba

    packed = pack_linear(_weight(8, 20, 0.5))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        bitmask_linear(torch.randn(2, 20), *packed.values(), None, 20)
        assert numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_operators_refuse_inputs_of_another_width_instead_of_reading_past_them():
    from sparsebench.kernels import bitmask_conv2d

    packed = pack_linear(_weight(8, 40, 0.5))
    with pytest.raises(ValueError, match="40 features"):
        bitmask_linear(torch.randn(4, 20), *packed.values(), None, 40)  # 80 values, 2 rows of 40
    conv = pack_linear(_weight(4, 3 * 3 * 3, 0.5).reshape(4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        bitmask_conv2d(torch.randn(1, 2, 8, 8), *conv.values(), None, [3, 3], [1, 1], [1, 1],
                       [1, 1], 3)  # fmt: skip


@pytest.mark.parametrize(
    ("channels", "out", "kernel", "stride", "padding", "dilation", "size", "images"),
    [(3, 8, 3, 1, 1, 1, 9, 2), (16, 32, 3, 2, 0, 1, 11, 1), (8, 4, 1, 1, 0, 1, 5, 3),
     (5, 7, 3, 1, 2, 2, 8, 1), (4, 6, 2, 3, 1, 1, 7, 2)],
)  # fmt: skip
@pytest.mark.parametrize("sparsity", [0.0, 0.7, 1.0])
def test_the_conv2d_operator_matches_torch(channels, out, kernel, stride, padding, dilation, size,
                                           images, sparsity):  # fmt: skip
    from sparsebench.kernels import bitmask_conv2d

    torch.manual_seed(5)
    conv = torch.nn.Conv2d(channels, out, kernel, stride, padding, dilation)
    with torch.no_grad():
        conv.weight[torch.rand_like(conv.weight) < sparsity] = 0
    x = torch.randn(images, size + 1, size, channels).permute(0, 3, 2, 1)  # non-contiguous
    packed = pack_linear(conv.weight)
    geometry = [[kernel] * 2, [stride] * 2, [padding] * 2, [dilation] * 2]
    with torch.inference_mode():
        got = bitmask_conv2d(x, *packed.values(), conv.bias, *geometry, channels)
        torch.testing.assert_close(got, conv(x), rtol=1e-4, atol=1e-5)
    torch.library.opcheck(bitmask_conv2d, (x, *packed.values(), None, *geometry, channels),
                          test_utils=("test_schema", "test_faketensor"))  # fmt: skip


def test_the_kernels_take_any_float_dtype_and_layout_and_refuse_a_narrower_x():
    weight = _weight(6, 40, 0.5)
    rowstart, masks, values = (t.numpy() for t in pack_linear(weight).values())
    x = torch.randn(5, 40, dtype=torch.float64)
    expected = (x.float() @ weight.t()).numpy()
    reversed_values = np.ascontiguousarray(values[::-1])[::-1]  # a strided view of the values
    for batch_kernel in (False, True):
        got = bitmask.matmul(rowstart, masks, reversed_values, x.numpy(), spmm=batch_kernel)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        with pytest.raises(ValueError, match="inputs"):
            bitmask.matmul(rowstart, masks, values, np.zeros((5, 16), np.float32),
                           spmm=batch_kernel)  # fmt: skip


def test_a_generic_numba_target_does_not_take_the_avx512_path(monkeypatch):
    import numba

    monkeypatch.setattr(numba.config, "CPU_NAME", "generic")
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "")
    bitmask.has_avx512.cache_clear()
    try:
        assert bitmask.has_avx512() is False
    finally:
        monkeypatch.undo()
        bitmask.has_avx512.cache_clear()
