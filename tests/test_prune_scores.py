"""The scoring methods (SNIP, GraSP, SynFlow, gradient magnitude, sensitivity, channel
importance) do what their papers say on small cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsebench.data import Dataset
from sparsebench.errors import SparsebenchError
from sparsebench.prune import PruneData, prune
from sparsebench.prune.methods.sensitivity import choose_ratios, parse_ratios
from sparsebench.prune.methods.synflow import synflow_scores


def informative_data(n=256, features=12, useful=(0, 1), seed=0, test=True) -> PruneData:
    """Labels decided by the sign of the sum of a few `useful` features; the rest is noise."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    y = (x[:, list(useful)].sum(1) > 0).long()
    train = Dataset("toy", x, y, ["neg", "pos"])
    held = None
    if test:  # fresh samples from the same rule
        xt = torch.randn(n // 2, features, generator=generator)
        held = Dataset("toy", xt, (xt[:, list(useful)].sum(1) > 0).long(), ["neg", "pos"])
    return PruneData(train, held, (1, features), epochs=3, batch_size=32, lr=1e-2)


def _mlp(features=12, hidden=16, seed=0, bias=True):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, hidden, bias=bias), nn.ReLU(),
                         nn.Linear(hidden, 2, bias=bias))  # fmt: skip


def _kept(model):
    return [m.weight != 0 for m in model if isinstance(m, nn.Linear)]


def test_snip_keeps_the_largest_connection_sensitivity():
    data, model = informative_data(), _mlp()
    reference = _mlp()
    x, y = data.sample(64, 5)
    loss = F.cross_entropy(reference(x), y)
    grads = torch.autograd.grad(loss, [reference[0].weight, reference[2].weight])
    pairs = zip(grads, [reference[0].weight, reference[2].weight], strict=True)
    saliency = torch.cat([(g * w).abs().flatten() for g, w in pairs]).detach()
    prune(model, "snip", 0.75, scope="global", seed=5, data=data, samples=64)
    kept = torch.cat([k.flatten() for k in _kept(model)])
    assert abs(1 - kept.float().mean() - 0.75) < 0.005
    assert saliency[kept].min() >= saliency[~kept].max()


def test_grasp_removes_the_highest_minus_w_hessian_gradient():
    data, model = informative_data(), _mlp()
    reference = _mlp()
    x, y = data.sample(64, 2)
    params = [reference[0].weight, reference[2].weight]

    def loss_of(*weights):
        h = F.relu(F.linear(x, weights[0], reference[0].bias))
        return F.cross_entropy(F.linear(h, weights[1], reference[2].bias) / 200.0, y)

    g = torch.autograd.grad(loss_of(*params), params)
    _, hg = torch.autograd.functional.hvp(loss_of, tuple(p.detach() for p in params), g)
    score = torch.cat([(-w.detach() * h).flatten() for w, h in zip(params, hg, strict=True)])
    prune(model, "grasp", 0.6, scope="global", seed=2, data=data, samples=64)
    kept = torch.cat([k.flatten() for k in _kept(model)])
    assert abs(1 - kept.float().mean() - 0.6) < 0.005
    assert score[~kept].min() >= score[kept].max() - 1e-6  # the highest scores went


def test_synflow_scores_are_conserved_layer_by_layer_and_need_no_data():
    model = _mlp(bias=False).double()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    layers = [("0", model[0]), ("2", model[2])]
    scores = synflow_scores(model, layers, torch.ones(1, 12, dtype=torch.float64))
    total = model(torch.ones(1, 12, dtype=torch.float64)).sum()
    for score in scores.values():  # Theorem 1 of the paper: each layer's saliency sums to R
        assert torch.isclose(score.sum(), total.detach(), rtol=1e-9)
    pruned = _mlp()
    result = prune(pruned, "synflow", 0.9, scope="global", example=torch.zeros(1, 12),
                   iterations=20)  # fmt: skip
    assert abs(result.sparsity - 0.9) < 0.005


def test_synflow_avoids_the_layer_collapse_of_global_magnitude():
    def small_middle():
        model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                              nn.Linear(64, 4))  # fmt: skip
        torch.manual_seed(0)
        with torch.no_grad():
            model[2].weight.mul_(1e-3)  # a layer of tiny weights (as after some inits)
        return model

    magnitude, synflow = small_middle(), small_middle()
    prune(magnitude, "magnitude", 0.7, scope="global")
    prune(synflow, "synflow", 0.7, scope="global", example=torch.zeros(1, 64), iterations=20)
    assert int(magnitude[2].weight.count_nonzero()) == 0  # collapsed
    assert all(int(synflow[i].weight.count_nonzero()) > 0 for i in (0, 2, 4))


def test_synflow_refuses_token_inputs():
    with pytest.raises(SparsebenchError, match="one float input"):
        prune(nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2)), "synflow", 0.5,
              example=torch.zeros(1, 3, dtype=torch.long))  # fmt: skip


def test_gradient_magnitude_prunes_the_connections_of_dead_inputs_first():
    data = informative_data(features=12)
    data.train.x[:, 6:] = 0  # inputs 6..11 never fire: their weights never get a gradient
    model = _mlp()
    prune(model, "gradient", 0.4, data=data, warmup=2, scope="layer")
    first = model[0].weight  # 40 % of 12 columns: every pruned weight is a dead input's
    assert int(first[:, :6].count_nonzero()) == 16 * 6 and int(first.count_nonzero()) == 115
    magnitude = _mlp()
    prune(magnitude, "magnitude", 0.4, scope="layer")
    assert int(magnitude[0].weight[:, :6].count_nonzero()) < 16 * 6  # |w| cannot see it


def test_sensitivity_prunes_insensitive_layers_more_and_hits_the_target_exactly():
    sizes = {"robust": 1000, "fragile": 1000}
    ratios = [0.25, 0.5, 0.75, 0.9]
    drops = {"robust": [0, 0, 0.5, 1], "fragile": [1, 5, 20, 40]}
    keep = choose_ratios(drops, ratios, sizes, 0.6)
    assert sum(keep.values()) == 800  # 60 % of 2000 pruned exactly
    assert keep["robust"] < keep["fragile"]
    assert parse_ratios("0.5, 0.1") == [0.1, 0.5]
    for bad in ("", "a,b", "0,0.5", "1.5"):
        with pytest.raises(SparsebenchError, match="ratios"):
            parse_ratios(bad)


def test_sensitivity_scan_runs_on_held_out_data_and_prints_its_table():
    data = informative_data()
    model = _mlp()
    result = prune(model, "sensitivity", 0.7, data=data, ratios="0.3,0.6,0.9")
    assert abs(result.sparsity - 0.7) < 0.005
    scan = result.extra["sensitivity"]
    assert set(scan["top1"]) == {"0", "2"} and len(scan["top1"]["0"]) == 3
    assert "sensitivity scan" in result.tables[0] and "chosen" in result.tables[0]
    no_test = informative_data(test=False)
    with pytest.raises(SparsebenchError, match="test split"):
        prune(_mlp(), "sensitivity", 0.5, data=no_test)


def _cnn(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 6 * 6, 3))  # fmt: skip
    return model.eval()


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn", "taylor"])
def test_channel_zeroes_the_least_important_channels_of_each_group(criterion):
    model = _cnn()
    expected = _torch_pruning_scores(model, criterion) if criterion in ("l1", "bn") else None
    result = prune(model, "channel", 0.5, example=torch.zeros(1, 1, 6, 6), criterion=criterion)
    zero = model[0].weight.flatten(1).abs().amax(1) == 0
    assert int(zero.sum()) == 4 and int((model[3].weight.flatten(1).abs().amax(1) == 0).sum()) == 4
    assert bool((model[1].weight[zero] == 0).all() and (model[1].bias[zero] == 0).all())
    assert result.extra["channels"]["0"] == {"zeroed": 4, "of": 8}
    if expected is not None:  # the lowest group importances, as torch-pruning scores them
        assert expected[zero].max() <= expected[~zero].min()
    assert int(model[7].weight.count_nonzero()) == model[7].weight.numel()  # final layer kept


def _torch_pruning_scores(model, criterion):
    import torch_pruning as tp

    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, 1, 6, 6))
    group = dg.get_pruning_group(model[0], tp.prune_conv_out_channels, list(range(8)))
    importance = {"l1": tp.importance.MagnitudeImportance(p=1),
                  "bn": tp.importance.BNScaleImportance()}[criterion]  # fmt: skip
    return importance(group)


def test_channel_pruned_model_loses_its_channels_in_the_channels_export():
    from sparsebench.formats.base import ExportConfig
    from sparsebench.formats.channels import ChannelsExporter, ChannelsOptions

    model = _cnn()
    prune(model, "channel", 0.5, example=torch.zeros(1, 1, 6, 6))
    x = torch.randn(4, 1, 6, 6)
    expected = model(x)
    conversion = ChannelsExporter().convert(
        model, torch.zeros(1, 1, 6, 6), ExportConfig("channels", options=ChannelsOptions())
    )
    assert conversion.model[0].out_channels == 4 and conversion.model[3].out_channels == 4
    assert torch.allclose(conversion.model(x), expected, atol=1e-5)


def test_methods_that_need_data_say_so_and_bad_options_are_one_line_errors():
    with pytest.raises(SparsebenchError, match="pass --data"):
        prune(_mlp(), "snip", 0.5)
    with pytest.raises(SparsebenchError, match="no option 'sample'.*did you mean samples"):
        prune(_mlp(), "snip", 0.5, data=informative_data(), sample=3)
    with pytest.raises(SparsebenchError, match="must be a int"):
        prune(_mlp(), "snip", 0.5, data=informative_data(), samples="many")
    with pytest.raises(SparsebenchError, match="criterion"):
        prune(_cnn(), "channel", 0.5, example=torch.zeros(1, 1, 6, 6), criterion="l3")


def test_sensitivity_lands_on_the_target_when_curves_are_flat_or_tied():
    flat = choose_ratios({n: [0, 0] for n in "abc"}, [0.5, 0.9], {n: 100 for n in "abc"}, 0.5)
    assert sum(flat.values()) == 150 and all(k >= 1 for k in flat.values())
    tied = choose_ratios({"a": [0, 1], "b": [0, 50], "c": [0, 0]}, [0.1, 0.5],
                         {"a": 4000, "b": 10000, "c": 1000}, 0.45)  # fmt: skip
    assert sum(tied.values()) == round(0.55 * 15000)
    with pytest.raises(SparsebenchError, match="cannot reach 90.0%"):
        choose_ratios({"a": [0, 1]}, [0.1, 0.5], {"a": 100}, 0.9)
