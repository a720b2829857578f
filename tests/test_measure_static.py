"""Sparsity, size and MACs against values computed by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsebench.measure.macs import count_macs
from sparsebench.measure.size import file_size_mb, state_dict_size_mb
from sparsebench.measure.sparsity import measure_sparsity
from sparsebench.zoo import create_model


def _conv_bn():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3, bias=False),
    ).eval()  # fmt: skip


def test_macs_of_a_small_model_by_hand():
    # conv: 4 out x 2 in x 3x3 kernel x 25 positions; BN: one per output element; linear 100x3
    expected = 4 * 2 * 9 * 25 + 4 * 25 + 100 * 3
    result = count_macs(_conv_bn(), torch.randn(1, 2, 5, 5))
    assert result.dense == expected
    assert result.effective == expected


def test_macs_are_per_sample_whatever_the_batch():
    model = _conv_bn()
    assert (
        count_macs(model, torch.randn(1, 2, 5, 5)).dense
        == count_macs(model, torch.randn(7, 2, 5, 5)).dense
    )


def test_effective_macs_count_only_nonzero_weights():
    model = _conv_bn()
    with torch.no_grad():
        model[0].weight[:2] = 0  # half of the conv's output channels
        model[4].weight[:, ::4] = 0  # a quarter of the linear weights
    result = count_macs(model, torch.randn(1, 2, 5, 5))
    conv, bn, linear = 4 * 2 * 9 * 25, 4 * 25, 100 * 3
    assert result.effective == conv // 2 + bn + linear * 3 // 4
    assert result.per_layer == {"0": conv, "4": linear}


def test_vgg16_bn_reproduces_the_assignment_baseline():
    """The assignment's Task-0 table: 314.002 M (CIFAR-10) and 314.049 M (CIFAR-100)."""
    x = torch.randn(1, 3, 32, 32)
    assert round(count_macs(create_model("vgg16_bn").eval(), x).dense_m, 3) == 314.002
    cifar100 = create_model("vgg16_bn", num_classes=100).eval()
    assert round(count_macs(cifar100, x).dense_m, 3) == 314.049


def test_transformer_counts_linear_layers_and_attention():
    model = create_model("tiny_transformer").eval()
    d, tokens, depth, classes = 128, 40, 2, 10
    linear = tokens * d + depth * tokens * (4 * d * d + 2 * d * 4 * d) + d * classes
    attention = depth * 2 * tokens * tokens * d  # QK^T and attention @ V
    assert count_macs(model, torch.randn(1, 40)).dense == linear + attention


def test_sparsity_of_a_known_mask():
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Conv1d(1, 2, 5))
    with torch.no_grad():
        model[0].weight.copy_((torch.arange(100).reshape(10, 10) % 4 != 0).float())  # 25 zeros
        model[2].weight.zero_()  # 10 zeros
    summary = measure_sparsity(model)
    assert summary.prunable_params == 110
    assert summary.sparsity_pct == pytest.approx(100 * 35 / 110)
    assert [layer.sparsity_pct for layer in summary.layers] == [25.0, 100.0]
    assert summary.params == 100 + 10 + 10 + 2
    # biases (10 + 2) are non-zero with default init except by rare chance
    assert summary.nonzero_params == 75 + int(model[0].bias.count_nonzero()) + int(
        model[2].bias.count_nonzero()
    )


def test_file_size_uses_mebibytes(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\0" * (3 * 2**20 + 2**19))
    assert file_size_mb(path) == 3.5


def test_state_dict_size_matches_saved_file(tmp_path):
    model = nn.Linear(256, 256)
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    assert state_dict_size_mb(model) == pytest.approx(file_size_mb(path), rel=0.01)
    assert state_dict_size_mb(model) > (256 * 256 * 4) / 2**20


def test_layer_scope_prunes_every_layer_equally_and_global_does_not():
    from sparsebench.prune import magnitude_prune_

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1000, 10), nn.Linear(10, 10))  # very different init scales
    layer = measure_sparsity(magnitude_prune_(model, 0.5, scope="layer")).layers
    assert [round(x.sparsity_pct) for x in layer] == [50, 50]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1000, 10), nn.Linear(10, 10))
    summary = measure_sparsity(magnitude_prune_(model, 0.5, scope="global"))
    assert summary.sparsity_pct == pytest.approx(50.0, abs=0.01)
    assert summary.layers[0].sparsity_pct > 50 > summary.layers[1].sparsity_pct


def test_compressed_weights_count_like_dense_ones():
    dense = nn.Linear(8, 4)
    with torch.no_grad():
        dense.weight[:, :6] = 0

    class CSRLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("weight", dense.weight.detach().to_sparse_csr())

        def forward(self, x):
            return torch.sparse.mm(self.weight, x.t()).t()

    x = torch.randn(3, 8)
    csr = count_macs(CSRLayer(), x)
    assert (csr.dense, csr.effective) == (32, 8)
    summary = measure_sparsity(CSRLayer())
    assert summary.sparsity_pct == 75.0 and summary.params == 32 and summary.nonzero_params == 8
