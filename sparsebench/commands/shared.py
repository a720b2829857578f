"""What every command shares: the Typer app, one-line error handling and the common flags."""

from __future__ import annotations

import functools
import json
import os
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import SparsebenchError

app = typer.Typer(
    help="Profile pruned neural networks: size, MACs, memory, latency, energy, accuracy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

ERROR_EXIT = 2


def friendly_errors(fn):
    """Turn expected errors into one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SparsebenchError as exc:
            # escaped: rich would take 'sparsebench[onnx]' in a message for markup and drop it
            message = escape(str(exc))
            err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(ERROR_EXIT) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("SPARSEBENCH_DEBUG"):
                raise
            err_console.print(
                f"[red]error:[/red] unexpected {type(exc).__name__}: {escape(str(exc))} "
                "(set SPARSEBENCH_DEBUG=1 for the traceback)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(ERROR_EXIT) from None

    return wrapper


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """'1,3,32,32' -> (1, 3, 32, 32)."""
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise SparsebenchError(f"--input-shape '{text}' must be integers like 1,3,32,32") from None
    if not shape or min(shape) < 1:
        raise SparsebenchError(f"--input-shape '{text}' needs positive dimensions")
    return shape


def parse_kwargs(text: str | None) -> dict | None:
    """--arch-kwargs JSON object -> dict."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SparsebenchError(f"--arch-kwargs is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SparsebenchError("--arch-kwargs must be a JSON object, e.g. '{\"num_classes\": 100}'")
    return value


Arch = Annotated[
    str | None, typer.Option(help="Zoo name or package.module:factory (for plain state_dicts).")
]
ArchKwargs = Annotated[str | None, typer.Option(help="JSON keyword arguments for --arch.")]
InputShape = Annotated[str | None, typer.Option(help="Input shape with batch, e.g. 1,3,32,32.")]
BatchSize = Annotated[int | None, typer.Option(help="Override the batch dimension.")]
Trust = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint", help="Allow fully pickled checkpoints (runs code from the file)."
    ),
]
Device = Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")]


def load_options(arch, arch_kwargs, input_shape, batch_size, trust, device):
    """Build LoadOptions from the shared loading flags."""
    from ..load import LoadOptions

    return LoadOptions(
        arch=arch,
        arch_kwargs=parse_kwargs(arch_kwargs),
        input_shape=parse_shape(input_shape),
        batch_size=batch_size,
        trust_checkpoint=trust,
        device=device,
    )
