"""The child process of a CPU memory measurement: it builds and runs the model, nothing else.

Protocol over one pipe: the child sends ("loaded", info) after a warm-up forward, waits for
"go", runs forwards for the window and sends ("done", info); any failure is sent instead as
("error", "<Type>: <first line>"). Imports stay light: this module is what the child loads.

The child dies with its parent, even one killed outright (SIGKILL): on Linux the kernel
sends it SIGKILL when the parent exits (prctl PR_SET_PDEATHSIG), and everywhere a daemon
thread polls the parent and exits the child once it is gone.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import re
import signal
import sys
import threading
from pathlib import Path
from time import perf_counter, sleep
from typing import Any

import psutil
import torch

from ..errors import first_line
from ..inputs import call

GO_TIMEOUT_S = 60.0  # how long a loaded child waits for the parent before giving up
PARENT_POLL_S = 0.5  # how often the watchdog thread checks that the parent still lives
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
ORPHANED_EXIT_CODE = 1


def child_main(
    payload: bytes,
    threads: int | None,
    min_seconds: float,
    min_iterations: int,
    conn: Any,
    parent_pid: int,
) -> None:
    """Child process: build, warm up, report "loaded", wait for "go", run, report "done".

    It first arranges to die with `parent_pid` (see `die_with_parent`).
    """
    die_with_parent(parent_pid)
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        model, inputs = pickle.loads(payload)()
        with torch.inference_mode():
            start = perf_counter()
            call(model, inputs)
            conn.send(("loaded", {"warmup_s": perf_counter() - start}))
            if not conn.poll(GO_TIMEOUT_S) or conn.recv() != "go":
                return
            hwm_reset = _reset_rss_high_water_mark()
            iterations, start = 0, perf_counter()
            while iterations < min_iterations or perf_counter() - start < min_seconds:
                call(model, inputs)
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


def die_with_parent(parent_pid: int) -> None:
    """Make this process exit when `parent_pid`, its parent, does; exit now if it already has.

    On Linux the kernel delivers SIGKILL when the parent goes (PR_SET_PDEATHSIG; strictly,
    when the parent's thread that started this process ends, and that thread is blocked
    waiting for this one). A daemon thread polling the parent backs it up everywhere.
    """
    _set_parent_death_signal(signal.SIGKILL)
    if not _parent_alive(parent_pid):  # it died before the death signal was armed
        os._exit(ORPHANED_EXIT_CODE)
    start_parent_watchdog(parent_pid)


def start_parent_watchdog(parent_pid: int, poll_s: float = PARENT_POLL_S) -> threading.Thread:
    """Start a daemon thread that ends this process (`os._exit`) once `parent_pid` is gone."""

    def watch() -> None:
        while _parent_alive(parent_pid):
            sleep(poll_s)
        os._exit(ORPHANED_EXIT_CODE)

    thread = threading.Thread(target=watch, name="sparsebench-parent-watchdog", daemon=True)
    thread.start()
    return thread


def _parent_alive(parent_pid: int) -> bool:
    # an orphan is re-parented (to init or a subreaper) at once, so getppid() tells on POSIX;
    # Windows keeps the original parent pid, so also ask whether that process still exists
    return os.getppid() == parent_pid and psutil.pid_exists(parent_pid)


def _set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send `signum` to this process when its parent exits (False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        prctl.restype = ctypes.c_int
        return prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


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
