"""The pruning-method registry and its one-shot methods on small cases (issue 13, first part)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.errors import SparsebenchError
from sparsebench.prune import METHODS, prune
from sparsebench.prune.methods.nm import nm_mask
from sparsebench.zoo import create_model


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 7))


def test_the_registry_lists_every_method_with_its_paper():
    result = CliRunner().invoke(app, ["prune-methods"])
    assert result.exit_code == 0
    names = ("magnitude", "random", "nm", "snip", "grasp", "synflow", "gradient", "lottery",
             "movement", "rigl", "gumbel", "sensitivity", "channel", "regression")  # fmt: skip
    assert METHODS.names() == sorted(names)
    for name in names:
        assert f"{name}: " in result.output and METHODS.get(name).paper


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.95])
def test_magnitude_keeps_the_largest_weights_at_the_requested_sparsity(scope, sparsity):
    model = _mlp()
    before = {name: p.detach().abs().clone() for name, p in model.named_parameters()
              if name.endswith("weight")}  # fmt: skip
    result = prune(model, "magnitude", sparsity, scope=scope)
    assert abs(result.sparsity - sparsity) < 0.005
    if scope == "layer":
        assert all(abs(s - sparsity) < 0.005 + 1 / 140 for s in result.layers.values())
    kept = torch.cat([p.detach().abs().flatten() for n, p in model.named_parameters()
                      if n.endswith("weight")])  # fmt: skip
    if scope == "global":  # every kept weight is at least as large as every pruned one
        dense = torch.cat([b.flatten() for b in before.values()])
        assert dense[kept != 0].min() >= dense[kept == 0].max()


def test_random_is_deterministic_under_a_seed_and_differs_across_seeds():
    masks = []
    for seed in (3, 3, 4):
        model = _mlp()
        prune(model, "random", 0.8, seed=seed)
        masks.append(model[0].weight != 0)
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])


def test_nm_gives_the_2_4_pattern_semi24_needs_and_leaves_a_partial_group_dense():
    score = torch.tensor([[4.0, 1.0, 3.0, 2.0, 9.0, 8.0, 7.0]])
    assert nm_mask(score, 2, 4).tolist() == [[True, False, True, False, True, True, True]]
    model = create_model("mnist1d_mlp")
    result = prune(model, "nm", 0.5)
    for _, module in [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]:
        groups = module.weight.reshape(module.weight.shape[0], -1)
        whole = groups.shape[1] // 4 * 4
        counts = (groups[:, :whole].reshape(groups.shape[0], -1, 4) != 0).sum(-1)
        assert (counts <= 2).all()
    assert 0.45 < result.sparsity <= 0.5


def test_a_conv_model_and_bad_input_give_one_line_errors():
    model = create_model("resnet20")
    result = prune(model, "magnitude", 0.9)
    assert abs(result.sparsity - 0.9) < 0.005
    with pytest.raises(SparsebenchError, match=r"\[0, 1\)"):
        prune(_mlp(), "magnitude", 1.0)
    with pytest.raises(SparsebenchError, match="Did you mean magnitude"):
        prune(_mlp(), "magnitud", 0.5)
    with pytest.raises(SparsebenchError, match="scope"):
        prune(_mlp(), "magnitude", 0.5, scope="channel")
    with pytest.raises(SparsebenchError, match="nothing|no dense conv or linear"):
        prune(nn.Sequential(nn.ReLU()), "magnitude", 0.5)


def test_the_prune_command_takes_a_method_and_records_it(tmp_path):
    from sparsebench.checkpoint import CheckpointMeta, save_checkpoint

    dense = tmp_path / "dense.pt"
    save_checkpoint(dense, create_model("mnist1d_mlp"), CheckpointMeta(arch="mnist1d_mlp"))
    out = tmp_path / "nm.pt"
    result = CliRunner().invoke(app, ["prune", str(dense), "-o", str(out), "--method", "nm"])
    assert result.exit_code == 0, result.output
    blob = torch.load(out, weights_only=True)
    pruned = blob["sparsebench"]["extra"]["pruned"]
    assert pruned["method"] == "nm" and set(pruned["layers"]) == {"fc1", "fc2", "fc3"}
    assert pruned["amount"] == 0.5  # the 2:4 pattern's, not the --sparsity default
    assert all(0.45 <= s <= 0.5 for s in pruned["layers"].values())
    bad = CliRunner().invoke(app, ["prune", str(dense), "-o", str(tmp_path / "x.pt"),
                                   "--method", "magnitud"])  # fmt: skip
    assert bad.exit_code == 2 and "Did you mean magnitude" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and not (tmp_path / "x.pt").exists()
