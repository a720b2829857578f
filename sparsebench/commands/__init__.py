"""CLI commands, one module per command group; importing them registers them on `app`."""

from . import bench, catalog, check, compare, demo, export, profile, reproduce, train  # noqa: F401
from .shared import app

__all__ = ["app"]
