"""Progress of the steps that can take more than a few seconds: one helper for every command.

`step("verifying csr on 64 samples")` shows a spinner with the step's name on a terminal
(stderr) and, once done, one dim line with its duration if it took a second or more. When
stderr is not a terminal (CI logs, pipes) there is one line per step that took a second or
more, when it ends, and a line when a step has been running for STILL_RUNNING_S (so a long
step is never silent); quick steps print nothing, so a quick error stays its one line.
`set_quiet(True)` (the CLI's `--quiet`) silences it all. Only stderr is written, so tables
and JSON on stdout stay clean.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

_state = {"quiet": False, "depth": 0, "console": None}
REPORT_AFTER_S = 1.0  # steps shorter than this print nothing
STILL_RUNNING_S = 10.0  # a step running this long is named while it runs (not a terminal)


def set_quiet(flag: bool) -> None:
    """Silence (or restore) progress output for this process."""
    _state["quiet"] = bool(flag)


def is_quiet() -> bool:
    return _state["quiet"]


def _console():
    if _state["console"] is None:
        from rich.console import Console

        _state["console"] = Console(stderr=True, highlight=False)
    return _state["console"]


@contextlib.contextmanager
def step(label: str) -> Iterator[None]:
    """Report `label` while the block runs (see the module docstring)."""
    if _state["quiet"]:
        yield
        return
    indent = "  " * _state["depth"]
    started = time.perf_counter()
    _state["depth"] += 1
    try:
        if sys.stderr.isatty() and _state["depth"] == 1:
            with _console().status(f"{label}...", spinner="dots"):
                yield
            seconds = time.perf_counter() - started
            if seconds >= REPORT_AFTER_S:
                _console().print(f"[dim]{label}: {seconds:.1f} s[/dim]")
        else:
            yield from _plain(label, indent, started)
    finally:
        _state["depth"] -= 1


def _plain(label: str, indent: str, started: float) -> Iterator[None]:
    """The non-terminal form: a line while a long step runs and one when it ends."""
    timer = threading.Timer(STILL_RUNNING_S, _line, (f"{indent}{label}...",))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
    seconds = time.perf_counter() - started
    if seconds >= REPORT_AFTER_S:
        _line(f"{indent}{label}: {seconds:.1f} s")


def _line(text: str) -> None:
    if not _state["quiet"]:
        print(text, file=sys.stderr, flush=True)
