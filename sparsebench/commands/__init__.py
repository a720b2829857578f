"""CLI commands, one module per command group; importing them registers them on `cli.app`."""

from . import catalog, demo, profile, train  # noqa: F401
