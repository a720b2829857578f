"""`sparsebench models`, `datasets` and `runtimes`: what is registered."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .shared import app, console, friendly_errors


@app.command()
@friendly_errors
def models(
    pattern: Annotated[str, typer.Argument(help="Wildcard filter, e.g. 'vgg*'.")] = "*",
) -> None:
    """List the model zoo."""
    from ..zoo import get_model_spec, list_models

    table = Table(title="sparsebench model zoo")
    for header in ("Name", "Input shape", "Dataset", "Description"):
        table.add_column(header)
    for name in list_models(pattern):
        spec = get_model_spec(name)
        shape = ",".join(map(str, spec.input_shape))
        table.add_row(name, shape, spec.dataset or "-", spec.description)
    console.print(table)


@app.command()
@friendly_errors
def datasets() -> None:
    """List the built-in dataset loaders."""
    from ..data import DATASETS

    for name in DATASETS.names():
        console.print(name)


@app.command()
@friendly_errors
def runtimes() -> None:
    """List the runtimes and the formats each accepts."""
    from ..formats import FORMATS
    from ..runtimes import RUNTIMES

    for name in RUNTIMES.names():
        runtime = RUNTIMES.get(name)
        own_files = bool(runtime.suffixes)  # else it runs what an artifact restores in process
        formats = [
            fmt
            for fmt in FORMATS.names()
            if runtime.accepts_format(fmt) and FORMATS.get(fmt).file_based == own_files
        ]
        files = f"; opens {', '.join(runtime.suffixes)}" if own_files else ""
        console.print(f"{name}: {runtime.description} (accepts {', '.join(formats)}{files})")


@app.command("prune-methods")
@friendly_errors
def prune_methods() -> None:
    """List the pruning methods, the paper each follows and their -O options."""
    from ..prune import METHODS

    for name in METHODS.names():
        method = METHODS.get(name)
        data = " (needs --data)" if method.needs_data else ""
        unit = "; sparsity counts channels" if method.granularity == "channels" else ""
        console.print(f"{name}: {method.description}{data}{unit} [{method.paper}]",
                      highlight=False, markup=False)  # fmt: skip
        if method.defaults:
            options = ", ".join(f"{k}={v}" for k, v in method.defaults.items())
            console.print(f"    options (-O KEY=VALUE): {options}", highlight=False, markup=False)
