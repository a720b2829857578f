"""Run one recipe into a folder: report.md, results.json, checkpoints/, plots, and a final
`sparsebench compare` of the dense and pruned checkpoints (deployment numbers per format)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from ..compare import CompareConfig, compare
from ..compare.render import render_markdown
from ..environment import collect_environment
from ..errors import SparsebenchError
from ..io import atomic_write_text
from .base import RECIPES, Outcome, ReproduceConfig, Workspace

SCHEMA = 1


def prepare_folder(output: str | Path, force: bool) -> Path:
    """The output folder, created; an existing report is replaced only with `force`."""
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise SparsebenchError(f"{folder} exists and is not a directory")
    if (folder / "report.md").exists() and not force:
        raise SparsebenchError(f"{folder} already holds a report; pass --force to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def reproduce(
    name: str,
    output: str | Path,
    config: ReproduceConfig | None = None,
    force: bool = False,
    log=None,
) -> Outcome:
    """Run recipe `name` (see `sparsebench reproduce --list`) and write its folder."""
    config = config or ReproduceConfig()
    recipe = RECIPES.get(name)
    if config.data is not None and not recipe.takes_data:
        raise SparsebenchError(f"recipe '{name}' runs on its own offline data; it takes no --data")
    folder = prepare_folder(output, force)
    workspace = Workspace(folder, log)
    started = time.perf_counter()
    outcome = recipe.run(config, workspace)
    report = None
    if outcome.compare:
        workspace.log(f"comparing {len(outcome.compare)} checkpoint(s) across formats")
        quick = {"rounds": 2, "block_seconds": 0.02, "warmup": 1} if config.quick else {}
        report = compare(
            outcome.compare,
            CompareConfig(
                formats=outcome.compare_formats,
                runtimes=("torch",),
                threads=1,
                data=outcome.compare_data,
                **quick,
            ),
        )
    seconds = time.perf_counter() - started
    environment = collect_environment("cpu")
    results = {
        "schema": SCHEMA,
        "recipe": name,
        "seed_document": recipe.seed,
        "quick": config.quick,
        "seeds": recipe.seeds(config),
        "seconds": seconds,
        "verdict": outcome.verdict,
        "reason": outcome.reason,
        "data": outcome.data_note,
        "results": outcome.results,
        "environment": environment,
        "compare": [asdict(r) for r in report.rows] if report else None,
    }
    atomic_write_text(
        folder / "results.json", json.dumps(results, indent=1, default=str), force=True
    )
    atomic_write_text(
        folder / "report.md",
        _markdown(recipe, config, outcome, report, seconds, environment),
        force=True,
    )
    return outcome


def _markdown(recipe, config, outcome: Outcome, report, seconds: float, env: dict) -> str:
    command = f"sparsebench reproduce {recipe.name}{' --quick' if config.quick else ''}"
    if config.seeds:
        command += f" --seeds {config.seeds}"
    if config.data:
        command += f" --data {config.data}"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Reproduction: {recipe.title}",
        "",
        f"Seed document: {recipe.seed}. Command: `{command}` ({when}, {seconds:.0f} s, "
        f"{recipe.seeds(config)} seed(s)).",
        "",
    ]
    if outcome.data_note:
        lines += [f"Data: {outcome.data_note}", ""]
    lines += ["## The claim", "", *(f"> {line}" for line in recipe.claim.splitlines()), ""]
    lines += ["## Measured", "", *outcome.sections, ""]
    lines += [f"![{Path(p).stem}]({p})" for p in outcome.plots]
    lines += ["", "## Verdict", "", f"**{outcome.verdict}**: {outcome.reason}", ""]
    if report is not None:
        body = render_markdown(report).split("\n", 2)[2]  # without its own title
        lines += ["## Deployment: `sparsebench compare` of the checkpoints", "", body]
    lines += [
        "## Environment",
        "",
        f"{env.get('cpu')}, {env.get('cpu_count_logical')} logical CPUs, torch "
        f"{env.get('torch')}, Python {env.get('python')}, sparsebench "
        f"{env.get('sparsebench')}.",
        "",
    ]
    return "\n".join(lines)
