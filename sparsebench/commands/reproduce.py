"""`sparsebench reproduce`: run a seed experiment end to end into a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import SparsebenchError
from .shared import app, console, friendly_errors


@app.command()
@friendly_errors
def reproduce(
    name: Annotated[str | None, typer.Argument(help="Recipe (see --list).")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder for report.md, results.json.")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Few epochs and one seed.")] = False,
    data: Annotated[
        str | None, typer.Option(help="Local data for recipes that take it (cifar10:DIR).")
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds (default: the recipe's).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the recipes.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing report.")] = False,
) -> None:
    """Reproduce a seed experiment: tables, plots, a verdict and a final compare, in DIR."""
    from ..reproduce import RECIPES, ReproduceConfig
    from ..reproduce import reproduce as run

    if list_:
        for recipe_name in RECIPES.names():
            recipe = RECIPES.get(recipe_name)
            data_note = f" (--data {'|'.join(recipe.takes_data)}:DIR)" if recipe.takes_data else ""
            console.print(f"{recipe_name}: {recipe.title}{data_note} [seed {recipe.seed}]",
                          highlight=False, markup=False)  # fmt: skip
        return
    if name is None:
        raise SparsebenchError("name a recipe (sparsebench reproduce --list shows them)")
    RECIPES.get(name)  # an unknown name fails before anything runs
    if output is None:
        raise SparsebenchError("pass --output DIR for the report, results and checkpoints")
    config = ReproduceConfig(quick=quick, seeds=seeds, data=data)
    outcome = run(name, output, config, force=force)
    console.print(f"{name}: {outcome.verdict}: {outcome.reason}", highlight=False, markup=False)
    console.print(f"wrote {output / 'report.md'} and {output / 'results.json'}", highlight=False,
                  markup=False)  # fmt: skip
