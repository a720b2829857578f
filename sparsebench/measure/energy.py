"""Energy per inference: the idle-subtracted energy of a window of forward passes.

``mj_per_inference`` is per call of ``run_batch``, i.e. one forward pass of the whole batch
(divide by the batch size for energy per sample). It is the energy inference adds:

    mJ = (E_window - P_idle * t_window) / batches

where P_idle is measured by the same source over an idle window just before. Sources, best
first (``energy_source_for`` names the one a device would use):

- cuda: NVML's board energy counter, Volta and later (``nvml-energy-counter``), else NVML power
  samples integrated over time (``nvml-power-sampling``). The whole board, every process on it.
- cpu: RAPL package counters (``rapl-package``): the whole CPU package, every process on it.
  Without readable RAPL, codecarbon's model (``codecarbon-estimate``, ``is_estimate=True``),
  from the optional extra ``energy``.
- otherwise the result is unavailable, with the reason; never a made-up number.

Each batch is synchronised before the next starts, so the window holds complete forward passes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from .._optional import is_available
from ..errors import SparsebenchError
from ..results import EnergyResult
from .energy_backends import EnergyCounter, SourceUnavailable, nvml, rapl
from .energy_backends.codecarbon_estimate import CodecarbonCounter

MIN_BATCHES = 3
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")
_clock = time.perf_counter  # module-level so tests can drive a fake clock
_sleep = time.sleep


def measure_energy(
    run_batch: Callable[[], object],
    sync: Callable[[], object],
    device: str = "cpu",
    batch_size: int = 1,
    min_seconds: float = 1.0,
    idle_seconds: float = 0.5,
) -> EnergyResult:
    """Energy (mJ) of one `run_batch()` call on `device`, idle power subtracted.

    `sync()` waits for the batch to finish (a no-op on CPU). Idle power is measured over
    `idle_seconds`, then batches run for at least `min_seconds`; a source with a coarse
    counter lengthens both windows to its resolution. `batch_size` is recorded only as a
    check: the figure is per batch, whatever its size.
    """
    if batch_size < 1:
        raise SparsebenchError(f"batch size must be at least 1, got {batch_size}")
    try:
        counter = open_counter(device)
    except SourceUnavailable as exc:
        return EnergyResult(None, "unavailable", unavailable_reason=str(exc))
    try:
        return _measure(counter, run_batch, sync, min_seconds, idle_seconds)
    except SourceUnavailable as exc:
        return EnergyResult(None, counter.method, unavailable_reason=str(exc))
    finally:
        counter.close()


def energy_source_for(device: str) -> str:
    """The method measure_energy would use on `device`, or "unavailable: <reason>"."""
    _check_device(device)
    try:
        if device == "cpu":
            return _cpu_source().method
        counter = nvml.open_counter(device)
    except SourceUnavailable as exc:
        return f"unavailable: {exc}"
    counter.close()
    return counter.method


def open_counter(device: str) -> EnergyCounter:
    """Open the best energy source for `device`; SourceUnavailable says why there is none."""
    _check_device(device)
    if device == "cpu":
        return _cpu_source()()
    return nvml.open_counter(device)


def _check_device(device: str) -> None:
    if not _DEVICE.fullmatch(device):
        raise SparsebenchError(
            f"cannot measure energy on device {device!r}: use 'cpu' or 'cuda[:N]'"
        )


def _cpu_source() -> type[rapl.RaplCounter] | type[CodecarbonCounter]:
    reason = rapl.unavailable_reason()
    if reason is None:
        return rapl.RaplCounter
    if is_available("codecarbon"):
        return CodecarbonCounter
    raise SourceUnavailable(
        f"{reason} and codecarbon is not installed (pip install 'sparsebench[energy]')"
    )


def _measure(
    counter: EnergyCounter,
    run_batch: Callable[[], object],
    sync: Callable[[], object],
    min_seconds: float,
    idle_seconds: float,
) -> EnergyResult:
    sync()
    idle_target = max(idle_seconds, counter.min_window_s)
    idle_j, idle_s, _ = _window(counter, lambda: _idle(idle_target))
    active_target = max(min_seconds, counter.min_window_s)
    active_j, active_s, batches = _window(counter, lambda: _batches(run_batch, sync, active_target))
    idle_w, active_w = idle_j / idle_s, active_j / active_s
    marginal_mj = (active_j - idle_w * active_s) / batches * 1e3
    result = EnergyResult(
        mj_per_inference=marginal_mj,
        method=counter.method,
        idle_power_w=idle_w,
        active_power_w=active_w,
        window_s=active_s,
        inferences=batches,
        is_estimate=counter.is_estimate,
    )
    if marginal_mj <= 0:
        result.mj_per_inference = None
        result.unavailable_reason = (
            f"power while running ({active_w:.2f} W) was not above idle ({idle_w:.2f} W): "
            "inference energy is below this source's noise"
        )
    return result


def _window(counter: EnergyCounter, body: Callable[[], int]) -> tuple[float, float, int]:
    """Joules and seconds that `body` took by `counter`, and the count `body` returns."""
    start, began = counter.read(), _clock()
    count = body()
    end, ended = counter.read(), _clock()
    return counter.joules_between(start, end), ended - began, count


def _idle(seconds: float) -> int:
    _sleep(seconds)
    return 0


def _batches(run_batch: Callable[[], object], sync: Callable[[], object], seconds: float) -> int:
    count, start = 0, _clock()
    while count < MIN_BATCHES or _clock() - start < seconds:
        run_batch()
        sync()
        count += 1
    return count
