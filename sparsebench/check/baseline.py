"""Baseline files: the JSON a `--update-baseline` run writes and later checks read."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import SparsebenchError
from ..io import atomic_write_text
from .measure import SCHEMA


def write_baseline(path: str | Path, measurement: dict[str, Any]) -> Path:
    """Write (or replace) the baseline atomically (strict JSON: no NaN or Infinity)."""
    text = json.dumps(measurement, separators=(",", ":"), allow_nan=False) + "\n"
    return atomic_write_text(path, text, force=True)


def _number(value: Any, positive: bool = False) -> bool:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return ok and (value > 0 or not positive)


def _check_latency(name: str, latency: Any) -> str | None:
    if not isinstance(latency, dict):
        return f"models.{name}.latency is not an object"
    for batch, timed in latency.items():
        ratios = timed.get("ratios") if isinstance(timed, dict) else None
        if not isinstance(ratios, list) or not all(_number(r, positive=True) for r in ratios):
            return f"models.{name}.latency.{batch}.ratios is not a list of positive numbers"
    return None


def _check_model(name: str, figures: Any) -> str | None:
    """What is wrong with one model's figures (None: nothing)."""
    if not isinstance(figures, dict):
        return f"models.{name} is not an object"
    for key in ("state_bytes", "macs_dense", "macs_effective", "nonzero_params"):
        value = figures.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            return f"models.{name}.{key} is not an integer"
    if figures.get("accuracy_top1") is not None and not _number(figures["accuracy_top1"]):
        return f"models.{name}.accuracy_top1 is not a number"
    return _check_latency(name, figures.get("latency", {}))


def _check_reference(data: dict[str, Any]) -> str | None:
    pairs, quiet = data.get("reference_minima_ms", []), data.get("quiet")
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(_number(v, positive=True) for v in p)
        for p in pairs
    ):
        return "reference_minima_ms is not a list of [a, b] positive numbers"
    if quiet is not None and (
        not isinstance(quiet, list)
        or len(quiet) != len(pairs)
        or not all(isinstance(q, bool) for q in quiet)
    ):
        return "quiet is not a list of booleans, one per reference round"
    if not isinstance(data.get("environment", {}), dict):
        return "environment is not an object"
    return None


def check_baseline(data: dict[str, Any]) -> str | None:
    """What is wrong with a baseline's content (None: nothing), checked before it is used."""
    problem = _check_reference(data)
    for name, figures in data["models"].items():
        problem = problem or _check_model(name, figures)
    return problem


def read_baseline(path: str | Path) -> dict[str, Any]:
    """Read a baseline, refusing a missing file, bad JSON or another schema in one line."""
    path = Path(path)
    if not path.is_file():
        raise SparsebenchError(
            f"no baseline at {path}: run with --update-baseline first to record one"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise SparsebenchError(f"baseline {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SparsebenchError(
            f"baseline {path} is not a {SCHEMA} file; re-create it with --update-baseline"
        )
    if not isinstance(data.get("models"), dict):
        raise SparsebenchError(
            f"baseline {path} has no models; re-create it with --update-baseline"
        )
    problem = check_baseline(data)
    if problem:
        raise SparsebenchError(
            f"baseline {path} is corrupt: {problem}; re-create it with --update-baseline"
        )
    return data


def check_covers(data: dict[str, Any], models: list[str], batches: list[int], path) -> None:
    """Refuse, before anything is built, a baseline that lacks a model or batch size."""
    for name in models:
        base = data["models"].get(name)
        if base is None:
            raise SparsebenchError(
                f"baseline {path} has no model '{name}'; run with --update-baseline to record it"
            )
        for batch in batches:
            if str(batch) not in base.get("latency", {}):
                raise SparsebenchError(
                    f"baseline {path} has no latency for '{name}' at batch {batch}; "
                    "run --update-baseline"
                )
