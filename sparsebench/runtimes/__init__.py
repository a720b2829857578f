"""Runtimes that execute exported models: eager torch (the default), onnxruntime, tensorrt."""

from .base import RuntimeModule

__all__ = ["RuntimeModule"]
