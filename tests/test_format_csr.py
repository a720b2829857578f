"""The csr format: CSR layers reproduce dense ones, report their bytes and run sparse kernels."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import sparsebench
from sparsebench import SparsebenchError
from sparsebench.checkpoint import CheckpointMeta, save_checkpoint
from sparsebench.export import export
from sparsebench.formats import csr
from sparsebench.formats.base import ExportConfig, get_exporter
from sparsebench.formats.csr import CSRConv, CSRLinear, csr_layer, expected_kernel_calls
from sparsebench.measure.kernels import kernel_evidence
from sparsebench.measure.sparsity import prunable_layers
from sparsebench.zoo import create_model, get_model_spec

RTOL = 1e-5


def _sparsify_(module: nn.Module, sparsity: float = 0.8, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.weight[torch.rand(module.weight.shape, generator=generator) < sparsity] = 0
    return module


def _assert_close(reference: torch.Tensor, output: torch.Tensor, rtol: float = RTOL) -> None:
    assert output.shape == reference.shape
    scale = float(reference.abs().max())
    assert scale > 0  # a vacuous all-zero comparison proves nothing
    assert float((reference - output).abs().max()) <= rtol * scale


def _run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def _convert(model: nn.Module, example: torch.Tensor):
    return get_exporter("csr").convert(model, example, ExportConfig.of(format="csr"))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 40), (7, 40), (2, 5, 40)])
def test_csr_linear_matches_dense(bias, shape):
    torch.manual_seed(0)
    dense = _sparsify_(nn.Linear(40, 30, bias=bias))
    layer = csr_layer(dense)
    assert isinstance(layer, CSRLinear) and layer.weight.layout == torch.sparse_csr
    x = torch.randn(shape)
    _assert_close(_run(dense, x), _run(layer, x))


CONVS = {
    "2d stride2 pad1 dil2": (nn.Conv2d(3, 8, 3, stride=2, padding=1, dilation=2), (2, 3, 17, 13)),
    "2d rect kernel no bias": (nn.Conv2d(4, 6, (3, 5), stride=(1, 2), bias=False), (3, 4, 12, 16)),
    "2d same padding": (nn.Conv2d(3, 8, 3, padding="same"), (2, 3, 9, 9)),
    "2d unbatched": (nn.Conv2d(3, 8, 3, padding=2), (3, 10, 10)),
    "1d stride2 pad3": (nn.Conv1d(3, 8, 5, stride=2, padding=3), (2, 3, 31)),
    "1d dilation unbatched": (nn.Conv1d(3, 8, 3, dilation=3), (3, 20)),
}


@pytest.mark.parametrize("case", list(CONVS))
def test_csr_conv_matches_dense(case):
    torch.manual_seed(0)
    conv, shape = CONVS[case]
    dense = _sparsify_(conv)
    layer = csr_layer(dense)
    assert isinstance(layer, CSRConv)
    x = torch.randn(shape)
    _assert_close(_run(dense, x), _run(layer, x))


def test_unconvertible_layers_stay_dense_with_reasons():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, groups=2),
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),
        nn.ConvTranspose2d(8, 4, 2),
        nn.Conv2d(4, 4, 2, padding="same"),
        nn.Conv2d(4, 4, 3),
    ).eval()
    for layer in model:
        _sparsify_(layer)
    x = torch.randn(2, 4, 12, 12)
    reference = _run(copy.deepcopy(model), x)
    conversion = _convert(model, x[:1])
    actions = {r.name: (r.action, r.reason) for r in conversion.layers}
    assert "groups=2" in actions["0"][1]
    assert "reflect" in actions["1"][1]
    assert "ConvTranspose2d" in actions["2"][1]
    assert "same" in actions["3"][1]
    assert actions["4"][0] == "converted"
    assert [r.action for r in conversion.layers].count("skipped") == 4
    assert isinstance(conversion.model[4], CSRConv) and isinstance(conversion.model[0], nn.Conv2d)
    assert set(conversion.payload["layers"]) == {"4"}
    _assert_close(reference, _run(conversion.model, x))


def test_stored_bytes_of_a_known_layer():
    weight = torch.zeros(4, 8)
    weight[0, 1], weight[0, 7], weight[2, 3], weight[3, 0], weight[3, 5] = 1, 2, 3, 4, 5
    model = nn.Sequential(nn.Linear(8, 4))
    with torch.no_grad():
        model[0].weight.copy_(weight)
    conversion = _convert(model, torch.randn(1, 8))
    # 5 float32 values + 5 int32 column indices + 5 int32 row pointers + 4 float32 biases
    assert conversion.stored_bytes == 5 * 4 + 5 * 4 + (4 + 1) * 4 + 4 * 4
    details = conversion.layers[0].details
    assert details["index_dtype"] == "int32"
    assert (details["nnz"], details["values_bytes"], details["index_bytes"]) == (5, 20, 40)
    assert details["density"] == pytest.approx(5 / 32)
    assert conversion.model[0].weight.col_indices().dtype == torch.int32


def test_int64_indices_when_int32_cannot_hold_them(monkeypatch):
    monkeypatch.setattr(csr, "INT32_MAX", 4)  # pretend the layer is too large for int32
    torch.manual_seed(0)
    model = nn.Sequential(_sparsify_(nn.Linear(16, 8)))
    x = torch.randn(3, 16)
    reference = _run(model, x)
    conversion = _convert(model, x[:1])
    details = conversion.layers[0].details
    assert details["index_dtype"] == "int64"
    assert details["index_bytes"] == 8 * (details["nnz"] + 8 + 1)
    _assert_close(reference, _run(conversion.model, x))


def _pruned(arch: str, amount: float = 0.8) -> tuple[nn.Module, torch.Tensor]:
    """A zoo model with `amount` of each layer's weights magnitude-pruned.

    Layer by layer: on untrained weights global pruning zeroes whole layers (the classifier
    of mnist1d_cnn), which would make the outputs constant and the comparisons vacuous.
    """
    torch.manual_seed(0)
    model = create_model(arch).eval()
    for _, module in prunable_layers(model):
        prune.remove(prune.l1_unstructured(module, "weight", amount), "weight")
    x = torch.randn(4, *get_model_spec(arch).input_shape[1:])
    reference = _run(model, x)
    assert float(reference.std(dim=0).max()) > 0  # the outputs depend on the input
    return model, x


ZOO_CASES = [(a, p) for a in ("mnist1d_cnn", "tiny_transformer", "resnet20") for p in (0.8, 0.9)]


@pytest.mark.parametrize("arch, amount", [*ZOO_CASES, ("vgg16_bn", 0.9)])
def test_pruned_zoo_model_converts_smaller_and_equal(arch, amount):
    model, x = _pruned(arch, amount)
    reference = _run(copy.deepcopy(model), x)
    dense_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    conversion = _convert(model, x[:1])
    assert all(r.action == "converted" for r in conversion.layers)
    assert conversion.stored_bytes < dense_bytes
    _assert_close(reference, _run(conversion.model, x))


def test_state_dict_round_trips_through_weights_only_load():
    model, x = _pruned("mnist1d_cnn")
    conversion = _convert(model, x[:1])
    buffer = io.BytesIO()
    torch.save(conversion.model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["classifier.weight"].layout == torch.sparse_csr
    fresh = create_model("mnist1d_cnn")  # random dense weights: nnz differs from the saved ones
    restored = get_exporter("csr").restore(fresh, conversion.payload, state, "cpu")
    assert torch.equal(_run(restored, x), _run(conversion.model, x))


def test_restore_rejects_a_dense_weight():
    model, x = _pruned("mnist1d_cnn")
    conversion = _convert(copy.deepcopy(model), x[:1])
    with pytest.raises(SparsebenchError, match="sparse_csr"):
        get_exporter("csr").restore(
            create_model("mnist1d_cnn"), conversion.payload, model.state_dict(), "cpu"
        )


def test_converted_model_deepcopies():
    model, x = _pruned("tiny_transformer")
    converted = _convert(model, x[:1]).model
    clone = copy.deepcopy(converted)
    assert clone.head.weight is not converted.head.weight
    assert torch.equal(_run(clone, x), _run(converted, x))


def test_export_then_load_runs_and_matches(tmp_path):
    model, x = _pruned("mnist1d_cnn")
    source, artifact = tmp_path / "cnn.pt", tmp_path / "cnn_csr.pt"
    save_checkpoint(source, model, CheckpointMeta(arch="mnist1d_cnn", input_shape=[1, 1, 40]))
    result = export(source, artifact, ExportConfig.of(format="csr"))
    assert result.verification.passed
    assert {layer["action"] for layer in result.layers} == {"converted"}
    loaded = sparsebench.load(artifact)
    assert loaded.kind == "artifact:csr"
    assert isinstance(loaded.model.classifier, CSRLinear)
    _assert_close(_run(model, x), _run(loaded.model, x))


def test_profiler_shows_csr_kernels_only_in_the_csr_model():
    model, x = _pruned("tiny_transformer")
    dense = copy.deepcopy(model)
    conversion = _convert(model, x[:1])
    names = [r.name for r in conversion.layers if r.action == "converted"]
    fragments = get_exporter("csr").kernel_evidence
    sparse = kernel_evidence(conversion.model, x, names, fragments)
    assert sparse["sparse_kernel_ran"] and not sparse["fell_back_to_dense"]
    assert sum(sparse["sparse_ops"].values()) == expected_kernel_calls(conversion.layers)
    baseline = kernel_evidence(dense, x, names, fragments)
    assert baseline["sparse_ops"] == {} and baseline["fell_back_to_dense"] == names


def test_evidence_is_absent_when_sparse_addmm_gets_a_dense_weight():
    fragments = get_exporter("csr").kernel_evidence
    weight, x, bias = torch.randn(16, 32), torch.randn(32, 4), torch.randn(16)
    with torch.profiler.profile() as prof, torch.inference_mode():
        torch.sparse.addmm(bias.unsqueeze(1), weight, x)  # the dense path, same entry point
    names = {event.name for event in prof.events()}
    assert "aten::_sparse_addmm" in names
    assert not any(f in name for f in fragments for name in names)


def test_half_precision_is_refused():
    with pytest.raises(SparsebenchError, match="the csr format takes no --dtype"):
        ExportConfig.of(format="csr", dtype="float16")  # csr keeps the model's dtype


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_csr_model_runs_on_cuda():
    model, x = _pruned("resnet20")
    reference = _run(copy.deepcopy(model), x)
    conversion = get_exporter("csr").convert(
        model, x[:1], ExportConfig.of(format="csr", device="cuda")
    )
    _assert_close(reference, _run(conversion.model, x.cuda()).cpu(), rtol=1e-4)
