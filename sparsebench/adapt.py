"""Adapt a model to the pipeline's calling convention: positional tensors in, one tensor out.

Hugging Face models take keyword inputs (`input_ids=...`) and return a `ModelOutput`; other
models return tuples or dicts. `adapt` swaps the model's class for a subclass whose `forward`
maps positional tensors to the input names and picks one output (`select_output`: the
`--output-key`, else `logits`, else the first tensor), so parameter names, `state_dict` keys
and submodules stay exactly the model's own: exporters, torch-pruning and ONNX export see
the original module tree. A `torch.fx.GraphModule` (a `torch.export` program's module) is
wrapped instead, since its class is made per instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .errors import SparsebenchError


def select_output(output, key: str | None = None) -> torch.Tensor:
    """The tensor a model's output stands for: `key` in a dict/ModelOutput (an index in a
    tuple), else `logits`, else the first tensor."""
    if isinstance(output, torch.Tensor):
        if key is not None and key not in ("0", "logits"):
            raise SparsebenchError(f"--output-key {key}: the model returns one tensor, not a dict")
        return output
    if isinstance(output, Mapping):
        tensors = {k: v for k, v in output.items() if isinstance(v, torch.Tensor)}
        if key is not None:
            if key not in tensors:
                raise SparsebenchError(
                    f"--output-key {key}: the model's outputs are {', '.join(map(str, tensors))}"
                )
            return tensors[key]
        if "logits" in tensors:
            return tensors["logits"]
        if tensors:
            return next(iter(tensors.values()))
    elif isinstance(output, Sequence) and not isinstance(output, str):
        if key is not None:
            if not key.isdigit() or int(key) >= len(output):
                raise SparsebenchError(
                    f"--output-key {key}: the model returns a {len(output)}-tuple; use 0-"
                    f"{len(output) - 1}"
                )
            output = output[int(key)]
            if isinstance(output, torch.Tensor):
                return output
        else:
            for item in output:
                if isinstance(item, torch.Tensor):
                    return item
    raise SparsebenchError(
        f"the model returns a {type(output).__name__}; sparsebench measures models whose output "
        "is a tensor, or a tuple/dict of tensors (choose one with --output-key)"
    )


class _Adapted:
    """Mixin of adapted classes: the settings and the original class."""

    _sparsebench_base: type = nn.Module
    _sparsebench_names: tuple[str, ...] | None = None
    _sparsebench_output_key: str | None = None

    def forward(self, *tensors):
        base = self._sparsebench_base
        names = self._sparsebench_names
        if names is not None:
            if len(tensors) != len(names):
                raise SparsebenchError(f"the model takes {len(names)} inputs ({', '.join(names)})")
            output = base.forward(self, **dict(zip(names, tensors, strict=True)))
        else:
            output = base.forward(self, *tensors)
        return select_output(output, self._sparsebench_output_key)


class AdaptedGraph(nn.Module):
    """A wrapper for modules whose class cannot be subclassed (fx graphs). A program traced
    with a static batch (`fixed_batch`) is run on other batch sizes chunk by chunk, the last
    chunk padded with copies of its last sample (so verification can use more samples)."""

    def __init__(self, inner: nn.Module, names, output_key, fixed_batch: int | None = None):
        super().__init__()
        self.inner = inner
        self.names = tuple(names) if names is not None else None
        self.output_key = output_key
        self.fixed_batch = fixed_batch

    def forward(self, *tensors):
        size = self.fixed_batch
        if not size or not tensors or tensors[0].shape[0] == size:
            return self._run(tensors)
        count = tensors[0].shape[0]
        outputs = []
        for start in range(0, count, size):
            chunk = [t[start : start + size] for t in tensors]
            short = size - chunk[0].shape[0]
            if short:
                chunk = [torch.cat([c, c[-1:].expand(short, *c.shape[1:])]) for c in chunk]
            outputs.append(self._run(chunk))
        return torch.cat(outputs)[:count]

    def train(self, mode: bool = True):
        """A captured program keeps the mode it was exported in (its module refuses train())."""
        self.training = mode
        return self

    def _run(self, tensors):
        if self.names is not None:
            output = self.inner(**dict(zip(self.names, tensors, strict=True)))
        else:
            output = self.inner(*tensors)
        return select_output(output, self.output_key)


def base_class(model: nn.Module) -> type:
    return getattr(type(model), "_sparsebench_base", type(model))


def adapt(
    model: nn.Module, names: Sequence[str] | None = None, output_key: str | None = None
) -> nn.Module:
    """`model` taking positional tensors (passed as keywords `names` when given) and returning
    the output `select_output` picks. Adapting again replaces the earlier settings."""
    if isinstance(model, torch.fx.GraphModule):
        return AdaptedGraph(model, names, output_key)
    if isinstance(model, AdaptedGraph):
        return AdaptedGraph(model.inner, names, output_key, model.fixed_batch)
    base = base_class(model)
    attributes = {
        "_sparsebench_base": base,
        "_sparsebench_names": tuple(names) if names is not None else None,
        "_sparsebench_output_key": output_key,
        "__module__": base.__module__,
    }
    model.__class__ = type(base.__name__, (_Adapted, base), attributes)
    return model


def is_adapted(model: nn.Module) -> bool:
    return isinstance(model, _Adapted | AdaptedGraph)


def adapted_settings(model: nn.Module) -> tuple[tuple[str, ...] | None, str | None]:
    """The input names (None: positional) and output key an adapted model was given."""
    if isinstance(model, AdaptedGraph):
        return model.names, model.output_key
    return (
        getattr(type(model), "_sparsebench_names", None),
        getattr(type(model), "_sparsebench_output_key", None),
    )
