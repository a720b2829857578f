"""Evidence that a format's sparse kernels actually ran, layer by layer, from torch.profiler.

Each converted layer's forward is wrapped in a `record_function` range; a layer counts as
sparse when an op (or CUDA kernel) below its range matches one of the exporter's
`kernel_evidence` name fragments. A converted layer without such an op silently fell back to
dense kernels: "I pruned it and nothing got faster".
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from contextlib import ExitStack, contextmanager

import torch
from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from ..inputs import call

LAYER_PREFIX = "sparsebench.layer:"


@contextmanager
def _quiet_native_stderr():
    """Silence the profiler's native start/stop lines (written to fd 2 by C++, not Python)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _matches(name: str, fragments: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(fragment.lower() in lowered for fragment in fragments)


def _descendants(event):
    for child in event.cpu_children:
        yield child
        yield from _descendants(child)


def _instrument(model: nn.Module, layers: list[str], stack: ExitStack) -> None:
    ranges: dict[str, list] = {}

    def enter(name):
        def hook(module, args):
            context = record_function(LAYER_PREFIX + name)
            context.__enter__()
            ranges.setdefault(name, []).append(context)

        return hook

    def leave(name):
        def hook(module, args, output):
            ranges[name].pop().__exit__(None, None, None)

        return hook

    for name in layers:
        module = model.get_submodule(name)
        stack.callback(module.register_forward_pre_hook(enter(name)).remove)
        stack.callback(module.register_forward_hook(leave(name)).remove)


def kernel_evidence(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: list[str],
    fragments: tuple[str, ...],
    device: str = "cpu",
) -> dict:
    """Profile one forward pass; report which converted `layers` ran a matching sparse op.

    Keys: `expected` (the fragments), `sparse_ops` (matching op name -> count),
    `converted_layers` (how many layers were converted), `sparse_layers` (how many of them ran a
    sparse op), `fallback_layers` (how many ran none), `fell_back_to_dense` (their names),
    `sparse_kernel_ran` (every converted layer did) and `any_sparse_kernel_ran` (at least one).
    """
    activities = [ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    with ExitStack() as stack:
        _instrument(model, layers, stack)
        with _quiet_native_stderr(), profile(activities=activities) as prof:
            with torch.inference_mode():
                call(model, inputs)
    events = list(prof.events())
    sparse_ops = Counter(
        e.name
        for e in events
        if not e.name.startswith(LAYER_PREFIX) and _matches(e.name, fragments)
    )
    per_layer = {}
    for event in events:
        if event.name.startswith(LAYER_PREFIX):
            name = event.name[len(LAYER_PREFIX) :]
            hit = any(_matches(child.name, fragments) for child in _descendants(event))
            per_layer[name] = per_layer.get(name, False) or hit
    fell_back = [name for name in layers if not per_layer.get(name, False)]
    return {
        "expected": list(fragments),
        "sparse_ops": dict(sparse_ops),
        "converted_layers": len(layers),
        "sparse_layers": len(layers) - len(fell_back),
        "fallback_layers": len(fell_back),
        "fell_back_to_dense": fell_back,
        "sparse_kernel_ran": bool(layers) and not fell_back,
        "any_sparse_kernel_ran": len(fell_back) < len(layers),
    }
