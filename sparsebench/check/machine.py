"""Which CPU a baseline was recorded on, and whether this machine is the same kind.

Latency ratios to a reference transfer between machines of one CPU model, not between models
(another microarchitecture or instruction set changes model and reference by different
factors). A baseline records the identity below; a check on a different CPU warns and names
`--update-baseline` on that runner type, it does not fail.
"""

from __future__ import annotations

import platform
from typing import Any

# The instruction-set flags that change which kernels torch and ONNX Runtime dispatch to.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "asimd",
             "sve")  # fmt: skip
_FIELDS = {"vendor_id": "vendor", "cpu family": "family", "model": "model",
           "model name": "name", "stepping": "stepping"}  # fmt: skip


def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo as key: value (empty off Linux)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    if info:
                        break
                    continue
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_identity() -> dict[str, Any]:
    """Vendor, family/model/stepping, model name and the ISA flags this CPU has."""
    info = _cpuinfo()
    identity: dict[str, Any] = {field: info.get(key) for key, field in _FIELDS.items()}
    if identity["name"] is None:
        identity["name"] = platform.processor() or platform.machine()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    identity["isa"] = [flag for flag in ISA_FLAGS if flag in flags]
    identity["hypervisor"] = "hypervisor" in flags
    return identity


def _describe(identity: dict[str, Any]) -> str:
    parts = [str(identity.get("name") or "unknown CPU")]
    if identity.get("family") is not None:
        parts.append(f"family {identity.get('family')} model {identity.get('model')}")
    return ", ".join(parts)


def cpu_differences(baseline: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """What differs between the baseline's CPU and this one, one phrase each (empty: same)."""
    if not isinstance(baseline, dict):
        return ["the baseline does not record its CPU"]
    found = []
    keys = ("vendor", "family", "model", "name")
    same_chip = all(baseline.get(key) == current.get(key) for key in keys)
    if not same_chip:
        found.append(f"CPU {_describe(baseline)} -> {_describe(current)}")
    old, new = set(baseline.get("isa") or []), set(current.get("isa") or [])
    if old != new:
        gained, lost = sorted(new - old), sorted(old - new)
        change = [f"+{flag}" for flag in gained] + [f"-{flag}" for flag in lost]
        found.append("instruction sets " + " ".join(change))
    return found
