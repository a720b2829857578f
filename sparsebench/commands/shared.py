"""What every command shares: the Typer app, one-line error handling and the common flags."""

from __future__ import annotations

import functools
import json
import os
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperOption

from ..errors import SparsebenchError


def _flag_type(self, ctx):
    """No `<bool>` type beside an on/off flag: `--force` takes no value."""
    return None if self.is_flag else _option_type(self, ctx)


_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type  # tests/test_cli_help.py: help shows no <bool>

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
    str | None,
    typer.Option(
        help="For plain state_dicts: a zoo name (see `sparsebench models`), "
        "package.module:factory or path/file.py:factory (runs that code)."
    ),
]
ArchKwargs = Annotated[str | None, typer.Option(help="JSON keyword arguments for --arch.")]
InputShape = Annotated[
    str | None, typer.Option(help="Shape of a one-input float model, batch first: 1,3,32,32.")
]
Inputs = Annotated[
    list[str] | None,
    typer.Option(
        "--input",
        help="One model input as name:shape:dtype[:low-high] (range inclusive), repeated in "
        "call order, e.g. --input input_ids:1x128:int64:0-30521 "
        "--input attention_mask:1x128:int64:1-1.",
    ),
]
SeqLen = Annotated[
    int | None, typer.Option(help="Sequence length of token inputs (dimension 1 of int inputs).")
]
OutputKey = Annotated[
    str | None,
    typer.Option(help="Output to measure when the model returns a dict/tuple (default: logits)."),
]
BatchSize = Annotated[int | None, typer.Option(help="Override the batch dimension.")]
Trust = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint", help="Allow fully pickled checkpoints (runs code from the file)."
    ),
]
Device = Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")]
Resize = Annotated[
    int | None, typer.Option(help="Image folders: resize the shorter side to N pixels first.")
]
CenterCrop = Annotated[
    int | None, typer.Option(help="Image folders: crop the N x N centre (after --resize).")
]
Mean = Annotated[
    str | None, typer.Option(help="Image folders: channel means, e.g. 0.485,0.456,0.406.")
]
Std = Annotated[
    str | None, typer.Option(help="Image folders: channel stds, e.g. 0.229,0.224,0.225.")
]
Normalize = Annotated[
    str | None, typer.Option(help="Image folders: mean/std preset: imagenet, cifar10 or none.")
]


def image_options(resize, center_crop, mean, std, normalize):
    """The image-folder transform the flags describe (checked before anything loads)."""
    from ..data import ImageOptions

    return ImageOptions.parse(resize=resize, center_crop=center_crop, mean=mean, std=std,
                              normalize=normalize)  # fmt: skip


Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress lines on stderr (errors still show).")
]


def set_quiet(quiet: bool) -> None:
    """Apply --quiet to the progress lines of every step (`sparsebench.progress`)."""
    from ..progress import set_quiet as apply

    apply(quiet)


def load_options(arch, arch_kwargs, input_shape, batch_size, trust, device, inputs=None,
                 seq_len=None, output_key=None):  # fmt: skip
    """Build LoadOptions from the shared loading flags."""
    from ..inputs import parse_inputs
    from ..load import LoadOptions
    from ..options import check_optional_count

    check_optional_count("--seq-len", seq_len)
    specs = parse_inputs(inputs)
    if specs and input_shape:
        raise SparsebenchError("give either --input-shape or --input, not both")
    return LoadOptions(
        arch=arch,
        arch_kwargs=parse_kwargs(arch_kwargs),
        input_shape=parse_shape(input_shape),
        batch_size=batch_size,
        trust_checkpoint=trust,
        device=device,
        inputs=specs,
        seq_len=seq_len,
        output_key=output_key,
    )
