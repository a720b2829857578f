"""The schedules that train (IMP with rewinding, movement, RigL, Gumbel gates, fine-tuning)
follow their papers on small cases; every method is deterministic under a seed and reaches
the requested sparsity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsebench.data import Dataset
from sparsebench.errors import SparsebenchError
from sparsebench.prune import METHODS, PruneData, prune
from sparsebench.prune.methods import lottery
from sparsebench.prune.methods.movement import cubic_sparsity
from sparsebench.prune.methods.rigl import _drop_grow
from sparsebench.prune.training import Mask
from tests.test_prune_scores import _cnn, _mlp, informative_data

LENET_WEIGHTS = 784 * 300 + 300 * 100 + 100 * 10


def test_lottery_round_counts_follow_the_architecture_and_the_schedule():
    counts = lottery.round_counts(LENET_WEIGHTS, 0.2, 87_228)
    assert LENET_WEIGHTS == 266_200
    assert counts == [212_960, 170_368, 136_294, 109_035, 87_228]  # seed 004's table


def test_lottery_rewinds_the_survivors_to_their_initial_weights(monkeypatch):
    model, data = _mlp(), informative_data()
    initial = [m.weight.detach().clone() for m in (model[0], model[2])]
    seen = []

    def fake_train(model, data, epochs, seed, label, **kwargs):
        layers = [model[0], model[2]]
        seen.append((label, [m.weight.detach().clone() for m in layers]))
        with torch.no_grad():  # "training" moves every dense weight
            for m in layers:
                m.parametrizations.weight.original.add_(1.0)
        return {"loss": 0.0, "seconds": 0.0, "steps": 1}

    monkeypatch.setattr(lottery, "train", fake_train)
    result = prune(model, "lottery", 0.75, data=data, scope="layer", rate=0.5)
    assert [label for label, _ in seen] == ["round 1", "round 2", "ticket"]
    for _, weights in seen[1:]:  # each later round starts from the rewound survivors
        for w, w0 in zip(weights, initial, strict=True):
            assert torch.equal(w[w != 0], w0[w != 0])
    assert [r["nonzero"] for r in result.extra["rounds"]] == [224, 112, 56]
    assert abs(result.sparsity - 0.75) < 0.005


def test_lottery_random_reinit_control_keeps_the_mask_but_not_the_weights(monkeypatch):
    seen = []

    def fake_train(model, data, epochs, seed, label, **kwargs):
        seen.append(model[0].weight.detach().clone())
        return {"loss": 0.0, "seconds": 0.0, "steps": 1}

    monkeypatch.setattr(lottery, "train", fake_train)
    initial = _mlp()[0].weight.detach()
    prune(_mlp(), "lottery", 0.5, data=informative_data(), reinit=True, rate=0.5)
    ticket = seen[-1]
    assert int(ticket.count_nonzero()) == 96  # the mask of the last round
    assert not torch.equal(ticket[ticket != 0], initial[ticket != 0])


def test_lottery_tickets_train_to_the_requested_sparsity_with_a_history():
    data = informative_data()
    result = prune(_mlp(), "lottery", 0.59, data=data, scope="global", rate=0.2)
    assert abs(result.sparsity - 0.59) < 0.005
    rounds = result.extra["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2, 3, 4]
    assert all(r["test_top1"] is not None and r["test_loss"] is not None for r in rounds)
    assert rounds[0]["nonzero"] == 16 * 12 + 32 and rounds[-1]["nonzero"] == round(0.41 * 224)


def test_movement_keeps_the_weights_that_move_away_from_zero():
    """A big weight on a noise input shrinks, a small one on the label's input grows: movement
    keeps the small growing one, magnitude the big shrinking one (the paper's Figure 1)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 2, generator=generator)
    y = (x[:, 1] > 0).long()
    data = PruneData(Dataset("toy", x, y, ["a", "b"]), None, (1, 2), epochs=4, batch_size=32,
                     lr=0.05)  # fmt: skip

    def model():
        layer = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([[3.0, 0.05], [-3.0, -0.05]]))
        return nn.Sequential(layer)

    moved, magnitude = model(), model()
    prune(moved, "movement", 0.5, data=data, warmup=0.0, cooldown=0.5)
    prune(magnitude, "magnitude", 0.5, scope="layer")
    assert (moved[0].weight[:, 0] == 0).all() and (moved[0].weight[:, 1] != 0).all()
    assert (magnitude[0].weight[:, 1] == 0).all()


def test_cubic_schedule_is_dense_then_cubic_then_final():
    assert cubic_sparsity(0, 100, 0.9, 0.1, 0.2) == 0.0
    assert cubic_sparsity(10, 100, 0.9, 0.1, 0.2) == 0.0
    assert cubic_sparsity(45, 100, 0.9, 0.1, 0.2) == pytest.approx(0.9 * (1 - 0.5**3))
    assert cubic_sparsity(80, 100, 0.9, 0.1, 0.2) == 0.9


def test_rigl_drops_the_smallest_weights_and_grows_the_largest_gradients():
    mask = Mask(torch.tensor([True, True, True, True, False, False, False, False]))
    weight = torch.tensor([0.1, -2.0, 0.05, 3.0, 0.0, 0.0, 0.0, 0.0])
    mask.grad = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.1, -5.0, 4.0, 0.2])
    assert _drop_grow(mask, weight, 0.5) == 2
    assert mask.mask.tolist() == [False, True, False, True, False, True, True, False]
    assert weight[5] == 0 and weight[6] == 0  # grown weights start at zero


def test_rigl_keeps_the_sparsity_while_the_mask_moves():
    data = informative_data(n=512)
    model = _mlp()
    result = prune(model, "rigl", 0.8, data=data, delta=4, alpha=0.5)
    assert abs(result.sparsity - 0.8) < 0.005
    assert result.extra["updates"] > 0 and result.extra["first_update"]["moved"] > 0
    initial = torch.rand((16, 12), generator=torch.Generator().manual_seed(0))
    start = torch.zeros(192, dtype=torch.bool)
    start[torch.topk(initial.flatten(), round(0.2 * 192)).indices] = True
    assert not torch.equal(model[0].weight.flatten() != 0, start)  # the mask moved


def test_gumbel_gates_learn_to_keep_the_informative_inputs():
    data = informative_data(n=1024, features=12, useful=(0, 1))
    data.epochs, data.lr = 8, 1e-2
    model = _mlp()
    result = prune(model, "gumbel", 0.9, data=data, scope="global", penalty=2.0)
    assert abs(result.sparsity - 0.9) < 0.005
    first = model[0].weight
    per_input = (first != 0).sum(0)
    assert per_input[:2].float().mean() > per_input[2:].float().mean()  # the label's inputs
    assert result.extra["learned_density"] < 0.5  # the density loss pulled the gates down


def test_gumbel_anneal_moves_the_target_from_dense_to_the_goal():
    data = informative_data(n=512, features=12, useful=(0, 1))
    data.epochs, data.lr = 4, 1e-2
    fixed, annealed = _mlp(), _mlp()
    a = prune(fixed, "gumbel", 0.95, data=data, scope="global", penalty=2.0)
    b = prune(annealed, "gumbel", 0.95, data=data, scope="global", penalty=2.0, anneal=1.0)
    assert abs(a.sparsity - 0.95) < 0.005 and abs(b.sparsity - 0.95) < 0.005
    # a target that starts at density 1 leaves the gates more open than a fixed one
    assert b.extra["learned_density"] > a.extra["learned_density"]


def test_fine_tuning_keeps_the_zeros_and_recovers_accuracy():
    data = informative_data(n=512)
    model = _mlp()
    prune(model, "random", 0.7, data=data)
    assert abs(1 - sum(int(m.weight.count_nonzero()) for m in (model[0], model[2])) / 224
               - 0.7) < 0.005  # fmt: skip
    assert data.accuracy(model) > 80


WEIGHT_METHODS = [n for n in METHODS.names() if METHODS.get(n).granularity == "weights"
                  and METHODS.get(n).fixed_sparsity is None]  # fmt: skip


def _run(name, model, sparsity, seed, data):
    options = {"iterations": 5} if name == "synflow" else {}
    options.update({"warmup": 1} if name == "gradient" else {})
    return prune(model, name, sparsity, seed=seed, data=data, scope="global",
                 example=torch.zeros(1, 12), **options)  # fmt: skip


@pytest.mark.parametrize("name", WEIGHT_METHODS)
def test_every_method_is_deterministic_and_reaches_the_sparsity(name):
    data = informative_data()
    data.epochs = 1
    runs = []
    for seed in (1, 1):
        model = _mlp()
        result = _run(name, model, 0.8, seed, data)
        assert abs(result.sparsity - 0.8) < 0.005
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])


def test_methods_refuse_bad_sparsity_and_models_with_nothing_to_prune():
    with pytest.raises(SparsebenchError, match=r"\[0, 1\)"):
        prune(_mlp(), "magnitude", 1.0)
    with pytest.raises(SparsebenchError, match="no dense conv or linear"):
        prune(nn.Sequential(nn.ReLU()), "random", 0.5)
    with pytest.raises(SparsebenchError, match="unknown pruning method 'lotery'.*lottery"):
        prune(_mlp(), "lotery", 0.5)
    with pytest.raises(SparsebenchError, match="rate"):
        prune(_mlp(), "lottery", 0.5, data=informative_data(), rate=1.5)


def test_channel_methods_run_on_a_cnn_with_fine_tuning():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 6, 6, generator=generator)
    data = PruneData(Dataset("img", x, (x.mean((1, 2, 3)) > 0).long() % 3, ["a", "b", "c"]),
                     None, (1, 1, 6, 6), epochs=1, batch_size=16)  # fmt: skip
    model = _cnn()
    result = prune(model, "channel", 0.25, data=data, criterion="taylor")
    assert result.extra["channels"]["0"]["zeroed"] == 2
    assert int((model[0].weight.flatten(1).abs().amax(1) == 0).sum()) == 2  # still zero


class _Dropout(nn.Module):
    """An MLP with dropout (training draws from the RNG) and a layer forward never uses."""

    def __init__(self):
        super().__init__()
        self.fc1, self.drop, self.fc2 = nn.Linear(12, 16), nn.Dropout(0.3), nn.Linear(16, 2)
        self.unused = nn.Linear(5, 5)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


ALL_METHODS = [n for n in METHODS.names() if n != "regression"]  # regression needs convs


@pytest.mark.parametrize("name", ALL_METHODS)
def test_same_seed_same_weights_whatever_the_global_rng_and_unused_layers_are_fine(name):
    data = informative_data()
    data.epochs = 1
    runs = []
    for noise in (1, 2):
        torch.manual_seed(0)
        model = _Dropout()
        torch.manual_seed(noise)  # the caller's RNG differs between the runs
        options = {"iterations": 3} if name == "synflow" else {}
        options.update({"warmup": 1} if name == "gradient" else {})
        before = torch.random.get_rng_state()
        prune(model, name, 0.5, seed=3, data=data, example=torch.zeros(1, 12), **options)
        assert torch.equal(torch.random.get_rng_state(), before)  # left as it was
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])


def test_lottery_reaches_extreme_sparsity_without_looping():
    assert lottery.round_counts(1000, 0.2, 1)[-3:] == [3, 2, 1]
    assert lottery.round_counts(10, 0.2, 0)[-1] == 0
    data = informative_data()
    data.epochs = 1
    result = prune(_mlp(), "lottery", 0.99, data=data, scope="layer", rate=0.5)
    assert abs(result.sparsity - 0.99) < 0.005


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("snip", {"samples": 0}, "samples.*>= 1"),
        ("grasp", {"temperature": 0.0}, "temperature.*> 0"),
        ("gradient", {"warmup": 0}, "warmup.*>= 1"),
        ("gradient", {"momentum": 1.5}, "momentum.*< 1"),
        ("lottery", {"rewind_steps": -3}, "rewind_steps.*>= 0"),
        ("lottery", {"rate": 0.0}, r"rate.*\(0, 1\)"),
        ("synflow", {"iterations": 0}, "iterations"),
        ("grasp", {"temperature": "nan"}, "must be a float"),
        ("gumbel", {"anneal": 1.5}, r"anneal in \[0, 1\]"),
    ],
)
def test_option_values_out_of_range_are_refused(method, options, message):
    with pytest.raises(SparsebenchError, match=message):
        prune(_mlp(), method, 0.5, data=informative_data(), example=torch.zeros(1, 12),
              **options)  # fmt: skip


def test_methods_that_train_need_epochs():
    data = informative_data()
    data.epochs = 0
    for name in ("lottery", "movement", "rigl", "gumbel"):
        with pytest.raises(SparsebenchError, match="--epochs 1 or more"):
            prune(_mlp(), name, 0.5, data=data)


def test_a_last_batch_of_one_joins_the_one_before():
    data = informative_data(n=65)
    data.batch_size = 32
    sizes = [len(y) for _, y in data.batches(0)]
    assert sizes == [32, 33] and data.steps_per_epoch == 2
