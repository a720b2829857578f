"""GPU energy from NVML: the board's energy counter (Volta+), else integrated power samples.

Both cover the whole board (every process on the GPU), so the idle power measured before the
window is what makes the figure per inference.
"""

from __future__ import annotations

import threading
from time import perf_counter
from typing import Any

from .. import _nvml
from . import SourceUnavailable

POWER_SAMPLE_S = 0.01


def open_counter(device: str) -> NvmlEnergyCounter | NvmlPowerIntegrator:
    """The best NVML source for `device`: the energy counter, else power sampling."""
    try:
        pynvml, handle = _nvml.open_device(device)
    except Exception as exc:  # pynvml missing, no driver, unmappable device
        raise SourceUnavailable(f"NVML unavailable for {device}: {exc}") from exc
    try:
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        return NvmlEnergyCounter(pynvml, handle)
    except pynvml.NVMLError as counter_error:
        try:
            pynvml.nvmlDeviceGetPowerUsage(handle)
        except pynvml.NVMLError as power_error:
            _nvml.close_device(pynvml)
            raise SourceUnavailable(
                f"NVML reports neither energy ({counter_error}) nor power ({power_error})"
            ) from power_error
        return NvmlPowerIntegrator(pynvml, handle)


class NvmlEnergyCounter:
    """nvmlDeviceGetTotalEnergyConsumption: millijoules since the driver loaded."""

    method = "nvml-energy-counter"
    is_estimate = False
    min_window_s = 1.0  # the counter advances in coarse steps

    def __init__(self, pynvml: Any, handle: Any):
        self.pynvml = pynvml
        self.handle = handle

    def read(self) -> int:
        """The counter now (mJ)."""
        try:
            return self.pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except self.pynvml.NVMLError as exc:
            raise SourceUnavailable(f"NVML energy read failed: {exc}") from exc

    def joules_between(self, start: int, end: int) -> float:
        """Joules between two readings."""
        return (end - start) / 1e3

    def close(self) -> None:
        """Release NVML."""
        _nvml.close_device(self.pynvml)


class NvmlPowerIntegrator:
    """nvmlDeviceGetPowerUsage sampled in a thread and integrated (trapezoids) into joules."""

    method = "nvml-power-sampling"
    is_estimate = False
    min_window_s = 1.0  # board power is itself averaged over tens of milliseconds

    def __init__(self, pynvml: Any, handle: Any, interval_s: float | None = None):
        self.pynvml = pynvml
        self.handle = handle
        self.interval_s = POWER_SAMPLE_S if interval_s is None else interval_s
        self.error: str | None = None
        self._joules = 0.0
        self._last = (perf_counter(), self._watts())
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sparsebench-power", daemon=True)
        self._thread.start()

    def read(self) -> float:
        """Joules integrated since this source opened, up to now."""
        if self.error is not None:
            raise SourceUnavailable(self.error)
        self._sample()
        with self._lock:
            return self._joules

    def joules_between(self, start: float, end: float) -> float:
        """Joules between two readings."""
        return end - start

    def close(self) -> None:
        """Stop sampling and release NVML."""
        self._stop.set()
        self._thread.join()
        _nvml.close_device(self.pynvml)

    def _watts(self) -> float:
        return self.pynvml.nvmlDeviceGetPowerUsage(self.handle) / 1e3

    def _sample(self) -> None:
        with self._lock:
            now, watts = perf_counter(), self._watts()
            then, before = self._last
            self._joules += (now - then) * (watts + before) / 2
            self._last = (now, watts)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except self.pynvml.NVMLError as exc:
                self.error = f"NVML power read failed: {exc}"
                return
