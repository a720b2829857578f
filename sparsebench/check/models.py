"""Build a profile's models deterministically: seed, optional short training, pruning."""

from __future__ import annotations

import contextlib
import io

import torch

from ..arch import build_model, zoo_input_shape
from ..artifact import load
from ..data import load_dataset
from ..errors import SparsebenchError
from ..load import LoadedModel, check_input
from ..prune.magnitude import magnitude_prune_
from ..train import TrainConfig, fit
from .profile import CheckProfile, ModelEntry


def _train_(model: torch.nn.Module, entry: ModelEntry, profile: CheckProfile, shape) -> None:
    if profile.data is None:
        raise SparsebenchError(
            f"model '{entry.name}' sets train_epochs but the profile has no data"
        )
    train = load_dataset(profile.data, "train")
    config = TrainConfig(epochs=entry.train_epochs, seed=entry.seed)
    with contextlib.redirect_stdout(io.StringIO()):  # fit's progress bar is not check output
        fit(model, train, shape, config)


def build_entry(entry: ModelEntry, profile: CheckProfile) -> LoadedModel:
    """The entry's model in eval mode on the profile's device, with its input shape."""
    if entry.path is not None:
        loaded = load(entry.path, device=profile.device, input_shape=entry.input_shape)
        model, shape = loaded.model, loaded.input_shape
    else:
        arch = entry.zoo or entry.factory
        torch.manual_seed(entry.seed)
        model = build_model(arch, None)
        shape = entry.input_shape or zoo_input_shape(arch)
        if entry.train_epochs:
            _train_(model, entry, profile, shape)
    if entry.prune:
        magnitude_prune_(model, entry.prune, scope="layer")
    model = model.eval().to(profile.device)
    check_input(model, shape, profile.device)
    return LoadedModel(model, tuple(shape), kind="check", name=entry.name, source=entry.path)
