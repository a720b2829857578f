"""The `regression` channel-pruning method (He, Zhang and Sun 2017) on small CNNs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sparsebench.data import Dataset
from sparsebench.errors import SparsebenchError
from sparsebench.formats import ExportConfig, get_exporter
from sparsebench.prune import prune
from sparsebench.prune.data import PruneData
from sparsebench.prune.methods import regression  # noqa: F401  (registers the method)

SHAPE = (1, 1, 8, 8)


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: on a busy machine thread wake-ups would cost more than the work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomise_bn_(model: nn.Module, seed: int = 3) -> nn.Module:
    """Non-trivial BatchNorm statistics, so BN really shifts and scales each channel."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.copy_(0.2 * torch.randn(n, generator=generator))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return model.eval()


def _pair_net(seed: int = 0, width: int = 8) -> nn.Sequential:
    """conv-BN-ReLU-conv-BN-ReLU-flatten-linear: one prunable pair (0 -> 3)."""
    torch.manual_seed(seed)
    return _randomise_bn_(
        nn.Sequential(
            *(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()),
            *(nn.Conv2d(width, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
            *(nn.Flatten(), nn.Linear(8 * 64, 3)),
        )
    )


def _chain_net(seed: int = 0) -> nn.Sequential:
    """Three convs with a max pool between the first two: pairs 0 -> 4 and 4 -> 7."""
    torch.manual_seed(seed)
    return _randomise_bn_(
        nn.Sequential(
            *(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2)),
            *(nn.Conv2d(6, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU()),
            *(nn.Conv2d(5, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
            *(nn.Flatten(), nn.Linear(4 * 16, 3)),
        )
    )


class _Residual(nn.Module):
    """stem -> [a -> b] + stem -> c -> fc: only a -> b is a clean pair."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem, self.bn0 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.a, self.bn1 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.b, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(4 * 64, 3)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        x = torch.relu(self.bn2(self.b(torch.relu(self.bn1(self.a(x))))) + x)
        return self.fc(self.c(x).flatten(1))


def _data(count: int = 128, seed: int = 0, epochs: int = 0) -> PruneData:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, *SHAPE[1:], generator=generator)
    y = torch.randint(0, 3, (count,), generator=generator)
    return PruneData(Dataset("synthetic", x, y, ["a", "b", "c"]), None, SHAPE, epochs=epochs)


def _prune(model: nn.Module, sparsity: float = 0.5, seed: int = 0, data=None, samples: int = 64):
    """`regression` on a few samples (enough rows for these small layers)."""
    return prune(model, "regression", sparsity, seed=seed, data=data or _data(), samples=samples)


def _dropped(conv: nn.Conv2d) -> list[int]:
    """Output channels of `conv` whose weights are all zero."""
    return torch.nonzero(conv.weight.detach().flatten(1).abs().amax(1) == 0).flatten().tolist()


def _output_of(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What `layer` outputs when `model` runs on `x`."""
    seen = []
    handle = layer.register_forward_hook(lambda _m, _a, out: seen.append(out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


def test_each_prunable_producer_loses_round_sparsity_channels_exactly():
    model = _chain_net()
    result = _prune(model)
    producers = {"0": (model[0], model[1], model[4]), "4": (model[4], model[5], model[7])}
    x = torch.randn(16, *SHAPE[1:])
    for name, (conv, bn, consumer) in producers.items():
        dropped = _dropped(conv)
        assert len(dropped) == round(0.5 * conv.out_channels)  # 3 of 6, 2 of 5
        assert (_output_of(model, bn, x)[:, dropped] == 0).all()  # BN outputs exactly 0
        assert (consumer.weight[:, dropped] == 0).all()  # and the consumer ignores them
        assert result.layers[name] == float((conv.weight == 0).double().mean())
    assert _dropped(model[7]) == []  # its channels go to a Linear: not pruned
    details = result.extra["regression"]
    assert [(p["producer"], p["consumer"], p["kept"], p["channels"]) for p in details["pairs"]] == [
        ("0", "4", 3, 6),
        ("4", "7", 3, 5),
    ]
    assert "Linear" in details["skipped"]["7"] and "final" in details["skipped"]["11"]
    for pair in details["pairs"]:
        assert pair["error_after"] <= pair["error_before"]


def test_refit_reconstructs_better_than_dropping_or_l1_on_held_out_inputs():
    original = _pair_net()
    model = copy.deepcopy(original)
    result = _prune(model, data=_data(256), samples=256)
    dropped = result.extra["regression"]["pairs"][0]["dropped"]
    l1 = torch.argsort(original[0].weight.detach().abs().sum((1, 2, 3)))[: len(dropped)].tolist()

    def without(channels):  # the original with the channels' inputs to the consumer cut
        other = copy.deepcopy(original)
        with torch.no_grad():
            other[3].weight[:, channels] = 0
        return other

    held_out = torch.randn(200, *SHAPE[1:], generator=torch.Generator().manual_seed(99))
    target = _output_of(original, original[3], held_out)

    def error(net):
        return float((_output_of(net, net[3], held_out) - target).norm() / target.norm())

    refit, same, smallest = error(model), error(without(dropped)), error(without(l1))
    assert refit < same and refit < smallest


def test_the_channels_exporter_removes_the_zeroed_channels():
    model = _chain_net()
    _prune(model)
    pruned = copy.deepcopy(model)
    example = torch.randn(*SHAPE)
    conversion = get_exporter("channels").convert(model, example, ExportConfig.of("channels"))
    smaller = conversion.model
    assert (smaller[0].out_channels, smaller[4].in_channels) == (3, 3)
    assert (smaller[4].out_channels, smaller[7].in_channels) == (3, 3)
    x = torch.randn(8, *SHAPE[1:])
    with torch.no_grad():
        reference, out = pruned(x), smaller(x)
    assert float((reference - out).abs().max() / reference.abs().max()) < 1e-5


def test_residual_adds_stay_dense_with_a_reason():
    model = _randomise_bn_(_Residual())
    result = _prune(model)
    details = result.extra["regression"]
    assert [(p["producer"], p["consumer"]) for p in details["pairs"]] == [("a", "b")]
    assert "residual" in details["skipped"]["stem"]
    assert len(_dropped(model.a)) == 4 and not _dropped(model.stem) and not _dropped(model.b)


def test_deterministic_under_a_seed():
    runs = []
    for seed in (5, 5, 6):
        model = _pair_net()
        result = _prune(model, seed=seed)
        runs.append((model.state_dict(), result.extra["regression"]))
    (first, extra), (second, extra_again), (third, _) = runs
    assert extra == extra_again
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not torch.equal(first["3.weight"], third["3.weight"])  # other samples, other refit


def test_fine_tuning_keeps_the_dropped_channels_zero():
    model = _pair_net()
    result = _prune(model, data=_data(epochs=1))
    assert "finetune" in result.extra and "regression" in result.extra
    dropped = result.extra["regression"]["pairs"][0]["dropped"]
    assert _dropped(model[0]) == dropped
    assert (_output_of(model, model[1], torch.randn(4, *SHAPE[1:]))[:, dropped] == 0).all()


def test_one_line_errors():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    with pytest.raises(SparsebenchError, match="no conv -> conv pair") as raised:
        prune(mlp, "regression", 0.5, data=_data())
    assert "\n" not in str(raised.value)
    with pytest.raises(SparsebenchError, match="data"):
        prune(_pair_net(), "regression", 0.5)
    with pytest.raises(SparsebenchError, match="samples"):
        prune(_pair_net(), "regression", 0.5, data=_data(), samples=0)
