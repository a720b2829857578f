"""`sparsebench check`: fail CI when latency (relative to an in-run reference) regresses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .shared import app, console, friendly_errors

REGRESSION_EXIT = 1
TABLE_WIDTH = 120  # CI logs are not terminals: keep rows on one line


def _append_summary(markdown: str) -> None:
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(markdown)


@app.command()
def check(
    profile: Annotated[Path, typer.Argument(help="Benchmark profile (.toml).")],
    update_baseline: Annotated[
        bool, typer.Option("--update-baseline", help="Measure and (re)write the baseline.")
    ] = False,
    baseline: Annotated[
        Path | None, typer.Option(help="Baseline JSON (default: NAME.baseline.json beside it).")
    ] = None,
) -> None:
    """Compare a profile's models with their baseline; exit 1 on a regression."""
    if _run_check(profile, update_baseline, baseline):
        raise typer.Exit(REGRESSION_EXIT)


@friendly_errors
def _run_check(profile: Path, update_baseline: bool, baseline: Path | None) -> bool:
    """Measure and compare (or record); True when something regressed."""
    from ..check import compare, load_profile, measure_profile, read_baseline, write_baseline
    from ..check.render import findings_markdown, findings_table
    from ..io import check_writable

    config = load_profile(profile)
    baseline_path = baseline or config.baseline_path
    if update_baseline:
        check_writable(baseline_path, force=True)
        measurement = measure_profile(config)
        write_baseline(baseline_path, measurement)
        console.print(f"wrote baseline {baseline_path}")
        return False
    recorded = read_baseline(baseline_path)
    findings = compare(recorded, measure_profile(config), config.thresholds)
    title = f"sparsebench check {config.name}"
    wide = Console(width=max(console.width, TABLE_WIDTH), highlight=False)
    wide.print(findings_table(findings, title))
    _append_summary(findings_markdown(findings, title))
    regressed = [f for f in findings if f.regressed]
    if regressed:
        names = ", ".join(sorted({f"{f.model} {f.metric}" for f in regressed}))
        console.print(f"[red]{len(regressed)} regression(s):[/red] {names}")
        return True
    console.print("[green]pass[/green]: no regression")
    return False
