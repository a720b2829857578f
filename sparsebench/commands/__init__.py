"""CLI commands, one module per command group; importing them registers them on `cli.app`."""

from . import bench, catalog, check, compare, demo, export, profile, train  # noqa: F401
