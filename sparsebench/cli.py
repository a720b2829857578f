"""The `sparsebench` command line: thin commands that build a config and call the Python API.

The app and its shared flags live in `commands/shared.py`, one module per command beside it;
importing `commands` registers them all on `app`.
"""

from __future__ import annotations

from .commands import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="sparsebench")
