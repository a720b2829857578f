"""Registered model factories: `create_model(name, **kwargs)`, `list_models(pattern)`.

Each family lives in its own module and registers its factories with `@register_model`.
"""

from .base import MODELS, ModelSpec, create_model, get_model_spec, list_models, register_model

__all__ = [
    "MODELS",
    "ModelSpec",
    "create_model",
    "get_model_spec",
    "list_models",
    "register_model",
]

from . import cnn1d, lenet, mlp, resnet, transformer, vgg  # noqa: E402,F401  (registers the zoo)
