"""Render a check: a rich table and summary lines for the terminal, markdown for CI."""

from __future__ import annotations

from rich.table import Table

from .decision import INCONCLUSIVE, PASS, REGRESSION, Finding
from .run import CheckResult

_HEADERS = ("model", "metric", "baseline", "current", "change", "interval", "threshold", "status")
_LABELS = {PASS: "ok", REGRESSION: "REGRESSION", INCONCLUSIVE: "INCONCLUSIVE"}
_STYLES = {REGRESSION: "bold red", INCONCLUSIVE: "yellow"}


def _status(finding: Finding) -> str:
    label = _LABELS[finding.status]
    if finding.first is None:
        return label
    if finding.first == REGRESSION and finding.status != REGRESSION:
        return f"{label} (regression not confirmed)"
    if finding.first == REGRESSION:
        return f"{label} (confirmed)"
    return f"{label} (on re-run)"


def _cells(finding: Finding) -> list[str]:
    return [finding.model, finding.metric, finding.baseline, finding.current, finding.change,
            finding.interval, finding.threshold, _status(finding)]  # fmt: skip


def decision_line(result: CheckResult) -> str:
    """One line: what was decided, and why for anything but a clean pass."""
    bad = [f.key for f in result.findings if f.status == result.status]
    if result.status == REGRESSION:
        return f"REGRESSION ({len(bad)}): " + ", ".join(bad)
    if result.status == INCONCLUSIVE:
        reasons = result.final_noise.reasons
        why = (
            "too noisy to detect the threshold (" + "; ".join(reasons) + ")"
            if reasons
            else "the interval straddles the threshold"
        )
        return f"INCONCLUSIVE ({len(bad)}): {why}: " + ", ".join(bad)
    return "pass: no regression"


def noise_line(result: CheckResult) -> str:
    return (
        f"timing: {result.noise.text()}; limit {result.noise_limit:.1%} (noise floor: the "
        f"reference against its own copy); threshold x{result.max_slowdown:g}, "
        f"{result.confidence:.0%} bootstrap intervals"
    )


def confirmation_line(result: CheckResult) -> str:
    if result.confirmation is None:
        return "confirmation: not needed (every latency entry passed)"
    return "confirmation: " + result.confirmation.text()


def result_table(result: CheckResult, title: str) -> Table:
    """All findings, regressions in red, inconclusive ones in yellow."""
    table = Table(title=title)
    for header in _HEADERS:
        table.add_column(header, justify="right" if header in ("baseline", "current") else "left")
    for finding in result.findings:
        table.add_row(*_cells(finding), style=_STYLES.get(finding.status))
    return table


def result_markdown(result: CheckResult, title: str) -> str:
    """A markdown section for $GITHUB_STEP_SUMMARY: decision, noise floor, confirmation, table."""
    lines = [f"## {title}", "", f"**{decision_line(result)}**", ""]
    lines += [f"- {noise_line(result)}", f"- {confirmation_line(result)}"]
    lines += [f"- warning: {warning}" for warning in result.warnings]
    lines += [f"- took {result.seconds:.0f} s", ""]
    lines += ["| " + " | ".join(_HEADERS) + " |", "|" + "---|" * len(_HEADERS)]
    lines += ["| " + " | ".join(_cells(f)) + " |" for f in result.findings]
    return "\n".join(lines) + "\n"
