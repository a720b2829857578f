"""Intel RAPL package energy from sysfs powercap (also AMD Zen's RAPL on Linux 5.8+).

A package domain counts the energy of the whole CPU package, every process on it, not only
this one; the idle power measured just before the window is what makes it per inference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import SourceUnavailable

RAPL_ROOT = Path("/sys/class/powercap")
_TOP_LEVEL = re.compile(r"intel-rapl:\d+")


@dataclass(frozen=True)
class RaplDomain:
    """One package domain: its sysfs folder and the value its counter wraps at (µJ)."""

    path: Path
    name: str
    max_range_uj: int

    def energy_uj(self) -> int:
        """The counter now, in microjoules."""
        return int((self.path / "energy_uj").read_text())


def package_domains(root: Path | None = None) -> list[RaplDomain]:
    """The package domains under `root` (default RAPL_ROOT), readable or not."""
    root = RAPL_ROOT if root is None else Path(root)
    if not root.is_dir():
        return []
    domains = []
    for path in sorted(root.iterdir()):
        if not _TOP_LEVEL.fullmatch(path.name):
            continue
        try:
            name = (path / "name").read_text().strip()
            max_range = int((path / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            continue
        if name.startswith("package"):
            domains.append(RaplDomain(path, name, max_range))
    return domains


def unavailable_reason(root: Path | None = None) -> str | None:
    """Why RAPL package counters cannot be read under `root`, or None when they can."""
    root = RAPL_ROOT if root is None else Path(root)
    domains = package_domains(root)
    if not domains:
        return f"no RAPL package counters at {root}"
    try:
        for domain in domains:
            domain.energy_uj()
    except (OSError, ValueError) as exc:
        return (
            f"RAPL counters at {root} are not readable ({exc.__class__.__name__}; "
            "energy_uj is root-only on Linux 5.10+)"
        )
    return None


class RaplCounter:
    """Sum of the package domains' energy counters, wrap-around handled."""

    method = "rapl-package"
    is_estimate = False
    min_window_s = 0.1

    def __init__(self, root: Path | None = None):
        reason = unavailable_reason(root)
        if reason is not None:
            raise SourceUnavailable(reason)
        self.domains = package_domains(root)

    def read(self) -> list[int]:
        """Every package counter now (µJ)."""
        try:
            return [domain.energy_uj() for domain in self.domains]
        except (OSError, ValueError) as exc:
            raise SourceUnavailable(f"RAPL counter read failed: {exc}") from exc

    def joules_between(self, start: list[int], end: list[int]) -> float:
        """Joules over all packages; a counter that went down wrapped once at its range."""
        total_uj = 0
        for domain, before, after in zip(self.domains, start, end, strict=True):
            total_uj += after - before if after >= before else after + domain.max_range_uj - before
        return total_uj / 1e6

    def close(self) -> None:
        """Nothing to release."""
