"""The `onnx` format: export with a dynamic batch, verification, metadata, sparse initializers."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from sparsebench import SparsebenchError, load  # noqa: E402
from sparsebench.checkpoint import CheckpointMeta, save_checkpoint  # noqa: E402
from sparsebench.cli import app  # noqa: E402
from sparsebench.export import export  # noqa: E402
from sparsebench.formats import ExportConfig  # noqa: E402
from sparsebench.formats import onnx as onnx_format  # noqa: E402
from sparsebench.formats.onnx import OPSET  # noqa: E402
from sparsebench.metadata import METADATA_KEY  # noqa: E402
from sparsebench.metadata import read_onnx_metadata as read_metadata  # noqa: E402
from sparsebench.prune.magnitude import magnitude_prune_  # noqa: E402
from sparsebench.runtimes.onnxruntime import OnnxRuntimeModule  # noqa: E402
from sparsebench.zoo import create_model  # noqa: E402

from .conftest import ARCH  # noqa: E402


def checkpoint(folder, arch: str, shape, amount: float | None = None, scope: str = "layer"):
    """A sparsebench checkpoint of `arch` (seeded), magnitude-pruned by `amount` if given."""
    torch.manual_seed(0)
    model = create_model(arch).eval()
    if amount:
        magnitude_prune_(model, amount, scope=scope)
    path = folder / f"{arch}.pt"
    save_checkpoint(path, model, CheckpointMeta(arch=arch, input_shape=list(shape)))
    return path


def rel_err(reference: torch.Tensor, out: torch.Tensor) -> float:
    return float((reference - out).abs().max() / reference.abs().max())


@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    """vgg16_bn, 80% layer-pruned: its checkpoint, dense ONNX and sparse-initializer ONNX."""
    folder = tmp_path_factory.mktemp("vgg")
    ckpt = checkpoint(folder, "vgg16_bn", (1, 3, 32, 32), amount=0.8)
    dense = export(ckpt, folder / "dense.onnx", ExportConfig.of("onnx"))
    config = ExportConfig.of("onnx", sparse_initializers=True)
    sparse = export(ckpt, folder / "sparse.onnx", config)
    return ckpt, dense, sparse


def assert_matches_torch_at_batches(onnx_path, torch_model, shape, batches=(1, 7)):
    runtime = load(onnx_path).model
    for batch in batches:
        x = torch.randn(batch, *shape[1:])
        with torch.inference_mode():
            expected, out = torch_model(x), runtime(x)
        assert out.shape == expected.shape
        assert rel_err(expected, out) < 1e-4


def test_vgg16_bn_export_has_dynamic_batch_and_matches_torch(vgg):
    ckpt, dense, _ = vgg
    model_proto = onnx.load(str(dense.path))
    (graph_input,), (graph_output,) = model_proto.graph.input, model_proto.graph.output
    assert (graph_input.name, graph_output.name) == ("input", "logits")
    assert graph_input.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert graph_output.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model_proto.opset_import[0].version == OPSET
    ops = {node.op_type for node in model_proto.graph.node}
    assert "BatchNormalization" in ops  # kept, so the graph mirrors the PyTorch layers
    assert dense.verification.passed and dense.verification.samples == 64
    assert_matches_torch_at_batches(dense.path, load(ckpt).model, (1, 3, 32, 32))


def test_metadata_makes_the_file_self_describing(vgg):
    ckpt, dense, _ = vgg
    metadata = read_metadata(onnx.load(str(dense.path)), dense.path)
    assert metadata["format"] == "onnx" and metadata["opset"] == OPSET
    assert metadata["input_shape"] == [1, 3, 32, 32] and metadata["arch"] == "vgg16_bn"
    assert metadata["source"] == str(ckpt) and metadata["sparse_initializers"] is False
    assert metadata["verification"]["passed"] is True
    assert metadata["reference_outputs"]["shape"] == [8, 10]
    loaded = load(dense.path)  # no --input-shape needed
    assert loaded.kind == "onnx" and loaded.input_shape == (1, 3, 32, 32)
    assert loaded.name == "dense" and loaded.meta.format == "onnx"


def test_channels_artifact_exports_to_onnx(tmp_path):
    ckpt = checkpoint(tmp_path, "resnet20", (1, 3, 32, 32))
    channels = tmp_path / "channels.pt"
    export(ckpt, channels, ExportConfig.of("channels", ratio=0.5))
    result = export(channels, tmp_path / "channels.onnx", ExportConfig.of("onnx"))
    restored = load(channels).model
    assert_matches_torch_at_batches(result.path, restored, (1, 3, 32, 32))
    runtime = load(result.path).model
    dense_params = sum(p.numel() for p in create_model("resnet20").parameters())
    assert runtime.sparsity().params == sum(p.numel() for p in restored.parameters())
    assert runtime.sparsity().params < 0.5 * dense_params  # the channels really are gone


def test_tiny_transformer_exports_and_matches_torch(tmp_path):
    ckpt = checkpoint(tmp_path, "tiny_transformer", (1, 40), amount=0.5)
    result = export(ckpt, tmp_path / "tt.onnx", ExportConfig.of("onnx"))
    assert result.verification.max_rel_err < 1e-4
    assert_matches_torch_at_batches(result.path, load(ckpt).model, (1, 40))


def test_tampered_onnx_file_fails_verification_on_load(vgg, tmp_path):
    _, dense, _ = vgg
    model_proto = onnx.load(str(dense.path))
    for index, tensor in enumerate(model_proto.graph.initializer):
        if tensor.name == "classifier.3.weight":  # someone edited a weight afterwards
            edited = numpy_helper.to_array(tensor) + 0.05
            model_proto.graph.initializer[index].CopyFrom(
                numpy_helper.from_array(edited, tensor.name)
            )
    tampered = tmp_path / "tampered.onnx"
    onnx.save(model_proto, str(tampered))
    with pytest.raises(SparsebenchError, match="tampered or corrupted") as info:
        load(tampered)
    assert "\n" not in str(info.value)


def test_truncated_and_missing_onnx_files_fail_with_one_line(vgg, tmp_path):
    _, dense, _ = vgg
    data = dense.path.read_bytes()
    for cut in (len(data) // 2, 100):
        truncated = tmp_path / f"truncated_{cut}.onnx"
        truncated.write_bytes(data[:cut])
        with pytest.raises(SparsebenchError, match="cannot read ONNX model") as info:
            load(truncated)
        assert "\n" not in str(info.value)
    with pytest.raises(SparsebenchError, match="no such file"):
        load(tmp_path / "missing.onnx")


def test_sparse_initializers_shrink_the_file_and_load_to_the_same_outputs(vgg):
    ckpt, dense, sparse = vgg
    dense_size, sparse_size = dense.path.stat().st_size, sparse.path.stat().st_size
    # 80% zeros: 20% of the elements at 4 + 8 bytes each = 60% of the dense bytes
    assert sparse_size < 0.65 * dense_size
    converted = [layer["name"] for layer in sparse.layers if layer["action"] == "converted"]
    assert len(converted) == 16  # 13 convolutions and 3 linear layers
    model_proto = onnx.load(str(sparse.path))
    assert len(model_proto.graph.sparse_initializer) == 16
    onnx.checker.check_model(model_proto)  # int64 indices, as the checker requires
    assert read_metadata(model_proto, sparse.path)["sparse_initializers"] is True
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        from_dense, from_sparse = load(dense.path).model(x), load(sparse.path).model(x)
        expected = load(ckpt).model(x)
    assert torch.allclose(from_dense, from_sparse, rtol=0, atol=1e-6)
    assert rel_err(expected, from_sparse) < 1e-4
    runtime = load(sparse.path).model  # sparsity is read from the sparse initializers too
    assert runtime.sparsity().sparsity_pct == pytest.approx(80.0, abs=0.01)


def test_sparse_initializers_skip_tensors_where_coo_is_not_smaller(tmp_path):
    ckpt = checkpoint(tmp_path, ARCH, (1, 40), amount=0.5)  # 50% zeros: COO would be larger
    result = export(ckpt, tmp_path / "m.onnx", ExportConfig.of("onnx", sparse_initializers=True))
    actions = {layer["action"] for layer in result.layers}
    assert actions == {"skipped"}
    assert len(onnx.load(str(result.path)).graph.sparse_initializer) == 0


def test_failed_verification_writes_nothing(tmp_path, monkeypatch):
    ckpt = checkpoint(tmp_path, ARCH, (1, 40))
    real = onnx_format.torch_to_onnx

    def broken(model, example, specs=None):  # an exporter bug: one weight comes out wrong
        model_proto = real(model, example, specs)
        tensor = model_proto.graph.initializer[0]
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 2, tensor.name))
        return model_proto

    monkeypatch.setattr(onnx_format, "torch_to_onnx", broken)
    with pytest.raises(SparsebenchError, match="verification of the onnx export failed"):
        export(ckpt, tmp_path / "m.onnx", ExportConfig.of("onnx"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{ARCH}.pt"]


def test_onnx_export_refuses_options_it_cannot_honour(tmp_path):
    ckpt = checkpoint(tmp_path, ARCH, (1, 40))
    with pytest.raises(SparsebenchError, match="the onnx format takes no --ratio"):
        export(ckpt, tmp_path / "m.onnx", ExportConfig.of("onnx", ratio=0.5))
    dense_onnx = export(ckpt, tmp_path / "m.onnx", ExportConfig.of("onnx")).path
    with pytest.raises(SparsebenchError, match="already a onnxruntime model"):
        export(dense_onnx, tmp_path / "again.onnx", ExportConfig.of("onnx"))


def test_metadata_is_json_under_the_sparsebench_key(vgg):
    _, dense, _ = vgg
    props = {p.key: p.value for p in onnx.load(str(dense.path)).metadata_props}
    assert json.loads(props[METADATA_KEY])["version"] == 1


def test_runtime_module_accepts_an_in_memory_model():
    torch.manual_seed(0)
    model = create_model(ARCH).eval()
    runtime = OnnxRuntimeModule(onnx_format.torch_to_onnx(model, torch.zeros(1, 40)))
    x = torch.randn(3, 40)
    with torch.inference_mode():
        assert rel_err(model(x), runtime(x)) < 1e-5


def test_csr_artifact_is_refused_with_a_pointer_to_its_source(tmp_path):
    ckpt = checkpoint(tmp_path, ARCH, (1, 40), amount=0.9)
    csr = tmp_path / "csr.pt"
    export(ckpt, csr, ExportConfig.of("csr"))
    with pytest.raises(SparsebenchError, match="sparse-layout weights"):
        export(csr, tmp_path / "csr.onnx", ExportConfig.of("onnx"))


def test_cli_sparse_initializers_flag(tmp_path):
    ckpt = checkpoint(tmp_path, ARCH, (1, 40), amount=0.9)
    out = tmp_path / "m.onnx"
    args = ["export", str(ckpt), "-f", "onnx", "--sparse-initializers", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "3 initializer(s) stored sparse" in result.output
    assert read_metadata(onnx.load(str(out)), out)["sparse_initializers"] is True
