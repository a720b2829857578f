"""semi24: the 2:4 pattern, torch's eligibility rules, the GPU check and the 2:4 exporter.

Pattern maths, eligibility and the would-be table run everywhere. Packing and kernels need an
sm80+ GPU: the CPU tests use torch's pure-Python CUTLASS packer as a stand-in to check the
plumbing (state_dict, payload, restore), never the kernels; the `cuda` tests check those.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.sparse import SparseSemiStructuredTensor, SparseSemiStructuredTensorCUTLASS
from torch.sparse._semi_structured_conversions import sparse_semi_structured_from_dense_cutlass

from sparsebench import SparsebenchError
from sparsebench.formats import ExportConfig, get_exporter, semi24
from sparsebench.formats._semi24_backend import NO_GPU, constraints
from sparsebench.formats.semi24 import (
    HardwareUnavailable,
    NoEligibleLayers,
    SemiStructuredExporter,
    compressed_bytes,
    count_nonzero,
    eligibility,
    eligibility_report,
    enforce_24_,
    fraction_24_groups,
    is_24_sparse,
    semi_structured_supported,
)
from sparsebench.zoo import create_model

no_gpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")
BLOCK_LINEARS = ("attn.q", "attn.k", "attn.v", "attn.out", "fc1", "fc2")


def _model(arch: str = "tiny_transformer") -> nn.Module:
    torch.manual_seed(0)
    return create_model(arch).eval()


def _config(**kwargs) -> ExportConfig:
    return ExportConfig.of(format="semi24", **kwargs)


# --- the pattern -------------------------------------------------------------------------


def test_pattern_detection_counts_groups_of_four_along_rows():
    w = torch.tensor([[1.0, 0, 2, 0, 0, 0, 0, 3], [1, 2, 3, 0, 0, 0, 0, 0]])
    assert not is_24_sparse(w)  # row 1, first group: three non-zeros
    assert fraction_24_groups(w) == 0.75
    assert is_24_sparse(w[:1]) and fraction_24_groups(w[:1]) == 1.0
    assert is_24_sparse(torch.zeros(2, 8))


def test_enforce_keeps_the_two_largest_magnitudes_per_group():
    w = torch.tensor(
        [
            [0.1, -4.0, 3.0, 0.5],  # keeps -4 and 3
            [0.0, 1.0, 2.0, 3.0],  # one zero already: only the 1 is newly zeroed
            [5.0, 5.0, 1.0, 5.0],  # ties keep the earlier elements
            [1.0, 2.0, 0.0, 0.0],  # already 2:4
        ]
    )
    zeroed = enforce_24_(w)
    expected = torch.tensor(
        [[0.0, -4.0, 3.0, 0.0], [0.0, 0.0, 2.0, 3.0], [5.0, 5.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0]]
    )
    assert torch.equal(w, expected)
    assert zeroed == 2 + 1 + 2 + 0
    assert is_24_sparse(w)


def test_enforce_leaves_a_24_weight_unchanged():
    torch.manual_seed(0)
    w = torch.randn(32, 64)
    enforce_24_(w)
    before = w.clone()
    assert enforce_24_(w) == 0
    assert torch.equal(w, before)


def test_enforce_prunes_half_of_a_dense_weight_in_place():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    weight = linear.weight
    assert enforce_24_(weight.data) == 32 * 64 // 2
    assert linear.weight is weight and is_24_sparse(weight)


@pytest.mark.parametrize("shape", [(8,), (2, 2, 4), (4, 6)])
def test_pattern_needs_2d_rows_in_groups_of_four(shape):
    with pytest.raises(ValueError):
        is_24_sparse(torch.zeros(shape))


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (torch.float16, 64 * 128 // 2 * 2 + 64 * 128 // 8),  # 8192 values + 1024 metadata
        (torch.bfloat16, 9216),
        (torch.int8, 64 * 128 // 2 + 64 * 128 // 8),
        (torch.float32, 64 * 128 // 2 * 4 + 64 * 128 // 4),  # CUTLASS packs fp32 as 1:2
    ],
)
def test_compressed_bytes_match_torch_cutlass_packing(dtype, expected):
    assert compressed_bytes((64, 128), dtype) == expected
    dense = torch.zeros(64, 128, dtype=dtype)
    packed, meta = sparse_semi_structured_from_dense_cutlass(dense)
    assert expected == packed.numel() * packed.element_size() + meta.numel() * meta.element_size()


# --- eligibility -------------------------------------------------------------------------


def _linear_24(out_features: int, in_features: int) -> nn.Linear:
    linear = nn.Linear(in_features, out_features)
    enforce_24_(linear.weight.data)
    return linear


def test_constraints_are_read_from_torch():
    # torch 2.x: CUTLASS fp16 needs rows % 32 and cols % 64, cuSPARSELt fp16 16 and 16
    assert constraints("cutlass", torch.float16)[:2] == (32, 64)
    assert constraints("cusparselt", torch.float16)[:2] == (16, 16)
    assert constraints("cusparselt", torch.float32) is None


def test_conv_layers_are_not_eligible():
    assert eligibility(nn.Conv2d(64, 64, 3), torch.float16, "cutlass") == (False, "only nn.Linear")


def test_eligible_24_linear():
    ok, reason = eligibility(_linear_24(64, 128), torch.float16, "cutlass")
    assert ok and reason == ""


def test_every_failed_shape_constraint_is_named():
    ok, reason = eligibility(_linear_24(48, 96), torch.float16, "cutlass")
    assert not ok
    assert "out_features 48 is not a positive multiple of 32" in reason
    assert "in_features 96 is not a positive multiple of 64" in reason


def test_shapes_depend_on_the_backend():
    assert eligibility(_linear_24(48, 96), torch.float16, "cusparselt") == (True, "")


def test_unsupported_dtype_is_named():
    ok, reason = eligibility(_linear_24(64, 128), torch.float32, "cusparselt")
    assert not ok and "no 2:4 kernel for float32" in reason


def test_a_weight_without_the_pattern_needs_enforce():
    torch.manual_seed(0)
    linear = nn.Linear(128, 64)
    ok, reason = eligibility(linear, torch.float16, "cutlass")
    assert not ok and "not 2:4 sparse" in reason and "--enforce" in reason
    assert eligibility(linear, torch.float16, "cutlass", need_pattern=False) == (True, "")


def test_only_half_precision_dtypes():
    with pytest.raises(SparsebenchError, match="float16 or bfloat16"):
        semi24.resolve_dtype("float32")
    assert semi24.resolve_dtype(None) == torch.float16


# --- the GPU check and the would-be table ------------------------------------------------


@no_gpu_only
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_no_gpu_means_no_24_kernels(device):
    assert semi_structured_supported(device) == (False, NO_GPU)


def test_exporter_is_registered_with_half_precision_tolerance():
    exporter = get_exporter("semi24")
    assert isinstance(exporter, SemiStructuredExporter)
    assert exporter.tolerance_for(_config()) == 1e-2


def _by_name(layers):
    return {layer.name: layer for layer in layers}


@no_gpu_only
def test_convert_without_gpu_raises_with_the_eligibility_table():
    model = _model()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(HardwareUnavailable, match="compute capability 8.0") as caught:
        get_exporter("semi24").convert(model, torch.randn(1, 40), _config(enforce=True))
    layers = _by_name(caught.value.layers)
    for block in ("blocks.0", "blocks.1"):
        for suffix in BLOCK_LINEARS:
            layer = layers[f"{block}.{suffix}"]
            assert layer.action == "converted", layer.reason
            assert layer.details["has_24_pattern"] and layer.details["fraction_24"] == 1.0
            rows, cols = layer.details["shape"]
            assert layer.details["zeroed"] == rows * cols // 2  # random weights: no zeros before
            assert layer.details["compressed_bytes"] == compressed_bytes(
                (rows, cols), torch.float16
            )
    assert layers["embed"].action == "skipped" and "in_features 1" in layers["embed"].reason
    assert layers["head"].action == "skipped" and "out_features 10" in layers["head"].reason
    dense_fp16 = sum(t.numel() * 2 for t in model.state_dict().values())
    assert 0 < caught.value.stored_bytes < dense_fp16
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_eligibility_report_without_enforce_lists_why():
    layers, stored = eligibility_report(_model(), _config())
    assert {layer.action for layer in layers} == {"skipped"}
    assert "not 2:4 sparse" in _by_name(layers)["blocks.0.fc1"].reason
    assert stored == sum(t.numel() * 2 for t in _model().state_dict().values())


# --- the conversion plumbing, with a CPU stand-in for the GPU packer -------------------------


def _cpu_cutlass(weight: torch.Tensor, backend: str) -> SparseSemiStructuredTensor:
    """torch's Python CUTLASS packer on CPU: the same tensors, no kernel to multiply them."""
    packed, meta = sparse_semi_structured_from_dense_cutlass(weight.detach().contiguous())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's "prototype" notice
        return SparseSemiStructuredTensorCUTLASS(weight.shape, packed, meta, None, None, None)


@pytest.fixture
def cpu_stand_in(monkeypatch):
    monkeypatch.setattr(
        semi24, "check_hardware", lambda device, preferred=None: (True, "stand-in", "cutlass")
    )
    monkeypatch.setattr(semi24, "from_dense", _cpu_cutlass)


def test_convert_swaps_weights_and_saves_them_dense(cpu_stand_in):
    model = _model()
    conversion = get_exporter("semi24").convert(model, torch.randn(1, 40), _config(enforce=True))
    names = conversion.payload["layers"]
    assert names == [f"blocks.{b}.{s}" for b in (0, 1) for s in BLOCK_LINEARS]
    assert conversion.payload["dtype"] == "float16" and conversion.payload["backend"] == "cutlass"
    for name in names:
        assert isinstance(conversion.model.get_submodule(name).weight, SparseSemiStructuredTensor)
    assert not isinstance(conversion.model.head.weight, SparseSemiStructuredTensor)
    reference = conversion.reference.half().state_dict()
    state = conversion.model.state_dict()
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in state)  # dense, zeros included
    layers, would_be = eligibility_report(model, _config(enforce=True))
    assert conversion.stored_bytes == would_be  # the Python packer allocates exactly the formula


def test_state_dict_round_trips_through_weights_only_load(cpu_stand_in, tmp_path):
    conversion = get_exporter("semi24").convert(_model(), torch.randn(1, 40), _config(enforce=True))
    path = tmp_path / "state.pt"
    torch.save(conversion.model.state_dict(), path)
    state = torch.load(path, weights_only=True)
    restored = get_exporter("semi24").restore(_model(), conversion.payload, state, "cpu")
    for name in conversion.payload["layers"]:
        assert isinstance(restored.get_submodule(name).weight, SparseSemiStructuredTensor)
    again = restored.state_dict()
    assert all(torch.equal(again[k], state[k]) for k in state)


def test_restore_rejects_a_weight_that_lost_its_pattern(cpu_stand_in):
    conversion = get_exporter("semi24").convert(_model(), torch.randn(1, 40), _config(enforce=True))
    state = conversion.model.state_dict()
    state["blocks.0.fc1.weight"] = torch.ones_like(state["blocks.0.fc1.weight"])
    with pytest.raises(SparsebenchError, match="blocks.0.fc1 is not 2:4 sparse"):
        get_exporter("semi24").restore(_model(), conversion.payload, state, "cpu")


def test_converted_model_deepcopies_and_counts_its_nonzeros(cpu_stand_in):
    conversion = get_exporter("semi24").convert(_model(), torch.randn(1, 40), _config(enforce=True))
    clone = copy.deepcopy(conversion.model)
    weight = clone.blocks[0].fc1.weight
    assert isinstance(weight, SparseSemiStructuredTensor)
    assert weight is not conversion.model.blocks[0].fc1.weight
    assert count_nonzero(weight) == weight.numel() // 2 == count_nonzero(weight.to_dense())


def test_no_eligible_layer_is_an_error_with_the_table(cpu_stand_in):
    with pytest.raises(NoEligibleLayers, match="--enforce") as caught:
        get_exporter("semi24").convert(_model(), torch.randn(1, 40), _config())
    assert len(caught.value.layers) == 14


@no_gpu_only
def test_restore_without_gpu_says_why():
    with pytest.raises(HardwareUnavailable, match="cannot run a semi24 artifact here"):
        get_exporter("semi24").restore(_model(), {"layers": []}, {}, "cpu")


@no_gpu_only
def test_layer_benchmark_needs_a_gpu():
    from sparsebench.bench.semi24_linear import benchmark_linear_24

    with pytest.raises(HardwareUnavailable):
        benchmark_linear_24((256, 256), 8)


# --- on an sm80+ GPU ---------------------------------------------------------------------


def _require_sm80() -> None:
    ok, reason = semi_structured_supported("cuda")
    if not ok:
        pytest.skip(reason)


def _gpu_conversion(dtype: str = "float16"):
    model = _model("tiny_transformer_wide")
    config = _config(enforce=True, device="cuda", dtype=dtype)
    return get_exporter("semi24").convert(model, torch.randn(1, 40), config)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (sm80+)")
def test_gpu_outputs_match_the_dense_fp16_reference():
    _require_sm80()
    conversion = _gpu_conversion()
    assert len(conversion.payload["layers"]) == 4 * len(BLOCK_LINEARS)
    x = torch.randn(64, 40, device="cuda")
    with torch.inference_mode():
        dense_fp16 = conversion.reference.half().cuda()(x.half()).float()
        sparse = conversion.model(x).float()
    assert (sparse - dense_fp16).abs().max() <= 1e-2 * dense_fp16.abs().max()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (sm80+)")
def test_gpu_profiler_sees_the_sparse_kernels_and_only_there():
    from sparsebench.measure.kernels import kernel_evidence

    _require_sm80()
    conversion = _gpu_conversion()
    names = conversion.payload["layers"]
    fragments = get_exporter("semi24").kernel_evidence
    x = torch.randn(8, 40, device="cuda")
    sparse = kernel_evidence(conversion.model, x, names, fragments, device="cuda")
    assert sparse["sparse_kernel_ran"] and not sparse["fell_back_to_dense"], sparse
    dense = conversion.reference.half().cuda()
    baseline = kernel_evidence(dense, x.half(), names, fragments, device="cuda")
    assert baseline["sparse_ops"] == {} and baseline["fell_back_to_dense"] == names


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (sm80+)")
def test_gpu_export_then_load_runs_and_matches(tmp_path):
    import sparsebench
    from sparsebench.checkpoint import CheckpointMeta, save_checkpoint
    from sparsebench.export import export

    _require_sm80()
    source, artifact = tmp_path / "wide.pt", tmp_path / "wide_24.pt"
    meta = CheckpointMeta(arch="tiny_transformer_wide", input_shape=[1, 40])
    save_checkpoint(source, _model("tiny_transformer_wide"), meta)
    result = export(source, artifact, _config(enforce=True, device="cuda"))
    assert result.verification.passed
    saved = torch.load(artifact, weights_only=True)["state_dict"]
    assert saved["blocks.0.fc1.weight"].dtype == torch.float16
    assert is_24_sparse(saved["blocks.0.fc1.weight"])
    loaded = sparsebench.load(artifact, sparsebench.LoadOptions(device="cuda"))
    assert isinstance(loaded.model.blocks[0].fc1.weight, SparseSemiStructuredTensor)
