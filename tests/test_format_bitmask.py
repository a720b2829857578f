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
from sparsebench.load import LoadOptions  # noqa: E402
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


def test_conv1d_stays_dense_with_a_reason(tmp_path):
    _, source = _checkpoint(tmp_path, "mnist1d_cnn", (1, 1, 40))
    result = export(source, tmp_path / "cnn.bitmask.pt", ExportConfig.of(format="bitmask"))
    layers = {layer["name"]: layer for layer in result.layers}
    assert layers["classifier"]["action"] == "converted"
    convs = [layer for name, layer in layers.items() if name.startswith("features")]
    assert convs and all(layer["action"] == "skipped" for layer in convs)
    assert all("Conv1d is not supported" in layer["reason"] for layer in convs)


def test_conv2d_runs_the_kernel_with_batchnorm_folded_in(tmp_path):
    dense, source = _checkpoint(tmp_path, "resnet20", (1, 3, 32, 32))
    artifact = tmp_path / "resnet20.bitmask.pt"
    result = export(source, artifact, ExportConfig.of(format="bitmask"))
    assert result.verification.passed
    convs = [layer for layer in result.layers if layer["kind"] == "Conv2d"]
    assert convs and all(layer["action"] == "converted" for layer in convs)
    assert all(layer["details"]["folded"] for layer in convs)  # every conv is followed by a BN
    loaded = sparsebench.load(artifact)
    modules = list(loaded.model.modules())
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in modules)
    assert sum(isinstance(module, bitmask_format.BitmaskConv2d) for module in modules) == len(convs)
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model(x), dense(x), rtol=1e-3, atol=1e-4)
    names = get_exporter("bitmask").converted_layers(loaded.model)
    evidence = kernel_evidence(loaded.model, x[:1], names, get_exporter("bitmask").kernel_evidence)
    assert evidence["sparse_kernel_ran"] and not evidence["fell_back_to_dense"]
    assert evidence["sparse_ops"].get("sparsebench::bitmask_conv2d", 0) == len(convs)
    counted, reference = count_macs(loaded.model, x[:1]), count_macs(dense, x[:1])
    assert {name: counted.per_layer[name] for name in names} == {
        name: reference.per_layer[name] for name in names
    }  # the same multiply-adds per converted layer; only the BatchNorm passes are gone
    assert counted.effective < reference.effective


@pytest.mark.parametrize(("folded", "message"), [(["conv1"], "not a BatchNorm2d"),
                                                 ("bn1", "not a list")])  # fmt: skip
def test_a_crafted_folded_list_is_refused_in_one_line(tmp_path, folded, message):
    _, source = _checkpoint(tmp_path, "resnet20", (1, 3, 32, 32))
    artifact = tmp_path / "resnet20.bitmask.pt"
    export(source, artifact, ExportConfig.of(format="bitmask"))
    blob = torch.load(artifact, weights_only=True)
    blob["sparsebench"]["export"]["payload"]["folded"] = folded
    torch.save(blob, artifact)
    with pytest.raises(SparsebenchError, match=message):
        sparsebench.load(artifact)


def test_a_layer_too_dense_for_the_kernels_stays_dense(tmp_path):
    torch.manual_seed(0)
    model = create_model("mnist1d_mlp")
    magnitude_prune_(model, 0.8, scope="layer")
    with torch.no_grad():
        model.fc2.weight.copy_(torch.randn_like(model.fc2.weight))  # dense again
    path = tmp_path / "mixed.pt"
    save_checkpoint(path, model, CheckpointMeta(arch="mnist1d_mlp", input_shape=[1, 40]))
    result = export(path, tmp_path / "mixed.bitmask.pt", ExportConfig.of(format="bitmask"))
    layers = {layer["name"]: layer for layer in result.layers}
    assert layers["fc1"]["action"] == "converted" and layers["fc3"]["action"] == "converted"
    assert layers["fc2"]["action"] == "skipped" and "kept dense" in layers["fc2"]["reason"]
    assert result.verification.passed


def test_an_ImageNet_resnet18_from_a_file_of_its_own(tmp_path):
    factory = tmp_path / "my_resnet.py"
    factory.write_text(RESNET18)
    arch = f"{factory}:resnet18"
    import importlib.util

    spec = importlib.util.spec_from_file_location("my_resnet", factory)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.resnet18().eval()
    magnitude_prune_(model, 0.8, scope="layer")
    path = tmp_path / "resnet18.pt"
    save_checkpoint(path, model, CheckpointMeta(arch=arch, input_shape=[1, 3, 32, 32]))
    artifact = tmp_path / "resnet18.bitmask.pt"
    result = export(path, artifact, ExportConfig.of(format="bitmask"), LoadOptions(arch=arch))
    assert result.verification.passed
    converted = [layer for layer in result.layers if layer["action"] == "converted"]
    assert len(converted) == 21  # 20 convolutions (3 of them 1x1 downsamples) and the fc
    assert sum(bool(layer["details"].get("folded")) for layer in converted) == 20
    out = runner.invoke(app, ["profile", str(artifact), "--arch", arch, "--min-iters", "2",
                              "--min-seconds", "0"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "bitmask" in out.output


RESNET18 = """
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers.append(nn.Sequential(Block(cin, cout, stride), Block(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18():
    return ResNet18()
"""


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


def test_loading_a_bitmask_artifact_for_cuda_is_one_line(tmp_path):
    _, source = _checkpoint(tmp_path)
    artifact = tmp_path / "mlp.bitmask.pt"
    export(source, artifact, ExportConfig.of(format="bitmask"))
    with pytest.raises(SparsebenchError, match="CPU only"):
        bitmask_format.BitmaskExporter().restore(None, {}, {}, "cuda")


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
