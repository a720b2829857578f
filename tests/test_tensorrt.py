"""The TensorRT exporter and runtime: build options, inspector parsing and clear errors on CPU;
real engine builds behind the `tensorrt` marker (TensorRT and an NVIDIA GPU)."""

from __future__ import annotations

import importlib.machinery
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sparsebench import LoadOptions, load
from sparsebench.checkpoint import CheckpointMeta, save_checkpoint
from sparsebench.cli import app
from sparsebench.errors import MissingExtraError, SparsebenchError
from sparsebench.formats import ExportConfig
from sparsebench.formats._semi24_pattern import enforce_24_
from sparsebench.formats._tensorrt_layers import (
    NOT_DETAILED,
    parse_engine_layers,
    precision_of,
    summarize_layers,
)
from sparsebench.formats._tensorrt_plan import (
    MAX_BATCH,
    batch_profile,
    plan_build,
    scan_onnx_weights,
)
from sparsebench.formats.tensorrt import record, source_stats
from sparsebench.measure.macs import count_macs
from sparsebench.measure.sparsity import measure_sparsity
from sparsebench.metadata import read_sidecar, sidecar_path
from sparsebench.runtimes import tensorrt as trt_runtime
from sparsebench.runtimes.tensorrt import (
    NO_GPU,
    engine_device,
    recorded_macs,
    recorded_sparsity,
    require_tensorrt,
    tensorrt_usable,
)

from .conftest import ARCH, SHAPE

runner = CliRunner()
skip_without_tensorrt = pytest.mark.skipif(
    not tensorrt_usable(), reason="needs TensorRT and an NVIDIA GPU"
)


def needs_tensorrt(test):
    """Mark a test `tensorrt` and skip it without TensorRT or an NVIDIA GPU."""
    return pytest.mark.tensorrt(skip_without_tensorrt(test))


# --- the environment checks ------------------------------------------------------------------


def _gpu(monkeypatch, present: bool) -> None:
    monkeypatch.setattr(trt_runtime, "cuda_available", lambda: present)


def _package(monkeypatch, present: bool) -> None:
    """Pretend the tensorrt package is installed (an empty module) or missing."""
    if present:
        fake = types.ModuleType("tensorrt")
        fake.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
    else:
        monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails, find_spec is None


def test_no_gpu_and_no_package_names_both_gpu_first(monkeypatch):
    _gpu(monkeypatch, False)
    _package(monkeypatch, False)
    with pytest.raises(SparsebenchError) as info:
        require_tensorrt()
    message = str(info.value)
    assert message.startswith(NO_GPU)
    assert "sparsebench[tensorrt]" in message and "missing too" in message


def test_package_present_but_no_gpu_names_only_the_gpu(monkeypatch):
    _gpu(monkeypatch, False)
    _package(monkeypatch, True)
    with pytest.raises(SparsebenchError) as info:
        require_tensorrt()
    assert not isinstance(info.value, MissingExtraError)
    assert str(info.value).startswith(NO_GPU) and "package" not in str(info.value)


def test_gpu_present_but_no_package_names_the_extra(monkeypatch):
    _gpu(monkeypatch, True)
    _package(monkeypatch, False)
    with pytest.raises(MissingExtraError) as info:
        require_tensorrt("TensorRT engines")
    assert info.value.extra == "tensorrt" and "pip install 'sparsebench[tensorrt]'" in str(
        info.value
    )


def test_engines_refuse_a_cpu_device():
    with pytest.raises(SparsebenchError, match="--device cuda"):
        engine_device("cpu")
    assert engine_device("cuda:1") == "cuda:1"


def test_importing_the_tensorrt_modules_imports_no_tensorrt_and_touches_no_gpu():
    code = (
        "import sys, torch, sparsebench.formats, sparsebench.runtimes.tensorrt, sparsebench.cli\n"
        "assert 'tensorrt' in sparsebench.formats.FORMATS\n"
        "assert 'tensorrt' not in sys.modules and 'onnx' not in sys.modules\n"
        "assert not torch.cuda.is_initialized()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# --- build options chosen from the config and the model -------------------------------------


def test_fp16_is_the_default_with_a_dynamic_batch_profile():
    plan = plan_build(ExportConfig.of(format="tensorrt"), {}, batch=8)
    assert plan.dtype == "float16" and plan.flags == ("FP16",) and plan.tolerance == 1e-2
    assert plan.batch == (1, 8, MAX_BATCH) and not plan.int8 and not plan.sparse_weights
    assert plan_build(ExportConfig.of(format="tensorrt"), {}, batch=100).batch == (1, 100, 100)


@pytest.mark.parametrize(
    ("dtype", "flags", "cleared"),
    [("float32", (), ("TF32",)), ("bfloat16", ("BF16",), ()), ("float16", ("FP16",), ())],
)
def test_precision_flags_follow_dtype(dtype, flags, cleared):
    plan = plan_build(ExportConfig.of(format="tensorrt", dtype=dtype), {}, batch=1)
    assert plan.flags == flags and plan.cleared == cleared


def test_int8_needs_calibration_data():
    with pytest.raises(SparsebenchError, match="INT8 needs calibration data: pass --data"):
        plan_build(ExportConfig.of(format="tensorrt", dtype="int8"), {}, batch=4)
    plan = plan_build(ExportConfig.of(format="tensorrt", dtype="int8", data="mnist1d"), {}, 4)
    assert plan.int8 and plan.flags == ("INT8", "FP16") and plan.calibration == "mnist1d"
    assert plan.opt == 4


def test_unknown_dtype_lists_the_supported_ones():
    with pytest.raises(SparsebenchError, match="float32, float16, bfloat16, int8"):
        plan_build(ExportConfig.of(format="tensorrt", dtype="float8"), {}, batch=1)


def test_sparse_weights_flag_is_set_when_a_weight_is_24_sparse():
    plan = plan_build(ExportConfig.of(format="tensorrt"), {"fc1.weight": True, "fc2": False}, 1)
    assert plan.sparse_weights and plan.flags == ("FP16", "SPARSE_WEIGHTS")
    assert "on (auto): 1 of 2" in plan.sparse_reason and "fc1.weight" in plan.sparse_reason
    dense = plan_build(ExportConfig.of(format="tensorrt"), {"fc1.weight": False, "c": None}, 1)
    assert not dense.sparse_weights and "SPARSE_WEIGHTS" not in dense.flags
    assert "none of 2" in dense.sparse_reason


def test_sparse_weights_flag_can_be_forced_either_way():
    on = plan_build(ExportConfig.of(format="tensorrt", sparse_weights=True), {"a": False}, 1)
    assert on.sparse_weights and "--sparse-weights" in on.sparse_reason
    off = plan_build(ExportConfig.of(format="tensorrt", sparse_weights=False), {"a": True}, 1)
    assert not off.sparse_weights and "SPARSE_WEIGHTS" not in off.flags
    fp32 = plan_build(ExportConfig.of(format="tensorrt", dtype="float32"), {"a": True}, 1)
    assert fp32.sparse_weights and any("FP16 and INT8" in note for note in fp32.notes)


def test_a_fixed_onnx_batch_must_match():
    plan = plan_build(ExportConfig.of(format="tensorrt"), {}, batch=8)
    assert batch_profile(plan, None) == (1, 8, MAX_BATCH)
    assert batch_profile(plan, 8) == (8, 8, 8)
    with pytest.raises(SparsebenchError, match="fixed batch of 1"):
        batch_profile(plan, 1)


# --- the 2:4 scan of ONNX weights ------------------------------------------------------------


def _sparse_rows(rows: int, cols: int) -> torch.Tensor:
    weight = torch.randn(rows, cols)
    enforce_24_(weight)
    return weight


def _onnx_file(tmp_path, nodes, weights: dict[str, torch.Tensor]):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(w.numpy().astype(np.float32), n) for n, w in weights.items()]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_scan_finds_24_weights_along_the_input_axis(tmp_path):
    helper = pytest.importorskip("onnx.helper")
    torch.manual_seed(0)
    gemm_nk = _sparse_rows(16, 32)  # Gemm transB=1: stored (out, in)
    matmul_kn = _sparse_rows(8, 16).T.contiguous()  # MatMul: stored (in, out)
    transposed = _sparse_rows(8, 16)  # (out, in), fed to MatMul through a Transpose
    conv = _sparse_rows(4 * 3 * 3, 8).reshape(4, 3, 3, 8).permute(0, 3, 1, 2).contiguous()
    nodes = [
        helper.make_node("Gemm", ["x", "gemm_w"], ["a"], transB=1),
        helper.make_node("MatMul", ["a", "mm_w"], ["b"]),
        helper.make_node("Transpose", ["t_w"], ["t_out"], perm=[1, 0]),
        helper.make_node("MatMul", ["b", "t_out"], ["c"]),
        helper.make_node("MatMul", ["c", "dense_w"], ["d"]),
        helper.make_node("Conv", ["d", "conv_w"], ["e"]),
        helper.make_node("Conv", ["e", "rgb_w"], ["y"]),
    ]
    weights = {
        "gemm_w": gemm_nk,
        "mm_w": matmul_kn,
        "t_w": transposed,
        "dense_w": matmul_kn.T.contiguous(),  # pattern along the wrong axis: not 2:4 for TRT
        "conv_w": conv,
        "rgb_w": torch.randn(4, 3, 3, 3),  # 3 input channels: no groups of 4
    }
    found = scan_onnx_weights(_onnx_file(tmp_path, nodes, weights))
    assert found == {
        "gemm_w": True,
        "mm_w": True,
        "t_w": True,
        "dense_w": False,
        "conv_w": True,
        "rgb_w": None,
    }


# --- the engine inspector's layer information -------------------------------------------------

# modelled on a real TensorRT 10 engine inspector dump (ProfilingVerbosity.DETAILED): cask
# convolutions with HasSparseWeights, Myelin "gemm" layers with short types, a 2:4 sparse
# conv and gemm (xmma "sparse"/"sptensor" kernels), reformat and shape-call layers
SAMPLE_ENGINE_INFO = json.loads(
    (Path(__file__).parent / "data/tensorrt_engine_info.json").read_text()
)


def test_inspector_layers_report_sparse_tactics_and_precisions():
    layers, notes = parse_engine_layers(json.dumps(SAMPLE_ENGINE_INFO))
    assert notes == []
    by_name = {layer.name: layer for layer in layers}
    assert [layer.action for layer in layers] == [
        "other",
        "dense",
        "sparse",
        "other",
        "sparse",
        "dense",
        "other",
    ]
    conv1, conv2 = by_name["/conv1/Conv + /relu1/Relu"], by_name["/conv2/Conv + /relu2/Relu"]
    assert conv1.kind == "Convolution" and conv1.details["has_sparse_weights"] is False
    assert conv1.details["precision"] == "fp16" and conv1.details["weights_precision"] == "fp16"
    assert conv1.details["onnx_layers"] == ["/conv1/Conv", "/relu1/Relu"]
    assert conv2.details["sparse_tactic"] and conv2.details["has_sparse_weights"] is True
    fc1, fc2 = by_name["/fc1/Gemm_myl0_1"], by_name["/fc2/Gemm_myl0_2"]
    assert fc1.kind == "gemm" and fc1.reason == "2:4 sparse tactic"
    assert fc1.details["onnx_layers"] == ["/fc1/Gemm", "/relu3/Relu"]
    assert fc2.details["output_precision"] == "fp32" and fc2.details["weights_precision"] is None
    assert by_name["/pool/MaxPool"].details["precision"] == "fp16"
    summary = summarize_layers(layers)
    assert summary["sparse_layers"] == ["/conv2/Conv + /relu2/Relu", "/fc1/Gemm_myl0_1"]
    assert summary["compute_layers"] == 4 and summary["compute_precisions"] == {"fp16": 4}


def test_sparse_weights_field_alone_marks_a_sparse_layer():
    raw = {"Name": "c", "LayerType": "CaskConvolution", "HasSparseWeights": "1", "TacticName": "x"}
    (layer,), _ = parse_engine_layers(json.dumps({"Layers": [raw]}))
    assert layer.action == "sparse" and layer.reason == "HasSparseWeights"


def test_names_only_information_is_reported_not_guessed():
    layers, notes = parse_engine_layers(json.dumps({"Layers": ["conv1", "fc1"], "Bindings": []}))
    assert [layer.action for layer in layers] == ["unknown", "unknown"] and notes == [NOT_DETAILED]
    layers, notes = parse_engine_layers("not json")
    assert layers == [] and "not JSON" in notes[0]


@pytest.mark.parametrize(
    ("description", "precision"),
    [
        ("Row major linear FP32", "fp32"),
        ("Float", "fp32"),
        ("Half", "fp16"),
        ("Row major linear BFloat16 format", "bf16"),
        ("Thirty-two wide channel vectorized row major Int8 format", "int8"),
        ("Channel major UInt8 format", "uint8"),
        ("Row major linear FP8 format", "fp8"),
        ("Int32", "int32"),
        ("Unknown format", None),
        (None, None),
    ],
)
def test_precision_of_inspector_formats(description, precision):
    assert precision_of(description) == precision


# --- sparsity and MACs carried by the sidecar -------------------------------------------------


def test_sidecar_carries_sparsity_and_macs_of_the_source(mlp):
    mlp.fc1.weight.data[:, ::2] = 0
    example = torch.zeros(SHAPE)
    info = json.loads(json.dumps(source_stats(mlp, example)))  # through JSON, as on disk
    expected = measure_sparsity(mlp)
    got = recorded_sparsity(info)
    assert got.sparsity_pct == pytest.approx(expected.sparsity_pct)
    assert got.params == expected.params and got.layers[0].name == expected.layers[0].name
    assert recorded_macs(info) == count_macs(mlp, example)


def test_unavailable_sparsity_raises_with_the_reason():
    def fails():
        raise NotImplementedError

    entry = record(fails)
    assert entry == {"available": False, "reason": "the source's runtime does not report it"}
    with pytest.raises(SparsebenchError, match="sparsity of this TensorRT engine is unavailable"):
        recorded_sparsity({"sparsity": entry})
    with pytest.raises(SparsebenchError, match="not recorded"):
        recorded_macs({})


# --- sidecar and CLI errors -------------------------------------------------------------------


def _sidecar(engine) -> None:
    info = {"sparsebench": {"kind": "tensorrt-engine", "version": 1}, "input_shape": [1, 40]}
    sidecar_path(engine).write_text(json.dumps(info))


def test_missing_sidecar_is_named(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(SparsebenchError, match="m.engine.json"):
        read_sidecar(engine)
    sidecar_path(engine).write_text("{}")
    with pytest.raises(SparsebenchError, match="not a sparsebench TensorRT sidecar"):
        read_sidecar(engine)
    _sidecar(engine)
    assert read_sidecar(engine)["input_shape"] == [1, 40]


def test_load_checks_the_sidecar_then_the_gpu(tmp_path, monkeypatch):
    _gpu(monkeypatch, False)
    engine = tmp_path / "m.plan"
    engine.write_bytes(b"\0")
    with pytest.raises(SparsebenchError, match="TensorRT engine.*--trust-checkpoint"):
        load(engine)  # TensorRT does not validate what it deserialises: trusted files only
    with pytest.raises(SparsebenchError, match="has no sidecar"):
        load(engine, trust_checkpoint=True)
    _sidecar(engine)
    with pytest.raises(SparsebenchError, match=NO_GPU):
        load(engine, LoadOptions(trust_checkpoint=True))


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_cli_export_without_gpu_exits_2_and_writes_nothing(sb_ckpt, tmp_path, monkeypatch):
    _gpu(monkeypatch, False)
    out = tmp_path / "m.engine"
    result = runner.invoke(app, ["export", str(sb_ckpt), "-f", "tensorrt", "-o", str(out)])
    assert NO_GPU in _one_line_error(result)
    assert not out.exists() and not sidecar_path(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [sb_ckpt.name]


def test_cli_export_int8_without_data_says_so_first(sb_ckpt, tmp_path):
    out = tmp_path / "m.engine"
    args = ["export", str(sb_ckpt), "-f", "tensorrt", "--dtype", "int8", "-o", str(out)]
    assert "INT8 needs calibration data" in _one_line_error(runner.invoke(app, args))
    assert not out.exists()


def test_cli_profile_engine_without_gpu_exits_2(tmp_path, monkeypatch):
    _gpu(monkeypatch, False)
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"\0")
    refused = _one_line_error(runner.invoke(app, ["profile", str(engine)]))
    assert "--trust-checkpoint" in refused
    trusted = ["profile", str(engine), "--trust-checkpoint"]
    assert "x.engine.json" in _one_line_error(runner.invoke(app, trusted))
    _sidecar(engine)
    assert NO_GPU in _one_line_error(runner.invoke(app, trusted))


# --- export_file's steps, with TensorRT replaced by fakes that run the torch model on CPU -----


@pytest.fixture
def fake_tensorrt(monkeypatch, tmp_path, mlp):
    """Fake the TensorRT calls of the exporter; the "engine" runs `mlp` (+ `error` x max|out|)."""
    from sparsebench.formats import tensorrt as exporter
    from sparsebench.formats._tensorrt_build import BuiltEngine

    calls = {}

    def build(trt, path, plan, shape, device, calibration):
        calls.update(plan=plan, calibration=calibration, shape=shape)
        return BuiltEngine(b"serialized engine", "input", "output", plan.batch)

    class FakeEngineModule(torch.nn.Module):
        error = 0.0

        def __init__(self, trt, data, device):
            super().__init__()
            self.engine = data

        def forward(self, x):
            out = mlp(x)
            return out + self.error * out.abs().max()

        def close(self):
            calls["closed"] = True

    fake_build = {"tensorrt": "10.0-fake", "gpu": "Fake GPU", "capability": "9.0"}
    monkeypatch.setattr(exporter, "require_tensorrt", lambda purpose: types.ModuleType("trt"))
    monkeypatch.setattr(exporter, "build_device", lambda device: "cuda:0")
    monkeypatch.setattr(exporter, "_onnx_file", lambda *args: tmp_path / "unused.onnx")
    monkeypatch.setattr(exporter, "scan_onnx_weights", lambda path: {"fc1.weight": True})
    monkeypatch.setattr(exporter, "build_engine", build)
    inspect = {b"serialized engine": json.dumps(SAMPLE_ENGINE_INFO)}.__getitem__
    monkeypatch.setattr(exporter, "inspect_engine", lambda trt, engine: inspect(engine))
    monkeypatch.setattr(exporter, "_build_info", lambda trt, device: fake_build)
    monkeypatch.setattr(exporter, "TensorRTModule", FakeEngineModule)
    return FakeEngineModule, calls


def _fake_engine_runtime(monkeypatch, engine_module):
    from sparsebench.runtimes import tensorrt as runtime

    class Loaded(engine_module):
        def __init__(self, trt, data, device, info=None):
            super().__init__(trt, data, device)
            self.info = info or {}

        def check_batch(self, batch):
            pass

    monkeypatch.setattr(runtime, "require_tensorrt", lambda purpose: types.ModuleType("trt"))
    monkeypatch.setattr(runtime, "engine_device", lambda device: device)
    monkeypatch.setattr(runtime, "TensorRTModule", Loaded)
    return Loaded


def test_engine_is_reverified_on_load_against_its_sidecar(
    fake_tensorrt, sb_ckpt, tmp_path, monkeypatch
):
    from sparsebench.export import export

    engine_module, _ = fake_tensorrt
    out = tmp_path / "mlp.engine"
    export(sb_ckpt, out, ExportConfig.of(format="tensorrt"))
    loaded_module = _fake_engine_runtime(monkeypatch, engine_module)
    loaded = load(out, trust_checkpoint=True)
    assert loaded.verification.passed and loaded.verification.tolerance == 1e-2
    loaded_module.error = 0.5  # the engine no longer computes what the sidecar recorded
    with pytest.raises(SparsebenchError, match="tampered or corrupted"):
        load(out, trust_checkpoint=True)
    loaded_module.error = 0.0
    info = read_sidecar(out)
    info.pop("reference_outputs")
    sidecar_path(out).write_text(json.dumps(info))
    with pytest.raises(SparsebenchError, match="no reference outputs"):
        load(out, trust_checkpoint=True)


def test_export_verifies_then_writes_engine_and_sidecar(fake_tensorrt, sb_ckpt, tmp_path, mlp):
    from sparsebench.export import export

    _, calls = fake_tensorrt
    out = tmp_path / "mlp.engine"
    result = export(sb_ckpt, out, ExportConfig.of(format="tensorrt"))
    assert out.read_bytes() == b"serialized engine" and result.stored_bytes == len(
        b"serialized engine"
    )
    info = read_sidecar(out)
    assert info["precision"]["flags"] == ["FP16", "SPARSE_WEIGHTS"]
    assert info["weights_24"] == {"fc1.weight": True} and info["arch"] == ARCH
    assert info["batch"] == {"min": 1, "opt": 1, "max": MAX_BATCH}
    assert info["verification"]["passed"] and info["verification"]["tolerance"] == 1e-2
    assert info["layer_summary"]["sparse_layers"] == [
        "/conv2/Conv + /relu2/Relu",
        "/fc1/Gemm_myl0_1",
    ]
    assert recorded_sparsity(info).params == measure_sparsity(mlp).params
    assert recorded_macs(info) == count_macs(mlp, torch.zeros(SHAPE))
    assert "2 of 4 Conv/GEMM layers run 2:4 sparse tactics" in " ".join(result.notes)
    assert calls["closed"] and calls["calibration"] is None and calls["plan"].dtype == "float16"


def test_failed_verification_writes_nothing(fake_tensorrt, sb_ckpt, tmp_path):
    from sparsebench.export import export

    fake_tensorrt[0].error = 0.5
    out = tmp_path / "mlp.engine"
    with pytest.raises(SparsebenchError, match="verification of the tensorrt engine failed"):
        export(sb_ckpt, out, ExportConfig.of(format="tensorrt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [sb_ckpt.name]


def test_int8_export_calibrates_on_the_train_split(fake_tensorrt, sb_ckpt, tmp_path):
    from sparsebench.export import export

    data = tmp_path / "data.pt"
    torch.save({"x": torch.randn(10, 40), "y": torch.randint(0, 10, (10,))}, data)
    config = ExportConfig.of(format="tensorrt", dtype="int8", data=str(data), verify_samples=8)
    options = LoadOptions(batch_size=4)
    fake_tensorrt[0].error = 0.05  # within INT8's 1e-1 relative tolerance
    export(sb_ckpt, tmp_path / "q.engine", config, options)
    calls = fake_tensorrt[1]
    assert [len(batch) for batch in calls["calibration"]] == [4, 4]  # whole batches of opt=4
    info = read_sidecar(tmp_path / "q.engine")
    assert info["precision"]["flags"] == ["INT8", "FP16", "SPARSE_WEIGHTS"]
    assert info["calibration"] == {"data": str(data), "split": "train", "samples": 0}


def test_an_existing_sidecar_is_not_overwritten(fake_tensorrt, sb_ckpt, tmp_path):
    from sparsebench.export import export

    out = tmp_path / "mlp.engine"
    sidecar_path(out).write_text("{}")
    with pytest.raises(SparsebenchError, match="already exists"):
        export(sb_ckpt, out, ExportConfig.of(format="tensorrt"))
    export(sb_ckpt, out, ExportConfig.of(format="tensorrt"), force=True)
    assert read_sidecar(out)["engine"] == "mlp.engine"


# --- real engines (TensorRT and an NVIDIA GPU) ------------------------------------------------


@pytest.fixture
def sparse_ckpt(tmp_path, mlp):
    """The mnist1d MLP with every Linear weight magnitude-pruned to 2:4."""
    for module in mlp.modules():
        if isinstance(module, torch.nn.Linear):
            enforce_24_(module.weight.data)
    path = tmp_path / "sparse.pt"
    save_checkpoint(path, mlp, CheckpointMeta(arch=ARCH, input_shape=[8, SHAPE[1]]))
    return path


@needs_tensorrt
def test_fp16_engine_builds_verifies_loads_and_runs(sb_ckpt, tmp_path):
    from sparsebench.export import export

    out = tmp_path / "mlp.engine"
    result = export(sb_ckpt, out, ExportConfig.of(format="tensorrt", device="cuda"))
    assert result.verification.passed and out.exists()
    info = read_sidecar(out)
    assert info["precision"]["flags"][0] == "FP16" and info["input_shape"] == list(SHAPE)
    assert info["verification"]["passed"] and info["layers"]
    assert info["sparsity"]["available"] and info["macs"]["available"]
    loaded = load(out, LoadOptions(device="cuda", trust_checkpoint=True))
    reference = load(sb_ckpt).model
    x = torch.randn(4, *SHAPE[1:])
    got = loaded.model(x).float().cpu()
    assert torch.allclose(got, reference(x), rtol=0, atol=2e-2 * reference(x).abs().max())
    assert loaded.model.sparsity().params == measure_sparsity(reference).params


@needs_tensorrt
def test_24_sparse_model_gets_the_sparse_weights_flag(sparse_ckpt, tmp_path):
    from sparsebench.export import export

    out = tmp_path / "sparse.engine"
    export(sparse_ckpt, out, ExportConfig.of(format="tensorrt", device="cuda"))
    info = read_sidecar(out)
    assert info["precision"]["sparse_weights"] and "SPARSE_WEIGHTS" in info["precision"]["flags"]
    assert info["input_shape"] == [8, SHAPE[1]] and info["batch"]["opt"] == 8
    assert all(info["weights_24"].values())
    # whether TensorRT picks a sparse tactic is its timing decision: recorded, not assumed
    assert isinstance(info["layer_summary"]["sparse_layers"], list)


@needs_tensorrt
def test_int8_engine_calibrates_on_data(sb_ckpt, tmp_path):
    from sparsebench.export import export

    data = tmp_path / "data.pt"
    torch.save({"x": torch.randn(256, 40), "y": torch.randint(0, 10, (256,))}, data)
    out = tmp_path / "int8.engine"
    config = ExportConfig.of(format="tensorrt", dtype="int8", data=str(data), device="cuda")
    export(sb_ckpt, out, config)
    info = read_sidecar(out)
    assert info["calibration"]["samples"] > 0 and "INT8" in info["precision"]["flags"]


@needs_tensorrt
def test_cli_exports_and_profiles_an_engine(sb_ckpt, tmp_path):
    out = tmp_path / "mlp.engine"
    result = runner.invoke(app, ["export", str(sb_ckpt), "-f", "tensorrt", "-o", str(out)])
    assert result.exit_code == 0, result.output
    fast = ["--min-iters", "5", "--min-seconds", "0", "--no-memory", "--no-energy"]
    trusted = ["--trust-checkpoint"]
    result = runner.invoke(app, ["profile", str(out), "--device", "cuda", *trusted, *fast])
    assert result.exit_code == 0, result.output
