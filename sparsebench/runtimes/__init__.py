"""Runtimes, one per file: eager torch (the default), onnxruntime, tensorrt."""

from . import onnxruntime, tensorrt, torch_eager  # noqa: F401,I001  (registers them)
from .base import (
    RUNTIMES,
    Runtime,
    RuntimeModule,
    get_runtime,
    register_runtime,
    runtime_for_file,
    static_figures,
)

__all__ = [
    "RUNTIMES",
    "Runtime",
    "RuntimeModule",
    "get_runtime",
    "register_runtime",
    "runtime_for_file",
    "static_figures",
]
