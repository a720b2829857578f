"""The child process of a CPU memory measurement: it builds and runs the model, nothing else.

Protocol over one pipe: the child sends ("loaded", info) after a warm-up forward, waits for
"go", runs forwards for the window and sends ("done", info); any failure is sent instead as
("error", "<Type>: <first line>"). Imports stay light: this module is what the child loads.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from time import perf_counter
from typing import Any

import torch

from ..errors import first_line

GO_TIMEOUT_S = 60.0  # how long a loaded child waits for the parent before giving up


def child_main(
    payload: bytes, threads: int | None, min_seconds: float, min_iterations: int, conn: Any
) -> None:
    """Child process: build, warm up, report "loaded", wait for "go", run, report "done"."""
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        model, inputs = pickle.loads(payload)()
        with torch.inference_mode():
            start = perf_counter()
            model(inputs)
            conn.send(("loaded", {"warmup_s": perf_counter() - start}))
            if not conn.poll(GO_TIMEOUT_S) or conn.recv() != "go":
                return
            hwm_reset = _reset_rss_high_water_mark()
            iterations, start = 0, perf_counter()
            while iterations < min_iterations or perf_counter() - start < min_seconds:
                model(inputs)
                iterations += 1
            window_s = perf_counter() - start
        done = {
            "iterations": iterations,
            "window_s": window_s,
            "threads": torch.get_num_threads(),
            "hwm_kb": _rss_high_water_mark_kb() if hwm_reset else None,
        }
        conn.send(("done", done))
    except BaseException as exc:  # reported to the parent, which raises it as one line
        try:
            conn.send(("error", first_line(exc, with_type=True)))
        except (OSError, ValueError):
            pass
    finally:
        conn.close()


def _reset_rss_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _rss_high_water_mark_kb() -> int | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else None
