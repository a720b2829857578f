"""Measure a profile: deterministic figures per model, interleaved latency ratios per batch.

Every round times the reference twice (copies A and B, half a round apart) and each (model,
batch) entry once, each for one short block, in an order that rotates from round to round. A
block's statistic is its fastest call; an entry's ratio for the round is its block minimum
over the mean of the round's two reference minima. Only quiet rounds (both reference minima
close to the run's fastest) are compared, and rounds are added until enough are quiet
(`decision.py` says why). A/B per quiet round is the reference measured against itself: its
spread is the run's noise floor.
"""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import torch

from ..device import check_device
from ..environment import collect_environment
from ..measure.accuracy import measure_accuracy
from ..measure.interleaved import time_interleaved
from ..measure.macs import count_macs
from ..measure.size import state_dict_size_mb
from ..measure.sparsity import measure_sparsity
from ..results import MB, envelope
from .decision import quiet_rounds
from .machine import cpu_identity
from .models import build_entry
from .profile import CheckProfile
from .reference import build_reference, describe

SCHEMA = "sparsebench.check/v2"
REFERENCE = "reference"
REFERENCE_B = "reference (copy B)"
EXTRA_ROUNDS = 5  # rounds added at a time while waiting for quiet ones


def static_figures(loaded, dataset) -> dict[str, Any]:
    """Figures that do not depend on timing: state size, MACs, non-zeros, accuracy."""
    device = next(loaded.model.parameters()).device
    example = loaded.synthetic(batch=1).to(device)
    macs = count_macs(loaded.model, example)
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
        figures["accuracy_top1"] = measure_accuracy(
            loaded.model, dataset, loaded.input_shape, str(device)
        ).top1
    return figures


def entry_key(name: str, batch: int | str) -> str:
    return f"{name}@{batch}"


def build_models(profile: CheckProfile) -> dict[str, Any]:
    """Every model of the profile, built (and trained, pruned) once, by name."""
    return {entry.name: build_entry(entry, profile) for entry in profile.models}


def _minima(rounds: list[list[float]]) -> list[float]:
    """Each block's fastest call, to 0.1 us (far below timer noise; keeps baselines small)."""
    return [round(min(block), 4) for block in rounds]


def time_entries(
    profile: CheckProfile,
    built: dict[str, Any],
    entries: list[tuple[str, int]],
    ceiling: float | None = None,
) -> dict[str, Any]:
    """Time `entries` ((model name, batch) pairs) interleaved with the reference: at least
    `timing.rounds` rounds, then more until that many are quiet or `timing.max_seconds` ran.

    Returns {"reference_minima_ms": [[a, b] per round], "quiet": [bool per round], "models":
    {name: {"latency": {batch: {"ratios" (quiet rounds), "minima_ms" (all rounds)}}}}}
    (torch threads are the caller's to fix). `ceiling`: the most a quiet round's reference
    may take (ms), from the baseline (see `quiet_rounds`)."""
    from ..inputs import call

    device = profile.device
    reference = build_reference(profile.reference, profile.reference_matmul, device)
    timed = {}
    for name, batch in entries:
        loaded = built[name]
        inputs = loaded.synthetic(batch=batch).to(device)
        timed[entry_key(name, batch)] = functools.partial(call, loaded.model, inputs)
    keys = list(timed)
    half = (len(keys) + 1) // 2
    variants = {REFERENCE: reference, **{k: timed[k] for k in keys[:half]}, REFERENCE_B: reference,
                **{k: timed[k] for k in keys[half:]}}  # fmt: skip
    minima: dict[str, list[float]] = {name: [] for name in variants}
    timing, wanted = profile.timing, profile.timing.rounds
    start = time.perf_counter()
    while True:
        with torch.inference_mode():
            comparison = time_interleaved(variants, timing, device, offset=len(minima[REFERENCE]))
        for name in variants:
            minima[name] += _minima(comparison.rounds[name])
        pairs = [list(pair) for pair in zip(minima[REFERENCE], minima[REFERENCE_B], strict=True)]
        quiet = quiet_rounds(pairs, ceiling=ceiling)
        if sum(quiet) >= wanted or time.perf_counter() - start >= timing.max_seconds:
            break
        timing = replace(timing, warmup=0, rounds=EXTRA_ROUNDS)
    models: dict[str, Any] = {}
    for name, batch in entries:
        mine = minima[entry_key(name, batch)]
        ratios = [m / ((a + b) / 2) for m, (a, b), q in zip(mine, pairs, quiet, strict=True) if q]
        ratios = [ratio for ratio in ratios if ratio > 0]  # a call under the timer's resolution
        models.setdefault(name, {"latency": {}})["latency"][str(batch)] = {
            "ratios": ratios,
            "minima_ms": mine,
        }
    return {"reference_minima_ms": pairs, "quiet": quiet, "models": models}


def all_entries(profile: CheckProfile) -> list[tuple[str, int]]:
    return [(entry.name, batch) for entry in profile.models for batch in profile.batch_sizes]


def settings(profile: CheckProfile) -> dict[str, Any]:
    timing = profile.timing
    return {
        "device": profile.device,
        "threads": profile.threads,
        "batch_sizes": list(profile.batch_sizes),
        "reference": describe(profile.reference, profile.reference_matmul),
        "block_statistic": "min",
        "rounds": timing.rounds,
        "block_seconds": timing.block_seconds,
        "block_iters": timing.block_iters,
        "data": profile.data,
    }


def measure_built(
    profile: CheckProfile, built: dict[str, Any], dataset, ceiling: float | None = None
) -> dict[str, Any]:
    """The baseline-shaped JSON dict (schema sparsebench.check/v2) of built models."""
    device = check_device(profile.device)
    with torch.inference_mode():
        models = {name: static_figures(loaded, dataset) for name, loaded in built.items()}
    timed = time_entries(profile, built, all_entries(profile), ceiling)
    for name, figures in models.items():
        figures["latency"] = timed["models"][name]["latency"]
    environment = collect_environment(device)
    environment["cpu_identity"] = cpu_identity()
    return envelope(
        SCHEMA,
        environment,
        settings(profile),
        profile=profile.name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        reference_minima_ms=timed["reference_minima_ms"],
        quiet=timed["quiet"],
        models=models,
    )
