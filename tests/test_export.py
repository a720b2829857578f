"""The export pipeline shared by every format: verification, artifacts, tamper checks, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from sparsebench import LoadOptions, SparsebenchError, load
from sparsebench.cli import app
from sparsebench.export import export
from sparsebench.formats import ExportConfig
from sparsebench.formats.base import FORMATS, Conversion, Exporter
from sparsebench.verify import compare_outputs

from .conftest import SHAPE

runner = CliRunner()


def test_dense_export_round_trips_and_verifies(sb_ckpt, mlp, tmp_path):
    out = tmp_path / "dense.pt"
    result = export(sb_ckpt, out, ExportConfig.of(format="dense"))
    assert result.verification.passed and result.verification.max_rel_err == 0.0
    loaded = load(out)
    assert loaded.kind == "artifact:dense" and loaded.meta.format == "dense"
    x = torch.randn(4, *SHAPE[1:])
    assert torch.allclose(loaded.model(x), mlp(x))
    assert loaded.meta.export["verification"]["passed"] is True
    assert [layer["name"] for layer in result.layers] == ["fc1", "fc2", "fc3"]


def test_tampered_artifact_fails_verification_on_load(sb_ckpt, tmp_path):
    out = tmp_path / "dense.pt"
    export(sb_ckpt, out, ExportConfig.of(format="dense"))
    payload = torch.load(out, weights_only=True)
    payload["state_dict"]["fc2.weight"] += 0.5  # someone edited the weights afterwards
    torch.save(payload, out)
    with pytest.raises(SparsebenchError, match="verification of dense artifact"):
        load(out)


class _BrokenExporter(Exporter):
    """An exporter whose conversion changes the function: verification must catch it."""

    name = "broken-for-test"

    def convert(self, model, example, config):
        with torch.no_grad():
            model.fc3.bias += 1.0
        return Conversion(model=model, layers=[], stored_bytes=0)


def test_export_beyond_tolerance_writes_nothing(sb_ckpt, tmp_path, monkeypatch):
    monkeypatch.setitem(FORMATS._entries, "broken-for-test", _BrokenExporter())
    out = tmp_path / "broken.pt"
    with pytest.raises(SparsebenchError, match="verification of the broken-for-test export failed"):
        export(sb_ckpt, out, ExportConfig.of(format="broken-for-test"))
    assert list(tmp_path.iterdir()) == [sb_ckpt]


def test_compare_outputs_measures_relative_error_and_agreement():
    reference = nn.Linear(3, 2)
    shifted = nn.Linear(3, 2)
    shifted.load_state_dict(reference.state_dict())
    with torch.no_grad():
        shifted.bias += torch.tensor([0.0, 100.0])  # flips every argmax to class 1
    x = torch.randn(5, 3)
    check = compare_outputs(reference, shifted, x, tolerance=1e-4, source="synthetic")
    with torch.no_grad():
        ref, out = reference(x), shifted(x)
    expected_abs = float((ref - out).abs().max())
    assert check.max_abs_err == pytest.approx(expected_abs)
    assert check.max_rel_err == pytest.approx(expected_abs / float(ref.abs().max()))
    assert not check.passed
    assert check.top1_agreement == pytest.approx(float((ref.argmax(1) == 1).float().mean()))


def test_export_needs_a_known_architecture(mlp, tmp_path):
    path = tmp_path / "mlp.ts"
    torch.jit.save(torch.jit.script(mlp), str(path))
    trusted = LoadOptions(input_shape=SHAPE, trust_checkpoint=True)
    with pytest.raises(SparsebenchError, match="needs the architecture"):
        export(path, tmp_path / "out.pt", ExportConfig.of(format="dense"), trusted)


def _options(shape):
    from sparsebench import LoadOptions

    return LoadOptions(input_shape=shape)


def test_unknown_format(sb_ckpt, tmp_path):
    with pytest.raises(SparsebenchError, match="unknown format"):
        export(sb_ckpt, tmp_path / "o.pt", ExportConfig.of(format="coo"))


def test_cli_export_then_profile_shows_verification(sb_ckpt, tmp_path):
    out, report = tmp_path / "dense.pt", tmp_path / "r.json"
    result = runner.invoke(app, ["export", str(sb_ckpt), "-f", "dense", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "max rel. error 0.0e+00" in result.output
    args = ["profile", str(out), "--no-memory", "--no-energy", "--min-iters", "3"]
    profiled = runner.invoke(app, [*args, "--min-seconds", "0", "-o", str(report)])
    assert profiled.exit_code == 0, profiled.output
    row = json.loads(report.read_text())["results"][0]
    assert row["format"] == "dense" and row["verification"]["passed"] is True
    assert row["stored_mb"] > 0


def test_cli_export_refuses_existing_output(sb_ckpt, tmp_path):
    out = tmp_path / "dense.pt"
    out.write_bytes(b"keep")
    result = runner.invoke(app, ["export", str(sb_ckpt), "-f", "dense", "-o", str(out)])
    assert result.exit_code == 2 and "--force" in result.output
    assert out.read_bytes() == b"keep"


def test_torch_formats_refuse_an_onnx_source(sb_ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "m.onnx"
    export(sb_ckpt, onnx_path, ExportConfig.of(format="onnx"))
    with pytest.raises(SparsebenchError, match="runs in onnxruntime"):
        export(onnx_path, tmp_path / "csr.pt", ExportConfig.of(format="csr"))
    assert not (tmp_path / "csr.pt").exists()
