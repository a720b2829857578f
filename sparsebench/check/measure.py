"""Measure a profile: deterministic figures per model, interleaved latency ratios per batch."""

from __future__ import annotations

import functools
import statistics
from datetime import UTC, datetime
from typing import Any

import torch

from ..data import load_dataset
from ..data.synthetic import synthetic_inputs
from ..device import check_device
from ..environment import collect_environment
from ..measure.accuracy import measure_accuracy
from ..measure.interleaved import time_interleaved
from ..measure.macs import count_macs
from ..measure.size import state_dict_size_mb
from ..measure.sparsity import measure_sparsity
from ..measure.threads import fixed_threads
from ..results import MB, envelope
from .models import build_entry
from .profile import CheckProfile

SCHEMA = "sparsebench.check/v1"
REFERENCE = "reference"


def static_figures(loaded, dataset) -> dict[str, Any]:
    """Figures that do not depend on timing: state size, MACs, non-zeros, accuracy."""
    example = synthetic_inputs(loaded.input_shape).to(next(loaded.model.parameters()).device)
    macs = count_macs(loaded.model, example[:1])
    sparsity = measure_sparsity(loaded.model)
    figures = {
        "state_bytes": round(state_dict_size_mb(loaded.model) * MB),
        "macs_dense": macs.dense,
        "macs_effective": macs.effective,
        "nonzero_params": sparsity.nonzero_params,
        "sparsity_pct": sparsity.sparsity_pct,
        "accuracy_top1": None,
    }
    if dataset is not None:
        device = str(example.device)
        figures["accuracy_top1"] = measure_accuracy(
            loaded.model, dataset, loaded.input_shape, device
        ).top1
    return figures


def _reference(size: int, device: str):
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device)
    b = torch.randn(size, size, generator=generator).to(device)
    return functools.partial(torch.mm, a, b)


def _rounded(rounds: list[list[float]]) -> list[list[float]]:
    """Samples to 0.1 us, far below timer noise, to keep baseline files small."""
    return [[round(sample, 4) for sample in block] for block in rounds]


def round_ratios(rounds: list[list[float]], reference: list[list[float]]) -> list[float]:
    """Per-round median of a variant over the same round's median of the reference."""
    return [
        statistics.median(mine) / statistics.median(ref)
        for mine, ref in zip(rounds, reference, strict=True)
    ]


def measure_profile(profile: CheckProfile) -> dict[str, Any]:
    """Run the profile once; returns the baseline-shaped JSON dict (schema sparsebench.check/v1)."""
    device = check_device(profile.device)
    dataset = load_dataset(profile.data, "test") if profile.data else None
    with fixed_threads(profile.threads):
        built = {entry.name: build_entry(entry, profile) for entry in profile.models}
        return _measure_built(profile, device, built, dataset)


def _measure_built(profile, device, built, dataset) -> dict[str, Any]:
    with torch.inference_mode():
        models = {name: static_figures(loaded, dataset) for name, loaded in built.items()}
        variants = {REFERENCE: _reference(profile.reference_matmul, device)}
        for name, loaded in built.items():
            for batch in profile.batch_sizes:
                inputs = synthetic_inputs((batch, *loaded.input_shape[1:])).to(device)
                variants[f"{name}@{batch}"] = functools.partial(loaded.model, inputs)
        timing = profile.timing
        comparison = time_interleaved(variants, timing, device)
    reference = comparison.rounds[REFERENCE]
    for name, figures in models.items():
        figures["latency"] = {}
        for batch in profile.batch_sizes:
            rounds = comparison.rounds[f"{name}@{batch}"]
            figures["latency"][str(batch)] = {
                "ratios": round_ratios(rounds, reference),
                "samples_ms": _rounded(rounds),
            }
    settings = {
        "device": profile.device,
        "threads": profile.threads,
        "batch_sizes": list(profile.batch_sizes),
        "reference": f"matmul {profile.reference_matmul}x{profile.reference_matmul}",
        "rounds": timing.rounds,
        "block_seconds": timing.block_seconds,
        "data": profile.data,
    }
    return envelope(
        SCHEMA,
        collect_environment(device),
        settings,
        profile=profile.name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        reference_samples_ms=_rounded(reference),
        models=models,
    )
