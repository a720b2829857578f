"""Sanity checks: a global L1 prune that empties a classifier is flagged (layer and outputs)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune
from typer.testing import CliRunner

from sparsebench.checkpoint import CheckpointMeta, save_checkpoint
from sparsebench.cli import app
from sparsebench.measure.sanity import constant_outputs, empty_layers, sanity_warnings

EMPTY_CLASSIFIER = "layer classifier.1 is 100 % sparse (all weights zero): its outputs are constant"
CONSTANT = (
    "outputs are the same for every input (constant): verification error and accuracy deltas "
    "say nothing about this model"
)


def _conv_bn(cin, cout, stride=1, groups=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3 if groups > 1 or cin == 3 else 1, stride,
                  1 if groups > 1 or cin == 3 else 0, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )  # fmt: skip


class MobileNetLike(nn.Module):
    """A small MobileNet: stem, depthwise-separable blocks, pooled features, a linear head
    initialised N(0, 0.01) as torchvision's MobileNets do (convs keep torch's default init)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        widths = [(16, 32, 1), (32, 64, 2), (64, 64, 1)]
        blocks = [_conv_bn(3, 16, stride=2)]
        for cin, cout, stride in widths:
            blocks += [_conv_bn(cin, cin, stride, groups=cin), _conv_bn(cin, cout)]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, num_classes))
        nn.init.normal_(self.classifier[1].weight, 0, 0.01)
        nn.init.zeros_(self.classifier[1].bias)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def mobilenet_like(num_classes: int = 10) -> nn.Module:
    """Factory for `--arch tests.test_sanity:mobilenet_like`."""
    torch.manual_seed(0)
    return MobileNetLike(num_classes)


def _global_l1(model: nn.Module, amount: float, fold: bool = True) -> nn.Module:
    targets = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    if fold:
        for module, name in targets:
            prune.remove(module, name)
    return model


def _outputs(model: nn.Module) -> torch.Tensor:
    with torch.inference_mode():
        return model.eval()(torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)))


def test_global_l1_empties_the_classifier_and_sanity_flags_it():
    model = _global_l1(mobilenet_like(), 0.8)
    assert empty_layers(model) == ["classifier.1"]
    warnings, flags = sanity_warnings(model, _outputs(model))
    assert warnings == [EMPTY_CLASSIFIER, CONSTANT]
    assert flags == {"empty_layers": ["classifier.1"], "constant_outputs": True}


def test_unfolded_masks_count_as_zeros():
    model = _global_l1(mobilenet_like(), 0.8, fold=False)  # weight = weight_orig * weight_mask
    assert empty_layers(model) == ["classifier.1"]


def test_a_healthy_model_gives_no_warning():
    model = mobilenet_like()
    assert sanity_warnings(model, _outputs(model)) == (
        [],
        {"empty_layers": [], "constant_outputs": False},
    )
    pruned = mobilenet_like()  # the same sparsity layer by layer leaves the head alive
    for module in pruned.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            prune.l1_unstructured(module, "weight", amount=0.8)
    assert sanity_warnings(pruned, _outputs(pruned))[0] == []
    assert sanity_warnings(pruned) == ([], {"empty_layers": [], "constant_outputs": False})


class Conv1D(nn.Module):
    """transformers' Conv1D: a linear layer with a (in, out) weight, not an nn.Linear."""

    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


def test_any_weight_layer_counts_but_embeddings_and_norms_do_not():
    model = nn.Sequential(nn.Embedding(4, 8), nn.LayerNorm(8), Conv1D(8, 8), nn.Linear(8, 2))
    nn.init.zeros_(model[0].weight)
    nn.init.zeros_(model[1].weight)
    assert empty_layers(model) == ["2"]
    nn.init.zeros_(model[3].weight)
    assert empty_layers(model) == ["2", "3"]


def test_constant_outputs():
    same = torch.tensor([[1.0, -2.0, 3.0]]).repeat(4, 1)
    assert constant_outputs(same)
    assert constant_outputs(same + torch.tensor([[0.0], [1e-7], [0.0], [-1e-7]]))  # <= 1e-6 rel
    assert not constant_outputs(same + torch.tensor([[0.0], [1e-3], [0.0], [0.0]]))
    assert constant_outputs(torch.zeros(3, 5))
    assert not constant_outputs(same[:1])  # one sample says nothing
    assert not constant_outputs(torch.randn(4, 3))
    assert not constant_outputs(torch.full((2, 3), float("nan")))
    assert constant_outputs(same, atol_rel=0.0)


def test_prune_command_warns_when_global_l1_empties_a_layer(tmp_path):
    dense, pruned = tmp_path / "dense.pt", tmp_path / "pruned.pt"
    meta = CheckpointMeta(arch="tests.test_sanity:mobilenet_like", input_shape=[1, 3, 32, 32])
    save_checkpoint(dense, mobilenet_like(), meta)
    runner = CliRunner()
    common = ["--amount", "0.8", "--arch", meta.arch]  # code to import: named, so trusted
    result = runner.invoke(app, ["prune", str(dense), "-o", str(pruned), *common])
    assert result.exit_code == 0, result.output
    assert f"warning: {EMPTY_CLASSIFIER}" in result.stderr.splitlines()
    assert "--scope layer" in result.stderr
    assert pruned.is_file() and "warning" not in result.stdout
    again = tmp_path / "layer.pt"
    args = ["prune", str(dense), "-o", str(again), *common, "--scope", "layer"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
