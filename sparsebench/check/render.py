"""Render check findings: a rich table for the terminal, markdown for CI step summaries."""

from __future__ import annotations

from rich.table import Table

from .decision import Finding

_HEADERS = ("model", "metric", "baseline", "current", "change", "p-value", "threshold", "status")


def _cells(finding: Finding) -> list[str]:
    p_value = "" if finding.p_value is None else f"{finding.p_value:.2g}"
    status = "REGRESSION" if finding.regressed else "ok"
    return [
        finding.model,
        finding.metric,
        finding.baseline,
        finding.current,
        finding.change,
        p_value,
        finding.threshold,
        status,
    ]


def findings_table(findings: list[Finding], title: str) -> Table:
    """All findings, regressions in red."""
    table = Table(title=title)
    for header in _HEADERS:
        table.add_column(header, justify="right" if header in ("baseline", "current") else "left")
    for finding in findings:
        table.add_row(*_cells(finding), style="bold red" if finding.regressed else None)
    return table


def findings_markdown(findings: list[Finding], title: str) -> str:
    """A markdown section: a one-line verdict and the findings table."""
    regressions = sum(f.regressed for f in findings)
    verdict = f"**{regressions} regression(s)**" if regressions else "**pass**"
    lines = [f"## {title}", "", verdict, "", "| " + " | ".join(_HEADERS) + " |"]
    lines.append("|" + "---|" * len(_HEADERS))
    lines += ["| " + " | ".join(_cells(f)) + " |" for f in findings]
    return "\n".join(lines) + "\n"
