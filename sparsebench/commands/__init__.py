"""CLI commands, one module per command group; importing them registers them on `cli.app`."""

from . import catalog, demo, export, profile, train  # noqa: F401
