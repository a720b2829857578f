"""Exporters, one per file: dense, semi24 (2:4), csr, channels. `sparsebench.export` runs them."""

from . import channels, csr, dense, semi24  # noqa: E402,F401,I001  (registers the formats)
from .base import FORMATS, ExportConfig, Exporter, get_exporter, register_format

__all__ = ["FORMATS", "ExportConfig", "Exporter", "get_exporter", "register_format"]
