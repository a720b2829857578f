"""CPU energy estimated by codecarbon, for machines with no readable hardware counter.

Without RAPL, codecarbon models power rather than measuring it: the CPU as its TDP (4 W per
thread for a model it does not know) times this process's share of CPU time, RAM as a
constant. The result is labelled an estimate. codecarbon subtracts no idle power itself;
measure_energy does, from an idle window estimated the same way (which cancels the RAM term).

One OfflineEmissionsTracker per measurement, driven through its task API: no file, no network,
no lock file, logging silenced below ERROR. The first tracker in a process probes the hardware
(about 1.5 s: it runs lscpu and py-cpuinfo in subprocesses); later ones reuse codecarbon's cache.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from ..._optional import require
from ...errors import first_line
from . import SourceUnavailable

J_PER_KWH = 3.6e6
TRACKER_OPTIONS = {
    "country_iso_code": "USA",  # fixed: only carbon intensity depends on it, never energy
    "log_level": "error",
    "tracking_mode": "process",
    "allow_multiple_runs": True,  # no lock file, no refusal beside another tracker
    "output_methods": [],  # write nothing (3.x; older versions take save_to_file=False)
}


class CodecarbonCounter:
    """Cumulative joules (CPU + RAM) from back-to-back codecarbon tasks."""

    method = "codecarbon-estimate"
    is_estimate = True
    min_window_s = 0.5

    def __init__(self) -> None:
        codecarbon = require("codecarbon", "energy", "CPU energy estimation without RAPL")
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        try:
            tracker_class = codecarbon.OfflineEmissionsTracker
            self._tracker = tracker_class(**_options_for(tracker_class))
            self._tracker.start_task()  # the first task pays for the hardware probe
        except Exception as exc:
            detail = first_line(exc, with_type=True)
            raise SourceUnavailable(f"codecarbon could not start: {detail}") from exc
        self._joules = 0.0

    def read(self) -> float:
        """Joules estimated since this source opened: ends the running task, starts the next."""
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

    def joules_between(self, start: float, end: float) -> float:
        """Joules between two readings."""
        return end - start

    def close(self) -> None:
        """End the running task (codecarbon stops its sampling thread with it)."""
        try:
            self._tracker.stop_task()
        except Exception:  # closing must not mask the measurement's own outcome
            pass


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
