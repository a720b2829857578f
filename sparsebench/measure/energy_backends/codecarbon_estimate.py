"""CPU energy estimated with codecarbon's power model, for machines with no readable counter.

Without RAPL, codecarbon models power rather than measuring it: the CPU as its TDP (4 W per
thread for a model it does not know) times this process's share of the machine's CPU time,
RAM as a constant. The result is labelled an estimate. codecarbon subtracts no idle power
itself; measure_energy does, from an idle window estimated the same way (which cancels the
RAM term).

codecarbon is asked only for that model (TDP, logical CPU count, RAM watts, PUE); this counter
integrates it over exactly the window measure_energy times: joules = PUE x (TDP x CPU-seconds
of this process and its children / logical CPUs + RAM watts x seconds). Its own task API is not
used for the figure, because it applies power samples taken on a different time base: a sample
every 1 s that starts each task with a 0 W reading and averages the samples unweighted (the
last one covering only the ragged tail of the window, a few ms at 10 ms CPU-time resolution),
or in 3.0.0-3.0.2 the load over the 0.5 s *after* the window. A window of a second or two was
then given a power that belonged to another interval: off by several times, either way.
Where codecarbon's model cannot be read (a codecarbon whose internals differ, or a CPU it does
not model by load), the task API is the fallback, and `notes` says so.

One OfflineEmissionsTracker per counter: no file, no network, no lock file, logging silenced
below ERROR. The first tracker in a process probes the hardware (about 1.5 s: it runs lscpu and
py-cpuinfo in subprocesses); later ones reuse codecarbon's cache.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from ..._optional import require
from ...errors import first_line
from . import SourceUnavailable

J_PER_KWH = 3.6e6
CPU_LOAD_MODE = "cpu_load"  # codecarbon's CPU mode that models power from load and TDP
TRACKER_OPTIONS = {
    "country_iso_code": "USA",  # fixed: only carbon intensity depends on it, never energy
    "log_level": "error",
    "tracking_mode": "process",
    "allow_multiple_runs": True,  # no lock file, no refusal beside another tracker
    "output_methods": [],  # write nothing (3.x; older versions take save_to_file=False)
}
TASK_FALLBACK_NOTE = (
    "codecarbon's power model could not be read, so its own task sampling was used: it samples "
    "power once a second, so windows of a few seconds are unreliable"
)
_clock = time.perf_counter  # module-level so tests can drive a fake clock


@dataclass(frozen=True)
class PowerModel:
    """codecarbon's process-mode model: CPU = TDP x this process's share of all logical CPUs,
    RAM = `ram_watts()` (codecarbon's figure for this process), both times the PUE."""

    tdp_w: float
    cpu_count: int
    ram_watts: Callable[[], float]
    pue: float = 1.0

    def joules(self, cpu_seconds: float, wall_seconds: float) -> float:
        """Energy of `cpu_seconds` of CPU time spread over `wall_seconds`."""
        cpu_j = self.tdp_w * max(cpu_seconds, 0.0) / self.cpu_count
        return self.pue * (cpu_j + self.ram_watts() * wall_seconds)


class CodecarbonCounter:
    """Cumulative joules (CPU + RAM) of codecarbon's model, integrated over each read."""

    method = "codecarbon-estimate"
    is_estimate = True
    min_window_s = 0.5

    def __init__(self) -> None:
        codecarbon = require("codecarbon", "energy", "CPU energy estimation without RAPL")
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        self.notes: list[str] = []
        try:
            tracker_class = codecarbon.OfflineEmissionsTracker
            self._tracker = tracker_class(**_options_for(tracker_class))
            self._tracker.start_task()  # the first task pays for the hardware probe
            self.model = power_model(self._tracker)
        except Exception as exc:
            detail = first_line(exc, with_type=True)
            raise SourceUnavailable(f"codecarbon could not start: {detail}") from exc
        self._joules = 0.0
        self._process = psutil.Process()
        if self.model is None:
            self.notes.append(TASK_FALLBACK_NOTE)
        else:
            self.close()  # the model is all that is needed: no task, no sampling thread
            self._last = self._now()

    @classmethod
    def from_model(cls, model: PowerModel, process: psutil.Process | None = None):
        """A counter on a given model, with no codecarbon (tests, or a model known already)."""
        counter = cls.__new__(cls)
        counter.notes, counter.model, counter._tracker = [], model, None
        counter._joules, counter._process = 0.0, process or psutil.Process()
        counter._last = counter._now()
        return counter

    def read(self) -> float:
        """Joules estimated since this source opened, up to now."""
        if self.model is None:
            return self._read_task()
        cpu_s, now = self._now()
        last_cpu_s, last = self._last
        self._joules += self.model.joules(cpu_s - last_cpu_s, now - last)
        self._last = (cpu_s, now)
        return self._joules

    def joules_between(self, start: float, end: float) -> float:
        """Joules between two readings."""
        return end - start

    def close(self) -> None:
        """End the running task (codecarbon stops its sampling thread with it)."""
        if self._tracker is None:
            return
        try:
            self._tracker.stop_task()
        except Exception:  # closing must not mask the measurement's own outcome
            pass
        self._tracker = None

    def _now(self) -> tuple[float, float]:
        return process_cpu_seconds(self._process), _clock()

    def _read_task(self) -> float:
        """The fallback: end the running codecarbon task, add its energy, start the next."""
        try:
            data = self._tracker.stop_task()
            if data is None:
                raise SourceUnavailable("codecarbon returned no data for its task")
            self._joules += (data.cpu_energy + data.ram_energy) * J_PER_KWH
            self._tracker.start_task()
        except SourceUnavailable:
            raise
        except Exception as exc:
            detail = first_line(exc, with_type=True)
            raise SourceUnavailable(f"codecarbon failed: {detail}") from exc
        return self._joules


def process_cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of `process` and its live children (as codecarbon counts)."""
    total = 0.0
    try:
        family = [process, *process.children(recursive=True)]
    except psutil.Error:
        family = [process]
    for member in family:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue  # a child that exited between the listing and the read
        total += times.user + times.system
    return total


def power_model(tracker: Any) -> PowerModel | None:
    """codecarbon's CPU-load model as `tracker` set it up, or None where it cannot be read.

    Reads the tracker's hardware objects (codecarbon 2.x-3.x: `_hardware`, and on the CPU
    `_mode`, `_tdp`, `_cpu_count`), so any other layout falls back to the task API.
    """
    hardware = getattr(tracker, "_hardware", None) or []
    cpus = [h for h in hardware if type(h).__name__ == "CPU"]
    if len(cpus) != 1 or getattr(cpus[0], "_mode", None) != CPU_LOAD_MODE:
        return None
    tdp, count = getattr(cpus[0], "_tdp", None), getattr(cpus[0], "_cpu_count", None)
    if not _positive(tdp) or not _positive(count):
        return None
    rams = [h for h in hardware if type(h).__name__ == "RAM" and hasattr(h, "total_power")]

    def ram_watts() -> float:
        return sum(ram.total_power().W for ram in rams)

    try:
        ram_watts()
    except Exception:  # a RAM model that does not answer: the task API it is
        return None
    pue = getattr(tracker, "_pue", 1.0)
    return PowerModel(float(tdp), int(count), ram_watts, float(pue) if _positive(pue) else 1.0)


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _options_for(tracker_class: type) -> dict[str, Any]:
    """TRACKER_OPTIONS as this codecarbon version accepts them."""
    accepted: set[str] = set()
    for klass in tracker_class.__mro__:
        if "__init__" in klass.__dict__:
            accepted |= set(inspect.signature(klass.__dict__["__init__"]).parameters)
    options = dict(TRACKER_OPTIONS)
    if "output_methods" not in accepted:
        options["save_to_file"] = False
    return {key: value for key, value in options.items() if key in accepted}
