"""Exporters, one per file: dense, semi24, csr, bitmask, channels, onnx, tensorrt.

`export` runs them.
"""

from . import bitmask, channels, csr, dense, onnx, semi24, tensorrt  # noqa: F401,I001  (registers them)
from .base import FORMATS, ExportConfig, Exporter, get_exporter, register_format

__all__ = ["FORMATS", "ExportConfig", "Exporter", "get_exporter", "register_format"]
