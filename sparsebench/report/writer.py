"""Write a report by file suffix (.md, .json, .csv), atomically; read a JSON report back."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import SparsebenchError
from ..io import atomic_write_text, check_writable
from ..results import Report
from .csv_table import render_csv
from .markdown import render_markdown

RENDERERS = {
    ".md": render_markdown,
    ".json": lambda report: json.dumps(report.to_dict(), indent=2) + "\n",
    ".csv": render_csv,
}


def check_output(path: str | Path, force: bool = False) -> Path:
    """Validate an output path before any measuring starts (suffix, existence, directory)."""
    path = Path(path)
    if path.suffix.lower() not in RENDERERS:
        raise SparsebenchError(f"unknown report type '{path.suffix}': use .md, .json or .csv")
    return check_writable(path, force)


def write_report(report: Report, path: str | Path, force: bool = False) -> Path:
    """Render `report` in the format named by the suffix of `path` and write it atomically."""
    path = check_output(path, force)
    return atomic_write_text(path, RENDERERS[path.suffix.lower()](report), force=force)


def read_report(path: str | Path) -> Report:
    """Load a JSON report written by sparsebench."""
    try:
        return Report.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SparsebenchError(f"cannot read report {path}: {exc}") from exc
