"""One line of advice from measured rows: what to deploy, and why the losers lost."""

from __future__ import annotations

from .results import CompareRow


def _within_budget(row: CompareRow, max_acc_drop: float) -> bool:
    return row.delta_top1 is None or row.delta_top1 >= -max_acc_drop


def _pick(rows: list[CompareRow], max_acc_drop: float) -> str:
    candidates = [r for r in rows if r.measured and _within_budget(r, max_acc_drop)]
    best = max(candidates, key=lambda r: r.speedup, default=None)
    if best is None:
        return f"{rows[0].model}: nothing measured"
    if best.format == "dense":
        return f"{best.model}: keep dense (no variant was faster)"
    text = (
        f"{best.model}: use {best.format}/{best.runtime} "
        f"({best.speedup:.2f}x [{best.speedup_low:.2f}, {best.speedup_high:.2f}] over dense"
    )
    if best.delta_top1 is None:
        text += ", accuracy unknown without --data)"
    else:
        text += f", Δtop-1 {best.delta_top1:+.2f} points within {max_acc_drop:g})"
    if best.speedup_low <= 1:
        text += ", but its p10 is <= 1x: not clearly faster on this noisy run"
    return text


def _losers(rows: list[CompareRow]) -> list[str]:
    return [
        f"{r.format}/{r.runtime} slower than dense ({r.speedup:.2f}x) at "
        f"{r.sparsity_pct:.0f}% sparsity, batch {r.batch_size}"
        for r in rows
        if r.measured and r.format != "dense" and r.speedup < 1
    ]


def advise(rows: list[CompareRow], max_acc_drop: float = 1.0) -> str:
    """The fastest variant of each checkpoint within `max_acc_drop` top-1 points of its dense
    baseline, then each format that lost to dense with its measured speedup."""
    parts = []
    for checkpoint in dict.fromkeys(r.checkpoint for r in rows):
        mine = [r for r in rows if r.checkpoint == checkpoint]
        losers = _losers(mine)
        parts.append(_pick(mine, max_acc_drop) + ("; " + "; ".join(losers) if losers else ""))
    return " | ".join(parts)
