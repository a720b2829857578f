"""The `channels` format: all-zero channels removed exactly, criteria pruning, export and load."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import sparsebench
from sparsebench.checkpoint import CheckpointMeta, save_checkpoint
from sparsebench.errors import SparsebenchError
from sparsebench.export import export
from sparsebench.formats import ExportConfig, _channel_removal, get_exporter
from sparsebench.formats._channel_removal import (
    BiasMapConv1d,
    BiasMapConv2d,
    build_graph,
    plan_group,
    probe_inputs,
    prunable_groups,
    trace_layers,
)
from sparsebench.measure.macs import count_macs
from sparsebench.zoo import create_model
from sparsebench.zoo.vgg import make_features

IMAGE = (3, 32, 32)


def _convert(model: nn.Module, example: torch.Tensor, **options):
    return get_exporter("channels").convert(model, example, ExportConfig.of("channels", **options))


def _rel_err(reference: nn.Module, model: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        ref, out = reference(x), model(x)
    return float((ref - out).abs().max() / ref.abs().max())


def _layers(conversion) -> dict:
    return {layer.name: layer for layer in conversion.layers}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _zero_out_(layer: nn.Module, channels, bias: float | None = None) -> None:
    with torch.no_grad():
        layer.weight[channels] = 0
        if bias is not None:
            layer.bias[channels] = bias


def _set_bn_(bn: nn.BatchNorm2d, channels, shift: float) -> None:
    """BN output for a zero input is `shift` (running mean 0)."""
    with torch.no_grad():
        bn.running_mean[channels] = 0
        bn.bias[channels] = shift


def _randomise_bn_(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.copy_(0.2 * torch.randn(n, generator=generator))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))


class _SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 1)
        self.fc1 = nn.Linear(4, 5)
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.conv(x).mean(dim=(2, 3)))))


def test_zero_channels_detected_on_hand_made_weights():
    torch.manual_seed(0)
    model = _SmallNet().eval()
    with torch.no_grad():
        model.fc1.weight[[1, 3]] = 0
        model.fc1.weight[2] = 0
        model.fc1.weight[2, 0] = 1e-30  # tiny but not zero: the channel stays
        model.conv.weight[0] = 0
    example = torch.randn(1, 2, 5, 5)
    dg = build_graph(model, example)
    trace = trace_layers(model, probe_inputs(example))
    names = {m: n for n, m in model.named_modules()}
    plans = {
        root: plan_group(dg, root, group, unsafe, trace, names)
        for root, group, unsafe in prunable_groups(dg, model, model.fc2)
    }
    assert set(plans) == {"conv", "fc1"}  # the final layer is no group root
    assert plans["fc1"].zero == [1, 3] and plans["fc1"].removable == [1, 3]
    assert plans["conv"].zero == [0] and plans["conv"].producers == ["conv"]


class _ChannelMeanGate(nn.Module):
    """x * sigmoid(mean over channels of x): removing a channel changes every channel's gate."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.fc((x * torch.sigmoid(x.mean(1, keepdim=True))).mean((2, 3)))


class _SpatialGate(nn.Module):
    """x * a fixed spatial ramp: a constant channel times a varying map is not constant."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.register_buffer("ramp", torch.linspace(0, 1, 36).reshape(1, 1, 6, 6))
        self.mix = nn.Conv2d(8, 5, 1)  # unpadded: it could absorb a constant, not a varying map
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.fc(self.mix(x * self.ramp).mean((2, 3)))


@pytest.mark.parametrize(
    ("net", "reason"),
    [(_ChannelMeanGate, "may reduce over channels"), (_SpatialGate, "is not constant")],
)
def test_zero_channel_kept_where_removal_would_change_outputs(net, reason):
    torch.manual_seed(0)
    model = net().eval()
    _zero_out_(model.conv, [2], bias=0.5)
    original = copy.deepcopy(model)
    x = torch.randn(4, 3, 6, 6)

    conversion = _convert(model, x[:1])

    conv = _layers(conversion)["conv"]
    assert conv.action == "kept" and reason in conv.reason
    assert _rel_err(original, conversion.model, x) == 0


def test_vgg16_bn_zero_channels_removed_with_bias_and_bn_folding():
    torch.manual_seed(0)
    model = create_model("vgg16_bn").eval()
    _randomise_bn_(model)
    f, c = model.features, model.classifier
    _zero_out_(f[0], [0, 1], bias=0.3)
    _set_bn_(f[1], [0], shift=0.5)  # relu(0.5) > 0 into the zero-padded features.3: a bias map
    _set_bn_(f[1], [1], shift=-2.0)  # relu(-2) == 0: removed
    _zero_out_(f[40], list(range(10)), bias=0.4)  # constant through BN, ReLU, max-pool, flatten
    _zero_out_(c[0], list(range(20)), bias=0.7)  # relu(0.7) folds into classifier.3
    _zero_out_(c[3], list(range(5)), bias=0.2)  # folds into the final layer's bias
    original = copy.deepcopy(model)
    x = torch.randn(4, *IMAGE)

    conversion = _convert(model, x[:1])

    assert conversion.reference is None  # nothing pruned by design: compare with the source
    assert _rel_err(original, conversion.model, x) <= 1e-5
    layers = _layers(conversion)
    assert layers["features.0"].details == {
        "channels_before": 64, "channels_after": 62, "removed": 2, "group": "features.0",
        "folded_maps": 1,
    }  # fmt: skip
    assert layers["features.0"].reason == (
        "1 constant(s) into zero-padded convs folded as per-position bias maps"
    )
    assert layers["features.3"].details["bias_map"] == [64, 32, 32]
    assert "adds a per-position bias map for 1 removed input(s)" in layers["features.3"].reason
    assert conversion.payload["bias_maps"] == [
        {"layer": "features.3", "shape": [64, 32, 32], "input_size": [32, 32]}
    ]
    assert layers["features.40"].details["removed"] == 10
    assert layers["classifier.0"].details["removed"] == 20
    assert layers["classifier.3"].details["removed"] == 5
    assert layers["classifier.6"].action == "kept"
    assert "final layer" in layers["classifier.6"].reason
    assert layers["features.3"].action == "kept"  # no zero channels there
    assert torch.equal(conversion.model.features[3].bias, original.features[3].bias)
    # the removed channels' constants went into the next layers' biases
    assert not torch.equal(conversion.model.classifier[3].bias, original.classifier[3].bias)
    assert not torch.equal(conversion.model.classifier[0].bias, original.classifier[0].bias[20:])
    assert conversion.stored_bytes < sum(t.numel() * 4 for t in original.state_dict().values())
    assert (
        f"parameters: {_params(original):,} -> {_params(conversion.model):,}"
        in (conversion.notes[0])
    )


def test_resnet20_residual_channels_removed_only_when_zero_in_the_whole_group():
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    _randomise_bn_(model)
    # residual channel 3 of stage 2: zero in the shortcut and every block's conv2, BN shifts
    # negative, so the stream after each add + ReLU is exactly 0
    for conv, bn in [("layer2.0.downsample.0", "layer2.0.downsample.1")] + [
        (f"layer2.{i}.conv2", f"layer2.{i}.bn2") for i in range(3)
    ]:
        _zero_out_(model.get_submodule(conv), [3])
        _set_bn_(model.get_submodule(bn), [3], shift=-3.0)
    # stage 3 channel 7 zero in every producer but with positive shifts: a constant into the
    # padded conv1 of blocks 1 and 2 (bias maps) and, through the pooling, the final Linear's bias
    for conv, bn in [("layer3.0.downsample.0", "layer3.0.downsample.1")] + [
        (f"layer3.{i}.conv2", f"layer3.{i}.bn2") for i in range(3)
    ]:
        _zero_out_(model.get_submodule(conv), [7])
        _set_bn_(model.get_submodule(bn), [7], shift=0.4)
    # a residual channel zero in only one producer of its group is not a zero channel
    _zero_out_(model.layer1[0].conv2, [4])
    # inside a block: channel 2 goes (ReLU gives 0), channel 5 too (a bias map on padded conv2)
    _zero_out_(model.layer1[0].conv1, [2, 5])
    _set_bn_(model.layer1[0].bn1, [2], shift=-1.0)
    _set_bn_(model.layer1[0].bn1, [5], shift=0.7)
    original = copy.deepcopy(model)
    x = torch.randn(4, *IMAGE)

    conversion = _convert(model, x[:1])

    assert _rel_err(original, conversion.model, x) <= 1e-5
    layers = _layers(conversion)
    for name in ["layer2.0.downsample.0", "layer2.0.conv2", "layer2.1.conv2", "layer2.2.conv2"]:
        assert layers[name].details["channels_after"] == 31, name
    assert conversion.model.layer2[1].conv1.in_channels == 31  # consumers cut consistently
    assert conversion.model.layer3[0].downsample[0].in_channels == 31
    for name in ["layer3.0.downsample.0", "layer3.0.conv2", "layer3.1.conv2", "layer3.2.conv2"]:
        assert layers[name].details["channels_after"] == 63, name
        assert layers[name].details["folded_maps"] == 2, name  # into layer3.{1,2}.conv1
        assert layers[name].details["folded_biases"] == 1, name  # into fc
    assert [m["layer"] for m in conversion.payload["bias_maps"]] == [
        "layer1.0.conv2", "layer3.1.conv1", "layer3.2.conv1"
    ]  # fmt: skip
    assert conversion.model.layer3[1].conv1.bias_map.shape == (64, 8, 8)
    assert layers["layer1.0.conv2"].details["channels_after"] == 16
    assert layers["layer1.0.conv1"].details["channels_after"] == 14
    assert layers["layer1.0.conv1"].reason == (
        "1 constant(s) into zero-padded convs folded as per-position bias maps"
    )


def test_tiny_transformer_mlp_channels_removed_and_attention_skipped():
    torch.manual_seed(0)
    model = create_model("tiny_transformer").eval()
    block = model.blocks[0]
    _zero_out_(block.fc1, list(range(64)), bias=0.5)  # gelu(0.5) folds into fc2's bias
    _zero_out_(block.attn.q, [0, 1])
    original = copy.deepcopy(model)
    x = torch.randn(4, 40)

    conversion = _convert(model, x[:1])

    assert _rel_err(original, conversion.model, x) <= 1e-5
    layers = _layers(conversion)
    assert layers["blocks.0.fc1"].details["channels_after"] == 512 - 64
    assert conversion.model.blocks[0].fc2.in_features == 512 - 64
    assert layers["blocks.0.attn.q"].action == "kept"
    assert "attention" in layers["blocks.0.attn.q"].reason
    assert "LayerNorm" in layers["blocks.0.fc2"].reason  # the residual stream stays whole


@pytest.mark.parametrize("criterion", ["l1", "bn", "taylor"])
def test_vgg16_bn_ratio_pruning_cuts_macs_and_verifies(criterion):
    torch.manual_seed(0)
    model = create_model("vgg16_bn").eval()
    _randomise_bn_(model)
    original = copy.deepcopy(model)
    x = torch.randn(4, *IMAGE)
    dense = count_macs(original, x[:1]).dense

    conversion = _convert(model, x[:1], ratio=0.5, criterion=criterion)

    assert conversion.reference is not None
    assert _rel_err(conversion.reference, conversion.model, x) <= 1e-4
    assert _rel_err(original, conversion.model, x) > 1e-3  # pruning changed the function
    macs = count_macs(conversion.model, x[:1]).dense
    layers = _layers(conversion)
    assert layers["features.0"].details == {
        "channels_before": 64, "channels_after": 32, "removed": 32, "group": "features.0",
        "pruned": 32,
    }  # fmt: skip
    if criterion == "bn":  # the classifier's Linear layers have no BatchNorm to score
        assert macs < 0.3 * dense
        assert layers["classifier.0"].action == "kept"
        assert "does not score" in layers["classifier.0"].reason
    else:
        assert macs < 0.26 * dense  # about (1/2)^2 of every conv
        assert layers["classifier.0"].details["channels_after"] == 256
    assert _params(conversion.model) < 0.3 * _params(original)


def test_export_and_load_channels_artifact(tmp_path):
    torch.manual_seed(0)
    model = create_model("vgg16_bn").eval()
    _randomise_bn_(model)
    src, out = tmp_path / "vgg.pt", tmp_path / "vgg-channels.pt"
    save_checkpoint(src, model, CheckpointMeta(arch="vgg16_bn", input_shape=[1, *IMAGE]))

    result = export(src, out, ExportConfig.of(format="channels", ratio=0.5, verify_samples=8))

    assert result.verification.passed and result.verification.max_rel_err <= 1e-4
    loaded = sparsebench.load(out)
    assert loaded.kind == "artifact:channels"
    assert loaded.model.features[0].out_channels == 32
    assert _params(loaded.model) < 0.3 * _params(model)
    assert out.stat().st_size < 0.3 * src.stat().st_size
    # the same soft pruning of the source gives the reference the artifact must reproduce
    x = torch.randn(4, *IMAGE)
    reference = _convert(copy.deepcopy(model), x[:1], ratio=0.5).reference
    assert _rel_err(reference, loaded.model, x) <= 1e-4


def test_restore_rebuilds_zero_channel_removal_from_payload():
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    _zero_out_(model.layer1[1].conv1, [0, 1, 2])
    _set_bn_(model.layer1[1].bn1, [0, 1, 2], shift=-1.0)
    x = torch.randn(2, *IMAGE)
    conversion = _convert(copy.deepcopy(model), x[:1])
    assert conversion.payload["removed"] == [{"layer": "layer1.1.conv1", "channels": [0, 1, 2]}]

    restored = get_exporter("channels").restore(
        create_model("resnet20"), conversion.payload, conversion.model.state_dict(), "cpu"
    )

    assert restored.layer1[1].conv1.out_channels == 13
    assert _rel_err(model, restored, x) <= 1e-5


class _ConvBnConv(nn.Module):
    """conv-BN-ReLU into a zero-padded conv, then a mean and a Linear head."""

    def __init__(self, dims: int, **consumer):
        super().__init__()
        conv, norm = getattr(nn, f"Conv{dims}d"), getattr(nn, f"BatchNorm{dims}d")
        self.conv1, self.bn = conv(2, 6, 3, padding=1), norm(6)
        self.conv2 = conv(6, 5, consumer.pop("kernel_size", 3), **consumer)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = self.conv2(torch.relu(self.bn(self.conv1(x))))
        return self.fc(x.flatten(2).mean(2))


_CONSUMERS = [
    (1, (2, 12), {"padding": 1}),
    (2, (2, 7, 7), {"padding": 1, "bias": False}),  # a map needs no bias to fold into
    (2, (2, 7, 7), {"padding": "same", "dilation": 2}),
    (2, (2, 7, 7), {"kernel_size": 5, "stride": 2, "padding": 2}),
    (3, (2, 5, 5, 5), {"padding": 1}),
]


@pytest.mark.parametrize(("dims", "shape", "consumer"), _CONSUMERS)
def test_constant_into_zero_padded_conv_folds_as_a_bias_map(dims, shape, consumer):
    torch.manual_seed(0)
    model = _ConvBnConv(dims, **consumer).eval()
    _zero_out_(model.conv1, [1, 4], bias=0.3)
    with torch.no_grad():
        model.bn.weight.fill_(1.0)
        model.bn.running_mean.zero_()
        model.bn.bias[[1, 4]] = torch.tensor([0.5, 0.2])  # relu(0.3 / std + shift) > 0
    original = copy.deepcopy(model)
    x = torch.randn(4, *shape)

    conversion = _convert(model, x[:1])

    assert _rel_err(original, conversion.model, x) <= 1e-5
    layers = _layers(conversion)
    assert layers["conv1"].details["channels_after"] == 4
    assert layers["conv1"].details["folded_maps"] == 2
    conv2 = conversion.model.conv2
    assert conv2.in_channels == 4 and isinstance(conv2, _channel_removal._BiasMapped)
    with torch.no_grad():
        out_shape = original.conv2(original.bn(original.conv1(x[:1]))).shape[1:]
    assert conv2.bias_map.shape == out_shape
    assert layers["conv2"].details["bias_map"] == list(out_shape)
    spread = conv2.bias_map.flatten(1)
    assert bool((spread.amax(1) > spread.amin(1)).any())  # the borders differ: no plain bias
    if conv2.bias is not None:
        assert torch.equal(conv2.bias, original.conv2.bias)  # the map holds it all
    note = "2 constant(s) into zero-padded convs folded as per-position bias maps"
    assert note in conversion.notes[2]


def test_without_bias_maps_the_constant_channel_stays(monkeypatch):
    monkeypatch.setattr(_channel_removal, "FOLD_BIAS_MAPS", False)
    torch.manual_seed(0)
    model = _ConvBnConv(2, padding=1).eval()
    _zero_out_(model.conv1, [1], bias=0.3)
    _set_bn_(model.bn, [1], shift=0.5)

    conversion = _convert(model, torch.randn(1, 2, 7, 7))

    conv1 = _layers(conversion)["conv1"]
    assert conv1.action == "kept" and "zero-padded conv conv2" in conv1.reason
    assert conversion.payload["bias_maps"] == []


CNN_SIGNAL = (1, 1, 40)


@pytest.fixture(scope="module")
def mapped_artifact(tmp_path_factory):
    """mnist1d_cnn with constant channels into its padded convs: (source, artifact, result)."""
    folder = tmp_path_factory.mktemp("mapped")
    torch.manual_seed(0)
    model = create_model("mnist1d_cnn").eval()
    _zero_out_(model.features[0], list(range(8)), bias=0.3)  # relu(0.3) into features.2
    _zero_out_(model.features[4], [0, 1, 2], bias=0.2)  # flattened into the Linear's bias
    src, out = folder / "cnn.pt", folder / "cnn-channels.pt"
    save_checkpoint(src, model, CheckpointMeta(arch="mnist1d_cnn", input_shape=list(CNN_SIGNAL)))
    result = export(src, out, ExportConfig.of(format="channels", verify_samples=8))
    return model, out, result


def test_a_bias_map_artifact_saves_and_loads(mapped_artifact):
    model, out, result = mapped_artifact
    assert result.verification.passed and result.verification.max_rel_err <= 1e-5
    layers = {layer["name"]: layer for layer in result.layers}
    assert layers["features.0"]["details"]["channels_after"] == 24
    assert layers["features.4"]["details"]["folded_biases"] == 3 * 40  # flattened: per position

    loaded = sparsebench.load(out)

    conv = loaded.model.features[2]
    assert type(conv) is BiasMapConv1d and conv.in_channels == 24
    assert conv.bias_map.shape == (32, 40) and conv.bias_map.abs().amax() > 0  # loaded, not 0
    assert set(loaded.model.state_dict()) == set(model.state_dict()) | {"features.2.bias_map"}
    x = torch.randn(4, *CNN_SIGNAL[1:])
    assert _rel_err(model, loaded.model, x) <= 1e-5


def test_a_bias_map_refuses_another_input_size(mapped_artifact):
    loaded = sparsebench.load(mapped_artifact[1])
    with pytest.raises(SparsebenchError, match="made for 40 inputs, not 36") as error:
        loaded.model(torch.randn(2, 1, 36))
    assert "\n" not in str(error.value)


_ENTRY = {"layer": "features.2", "shape": [32, 40], "input_size": [40]}


@pytest.mark.parametrize(
    ("maps", "message"),
    [
        ({"layer": "features.2"}, "must be a list"),
        ([{**_ENTRY, "layer": "features.9"}], "names 'features.9' which is no Conv1d/2d/3d"),
        ([{**_ENTRY, "layer": "classifier"}], "names 'classifier' which is no Conv1d/2d/3d"),
        ([{**_ENTRY, "layer": ["x"]}], "names \\['x'\\] which is no"),
        ([_ENTRY, _ENTRY], "names 'features.2' a second time"),
        ([{**_ENTRY, "shape": [32.0, 40]}], "shape of features.2 must be a list of 2 positive"),
        ([{**_ENTRY, "shape": [32, 40, 1]}], "must be a list of 2 positive ints"),
        ([{**_ENTRY, "input_size": [True]}], "input_size of features.2 must be a list of 1"),
        ([{**_ENTRY, "input_size": [-40]}], "must be a list of 1 positive ints"),
        ([{**_ENTRY, "shape": [31, 40]}], "is \\[31, 40\\], but the conv gives \\[32, 40\\]"),
        ([{**_ENTRY, "input_size": [36]}], "the conv gives \\[32, 36\\] for \\[36\\] inputs"),
        ([{**_ENTRY, "layer": "features.4", "shape": [29, 40]}], "the state dict's none"),
        ([], "not in the model: features.2.bias_map"),  # a map the payload does not name
    ],
)
def test_a_crafted_bias_map_entry_is_refused_in_one_line(mapped_artifact, tmp_path, maps, message):
    blob = torch.load(mapped_artifact[1], weights_only=True)
    blob["sparsebench"]["export"]["payload"]["bias_maps"] = maps
    crafted = tmp_path / "crafted.pt"
    torch.save(blob, crafted)
    with pytest.raises(SparsebenchError, match=message) as error:
        sparsebench.load(crafted)
    assert "\n" not in str(error.value)


def test_a_bias_map_artifact_exports_to_onnx(mapped_artifact, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model, out, _ = mapped_artifact

    result = export(out, tmp_path / "cnn.onnx", ExportConfig.of("onnx", verify_samples=8))

    assert result.verification.passed
    runtime = sparsebench.load(result.path).model
    x = torch.randn(5, *CNN_SIGNAL[1:])
    with torch.inference_mode():
        assert float((runtime(x) - model(x)).abs().max() / model(x).abs().max()) <= 1e-4


class _SmallVgg(nn.Module):
    """VGG's conv-BN-ReLU blocks and pools (zero-padded 3x3 convs), then one Linear."""

    def __init__(self):
        super().__init__()
        self.features = make_features((8, 8, "M", 16, 16, "M", 32))
        self.classifier = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def test_ln_structured_checkpoint_loses_every_zeroed_channel():
    """A user's own `torch.nn.utils.prune.ln_structured` (conv weights zeroed along dim 0,
    biases and BatchNorm untouched): every zeroed channel goes, constants and all."""
    torch.manual_seed(0)
    model = _SmallVgg().eval()
    _randomise_bn_(model)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        torch.nn.utils.prune.ln_structured(conv, "weight", amount=0.5, n=1, dim=0)
        torch.nn.utils.prune.remove(conv, "weight")
    original = copy.deepcopy(model)
    x = torch.randn(4, *IMAGE)

    conversion = _convert(model, x[:1])

    assert _rel_err(original, conversion.model, x) <= 1e-5
    for name, layer in _layers(conversion).items():
        if name != "classifier":
            assert layer.details["removed"] == layer.details["channels_before"] // 2, name
            assert "kept" not in layer.reason, name
    for conv in conversion.model.modules():
        if isinstance(conv, nn.Conv2d):  # no all-zero output channel is left
            assert bool((conv.weight.flatten(1).abs().amax(1) > 0).all())
    assert type(conversion.model.features[3]) is BiasMapConv2d
    # summed on the unpruned model, then cut to the 4 outputs features.3 keeps of its own
    assert conversion.model.features[3].bias_map.shape == (4, 32, 32)
    assert count_macs(conversion.model, x[:1]).dense < 0.3 * count_macs(original, x[:1]).dense
