"""Checks of numeric options, shared by the config dataclasses.

Each config validates itself in `__post_init__` with these helpers, so the command line and
Python callers get the same one-line `SparsebenchError` before anything is loaded or timed.
`name` is what the user typed (a flag such as `--min-seconds`, or a profile key); `rule`
replaces the default wording where a config states several limits in one sentence.
"""

from __future__ import annotations

import math
import operator

from .errors import SparsebenchError

_COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fail(name: str, value: object, requirement: str, rule: str | None):
    if rule:
        raise SparsebenchError(f"{rule} (got {name} {value!r})")
    raise SparsebenchError(f"{name} must be {requirement} (got {value!r})")


def check_seconds(
    name: str, value: float, *, allow_zero: bool = False, rule: str | None = None
) -> float:
    """A duration: finite seconds > 0 (>= 0 with `allow_zero`, where 0 means 'no minimum')."""
    bound = ">= 0" if allow_zero else "> 0"
    ok = _is_number(value) and math.isfinite(value) and (value > 0 or allow_zero and value == 0)
    if not ok:
        _fail(name, value, f"{bound} seconds and finite", rule)
    return float(value)


def check_count(name: str, value: int, minimum: int = 1, *, rule: str | None = None) -> int:
    """A whole number >= `minimum` (iterations, rounds, batch sizes, epochs)."""
    if not isinstance(value, int) or isinstance(value, bool):
        _fail(name, value, f"an integer >= {minimum}", rule)
    if value < minimum:
        _fail(name, value, f">= {minimum}", rule)
    return value


def check_number(
    name: str,
    value: float,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    rule: str | None = None,
) -> float:
    """A finite number, optionally > `above`, >= `at_least` and < `below`; returned as float."""
    limits = [(op, limit) for op, limit in ((">", above), (">=", at_least), ("<", below))
              if limit is not None]  # fmt: skip
    ok = _is_number(value) and math.isfinite(value)
    if not (ok and all(_COMPARE[op](value, limit) for op, limit in limits)):
        parts = [f"{op} {limit:g}" for op, limit in limits]
        if below is None:
            parts.append("finite")
        _fail(name, value, " and ".join(parts) if limits else "a finite number", rule)
    return float(value)


def check_optional_count(name: str, value: int | None, minimum: int = 1) -> int | None:
    """None (not given) or a whole number >= `minimum`, e.g. an optional --batch-size."""
    return None if value is None else check_count(name, value, minimum)
