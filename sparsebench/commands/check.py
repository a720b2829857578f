"""`sparsebench check`: a CI latency gate; exit 0 pass, 1 regression, 2 error, 3 inconclusive."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .shared import app, console, err_console, friendly_errors

TABLE_WIDTH = 130  # CI logs are not terminals: keep rows on one line


def _append_summary(markdown: str) -> None:
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(markdown)


@app.command()
def check(
    profile: Annotated[Path, typer.Argument(help="Benchmark profile (.toml).")],
    update_baseline: Annotated[
        bool,
        typer.Option(
            "--update-baseline",
            help="Measure and (re)write the baseline; run it on the runner type that checks.",
        ),
    ] = False,
    baseline: Annotated[
        Path | None, typer.Option(help="Baseline JSON (default: NAME.baseline.json beside it).")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the decision and findings as JSON.")
    ] = None,
) -> None:
    """Compare a profile's models with their baseline.

    Exit 0 pass, 1 regression (confirmed by a re-run), 2 bad input, 3 inconclusive (the
    machine was too noisy, or a slowdown's interval straddles the threshold)."""
    code = _run_check(profile, update_baseline, baseline, json_path)
    if code:
        raise typer.Exit(code)


@friendly_errors
def _run_check(
    profile: Path, update_baseline: bool, baseline: Path | None, json_path: Path | None
) -> int:
    """Measure and compare (or record); the exit code."""
    from ..check import load_profile, record_baseline, run_check
    from ..check.render import (
        confirmation_line,
        decision_line,
        noise_line,
        result_markdown,
        result_table,
    )
    from ..errors import SparsebenchError
    from ..io import atomic_write_text, check_writable

    config = load_profile(profile)
    baseline_path = baseline or config.baseline_path
    if json_path is not None and update_baseline:
        raise SparsebenchError("--json writes a check's decision; it does not apply with "
                               "--update-baseline")  # fmt: skip
    if json_path is not None:
        check_writable(json_path, force=True)
    if update_baseline:
        check_writable(baseline_path, force=True)
        _, noise = record_baseline(config, baseline_path)
        if noise.noisy:
            console.print(
                f"[yellow]inconclusive[/yellow]: {escape('; '.join(noise.reasons))}; the "
                "baseline was not written (re-run on a quieter machine)",
                soft_wrap=True,
            )
            return 3
        console.print(f"wrote baseline {baseline_path} ({escape(noise.text())})", soft_wrap=True)
        return 0
    result = run_check(config, baseline_path)
    title = f"sparsebench check {config.name}"
    for message in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)
    wide = Console(width=max(console.width, TABLE_WIDTH), highlight=False)
    wide.print(result_table(result, title))
    wide.print(escape(noise_line(result)), soft_wrap=True)
    wide.print(escape(confirmation_line(result)), soft_wrap=True)
    _append_summary(result_markdown(result, title))
    if json_path is not None:
        text = json.dumps(result.to_json(), indent=2, allow_nan=False)
        atomic_write_text(json_path, text + "\n", force=True)
    colour = {0: "green", 1: "red", 3: "yellow"}[result.exit_code]
    wide.print(f"[{colour}]{escape(decision_line(result))}[/{colour}]", soft_wrap=True)
    return result.exit_code
