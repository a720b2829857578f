"""One line of advice from measured rows: what to deploy, and why the losers lost."""

from __future__ import annotations

from .results import CompareRow, percent_text, ratio_text


def _within_budget(row: CompareRow, max_acc_drop: float) -> bool:
    return row.delta_top1 is None or row.delta_top1 >= -max_acc_drop


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def verdict(row: CompareRow) -> str:
    """'faster', 'slower' or 'same' than dense, as the printed figures can show it.

    A speedup that prints as 1.00x, or whose [p10, p90] interval (as printed) includes 1, is
    'same': within the measurement's noise it is neither faster nor slower.
    """
    speedup, low, high = _round(row.speedup), _round(row.speedup_low), _round(row.speedup_high)
    if speedup is None or speedup == 1.0:
        return "same"
    if speedup > 1:
        return "faster" if low is None or low > 1 else "same"
    return "slower" if high is None or high < 1 else "same"


def _pick(rows: list[CompareRow], max_acc_drop: float) -> tuple[str, CompareRow | None]:
    candidates = [r for r in rows if r.measured and _within_budget(r, max_acc_drop)]
    best = max(candidates, key=lambda r: r.speedup, default=None)
    if best is None:
        return f"{rows[0].model}: nothing measured", None
    if best.format == "dense" or _round(best.speedup) <= 1:
        return f"{best.model}: keep dense (no variant was faster)", None
    text = (
        f"{best.model}: use {best.format}/{best.runtime} "
        f"({ratio_text(best.speedup)}x [{ratio_text(best.speedup_low)}, "
        f"{ratio_text(best.speedup_high)}] over dense"
    )
    if best.delta_top1 is None:
        text += ", accuracy unknown without --data)"
    else:
        text += f", Δtop-1 {best.delta_top1:+.2f} points within {max_acc_drop:g})"
    if verdict(best) != "faster":
        text += ", but its p10 is <= 1x: not clearly faster on this noisy run"
    return text, best


def _no_gain(row: CompareRow) -> str:
    """How a variant that did not beat dense compares with it."""
    sparsity = "?" if row.sparsity_pct is None else percent_text(row.sparsity_pct)
    where = f"at {sparsity}% sparsity, batch {row.batch_size}"
    name = f"{row.format}/{row.runtime}"
    if verdict(row) == "slower":
        return f"{name} slower than dense ({ratio_text(row.speedup)}x) {where}"
    if _round(row.speedup) == 1:
        return f"{name} about as fast as dense (1.00x) {where}"
    interval = ""
    if row.speedup_low is not None and row.speedup_high is not None:
        low, high = ratio_text(row.speedup_low), ratio_text(row.speedup_high)
        interval = f", [{low}, {high}] includes 1x"
    return f"{name} no faster than dense ({ratio_text(row.speedup)}x{interval}) {where}"


def _losers(rows: list[CompareRow], picked: CompareRow | None) -> list[str]:
    return [
        _no_gain(r)
        for r in rows
        if r.measured and r.format != "dense" and r is not picked and _round(r.speedup) <= 1
    ]


def advise(rows: list[CompareRow], max_acc_drop: float = 1.0) -> str:
    """The fastest variant of each checkpoint within `max_acc_drop` top-1 points of its dense
    baseline, then each format that did not beat dense with its measured speedup: "slower"
    only when the printed ratio and its whole [p10, p90] interval are below 1x, "about as fast"
    or "no faster" when the difference is within rounding or the run's noise."""
    parts = []
    for checkpoint in dict.fromkeys(r.checkpoint for r in rows):
        mine = [r for r in rows if r.checkpoint == checkpoint]
        pick, best = _pick(mine, max_acc_drop)
        losers = _losers(mine, best)
        parts.append(pick + ("; " + "; ".join(losers) if losers else ""))
    return " | ".join(parts)
