"""One way to fix torch's intra-op thread count for a measurement and put it back after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def fixed_threads(count: int | None) -> Iterator[int]:
    """Run the block with `count` torch threads (None keeps the current count), then restore.

    ONNX Runtime sessions opened inside take the same count (`runtimes/onnxruntime.py`), so
    every runtime of one measurement shares one thread budget instead of spinning against
    another pool.
    """
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
