"""Shared fixtures: small checkpoints of every kind, written to a temporary directory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsebench.checkpoint import CheckpointMeta, save_checkpoint
from sparsebench.zoo import create_model

ARCH = "mnist1d_mlp"
SHAPE = (1, 40)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep dataset caches out of the user's home directory."""
    monkeypatch.setenv("SPARSEBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return create_model(ARCH).eval()


@pytest.fixture
def sb_ckpt(tmp_path, mlp):
    """A sparsebench checkpoint of the mnist1d MLP."""
    path = tmp_path / "mlp.pt"
    save_checkpoint(path, mlp, CheckpointMeta(arch=ARCH, input_shape=list(SHAPE)))
    return path


@pytest.fixture
def state_dict_ckpt(tmp_path, mlp):
    """A plain state_dict of the mnist1d MLP (needs --arch)."""
    path = tmp_path / "mlp_state.pt"
    torch.save(mlp.state_dict(), path)
    return path
