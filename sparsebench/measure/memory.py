"""Peak and average memory while a model runs inference.

CPU: the model is built and run in a fresh child process (multiprocessing "spawn"), so the
process holds nothing but that model (and dies with this one, even if it is SIGKILLed: see
_memory_child); this process samples the child's resident set size.
RSS counts every page the child touched, the interpreter and torch's libraries included,
so ``baseline_mb`` (after loading and one warm-up forward, before the window) is reported
beside the peak, and ``peak_increase_mb`` / ``avg_increase_mb`` (peak and average minus that
baseline; ``details["peak_over_baseline_mb"]`` repeats the first) are what inference itself
added: two models whose absolute RSS is the interpreter and torch to the last digit still
differ there. ``details["hwm_peak_mb"]`` is the kernel's own RSS high-water mark over the
window (exact, no sampling), where readable.

CUDA: in this process, from torch's caching-allocator counters (tensors only), with NVML's
device-wide used memory alongside (every process on the GPU, the CUDA context and the
allocator's cached blocks).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import statistics
import threading
from collections.abc import Callable
from itertools import pairwise
from time import perf_counter, sleep
from typing import Any

import psutil
import torch

from ..errors import SparsebenchError
from ..inputs import call
from ..results import MB, MemoryResult
from . import _nvml
from ._memory_child import child_main

Build = Callable[[], tuple[torch.nn.Module, torch.Tensor]]

MIN_ITERATIONS = 3
BASELINE_SAMPLES = 5
LOAD_TIMEOUT_S = 600.0  # building may load a large checkpoint
RUN_SLACK_S = 60.0
FINISHED_GRACE_S = 5.0  # a child that sent "done" may take this long to exit; others get 0
TERMINATE_GRACE_S = 2.0  # then SIGTERM, and this long before SIGKILL


def measure_memory(
    build: Build,
    device: str = "cpu",
    min_seconds: float = 1.0,
    interval_s: float = 0.002,
    threads: int | None = None,
) -> MemoryResult:
    """Memory of repeated forwards of `build()`'s model on its inputs for at least `min_seconds`.

    `build` returns (model in eval mode, inputs); on CPU it must be picklable (a top-level
    function or a functools.partial of one) since it runs in a child process. `threads` sets
    torch's intra-op threads there. Memory is sampled every `interval_s`.
    """
    if device == "cpu":
        return _measure_cpu(build, min_seconds, interval_s, threads)
    if device.startswith("cuda"):
        return _measure_cuda(build, device, min_seconds, interval_s)
    raise SparsebenchError(f"cannot measure memory on device {device!r}: use 'cpu' or 'cuda[:N]'")


# --- CPU: an isolated child process, sampled from here -------------------------------------


def _measure_cpu(
    build: Build, min_seconds: float, interval_s: float, threads: int | None
) -> MemoryResult:
    payload = _pickled(build)
    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    args = (payload, threads, min_seconds, MIN_ITERATIONS, child_conn, os.getpid())
    proc = ctx.Process(target=child_main, args=args, name="sparsebench-memory", daemon=True)
    finished = False
    try:
        proc.start()
        child_conn.close()
        watched = psutil.Process(proc.pid)
        loaded, _, _ = _sample_until(conn, proc, watched, "loaded", LOAD_TIMEOUT_S, interval_s)
        baseline = statistics.median(_rss_samples(watched, BASELINE_SAMPLES, interval_s))
        conn.send("go")
        timeout = RUN_SLACK_S + 10 * (min_seconds + MIN_ITERATIONS * loaded["warmup_s"])
        done, rss, times = _sample_until(conn, proc, watched, "done", timeout, interval_s)
        finished = True
    finally:
        _reap(proc, FINISHED_GRACE_S if finished else 0.0)
        conn.close()
    return _cpu_result(baseline, rss, times, done, interval_s)


def _pickled(build: Build) -> bytes:
    try:
        return pickle.dumps(build)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise SparsebenchError(
            "memory measurement needs a picklable build function "
            f"(a top-level function or functools.partial of one): {exc}"
        ) from exc


def _sample_until(
    conn: Any,
    proc: Any,
    watched: psutil.Process,
    expected: str,
    timeout_s: float,
    interval_s: float,
) -> tuple[dict[str, Any], list[int], list[float]]:
    """Sample the child's RSS every `interval_s` until it sends `expected` (its payload)."""
    rss: list[int] = []
    times: list[float] = []
    start = next_at = perf_counter()
    while True:
        now = perf_counter()
        try:
            rss.append(watched.memory_info().rss)
            times.append(now)
        except psutil.Error:
            pass  # the child is exiting; the pipe says why
        next_at = max(next_at + interval_s, now)
        if conn.poll(max(0.0, next_at - perf_counter())):
            return _receive(conn, proc, expected), rss, times
        if not proc.is_alive() and not conn.poll():
            raise SparsebenchError(_died(proc, expected))
        if now - start > timeout_s:
            raise SparsebenchError(
                f"memory measurement child gave no '{expected}' in {timeout_s:.0f} s"
            )


def _receive(conn: Any, proc: Any, expected: str) -> dict[str, Any]:
    try:
        kind, body = conn.recv()
    except (EOFError, OSError) as exc:
        proc.join(1.0)
        raise SparsebenchError(_died(proc, expected)) from exc
    if kind == "error":
        raise SparsebenchError(f"memory measurement failed in the child process: {body}")
    if kind != expected:
        raise SparsebenchError(f"memory measurement child sent {kind!r}, expected {expected!r}")
    return body


def _died(proc: Any, expected: str) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        how = f"was killed by signal {-code}" + (" (out of memory?)" if -code == 9 else "")
    else:
        how = f"exited with code {code} (its stderr has the traceback)"
    return f"memory measurement child {how} before reporting '{expected}'"


def _rss_samples(watched: psutil.Process, count: int, interval_s: float) -> list[int]:
    samples = []
    for _ in range(count):
        samples.append(watched.memory_info().rss)
        sleep(interval_s)
    return samples


def _reap(proc: Any, grace_s: float) -> None:
    """Wait `grace_s` for the child, then terminate, then kill it: it never outlives this call."""
    if proc.pid is None:
        return  # never started
    try:
        proc.join(grace_s)
        if proc.is_alive():
            proc.terminate()
            proc.join(TERMINATE_GRACE_S)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(TERMINATE_GRACE_S)


def _cpu_result(
    baseline: float,
    rss: list[int],
    times: list[float],
    done: dict[str, Any],
    interval_s: float,
) -> MemoryResult:
    if not rss:
        raise SparsebenchError("no memory samples were taken during inference")
    peak = max(rss)
    gaps = [b - a for a, b in pairwise(times)]
    details: dict[str, Any] = {
        "peak_over_baseline_mb": (peak - baseline) / MB,
        "interval_ms": interval_s * 1e3,
        "achieved_interval_ms": statistics.fmean(gaps) * 1e3 if gaps else None,
        "max_gap_ms": max(gaps) * 1e3 if gaps else None,
        "window_s": done["window_s"],
        "iterations": done["iterations"],
        "threads": done["threads"],
        "hwm_peak_mb": done["hwm_kb"] * 1024 / MB if done["hwm_kb"] is not None else None,
    }
    avg = statistics.fmean(rss)
    return MemoryResult(
        peak_mb=peak / MB,
        avg_mb=avg / MB,
        baseline_mb=baseline / MB,
        method="rss-sampled-subprocess",
        samples=len(rss),
        details=details,
        peak_increase_mb=(peak - baseline) / MB,
        avg_increase_mb=(avg - baseline) / MB,
    )


# --- CUDA: allocator counters in this process, NVML device memory in a thread ---------------


def _measure_cuda(build: Build, device: str, min_seconds: float, interval_s: float) -> MemoryResult:
    if not torch.cuda.is_available():
        raise SparsebenchError(f"cannot measure memory on {device}: torch sees no CUDA device")
    model, inputs = build()
    model, inputs = model.to(device), inputs.to(device)
    nvml = _NvmlUsedSampler(device, interval_s)
    with torch.inference_mode():
        call(model, inputs)
        torch.cuda.synchronize(device)
        baseline = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        allocated: list[int] = []
        nvml.start()
        try:
            start = perf_counter()
            while len(allocated) < MIN_ITERATIONS or perf_counter() - start < min_seconds:
                call(model, inputs)
                allocated.append(torch.cuda.memory_allocated(device))
            torch.cuda.synchronize(device)
            window_s = perf_counter() - start
        finally:
            nvml.stop()
    peak, avg = torch.cuda.max_memory_allocated(device), statistics.fmean(allocated)
    details: dict[str, Any] = {
        "peak_over_baseline_mb": (peak - baseline) / MB,
        "window_s": window_s,
        "iterations": len(allocated),
        "interval_ms": interval_s * 1e3,
        **nvml.details(),
    }
    return MemoryResult(
        peak_mb=peak / MB,
        avg_mb=avg / MB,
        baseline_mb=baseline / MB,
        method="cuda-allocator+nvml",
        samples=len(allocated),
        details=details,
        peak_increase_mb=(peak - baseline) / MB,
        avg_increase_mb=(avg - baseline) / MB,
    )


class _NvmlUsedSampler:
    """Samples NVML's device-wide used memory in a background thread."""

    def __init__(self, device: str, interval_s: float):
        self.device = device
        self.interval_s = interval_s
        self.used: list[int] = []
        self.times: list[float] = []
        self.reason: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sparsebench-nvml", daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop.set()
        self._thread.join()

    def details(self) -> dict[str, Any]:
        """NVML peak and mean used memory (MB), or why NVML gave none."""
        if self.reason is not None or not self.used:
            return {"nvml_reason": self.reason or "NVML gave no samples"}
        gaps = [b - a for a, b in pairwise(self.times)]
        return {
            "nvml_peak_used_mb": max(self.used) / MB,
            "nvml_avg_used_mb": statistics.fmean(self.used) / MB,
            "nvml_samples": len(self.used),
            "nvml_achieved_interval_ms": statistics.fmean(gaps) * 1e3 if gaps else None,
        }

    def _run(self) -> None:
        try:
            pynvml, handle = _nvml.open_device(self.device)
        except Exception as exc:  # NVML missing, no driver, unmappable device
            self.reason = f"NVML unavailable: {exc}"
            return
        try:
            while not self._stop.is_set():
                self.used.append(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
                self.times.append(perf_counter())
                self._stop.wait(self.interval_s)
        except pynvml.NVMLError as exc:
            self.reason = f"NVML memory query failed: {exc}"
        finally:
            _nvml.close_device(pynvml)
