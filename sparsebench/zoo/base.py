"""The zoo registry: `@register_model` factories with the input shape each model expects."""

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """A zoo entry: the factory plus what the model expects as input."""

    name: str
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    dataset: str | None = None
    description: str = ""
    default_kwargs: dict = field(default_factory=dict)


MODELS: Registry[ModelSpec] = Registry("architecture", list_command="sparsebench models")


def register_model(
    name: str,
    input_shape: tuple[int, ...],
    dataset: str | None = None,
    description: str = "",
    **default_kwargs,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a factory under `name`; `input_shape` includes a batch dimension of 1."""
    return MODELS.decorator(
        name,
        lambda fn: ModelSpec(name, fn, tuple(input_shape), dataset, description, default_kwargs),
    )


def get_model_spec(name: str) -> ModelSpec:
    """The zoo entry for `name` (SparsebenchError for an unknown name)."""
    return MODELS.get(name)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the zoo model `name`; kwargs override the entry's defaults."""
    spec = MODELS.get(name)
    return spec.factory(**{**spec.default_kwargs, **kwargs})


def list_models(pattern: str = "*") -> list[str]:
    """Zoo names matching a shell-style wildcard."""
    return MODELS.names(pattern)
