"""`sparsebench compare`: each checkpoint in each format and runtime, timed side by side."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..options import check_optional_count
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
    friendly_errors,
    image_options,
    load_options,
    set_quiet,
)


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _write(report, output: Path, plots_dir: Path | None, plots: bool, force: bool) -> None:
    from ..compare.plots import write_plots
    from ..compare.render import renderer
    from ..io import atomic_write_text

    written = []
    if plots:
        written = write_plots(report, plots_dir or output.parent, output.stem, force)
        # recorded relative to the report, so its links work wherever the folder is moved
        report.plots = [os.path.relpath(p, output.parent) for p in written]
    atomic_write_text(output, renderer(output)(report), force=force)
    console.print(f"wrote {output}" + "".join(f", {p}" for p in written))


@app.command()
@friendly_errors
def compare(
    checkpoints: Annotated[list[Path], typer.Argument(help="One or more checkpoint files.")],
    formats: Annotated[
        str, typer.Option(help="Formats to compare: dense, csr, channels, semi24, bitmask, onnx.")
    ] = "dense,csr,channels,onnx",
    runtimes: Annotated[
        str, typer.Option(help="Runtimes: torch, onnxruntime (runs the onnx format).")
    ] = "torch,onnxruntime",
    device: Device = "cpu",
    data: Annotated[
        str | None, typer.Option(help="Dataset for top-1: name, name:PATH or a path.")
    ] = None,
    split: Annotated[str, typer.Option(help="Dataset split for accuracy.")] = "test",
    max_acc_drop: Annotated[
        float, typer.Option(help="Top-1 points a variant may lose and still be advised.")
    ] = 1.0,
    ratio: Annotated[
        float | None,
        typer.Option(help="channels: prune this fraction first (default: remove zero channels)."),
    ] = None,
    rounds: Annotated[int, typer.Option(help="Interleaved timing rounds.")] = 5,
    block_seconds: Annotated[float, typer.Option(help="Seconds per variant per round.")] = 0.2,
    threads: Annotated[int | None, typer.Option(help="CPU threads (fixed, recorded).")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write .md, .json or .csv.")
    ] = None,
    plots: Annotated[bool, typer.Option(help="Write PNG plots beside --output.")] = True,
    plots_dir: Annotated[Path | None, typer.Option(help="Folder for the PNG plots.")] = None,
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
    """Convert checkpoints to each format, verify, time all variants interleaved, and advise."""
    set_quiet(quiet)
    image = image_options(resize, center_crop, mean, std, normalize)
    from ..compare import CompareConfig
    from ..compare import compare as run_compare
    from ..compare.render import print_compare, renderer
    from ..errors import SparsebenchError
    from ..io import check_writable

    if output is not None:
        renderer(output)
        check_writable(output, force)
    if plots_dir is not None and not plots_dir.is_dir():
        raise SparsebenchError(f"--plots-dir {plots_dir} is not a directory")
    config = CompareConfig(formats=_names(formats), runtimes=_names(runtimes), device=device,
                           data=data, data_split=split, image=image,
                           max_acc_drop=max_acc_drop, ratio=ratio,
                           rounds=rounds, block_seconds=block_seconds, threads=threads)  # fmt: skip
    check_optional_count("--batch-size", batch_size)  # LoadOptions checks it only on load
    options = load_options(
        arch,
        arch_kwargs,
        input_shape,
        batch_size,
        trust_checkpoint,
        device,
        input,
        seq_len,
        output_key,
    )
    report = run_compare(checkpoints, config, options)
    print_compare(report, console)
    if output is not None:
        _write(report, output, plots_dir, plots, force)
