"""`sparsebench bench-formats`: the format sweep (speedup of each format over dense)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .shared import Device, Force, app, console, friendly_errors

# --quick: one workload per kind, three short rounds
QUICK = {"rounds": 3, "sparsities": (0.9,), "linear_sizes": (1024,), "batches": (1,),
         "block_seconds": 0.05}  # fmt: skip


@app.command("bench-formats")
@friendly_errors
def bench_formats(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Markdown file.")] = None,
    device: Device = "cpu",
    threads: Annotated[int | None, typer.Option(help="CPU threads (fixed, recorded).")] = None,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds per comparison.")] = 5,
    quick: Annotated[bool, typer.Option(help="A small sweep (1024, batch 1, 90 %).")] = False,
    vgg: Annotated[bool, typer.Option(help="Include VGG16-BN end to end.")] = True,
    kernels: Annotated[
        bool,
        typer.Option(
            help="Instead: the kernel benchmark (dense torch, dense ONNX Runtime, torch CSR and "
            "the bitmask kernels on 4096x4096 stacks, beside the bandwidth bound)."
        ),
    ] = False,
    force: Force = False,
) -> None:
    """Sweep sparsity for Linear layers and VGG16-BN; print each format's speedup over dense."""
    from ..bench.formats import SweepConfig, render_sweep, run_sweep
    from ..environment import collect_environment
    from ..io import atomic_write_text, check_writable

    if output is not None:
        check_writable(output, force)
    if kernels:
        text = _kernel_benchmark(device, threads, rounds, quick)
        console.print(text, markup=False, highlight=False)
        if output is not None:
            atomic_write_text(output, text, force=force)
            console.print(f"wrote {output}")
        return
    size = QUICK if quick else {"rounds": rounds}
    sweep = SweepConfig(device=device, threads=threads, vgg=vgg, **size)  # validates all
    rows = run_sweep(sweep, progress=lambda text: console.print(f"[dim]… {text}[/dim]"))
    text = render_sweep(rows, collect_environment(device))
    console.print(text, markup=False, highlight=False)
    if output is not None:
        atomic_write_text(output, text, force=force)
        console.print(f"wrote {output}")


def _kernel_benchmark(device: str, threads: int | None, rounds: int, quick: bool) -> str:
    from ..bench.kernels import DEFAULT_WORKLOADS, KernelWorkload, render_kernels, run_kernels
    from ..device import check_threads
    from ..errors import SparsebenchError
    from ..measure.interleaved import TimingConfig
    from ..options import check_count

    if device != "cpu":
        raise SparsebenchError("the kernel benchmark runs on the CPU (--device cpu)")
    check_count("--rounds", rounds, 1)
    threads = check_threads(threads) or 2
    quick_workload = KernelWorkload(1024, 1, 0.9, layers=2, int8=True)  # cache-resident: smoke
    workloads = (quick_workload,) if quick else DEFAULT_WORKLOADS
    timing = TimingConfig(rounds=3 if quick else max(rounds, 10), block_seconds=0.1,
                          block_iters=3, settle_seconds=0.02)  # fmt: skip
    report = run_kernels(workloads, timing, threads,
                         progress=lambda text: console.print(f"[dim]… {text}[/dim]"))  # fmt: skip
    return render_kernels(report)
