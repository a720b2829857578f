"""`sparsebench export` and `sparsebench formats`: convert checkpoints into deployable formats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..options import check_optional_count
from ..results import MB
from .shared import (
    Arch,
    ArchKwargs,
    BatchSize,
    CenterCrop,
    Device,
    Force,
    Inputs,
    InputShape,
    Mean,
    Normalize,
    OutputKey,
    Quiet,
    Resize,
    SeqLen,
    Std,
    Trust,
    app,
    console,
    err_console,
    friendly_errors,
    image_options,
    load_options,
    set_quiet,
)


def layer_table(layers: list[dict], title: str) -> Table:
    """One line per layer: what the exporter did and why."""
    table = Table(title=title)
    for header in ("Layer", "Type", "Action", "Reason / details"):
        table.add_column(header)
    for layer in layers:
        details = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in layer.get("details", {}).items()
        )
        text = "; ".join(part for part in (layer.get("reason", ""), details) if part)
        table.add_row(layer["name"] or "(root)", layer["kind"], layer["action"], text)
    return table


@app.command()
@friendly_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint to convert.")],
    format: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="dense, semi24, csr, bitmask, channels, onnx, tensorrt."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Artifact to write.")],
    enforce: Annotated[bool, typer.Option(help="semi24: magnitude 2:4-prune first.")] = False,
    ratio: Annotated[
        float | None, typer.Option(help="channels: prune this fraction first.")
    ] = None,
    criterion: Annotated[str, typer.Option(help="channels: l1, l2, bn or taylor.")] = "l1",
    dtype: Annotated[
        str | None,
        typer.Option(
            help="float16/bfloat16 (semi24, tensorrt: default float16); tensorrt also "
            "float32 and int8 (calibrated on --data)."
        ),
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="Real inputs for verification (tensorrt int8: calibration).")
    ] = None,
    sparse_weights: Annotated[
        bool | None,
        typer.Option(
            "--sparse-weights/--no-sparse-weights",
            help="tensorrt: SPARSE_WEIGHTS flag (default: on when weights are 2:4 sparse).",
        ),
    ] = None,
    sparse_initializers: Annotated[
        bool, typer.Option(help="onnx: store mostly-zero weights as sparse_initializer (COO).")
    ] = False,
    device: Device = "cpu",
    arch: Arch = None,
    arch_kwargs: ArchKwargs = None,
    input_shape: InputShape = None,
    input: Inputs = None,
    seq_len: SeqLen = None,
    output_key: OutputKey = None,
    batch_size: BatchSize = None,
    trust_checkpoint: Trust = False,
    force: Force = False,
    quiet: Quiet = False,
    resize: Resize = None,
    center_crop: CenterCrop = None,
    mean: Mean = None,
    std: Std = None,
    normalize: Normalize = None,
) -> None:
    """Convert a checkpoint to FORMAT, verify it against the dense model, write the artifact."""
    set_quiet(quiet)
    image = image_options(resize, center_crop, mean, std, normalize)
    from ..export import export as run_export
    from ..formats import ExportConfig

    given = {  # only the flags the user set: a format refuses one it does not take
        "dtype": dtype,
        "enforce": enforce or None,
        "ratio": ratio,
        "criterion": None if criterion == "l1" else criterion,
        "sparse_weights": sparse_weights,
        "sparse_initializers": sparse_initializers or None,
    }
    chosen = {name: value for name, value in given.items() if value is not None}
    config = ExportConfig.of(format, device=device, data=data, image=image, **chosen)
    check_optional_count("--batch-size", batch_size)  # LoadOptions checks it only on load
    options = load_options(
        arch,
        arch_kwargs,
        input_shape,
        batch_size,
        trust_checkpoint,
        "cpu",
        input,
        seq_len,
        output_key,
    )
    try:
        result = run_export(checkpoint, output, config, options, force)
    except Exception as exc:
        layers = getattr(exc, "layers", None)
        if layers is not None:  # e.g. semi24 without a suitable GPU: show what it would do
            rows = [_as_dict(x) for x in layers]
            for row in rows:  # nothing was converted: say what would have been
                row["action"] = {"converted": "eligible"}.get(row["action"], row["action"])
            console.print(layer_table(rows, f"{format}: eligibility (nothing converted)"))
            stored = getattr(exc, "stored_bytes", None)
            if stored is not None:
                console.print(f"would store {stored / MB:.3f} MB")
        raise
    console.print(layer_table(result.layers, f"{checkpoint} -> {format}"))
    check = result.verification
    console.print(
        f"verified on {check.samples} {check.inputs} samples: max rel. error "
        f"{check.max_rel_err:.1e} (tolerance {check.tolerance:.0e}), top-1 agreement "
        f"{check.top1_agreement:.1%}"
    )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    for note in result.notes:
        console.print(f"• {note}")
    console.print(f"stored weights {result.stored_bytes / MB:.3f} MB; wrote {output}")


def _as_dict(layer) -> dict:
    from dataclasses import asdict, is_dataclass

    return asdict(layer) if is_dataclass(layer) else dict(layer)


@app.command()
@friendly_errors
def formats() -> None:
    """List the export formats."""
    from ..formats import FORMATS

    for name in FORMATS.names():
        console.print(f"{name}: {FORMATS.get(name).description}")
