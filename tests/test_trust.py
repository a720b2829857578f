"""The trust model: nothing named or stored inside a file runs, and crafted files fail cleanly.

Each test crafts the file an attacker would send (no binaries are committed) and checks
that loading it gives one clear line and runs nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch
from typer.testing import CliRunner

from sparsebench import LoadOptions, SparsebenchError, load
from sparsebench.checkpoint import FORMAT_KEY, CheckpointMeta, save_checkpoint
from sparsebench.cli import app
from sparsebench.export import export
from sparsebench.formats import ExportConfig

from .conftest import ARCH, SHAPE

runner = CliRunner()
FAST = ["--warmup", "1", "--min-iters", "3", "--min-seconds", "0.01", "--no-memory", "--no-energy"]


def _resave(path, edit):
    """Load a checkpoint's payload, let `edit` change it, and write it back."""
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)


def _evil_factory(tmp_path):
    marker = tmp_path / "PWNED"
    source = tmp_path / "evil_arch.py"
    source.write_text(
        textwrap.dedent(
            f"""
            import pathlib
            from sparsebench.zoo import create_model
            def build():
                pathlib.Path({str(marker)!r}).write_text("ran")
                return create_model({ARCH!r})
            """
        )
    )
    return f"{source}:build", marker


def test_metadata_naming_an_importable_callable_is_refused(tmp_path, mlp):
    marker = tmp_path / "M"
    path = tmp_path / "evil.pt"
    meta = CheckpointMeta(arch="subprocess:run", input_shape=list(SHAPE))
    meta.arch_kwargs = {"args": f"touch {marker}", "shell": True}
    save_checkpoint(path, mlp, meta)
    commands = [
        ["profile", str(path), *FAST],
        ["export", str(path), "-f", "dense", "-o", str(tmp_path / "o.pt")],
        ["prune", str(path), "--amount", "0.5", "-o", str(tmp_path / "p.pt")],
    ]
    for command in commands:
        result = runner.invoke(app, command)
        assert result.exit_code == 2
        assert "names the architecture 'subprocess:run'" in result.output
        assert "--trust-checkpoint" in result.output
    assert not marker.exists()


def test_metadata_naming_a_python_file_runs_only_when_trusted(tmp_path, mlp):
    arch, marker = _evil_factory(tmp_path)
    path = tmp_path / "evil.pt"
    save_checkpoint(path, mlp, CheckpointMeta(arch=arch, input_shape=list(SHAPE)))
    with pytest.raises(SparsebenchError, match="code to import"):
        load(path)
    assert not marker.exists()
    load(path, trust_checkpoint=True)  # the user vouches for the file: now it may run
    assert marker.exists()


def test_user_named_arch_is_the_users_choice(tmp_path, mlp):
    arch, marker = _evil_factory(tmp_path)
    path = tmp_path / "file_arch.pt"
    save_checkpoint(path, mlp, CheckpointMeta(arch=arch, input_shape=list(SHAPE)))
    load(path, arch=arch)
    assert marker.exists()


def test_export_program_renamed_to_pt_still_needs_trust(tmp_path, mlp):
    path = tmp_path / "innocent.pt"
    torch.export.save(torch.export.export(mlp, (torch.randn(*SHAPE),)), str(path))
    result = runner.invoke(app, ["profile", str(path), *FAST])
    assert result.exit_code == 2
    assert "torch.export program" in result.output and "--trust-checkpoint" in result.output


def test_torchscript_that_writes_a_file_is_not_run(tmp_path):
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"\0" * 64)

    class Writer(torch.nn.Module):
        def __init__(self, target: str):
            super().__init__()
            self.target = target

        def forward(self, x):
            torch.from_file(self.target, True, 64, dtype=torch.uint8).fill_(65)
            return x

    path = tmp_path / "writer.pt"
    torch.jit.save(torch.jit.script(Writer(str(victim))), str(path))
    result = runner.invoke(app, ["profile", str(path), "--input-shape", "1,4", *FAST])
    assert result.exit_code == 2 and "TorchScript" in result.output
    assert victim.read_bytes() == b"\0" * 64


def _csr_artifact(sb_ckpt, tmp_path):
    out = tmp_path / "csr.pt"
    export(sb_ckpt, out, ExportConfig.of(format="csr"))
    return out


def _break_csr(edit):
    def apply(payload):
        weight = payload["state_dict"]["fc1.weight"]
        crow, col = weight.crow_indices().clone(), weight.col_indices().clone()
        edit(crow, col)
        payload["state_dict"]["fc1.weight"] = torch.sparse_csr_tensor(
            crow, col, weight.values(), weight.shape, check_invariants=False
        )

    return apply


CSR_DAMAGE = {
    "column out of range": lambda crow, col: col.__setitem__(0, 10**6),
    "negative column": lambda crow, col: col.__setitem__(3, -7),
    "rows not monotonic": lambda crow, col: crow.__setitem__(5, int(crow[-1]) + 9),
    "row pointer past nnz": lambda crow, col: crow.__setitem__(-1, int(crow[-1]) + 100),
}


@pytest.mark.parametrize("damage", sorted(CSR_DAMAGE))
def test_crafted_csr_indices_give_one_line_not_a_signal(sb_ckpt, tmp_path, damage):
    out = _csr_artifact(sb_ckpt, tmp_path)
    _resave(out, _break_csr(CSR_DAMAGE[damage]))
    code = f"import sparsebench; sparsebench.load({str(out)!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr  # a Python exception, not a signal (negative)
    assert "SparsebenchError" in proc.stderr and "corrupt" in proc.stderr


def test_tolerance_in_the_file_is_ignored(sb_ckpt, tmp_path):
    out = tmp_path / "dense.pt"
    export(sb_ckpt, out, ExportConfig.of(format="dense"))

    def negate_and_relax(payload):
        payload["state_dict"]["fc3.weight"].neg_()
        payload[FORMAT_KEY]["export"]["verification"]["tolerance"] = 1e9

    _resave(out, negate_and_relax)
    with pytest.raises(SparsebenchError, match="tolerance 1e-04"):
        load(out)


def test_artifact_without_reference_outputs_is_refused(sb_ckpt, tmp_path):
    out = tmp_path / "dense.pt"
    export(sb_ckpt, out, ExportConfig.of(format="dense"))
    _resave(out, lambda payload: payload["tensors"].clear())
    with pytest.raises(SparsebenchError, match="no reference outputs.*refused"):
        load(out)


def test_reported_stored_size_and_verification_are_measured(sb_ckpt, tmp_path):
    out = _csr_artifact(sb_ckpt, tmp_path)
    honest = load(out)

    def lie(payload):
        payload[FORMAT_KEY]["export"]["stored_bytes"] = 1
        payload[FORMAT_KEY]["export"]["verification"] = {"max_rel_err": 0.0, "passed": True}

    _resave(out, lie)
    result = runner.invoke(app, ["profile", str(out), *FAST, "-o", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "r.json").read_text())["results"][0]
    from sparsebench.formats import get_exporter
    from sparsebench.results import MB

    assert row["stored_mb"] == pytest.approx(get_exporter("csr").stored_bytes(honest.model) / MB)
    assert row["stored_mb"] > 1e-3
    assert row["verification"]["samples"] == 8  # the check run at load, not the file's claim
    assert row["verification"]["tolerance"] == get_exporter("csr").tolerance


def test_huge_arch_kwargs_in_an_artifact_are_refused(sb_ckpt, tmp_path):
    out = tmp_path / "dense.pt"
    export(sb_ckpt, out, ExportConfig.of(format="dense"))

    def grow(payload):
        payload[FORMAT_KEY]["arch_kwargs"] = {"hidden": 10**9}

    _resave(out, grow)
    with pytest.raises(SparsebenchError):
        load(out)


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("input_shape", "12", "'input_shape' is a str"),
        ("input_shape", [1, -3], "dimension < 1"),
        ("input_shape", [1, 10**6, 10**6], "implausibly large"),
        ("arch", 5, "'arch' is a int"),
        ("arch_kwargs", [1, 2], "'arch_kwargs' is a list"),
        ("classes", [1, 2], "'classes[0]' is a int"),
    ],
)
def test_metadata_of_the_wrong_type_is_one_line(sb_ckpt, field, value, fragment):
    _resave(sb_ckpt, lambda payload: payload[FORMAT_KEY].__setitem__(field, value))
    with pytest.raises(SparsebenchError, match="corrupt metadata") as error:
        load(sb_ckpt)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_state_dict_entry_that_is_not_a_tensor_is_one_line(sb_ckpt):
    _resave(sb_ckpt, lambda payload: payload["state_dict"].__setitem__("fc1.weight", [1.0]))
    with pytest.raises(SparsebenchError, match="'state_dict' is not a dict of tensors"):
        load(sb_ckpt)


def _garbage_pickle(tmp_path, good):
    path = tmp_path / "garbage_pkl.pt"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(path, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, os.urandom(200) if name.endswith("data.pkl") else data)
    return path


def _zip_bomb(tmp_path):
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/data.pkl", b"\0" * 50_000_000)
    return path


def test_corrupt_files_are_called_corrupt_without_trust_advice(tmp_path, sb_ckpt):
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(os.urandom(4096))
    cases = [random_bytes, _garbage_pickle(tmp_path, sb_ckpt), _zip_bomb(tmp_path)]
    for path in cases:
        result = runner.invoke(app, ["profile", str(path), "--arch", ARCH, *FAST])
        assert result.exit_code == 2, path
        assert "corrupt or not a PyTorch checkpoint" in result.output, result.output
        assert "trust" not in result.output and "unexpected" not in result.output


def test_pickled_objects_get_the_trust_advice_naming_the_global(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil_pickle.pt"
    torch.save({"x": Evil()}, path)
    result = runner.invoke(app, ["profile", str(path), *FAST])
    assert result.exit_code == 2
    assert "holds pickled Python objects (posix.system)" in result.output
    assert "--trust-checkpoint" in result.output


def _edit_onnx(sb_ckpt, tmp_path, edit):
    """Export `sb_ckpt` to ONNX, let `edit` change its proto, save it back."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    export(sb_ckpt, out, ExportConfig.of(format="onnx"))
    proto = onnx.load(str(out))
    edit(proto)
    onnx.save(proto, str(out))
    return out


def _drop_reference(proto):
    for prop in proto.metadata_props:
        if prop.key == "sparsebench":
            meta = json.loads(prop.value)
            meta.pop("reference_outputs")
            prop.value = json.dumps(meta)


def test_onnx_claiming_sparsebench_without_reference_is_refused(sb_ckpt, tmp_path):
    out = _edit_onnx(sb_ckpt, tmp_path, _drop_reference)
    with pytest.raises(SparsebenchError, match="no reference outputs"):
        load(out)


def test_foreign_onnx_without_metadata_loads_unverified(sb_ckpt, tmp_path):
    out = _edit_onnx(sb_ckpt, tmp_path, lambda proto: proto.metadata_props.clear())
    loaded = load(out, LoadOptions())
    assert loaded.kind == "onnx" and loaded.verification is None


def test_profile_of_several_files_times_interleaved_and_keeps_failures(sb_ckpt, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(os.urandom(512))
    out = tmp_path / "r.json"
    args = ["profile", str(sb_ckpt), str(broken), str(sb_ckpt), *FAST, "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2  # a file failed: non-zero, but the others were measured
    assert "broken.pt: cannot read" in result.output and "corrupt" in result.output
    report = json.loads(out.read_text())
    assert len(report["results"]) == 2
    assert report["config"]["timing"] == "interleaved rounds"
    assert [f["source"] for f in report["failures"]] == [str(broken)]
    for row in report["results"]:  # each row still gets at least --min-iters calls
        assert len(row["latency_ms"]["samples"]) >= 3


def test_profile_of_one_bad_file_is_one_line(tmp_path):
    result = runner.invoke(app, ["profile", str(tmp_path / "missing.pt"), *FAST])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: no such file: {tmp_path}/missing.pt"]


def test_dataset_file_with_sparse_or_crafted_tensors_is_one_line(tmp_path):
    from sparsebench.data import load_dataset

    dense = tmp_path / "sparse_x.pt"
    torch.save({"x": torch.eye(4).to_sparse(), "y": torch.arange(4)}, dense)
    with pytest.raises(SparsebenchError, match="must be dense tensors"):
        load_dataset(f"tensors:{dense}")
    crafted = tmp_path / "crafted.pt"
    bad = torch.sparse_coo_tensor(torch.tensor([[0, 10**6]]), torch.ones(2), (4,),
                                  check_invariants=False)  # fmt: skip
    torch.save({"x": bad, "y": torch.arange(4)}, crafted)
    with pytest.raises(SparsebenchError, match="cannot read"):
        load_dataset(f"tensors:{crafted}")


# --- crafted files from the review: bounded work and memory, one line each ----------------


def test_metadata_sharing_one_list_many_times_is_refused_fast(sb_ckpt):
    nested = [0]
    for _ in range(12):
        nested = [nested] * 40  # a kilobyte in the pickle, 40**12 paths to walk
    _resave(sb_ckpt, lambda payload: payload[FORMAT_KEY].__setitem__("extra", {"x": nested}))
    with pytest.raises(SparsebenchError, match="larger than 1,000,000 values"):
        load(sb_ckpt)


def test_arch_kwargs_that_build_forever_are_stopped(sb_ckpt, monkeypatch):
    import sparsebench.arch

    monkeypatch.setattr(sparsebench.arch, "SKELETON_SECONDS", 0.5)

    def endless(payload):
        payload[FORMAT_KEY]["arch"] = "mnist1d_cnn"
        payload[FORMAT_KEY]["arch_kwargs"] = {"depth": 10**9}

    _resave(sb_ckpt, endless)
    with pytest.raises(SparsebenchError, match="took over"):
        load(sb_ckpt)


def test_expanded_views_do_not_pass_for_stored_weights(sb_ckpt, tmp_path):
    out = tmp_path / "dense.pt"
    export(sb_ckpt, out, ExportConfig.of("dense"))

    def inflate(payload):
        payload[FORMAT_KEY]["arch_kwargs"] = {"hidden": [20000, 20000]}
        payload["state_dict"]["zz"] = torch.zeros(1).as_strided((10**7, 10**7), (0, 0))

    _resave(out, inflate)
    with pytest.raises(SparsebenchError, match="expanded view"):
        load(out)


def test_format_payload_shapes_are_checked_before_allocating(sb_ckpt, tmp_path):
    out = _csr_artifact(sb_ckpt, tmp_path)
    _resave(out, lambda p: p[FORMAT_KEY]["export"]["payload"]["layers"]["fc1"].__setitem__(
        "shape", [2**40, 40]))  # fmt: skip
    with pytest.raises(SparsebenchError, match="csr artifact: fc1 holds"):
        load(out)
    channels = tmp_path / "channels.pt"
    export(sb_ckpt, channels, ExportConfig.of("channels", ratio=0.5))
    _resave(channels, lambda p: p[FORMAT_KEY]["export"]["payload"].__setitem__(
        "input_shape", [1, 2**30]))  # fmt: skip
    with pytest.raises(SparsebenchError, match="implausibly large"):
        load(channels)


def test_huge_or_odd_reference_outputs_are_refused_before_use(sb_ckpt, tmp_path):
    out = tmp_path / "dense.pt"
    export(sb_ckpt, out, ExportConfig.of("dense"))
    huge = torch.zeros(1, dtype=torch.float16).as_strided((2**17, 2**17), (0, 0))
    _resave(out, lambda payload: payload["tensors"].__setitem__("reference_outputs", huge))
    with pytest.raises(SparsebenchError, match="expanded view"):
        load(out)
    meta = torch.empty(8, 10, device="meta")
    _resave(out, lambda payload: payload["tensors"].__setitem__("reference_outputs", meta))
    with pytest.raises(SparsebenchError, match="meta tensor"):
        load(out)


def test_a_checkpoint_claiming_a_format_must_verify_as_one(sb_ckpt):
    _resave(sb_ckpt, lambda payload: payload[FORMAT_KEY].__setitem__("format", "semi24"))
    with pytest.raises(SparsebenchError, match="no reference outputs"):
        load(sb_ckpt)


def test_foreign_onnx_with_a_huge_declared_input_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)], "bomb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 20000, 20000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )  # fmt: skip
    path = tmp_path / "bomb.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(SparsebenchError, match="implausibly large"):
        load(path)


def test_dataset_bombs_are_refused(tmp_path):
    from PIL import Image

    from sparsebench.data import load_dataset

    folder = tmp_path / "images" / "cat"
    folder.mkdir(parents=True)
    Image.new("L", (8000, 8000)).save(folder / "big.png")  # 64 MP in a few kilobytes
    with pytest.raises(SparsebenchError, match="pixels"):
        load_dataset(f"imagefolder:{tmp_path / 'images'}")
    view = tmp_path / "view.pt"
    torch.save({"x": torch.zeros(1).as_strided((20000, 20000), (0, 0)), "y": torch.zeros(2)}, view)
    with pytest.raises(SparsebenchError, match="expanded view"):
        load_dataset(f"tensors:{view}")
    npz = tmp_path / "bomb.npz"
    np = pytest.importorskip("numpy")
    np.savez_compressed(npz, x=np.zeros((20000, 1000), dtype=np.float32), y=np.zeros(20000, int))
    with pytest.raises(SparsebenchError, match="zip bomb"):
        load_dataset(f"tensors:{npz}")


def test_masks_are_never_broadcast_or_malformed(state_dict_ckpt):
    def broadcast(state):
        weight = state.pop("fc1.weight")
        state["fc1.parametrizations.weight.original"] = torch.zeros(30, 1, 1)
        state["fc1.parametrizations.weight.0.mask"] = torch.ones(1, 30, 1)
        assert weight is not None

    state = torch.load(state_dict_ckpt, weights_only=True)
    broadcast(state)
    torch.save(state, state_dict_ckpt)
    with pytest.raises(SparsebenchError, match="cannot fold the mask of 'fc1.weight'"):
        load(state_dict_ckpt, arch=ARCH)
    state["fc1.parametrizations.weight"] = torch.zeros(1)  # no leaf: not a parametrization
    torch.save(state, state_dict_ckpt)
    with pytest.raises(SparsebenchError, match="only pruning masks can be folded"):
        load(state_dict_ckpt, arch=ARCH)


def test_batch_times_sample_is_bounded_too(sb_ckpt):
    _resave(sb_ckpt, lambda payload: payload[FORMAT_KEY].__setitem__("input_shape", [65536, 2048]))
    with pytest.raises(SparsebenchError, match="implausibly large"):
        load(sb_ckpt)


def test_empty_sparse_weights_cannot_inflate_a_plain_checkpoint(tmp_path):
    from sparsebench.zoo import create_model

    skeleton = create_model(ARCH, hidden=(30000, 30000))
    state = {k: torch.sparse_coo_tensor(torch.zeros(v.dim(), 0, dtype=torch.long), [], v.shape)
             for k, v in skeleton.state_dict().items()}  # fmt: skip
    path = tmp_path / "inflate.pt"
    save = {FORMAT_KEY: {"version": 1, "arch": ARCH, "arch_kwargs": {"hidden": [30000, 30000]},
                         "input_shape": [1, 40]}, "state_dict": state, "tensors": {}}  # fmt: skip
    torch.save(save, path)
    with pytest.raises(SparsebenchError, match="bytes of weights for"):
        load(path)


def test_deflated_torch_zip_bombs_are_refused(tmp_path):
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/data.pkl", b"\0" * 10)
        archive.writestr("bomb/data/0", b"\0" * (200 * 2**20))
    with pytest.raises(SparsebenchError, match="zip bomb"):
        load(path, arch=ARCH)


def test_other_sparse_layouts_are_one_line(sb_ckpt, tmp_path):
    out = _csr_artifact(sb_ckpt, tmp_path)

    def to_bsr(payload):
        weight = payload["state_dict"]["fc1.weight"]
        payload["state_dict"]["fc1.weight"] = weight.to_dense().to_sparse_bsr((2, 2))

    _resave(out, to_bsr)
    with pytest.raises(SparsebenchError, match="sparse_bsr tensor"):
        load(out)


def _tiny_onnx(tmp_path, nodes, initializers=(), sparse=()):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [*nodes, helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 40])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 40])],
        initializer=list(initializers), sparse_initializer=list(sparse),
    )  # fmt: skip
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnx_graphs_that_ask_for_gigabytes_or_endless_loops_are_refused(tmp_path):
    pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    huge = numpy_helper.from_array(np.array([1_500_000_000], dtype=np.int64), "s")
    path = _tiny_onnx(tmp_path, [helper.make_node("ConstantOfShape", ["s"], ["big"])], [huge])
    with pytest.raises(SparsebenchError, match="would hold 1,500,000,000 elements"):
        load(path)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["cond_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])],
    )  # fmt: skip
    trips = numpy_helper.from_array(np.array(10**12, dtype=np.int64), "m")
    loop = helper.make_node("Loop", ["m", ""], [], body=body)
    with pytest.raises(SparsebenchError, match="Loop of 1,000,000,000,000 iterations"):
        load(_tiny_onnx(tmp_path, [loop], [trips]))
    values = numpy_helper.from_array(np.zeros(0, dtype=np.float32), "w")
    indices = numpy_helper.from_array(np.zeros(0, dtype=np.int64), "w_i")
    sparse = helper.make_sparse_tensor(values, indices, [500_000_000])
    with pytest.raises(SparsebenchError, match="sparse initializer"):
        load(_tiny_onnx(tmp_path, [], sparse=[sparse]))
