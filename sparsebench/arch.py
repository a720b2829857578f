"""Resolve an architecture (zoo name or `module:factory`) and fit a state_dict to it."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .errors import SparsebenchError, first_line
from .metadata import stored_bytes
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
    if arch == "hf":  # a transformers model from its config (hf.py): no code from the file
        from .hf import build

        model = build(kwargs)
    elif ":" in arch:
        factory = _import_factory(arch)
        try:
            model = factory(**kwargs)
        except Exception as exc:
            raise SparsebenchError(f"architecture '{arch}' failed to build: {exc}") from exc
    else:
        _check_zoo_kwargs(arch, kwargs)
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


def _check_zoo_kwargs(arch: str, kwargs: dict) -> None:
    """Name a keyword the zoo factory does not take, with the ones it does."""
    parameters = inspect.signature(get_model_spec(arch).factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = [name for name in kwargs if name not in parameters]
    if unknown:
        takes = ", ".join(parameters) or "none"
        raise SparsebenchError(
            f"bad --arch-kwargs (or checkpoint arch_kwargs) for '{arch}': it takes no "
            f"'{unknown[0]}' (its arguments: {takes})"
        )


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


SKELETON_SECONDS = 10.0  # building a weightless skeleton of a zoo model takes well under 1 s


class _TooSlow(BaseException):  # not an Exception: no handler in a factory may swallow it
    pass


@contextlib.contextmanager
def _time_limit(seconds: float, what: str):
    """Stop the block after `seconds` (main thread only, if SIGALRM is free) with one line."""
    usable = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM")
    if not usable or signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None):
        yield
        return

    def on_alarm(signum, frame):
        raise _TooSlow

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _TooSlow:
        raise SparsebenchError(f"{what} took over {seconds:.0f} s; refused") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def build_skeleton(arch: str, kwargs: dict | None) -> nn.Module:
    """`arch` built on the meta device (no memory for weights), within SKELETON_SECONDS.

    Keyword arguments read from a file (a huge `num_classes`, a `depth` of 10**9) can then
    neither allocate memory nor loop for long before the weights are known to fit.
    """
    described = repr(kwargs)
    described = described if len(described) <= 200 else described[:200] + "..."
    with _time_limit(SKELETON_SECONDS, f"building architecture '{arch}' with {described}"):
        with torch.device("meta"):
            return build_model(arch, kwargs)


MAX_GROWTH = 100  # a zoo model's weights may take this many times the bytes its file stores


def check_growth(skeleton: nn.Module, stored, label: str) -> None:
    """Refuse a skeleton whose weights would take far more bytes than the file really holds
    (so a 4 KB file of empty sparse tensors cannot make sparsebench allocate gigabytes)."""
    wanted = sum(t.numel() * t.element_size() for t in skeleton.state_dict().values())
    held = stored_bytes(stored)
    if wanted > MAX_GROWTH * max(held, 400_000):
        raise SparsebenchError(
            f"{label}: its architecture arguments build {wanted:,} bytes of weights for "
            f"{held:,} stored; refused"
        )


def build_for_state(arch: str, kwargs: dict | None, state: dict, label: str) -> nn.Module:
    """Build `arch` and load `state`; a zoo architecture is first fitted on a weightless
    skeleton (code the user named runs once, as written)."""
    if not is_code_arch(arch):
        skeleton = build_skeleton(arch, kwargs)
        check_growth(skeleton, state.values(), label)
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
