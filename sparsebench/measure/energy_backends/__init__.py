"""Energy sources for measure_energy, each read as a cumulative counter around a time window."""

from __future__ import annotations

from typing import Any, Protocol


class SourceUnavailable(Exception):
    """This energy source cannot be used here; the message says why, in one line."""


class EnergyCounter(Protocol):
    """A cumulative energy reading: `read` twice, then `joules_between` the two readings."""

    method: str  # the label results carry, e.g. "rapl-package"
    is_estimate: bool  # modelled rather than measured by hardware
    min_window_s: float  # shortest window the source resolves

    def read(self) -> Any:
        """An opaque reading of the counter now."""

    def joules_between(self, start: Any, end: Any) -> float:
        """Energy in joules consumed between two readings."""

    def close(self) -> None:
        """Release the source (threads, library handles)."""
