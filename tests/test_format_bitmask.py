"""The `bitmask` format: export, verify, restore (with crafted payloads refused) and measure."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("numba", reason="the kernels extra (numba) is not installed")

import sparsebench  # noqa: E402
from sparsebench.checkpoint import CheckpointMeta, save_checkpoint  # noqa: E402
from sparsebench.cli import app  # noqa: E402
from sparsebench.errors import MissingExtraError, SparsebenchError  # noqa: E402
from sparsebench.export import export  # noqa: E402
from sparsebench.formats import bitmask as bitmask_format  # noqa: E402
from sparsebench.formats.base import ExportConfig, get_exporter  # noqa: E402
from sparsebench.measure.kernels import kernel_evidence  # noqa: E402
from sparsebench.measure.macs import count_macs  # noqa: E402
from sparsebench.measure.sparsity import measure_sparsity  # noqa: E402
from sparsebench.prune.magnitude import magnitude_prune_  # noqa: E402
from sparsebench.zoo import create_model  # noqa: E402

runner = CliRunner()


def _checkpoint(tmp_path, arch: str = "mnist1d_mlp", shape=(1, 40)):
    torch.manual_seed(0)
    model = create_model(arch)
    magnitude_prune_(model, 0.8, scope="layer")
    path = tmp_path / f"{arch}.pt"
    save_checkpoint(path, model, CheckpointMeta(arch=arch, input_shape=list(shape)))
    return model.eval(), path


def test_export_load_and_measure_like_the_dense_model(tmp_path):
    model, source = _checkpoint(tmp_path)
    artifact = tmp_path / "mlp.bitmask.pt"
    result = export(source, artifact, ExportConfig.of(format="bitmask"))
    assert result.verification.passed
    assert {layer["action"] for layer in result.layers} == {"converted"}
    loaded = sparsebench.load(artifact)
    assert loaded.kind == "artifact:bitmask"
    assert isinstance(loaded.model.fc1, bitmask_format.BitmaskLinear)
    x = torch.randn(5, 40)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model(x), model(x), rtol=1e-4, atol=1e-5)
    dense, packed = measure_sparsity(model), measure_sparsity(loaded.model)
    assert packed.nonzero_params == dense.nonzero_params and packed.params == dense.params
    assert [layer.nonzero for layer in packed.layers] == [layer.nonzero for layer in dense.layers]
    assert count_macs(loaded.model, x[:1]) == count_macs(model, x[:1])
    names = get_exporter("bitmask").converted_layers(loaded.model)
    assert names == ["fc1", "fc2", "fc3"]
    evidence = kernel_evidence(loaded.model, x, names, get_exporter("bitmask").kernel_evidence)
    assert evidence["sparse_kernel_ran"] and not evidence["fell_back_to_dense"]


def test_convolutions_stay_dense_with_a_reason(tmp_path):
    _, source = _checkpoint(tmp_path, "mnist1d_cnn", (1, 1, 40))
    result = export(source, tmp_path / "cnn.bitmask.pt", ExportConfig.of(format="bitmask"))
    actions = {layer["name"]: layer["action"] for layer in result.layers}
    assert actions["classifier"] == "converted"
    assert {actions[name] for name in actions if name.startswith("features")} == {"skipped"}


@pytest.mark.parametrize(
    ("key", "change", "message"),
    [
        ("fc1.values", lambda t: t[:-1], "padding"),
        ("fc1.rowstart", lambda t: t + 1, "rowstart"),
        ("fc2.masks", lambda t: t[:, :-1], "do not fit"),
        ("fc1.masks", lambda t: t.float(), "int16 masks"),
    ],
)
def test_a_crafted_artifact_is_refused_before_the_kernel_runs(tmp_path, key, change, message):
    _, source = _checkpoint(tmp_path)
    artifact = tmp_path / "mlp.bitmask.pt"
    export(source, artifact, ExportConfig.of(format="bitmask"))
    blob = torch.load(artifact, weights_only=True)
    blob["state_dict"][key] = change(blob["state_dict"][key])
    torch.save(blob, artifact)
    with pytest.raises(SparsebenchError, match=message):
        sparsebench.load(artifact)
    result = runner.invoke(app, ["profile", str(artifact)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1


def test_a_missing_kernels_extra_is_one_line_exit_2(tmp_path, monkeypatch):
    _, source = _checkpoint(tmp_path)

    def missing(module, extra, purpose):
        raise MissingExtraError("numba", extra, purpose)

    monkeypatch.setattr(bitmask_format, "require", missing)
    result = runner.invoke(app, ["export", str(source), "-f", "bitmask", "-o",
                                 str(tmp_path / "out.pt")])  # fmt: skip
    assert result.exit_code == 2
    assert "kernels" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.pt").exists()


def test_compare_measures_the_bitmask_variant_beside_dense(tmp_path):
    from sparsebench.compare import CompareConfig, compare

    _, source = _checkpoint(tmp_path)
    config = CompareConfig(formats=("dense", "bitmask"), runtimes=("torch",), rounds=2,
                           block_seconds=0.0, block_iters=2)  # fmt: skip
    report = compare([str(source)], config)
    rows = {row.format: row for row in report.rows}
    packed = rows["bitmask"]
    assert packed.unavailable is None and packed.verify_err < 1e-4
    assert packed.sparse_kernel_ran and packed.sparse_kernel_layers == packed.converted_layers == 3
    assert packed.sparsity_pct == rows["dense"].sparsity_pct
    assert packed.macs_m == rows["dense"].macs_m and packed.latency_median_ms > 0


def test_a_hugging_face_bert_from_a_config_round_trips(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=32, num_labels=3)  # fmt: skip
    model = transformers.BertForSequenceClassification(config)
    magnitude_prune_(model, 0.8, scope="layer")
    model.save_pretrained(tmp_path / "bert")
    artifact = tmp_path / "bert.bitmask.pt"
    result = export(tmp_path / "bert", artifact, ExportConfig.of(format="bitmask"))
    assert result.verification.passed
    converted = [layer for layer in result.layers if layer["action"] == "converted"]
    assert len(converted) == 8  # q, k, v, attention out, intermediate, output, pooler, classifier
    loaded = sparsebench.load(artifact)
    names = get_exporter("bitmask").converted_layers(loaded.model)
    batch = loaded.synthetic(batch=2)
    evidence = kernel_evidence(loaded.model, batch, names, get_exporter("bitmask").kernel_evidence)
    assert evidence["sparse_kernel_ran"] and not evidence["fell_back_to_dense"]
