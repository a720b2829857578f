"""The ONNX Runtime runtime: MACs and sparsity from the graph, threads, loading, the CLI."""

from __future__ import annotations

import functools
import json
import sys

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sparsebench import SparsebenchError, load  # noqa: E402
from sparsebench.arch import zoo_input_shape  # noqa: E402
from sparsebench.cli import app  # noqa: E402
from sparsebench.formats.onnx import torch_to_onnx  # noqa: E402
from sparsebench.measure.latency import LatencyConfig  # noqa: E402
from sparsebench.measure.macs import count_macs  # noqa: E402
from sparsebench.measure.sparsity import measure_sparsity  # noqa: E402
from sparsebench.profiler import ProfileConfig, profile  # noqa: E402
from sparsebench.prune.magnitude import magnitude_prune_  # noqa: E402
from sparsebench.runtimes.onnxruntime import OnnxRuntimeModule, providers_for  # noqa: E402
from sparsebench.zoo import create_model  # noqa: E402

from .conftest import ARCH  # noqa: E402

runner = CliRunner()
FAST = ["--min-iters", "3", "--min-seconds", "0", "--warmup", "1", "--no-energy"]
FAST += ["--memory-seconds", "0.2"]


@functools.cache
def model_and_runtime(arch: str, amount: float | None = None):
    torch.manual_seed(0)
    model = create_model(arch).eval()
    if amount:
        magnitude_prune_(model, amount, scope="global")
    example = torch.zeros(zoo_input_shape(arch))
    return model, OnnxRuntimeModule(torch_to_onnx(model, example)), example


@pytest.mark.parametrize(
    "arch, amount",
    [("vgg16_bn", 0.8), ("resnet20", 0.7), ("mnist1d_cnn", 0.5), ("tiny_transformer", 0.6)],
)
def test_onnx_macs_equal_torch_macs(arch, amount):
    model, runtime, example = model_and_runtime(arch, amount)
    expected, got = count_macs(model, example), runtime.macs(example)
    assert got.dense == expected.dense
    assert got.effective == expected.effective
    assert got.per_layer == expected.per_layer
    if arch == "vgg16_bn":  # the assignment's baseline; pruning leaves dense MACs alone
        assert got.dense == 314_002_432


def test_onnx_macs_are_per_sample_at_any_batch():
    model, runtime, _ = model_and_runtime("tiny_transformer")
    batch = torch.zeros(6, 40)
    assert runtime.macs(batch).dense == count_macs(model, batch).dense


@pytest.mark.parametrize("arch", ["vgg16_bn", "resnet20", "tiny_transformer"])
def test_onnx_sparsity_equals_torch_sparsity(arch):
    model, runtime, _ = model_and_runtime(arch, 0.8)
    expected, got = measure_sparsity(model), runtime.sparsity()
    assert [(x.name, x.shape, x.params, x.nonzero) for x in got.layers] == [
        (x.name, x.shape, x.params, x.nonzero) for x in expected.layers
    ]
    assert (got.params, got.nonzero_params) == (expected.params, expected.nonzero_params)
    assert got.sparsity_pct == pytest.approx(expected.sparsity_pct)


def test_session_uses_torchs_thread_count():
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runtime = OnnxRuntimeModule(torch_to_onnx(create_model(ARCH), torch.zeros(1, 40)))
            options = runtime.session.get_session_options()
            assert options.intra_op_num_threads == torch.get_num_threads() == threads
            assert options.inter_op_num_threads == 1
            assert runtime.settings["intra_op_num_threads"] == threads
    finally:
        torch.set_num_threads(previous)


def test_providers_follow_the_device():
    assert providers_for("cpu", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(SparsebenchError, match="pip install onnxruntime-gpu"):
        providers_for("cuda", ["AzureExecutionProvider", "CPUExecutionProvider"])
    cuda = providers_for("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    options = {"device_id": 1, "use_tf32": 0}
    assert cuda == [("CUDAExecutionProvider", options), "CPUExecutionProvider"]


def foreign_model(path, input_dims, weight: np.ndarray) -> None:
    """A hand-made ONNX file (no sparsebench metadata): logits = x @ weight."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [input_dims[0], weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))


def test_foreign_onnx_file_reads_shape_from_the_graph(tmp_path):
    weight = np.zeros((12, 5), np.float32)
    weight[:3] = 1.0  # 75% zeros
    path = tmp_path / "foreign.onnx"
    foreign_model(path, ["N", 12], weight)
    loaded = load(path)
    assert loaded.input_shape == (1, 12) and loaded.meta is None and loaded.name == "foreign"
    assert load(path, batch_size=4).input_shape == (4, 12)
    macs = loaded.model.macs(torch.zeros(1, 12))
    assert (macs.dense, macs.effective) == (60, 15)
    assert loaded.model.sparsity().layers[0].name == "w"
    with pytest.raises(SparsebenchError, match="does not fit foreign.onnx"):
        load(path, input_shape=(1, 13))


def test_dynamic_non_batch_dimension_asks_for_input_shape(tmp_path):
    path = tmp_path / "dynamic.onnx"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "dynamic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "L"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "L"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    with pytest.raises(SparsebenchError, match="pass --input-shape"):
        load(path)
    assert load(path, input_shape=(2, 7)).input_shape == (2, 7)


def test_missing_onnxruntime_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "foreign.onnx"
    foreign_model(path, ["N", 4], np.ones((4, 2), np.float32))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(SparsebenchError, match=r"sparsebench\[onnx\]"):
        load(path)


def test_profile_with_threads_records_the_session_threads(sb_ckpt):
    previous = torch.get_num_threads()
    try:
        fast = LatencyConfig(warmup=1, min_iters=3, min_seconds=0)
        config = ProfileConfig(
            threads=1, latency=fast, memory=False, energy=False, runtime="onnxruntime"
        )
        (row,) = profile(sb_ckpt, config).results
    finally:
        torch.set_num_threads(previous)
    assert row.runtime == "onnxruntime" and row.threads == 1
    assert row.runtime_options["intra_op_num_threads"] == 1
    assert row.runtime_options["providers"] == ["CPUExecutionProvider"]


def test_cli_export_then_profile_onnx_needs_no_flags(sb_ckpt, tmp_path):
    model_path, out = tmp_path / "m.onnx", tmp_path / "report.json"
    exported = runner.invoke(app, ["export", str(sb_ckpt), "-f", "onnx", "-o", str(model_path)])
    assert exported.exit_code == 0, exported.output
    assert "verified on 64 synthetic samples" in exported.output
    result = runner.invoke(app, ["profile", str(model_path), *FAST, "-o", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["results"]
    assert (row["model"], row["format"], row["runtime"]) == ("m", "onnx", "onnxruntime")
    assert row["input_shape"] == [1, 40] and row["verification"]["passed"] is True
    torch_model = load(sb_ckpt).model
    assert row["macs_m"] == count_macs(torch_model, torch.zeros(1, 40)).dense / 1e6
    assert row["peak_mem_mb"] is not None  # the memory child re-loaded the .onnx file


def test_cli_profile_checkpoint_with_onnxruntime_runtime(sb_ckpt, tmp_path):
    out = tmp_path / "report.json"
    args = ["profile", str(sb_ckpt), "--runtime", "onnxruntime", *FAST, "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["results"]
    assert (row["model"], row["runtime"], row["format"]) == ("mlp", "onnxruntime", "onnx")
    assert row["source"] == str(sb_ckpt) and row["peak_mem_mb"] is not None
    assert row["size_source"] == "file (ONNX exported on the fly)"
    bad = runner.invoke(app, ["profile", str(sb_ckpt), "--runtime", "tvm", *FAST])
    assert bad.exit_code == 2 and "unknown runtime 'tvm'" in bad.output
