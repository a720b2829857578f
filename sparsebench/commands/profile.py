"""`sparsebench profile`: measure checkpoints and print the assignment-style table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..options import check_optional_count
from .shared import (
    ERROR_EXIT,
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


@app.command()
@friendly_errors
def profile(
    checkpoints: Annotated[list[Path], typer.Argument(help="One or more checkpoint files.")],
    device: Device = "cpu",
    arch: Arch = None,
    arch_kwargs: ArchKwargs = None,
    input_shape: InputShape = None,
    input: Inputs = None,
    seq_len: SeqLen = None,
    output_key: OutputKey = None,
    batch_size: BatchSize = None,
    trust_checkpoint: Trust = False,
    data: Annotated[
        str | None, typer.Option(help="Dataset for top-1/top-5: name, name:PATH or a path.")
    ] = None,
    split: Annotated[str, typer.Option(help="Dataset split for accuracy.")] = "test",
    threads: Annotated[int | None, typer.Option(help="CPU threads (fixed, recorded).")] = None,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up iterations.")] = 10,
    min_iters: Annotated[int, typer.Option(help="At least this many timed iterations.")] = 50,
    min_seconds: Annotated[float, typer.Option(help="Time for at least this long.")] = 1.0,
    memory: Annotated[bool, typer.Option(help="Measure peak/average memory.")] = True,
    memory_seconds: Annotated[float, typer.Option(help="Inference window for memory.")] = 1.0,
    energy: Annotated[bool, typer.Option(help="Measure energy per inference.")] = True,
    energy_seconds: Annotated[float, typer.Option(help="Window for energy (>= ~1 s).")] = 1.0,
    per_layer: Annotated[bool, typer.Option(help="Print a per-layer sparsity table.")] = False,
    runtime: Annotated[
        str,
        typer.Option(
            help="torch, or onnxruntime: export checkpoints to ONNX on the fly and run them "
            "in ONNX Runtime (.onnx files always run there)."
        ),
    ] = "torch",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write .md, .json or .csv.")
    ] = None,
    force: Force = False,
    quiet: Quiet = False,
    resize: Resize = None,
    center_crop: CenterCrop = None,
    mean: Mean = None,
    std: Std = None,
    normalize: Normalize = None,
) -> None:
    """Measure sparsity, size, MACs, memory, latency, energy and accuracy of checkpoints."""
    set_quiet(quiet)
    image = image_options(resize, center_crop, mean, std, normalize)
    from ..measure.latency import LatencyConfig
    from ..profiler import ProfileConfig
    from ..profiler import profile as run_profile
    from ..report import write_report
    from ..report.terminal import print_report
    from ..report.writer import check_output

    if output is not None:
        check_output(output, force)
    latency = LatencyConfig(warmup=warmup, min_iters=min_iters, min_seconds=min_seconds)
    config = ProfileConfig(
        device=device,
        threads=threads,
        latency=latency,
        memory=memory,
        memory_seconds=memory_seconds,
        energy=energy,
        energy_seconds=energy_seconds,
        data=data,
        data_split=split,
        image=image,
        per_layer=per_layer,
        runtime=runtime,
    )
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
    report = run_profile(checkpoints, config, options)
    print_report(report, console)
    if output is not None:
        write_report(report, output, force)
        console.print(f"wrote {output}")
    report_failures(report.failures)


def report_failures(failures: list[dict[str, str]]) -> None:
    """One `error:` line per file that could not be profiled, then exit 2 (after the table)."""
    for failure in failures:
        message = escape(f"{failure['source']}: {failure['error']}")
        err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(ERROR_EXIT)
