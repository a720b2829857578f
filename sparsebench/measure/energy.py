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
After the idle window a short warm-up (at least one batch, WARMUP_S) runs outside both windows:
threads parked and clocks lowered by the idle wait would otherwise slow the first batches of
the window, and on a short window that time went into every batch's energy.

The window runs until both `min_seconds` (or the source's resolution, if longer) have passed
and `min_inferences` samples (batches x batch size, at least MIN_BATCHES batches) have run,
whichever comes later; a model so slow that this would take longer stops at MAX_WINDOW_S (or
`min_seconds`, if longer) after at least one batch, and the result's `warnings` says so.

With `latency_s` (the latency step's median seconds per call) the figure is cross-checked:
mJ = P_above_idle * t_window / batches, so it agrees with P_above_idle * latency_s (the
result's `implied_mj`) exactly when a batch took as long in the energy window as when it was
timed. When the two differ by more than DISAGREEMENT times either way, `warnings` explains it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from .._optional import is_available
from ..errors import SparsebenchError
from ..options import check_count, check_seconds
from ..results import EnergyResult
from .energy_backends import EnergyCounter, SourceUnavailable, nvml, rapl
from .energy_backends.codecarbon_estimate import CodecarbonCounter

MIN_BATCHES = 3
MIN_INFERENCES = 100  # samples (batches x batch size) the window holds at least
MAX_WINDOW_S = 30.0  # a window stops here (or at min_seconds, if longer) whatever it holds
WARMUP_S = 0.2  # warm-up between the idle and the active window: at least one batch
DISAGREEMENT = 2.0  # window energy vs latency x power, either way, before a warning
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
    *,
    min_inferences: int = MIN_INFERENCES,
    latency_s: float | None = None,
) -> EnergyResult:
    """Energy (mJ) of one `run_batch()` call on `device`, idle power subtracted.

    `sync()` waits for the batch to finish (a no-op on CPU). Idle power is measured over
    `idle_seconds`, then, after a short warm-up, batches run for at least `min_seconds` and
    at least `min_inferences` samples (batches x `batch_size`), whichever is longer, capped at
    MAX_WINDOW_S (see the module docstring); a source with a coarse counter lengthens both
    windows to its resolution. The figure is per batch, whatever its size.

    `latency_s`, the median seconds of one call from the latency step, cross-checks the
    figure: see `EnergyResult.implied_mj` and `warnings`.
    """
    if batch_size < 1:
        raise SparsebenchError(f"batch size must be at least 1, got {batch_size}")
    check_count("min_inferences", min_inferences, 0)
    if latency_s is not None:
        check_seconds("latency_s", latency_s)
    try:
        counter = open_counter(device)
    except SourceUnavailable as exc:
        return EnergyResult(None, "unavailable", unavailable_reason=str(exc), batch_size=batch_size)
    try:
        window = _Window(min_seconds, idle_seconds, batch_size, min_inferences)
        result = _measure(counter, run_batch, sync, window)
    except SourceUnavailable as exc:
        return EnergyResult(
            None, counter.method, unavailable_reason=str(exc), batch_size=batch_size
        )
    finally:
        counter.close()
    result.warnings += getattr(counter, "notes", [])
    if latency_s is not None:
        cross_check(result, latency_s)
    return result


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


@dataclass(frozen=True)
class _Window:
    """How long the idle and active windows run (see measure_energy)."""

    min_seconds: float
    idle_seconds: float
    batch_size: int
    min_inferences: int


def _measure(
    counter: EnergyCounter,
    run_batch: Callable[[], object],
    sync: Callable[[], object],
    window: _Window,
) -> EnergyResult:
    sync()
    idle_target = max(window.idle_seconds, counter.min_window_s)
    idle_j, idle_s, _ = _window(counter, lambda: _idle(idle_target))
    _warmup(run_batch, sync, WARMUP_S)
    active_target = max(window.min_seconds, counter.min_window_s)
    cap_s = max(active_target, MAX_WINDOW_S)
    active_j, active_s, batches = _window(
        counter,
        lambda: _batches(
            run_batch, sync, active_target, window.min_inferences, window.batch_size, cap_s
        ),
    )
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
        batch_size=window.batch_size,
        avg_power_w=active_w,
    )
    samples = batches * window.batch_size
    if samples < window.min_inferences or batches < MIN_BATCHES:
        result.warnings.append(
            f"the energy window stopped at its {cap_s:.0f} s cap after {batches} "
            f"{_plural(batches, 'batch', 'batches')} of {window.batch_size} ({samples} "
            f"{_plural(samples, 'sample', 'samples')}, fewer than the "
            f"{max(window.min_inferences, MIN_BATCHES * window.batch_size)} asked): a batch "
            f"takes {active_s / batches:.2f} s, so the energy averages only those"
        )
    if marginal_mj <= 0:
        result.mj_per_inference = None
        result.unavailable_reason = (
            f"power while running ({active_w:.2f} W) was not above idle ({idle_w:.2f} W): "
            "inference energy is below this source's noise"
        )
    return result


def cross_check(result: EnergyResult, latency_s: float) -> None:
    """Set `result.implied_mj` from `latency_s` (median seconds per call) and warn when it
    and `result.mj_per_inference` disagree by more than DISAGREEMENT times either way.

    Both are idle-subtracted and per call: window mJ = P_above_idle x t_window / batches and
    implied mJ = P_above_idle x latency_s, so they differ exactly as a batch's time in the
    energy window differs from the latency median. (P_avg x latency_s, idle included, would
    be larger by P_avg / P_above_idle even when the two agree: on a GPU idling at most of its
    running power, several times.)
    """
    mj = result.mj_per_inference
    if mj is None or result.avg_power_w is None or result.idle_power_w is None:
        return
    above_idle_w = result.avg_power_w - result.idle_power_w
    if above_idle_w <= 0 or not result.inferences or not result.window_s:
        return
    implied = above_idle_w * latency_s * 1e3
    result.implied_mj = implied
    factor = max(mj / implied, implied / mj)
    if factor <= DISAGREEMENT:
        return
    batch_s = result.window_s / result.inferences
    pace = "slower" if batch_s > latency_s else "faster"
    result.warnings.append(
        f"energy {mj:,.0f} mJ/inference disagrees with latency x power "
        f"({latency_s * 1e3:,.1f} ms x {above_idle_w:.1f} W above idle = {implied:,.0f} mJ; "
        f"{result.avg_power_w:.1f} W in all, {result.idle_power_w:.1f} W idle) by {factor:.1f}x: "
        f"the energy window ran {result.inferences} "
        f"{_plural(result.inferences, 'batch', 'batches')} of {result.batch_size} in "
        f"{result.window_s:.2f} s, {batch_s * 1e3:,.1f} ms each against the "
        f"{latency_s * 1e3:,.1f} ms latency median: the model ran {pace} while its energy was "
        "measured than while it was timed (other load on the machine, clock or thread changes, "
        "a cold start), and the energy figure carries the window's time"
    )


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _window(counter: EnergyCounter, body: Callable[[], int]) -> tuple[float, float, int]:
    """Joules and seconds that `body` took by `counter`, and the count `body` returns."""
    start, began = counter.read(), _clock()
    count = body()
    end, ended = counter.read(), _clock()
    return counter.joules_between(start, end), ended - began, count


def _idle(seconds: float) -> int:
    _sleep(seconds)
    return 0


def _warmup(run_batch: Callable[[], object], sync: Callable[[], object], seconds: float) -> int:
    """Batches outside both windows, at least one, until `seconds` have passed."""
    count, start = 0, _clock()
    while count < 1 or _clock() - start < seconds:
        run_batch()
        sync()
        count += 1
    return count


def _batches(
    run_batch: Callable[[], object],
    sync: Callable[[], object],
    seconds: float,
    min_samples: int,
    batch_size: int,
    cap_s: float,
) -> int:
    """Run batches until `seconds` and `min_samples` (and MIN_BATCHES) are both reached, or,
    after at least one batch, until `cap_s` has passed; the count of batches run."""
    count, start = 0, _clock()
    while True:
        elapsed = _clock() - start
        if count and elapsed >= cap_s:
            return count
        enough = count >= MIN_BATCHES and count * batch_size >= min_samples
        if enough and elapsed >= seconds:
            return count
        run_batch()
        sync()
        count += 1
