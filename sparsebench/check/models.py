"""Build a profile's models deterministically: seed, optional short training, pruning."""

from __future__ import annotations

import contextlib
import io

import torch

from .. import progress
from ..arch import build_model, zoo_input_shape
from ..artifact import load
from ..data import load_dataset
from ..errors import SparsebenchError
from ..load import LoadedModel, check_input
from ..prune import PruneData
from ..prune.base import run_method
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


def _prune_(model: torch.nn.Module, entry: ModelEntry, profile: CheckProfile, shape) -> None:
    """Prune with the entry's method (magnitude per layer unless it names another)."""
    data = None
    if entry.prune_needs_data:
        data = PruneData(load_dataset(profile.data, "train"), load_dataset(profile.data, "test"),
                         tuple(shape), epochs=entry.prune_epochs)  # fmt: skip
    example = torch.zeros((1, *tuple(shape)[1:]))
    quiet = progress.is_quiet()
    progress.set_quiet(True)  # training bars are not check output
    try:
        run_method(entry.pruning, model, entry.pruning_config(), data, example)
    finally:
        progress.set_quiet(quiet)


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
    if entry.prunes:
        _prune_(model, entry, profile, shape)
    model = model.eval().to(profile.device)
    check_input(model, shape, profile.device)
    return LoadedModel(model, tuple(shape), kind="check", name=entry.name, source=entry.path)
