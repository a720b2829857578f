"""Baseline files: the JSON a `--update-baseline` run writes and later checks read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import SparsebenchError
from ..io import atomic_write_text
from .measure import SCHEMA


def write_baseline(path: str | Path, measurement: dict[str, Any]) -> Path:
    """Write (or replace) the baseline atomically."""
    text = json.dumps(measurement, separators=(",", ":")) + "\n"  # compact: raw samples are many
    return atomic_write_text(path, text, force=True)


def read_baseline(path: str | Path) -> dict[str, Any]:
    """Read a baseline, refusing a missing file, bad JSON or another schema in one line."""
    path = Path(path)
    if not path.is_file():
        raise SparsebenchError(
            f"no baseline at {path}: run with --update-baseline first to record one"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SparsebenchError(f"baseline {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SparsebenchError(
            f"baseline {path} is not a {SCHEMA} file; re-create it with --update-baseline"
        )
    if not isinstance(data.get("models"), dict):
        raise SparsebenchError(
            f"baseline {path} has no models; re-create it with --update-baseline"
        )
    return data
