"""The model zoo: every registered model builds, runs and matches its documented shape."""

import inspect

import pytest
import torch
from torch import nn

from sparsebench.errors import SparsebenchError
from sparsebench.zoo import create_model, get_model_spec, list_models

ALL_MODELS = list_models()


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_forward_at_batch_1_and_4(name):
    spec = get_model_spec(name)
    model = create_model(name).eval()
    num_classes = inspect.signature(spec.factory).parameters["num_classes"].default
    for batch in (1, 4):
        x = torch.randn(batch, *spec.input_shape[1:])
        with torch.no_grad():
            y = model(x)
        assert y.shape == (batch, num_classes)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["mnist1d_mlp", "mnist1d_cnn", "tiny_transformer", "resnet20"])
def test_model_is_deterministic_given_seed(name):
    spec = get_model_spec(name)
    x = torch.randn(2, *spec.input_shape[1:])
    outputs = []
    for _ in range(2):
        torch.manual_seed(0)
        with torch.no_grad():
            outputs.append(create_model(name).eval()(x))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_every_model_has_an_input_shape_with_batch_1_and_a_dataset():
    for name in ALL_MODELS:
        spec = get_model_spec(name)
        assert spec.input_shape[0] == 1
        assert spec.dataset and spec.description


def test_vgg16_bn_layout():
    model = create_model("vgg16_bn")
    assert _count(model, nn.Conv2d) == 13
    assert _count(model, nn.BatchNorm2d) == 13
    assert _count(model, nn.Linear) == 3
    assert create_model("vgg16_bn_cifar100").classifier[-1].out_features == 100


def test_lenet_300_100_has_the_lottery_ticket_parameter_count():
    model = create_model("lenet_300_100")
    assert sum(p.numel() for p in model.parameters()) == 266_610
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [300, 100, 10]


def test_resnet_depth_and_num_classes():
    model = create_model("resnet20", num_classes=100)
    assert _count(model, nn.Conv2d) == 19 + 2  # 19 3x3 convs plus two 1x1 shortcuts
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert _count(create_model("resnet56"), nn.Conv2d) == 55 + 2
    with pytest.raises(SparsebenchError, match="6n\\+2"):
        create_model("resnet20", depth=21)


@pytest.mark.parametrize("name", ["tiny_transformer", "tiny_transformer_wide"])
def test_transformer_is_plain_linear_layers(name):
    model = create_model(name)
    assert _count(model, nn.MultiheadAttention) == 0
    assert _count(model, nn.TransformerEncoderLayer) == 0
    total = sum(p.numel() for p in model.parameters())
    in_linear = sum(
        p.numel() for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()
    )
    assert in_linear / total > 0.9


def test_tiny_transformer_wide_dims_are_multiples_of_64():
    model = create_model("tiny_transformer_wide")
    blocks = [m for n, m in model.named_modules() if isinstance(m, nn.Linear) and "blocks" in n]
    assert len(blocks) == 4 * 6
    assert all(m.in_features % 64 == 0 and m.out_features % 64 == 0 for m in blocks)


def test_list_models_filters_with_wildcards():
    assert list_models("vgg*") == ["vgg16_bn", "vgg16_bn_cifar100"]
    assert "resnet20" in list_models()
    assert list_models("nothing*") == []


def test_unknown_model_is_a_one_line_error():
    with pytest.raises(SparsebenchError, match="unknown architecture 'vgg16'"):
        create_model("vgg16")
