"""Resolve an architecture (zoo name or `module:factory`) and fit a state_dict to it."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .errors import SparsebenchError, first_line
from .zoo import MODELS, create_model, get_model_spec


def _import_factory(spec: str) -> Callable[..., nn.Module]:
    module_part, _, attr = spec.rpartition(":")
    if not module_part or not attr:
        raise SparsebenchError(f"architecture '{spec}' must look like package.module:factory")
    try:
        if module_part.endswith(".py"):
            path = Path(module_part)
            if not path.is_file():
                raise SparsebenchError(f"architecture file {path} does not exist")
            module_spec = importlib.util.spec_from_file_location(f"_sb_arch_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.append(os.getcwd())
            module = importlib.import_module(module_part)
    except SparsebenchError:
        raise
    except Exception as exc:  # user code: any import error is the user's to see
        raise SparsebenchError(f"cannot import '{module_part}': {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise SparsebenchError(f"'{module_part}' has no callable named '{attr}'")
    return factory


def build_model(arch: str, kwargs: dict | None = None) -> nn.Module:
    """Instantiate a zoo model or call an importable `module:factory` with `kwargs`."""
    kwargs = dict(kwargs or {})
    if ":" in arch:
        factory = _import_factory(arch)
        try:
            model = factory(**kwargs)
        except Exception as exc:
            raise SparsebenchError(f"architecture '{arch}' failed to build: {exc}") from exc
    else:
        try:
            model = create_model(arch, **kwargs)
        except SparsebenchError:
            raise
        except Exception as exc:  # a bad keyword or value: TypeError, RuntimeError, ...
            raise SparsebenchError(
                f"bad --arch-kwargs (or checkpoint arch_kwargs) for '{arch}': {first_line(exc)}"
            ) from exc
    if not isinstance(model, nn.Module):
        raise SparsebenchError(
            f"architecture '{arch}' returned {type(model).__name__}, not a Module"
        )
    return model


def zoo_input_shape(arch: str) -> tuple[int, ...] | None:
    """The zoo entry's input shape, or None for `module:factory` architectures."""
    return get_model_spec(arch).input_shape if arch in MODELS else None


def _strip_prefix(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict:
    prefix = "module."
    if state and all(k.startswith(prefix) for k in state) and not (state.keys() & model_keys):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def is_code_arch(arch: str) -> bool:
    """Whether `arch` names code to import (`module:factory`, `file.py:factory`), not the zoo."""
    return ":" in arch


def build_for_state(arch: str, kwargs: dict | None, state: dict, label: str) -> nn.Module:
    """Build `arch` and load `state`, checking the fit on a weightless copy first.

    The skeleton is built on the meta device, so keyword arguments read from a file (a huge
    `num_classes`, say) cannot make sparsebench allocate memory before the weights are known
    to fit the architecture.
    """
    with torch.device("meta"):
        skeleton = build_model(arch, kwargs)
    check_state_fits(skeleton, state, label)
    model = build_model(arch, kwargs)
    load_state_dict_strict(model, state, label)
    return model


def check_state_fits(model: nn.Module, state: dict[str, torch.Tensor], arch: str) -> dict:
    """`state` (a `module.` prefix stripped) if its keys, shapes and dtypes fit `model`."""
    expected = model.state_dict()
    state = _strip_prefix(state, set(expected))
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} (checkpoint {list(state[k].shape)} vs model {list(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    dtypes = [
        f"{k} ({state[k].dtype} vs model {v.dtype})"
        for k, v in expected.items()
        if k in state and _dtype_kind(state[k].dtype) != _dtype_kind(v.dtype)
    ]
    problems = []
    found = (("missing", missing), ("not in the model", unexpected), ("shape", shapes),
             ("dtype", dtypes))  # fmt: skip
    for label, items in found:
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    if problems:
        raise SparsebenchError(
            f"state_dict does not fit architecture '{arch}': {'; '.join(problems)}"
        )
    return state


def _dtype_kind(dtype: torch.dtype) -> str:
    if dtype.is_complex:
        return "complex"
    return "float" if dtype.is_floating_point else "integer"


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], arch: str) -> None:
    """Load `state` into `model`, or explain the first mismatched keys and shapes in one line."""
    state = check_state_fits(model, state, arch)
    try:
        model.load_state_dict(state)
    except Exception as exc:  # e.g. a sparse tensor where the layer holds a dense one
        raise SparsebenchError(f"state_dict does not fit '{arch}': {first_line(exc)}") from exc
