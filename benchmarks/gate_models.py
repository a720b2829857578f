"""Models for benchmarks/gate.py: the CI profile's models, optionally slowed by a known amount.

`SPARSEBENCH_GATE_SLOWDOWN` (a fraction, e.g. 0.2) and `SPARSEBENCH_GATE_CALIBRATION` (the
JSON that `gate.py` writes) choose the extra work: after the model's own forward, the model
made by `slowed` runs a Python loop of `n` integer additions, `n` calibrated per model and
batch size so the extra time is that fraction of the model's own (block-minimum) latency.
The loop is CPU work on the same core, so contention slows it as it slows the model (a sleep
would not), and its cost grows in steps of nanoseconds: one extra torch operator call already
costs about 16 % of the batch-1 MLP's 24 us here, too coarse for a 10 % slowdown.
"""

from __future__ import annotations

import json
import os
from copy import deepcopy

import torch
from torch import nn

from sparsebench.prune.magnitude import magnitude_prune_
from sparsebench.zoo import create_model

# name -> (zoo entry, layer-wise magnitude pruning ratio), as in profiles/ci-cpu.toml
MODELS = {"mlp_dense": ("mnist1d_mlp", 0.0), "mlp_pruned90": ("mnist1d_mlp", 0.9),
          "cnn": ("mnist1d_cnn", 0.0)}  # fmt: skip


def _slowed_forward(self, x):
    out = self._gate_base.forward(self, x)
    total = 0
    for step in range(self._gate_work.get(x.shape[0], 0)):
        total += step
    return out


def slowed(model: nn.Module, work: dict[int, int]) -> nn.Module:
    """A copy of `model` whose forward then runs `work[batch]` iterations of a Python integer
    loop. The copy's class is a subclass of the model's, so its state_dict (and so its size,
    MACs and non-zeros in the check) is the model's own."""
    copy = deepcopy(model)
    base = type(model)
    copy.__class__ = type(f"Slowed{base.__name__}", (base,),
                          {"forward": _slowed_forward, "_gate_base": base})  # fmt: skip
    copy._gate_work = dict(work)
    return copy


def base_model(name: str) -> nn.Module:
    zoo, ratio = MODELS[name]
    torch.manual_seed(0)
    model = create_model(zoo)
    if ratio:
        magnitude_prune_(model, ratio, scope="layer")
    return model.eval()


def build(name: str) -> nn.Module:
    model = base_model(name)
    slowdown = float(os.environ.get("SPARSEBENCH_GATE_SLOWDOWN", "0") or 0)
    if not slowdown:
        return model
    with open(os.environ["SPARSEBENCH_GATE_CALIBRATION"], encoding="utf-8") as handle:
        table = json.load(handle)[name][f"{slowdown:g}"]
    return slowed(model, {int(batch): work for batch, work in table.items()}).eval()


def mlp_dense() -> nn.Module:
    return build("mlp_dense")


def mlp_pruned90() -> nn.Module:
    return build("mlp_pruned90")


def cnn() -> nn.Module:
    return build("cnn")
