"""`sparsebench demo`: train, prune and profile a small model end to end, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .shared import Force, app, console, friendly_errors


@app.command()
@friendly_errors
def demo(
    out_dir: Annotated[Path, typer.Option(help="Where checkpoints and reports go.")] = Path(
        "demo-out"
    ),
    arch: Annotated[str, typer.Option(help="Zoo model to train.")] = "mnist1d_cnn",
    data: Annotated[str, typer.Option(help="Offline dataset.")] = "mnist1d",
    seconds: Annotated[float, typer.Option(help="Training time budget.")] = 15.0,
    amount: Annotated[float, typer.Option(help="Unstructured sparsity to prune to.")] = 0.8,
    finetune: Annotated[float, typer.Option(help="Seconds of masked fine-tuning.")] = 5.0,
    force: Force = False,
) -> None:
    """Train ARCH on DATA for a few seconds, prune and fine-tune it, and profile both."""
    from torch.nn.utils import prune

    from ..artifact import load
    from ..checkpoint import save_checkpoint
    from ..data import load_dataset
    from ..options import check_number, check_seconds
    from ..profiler import ProfileConfig, profile
    from ..prune import magnitude_prune_
    from ..report import write_report
    from ..report.terminal import print_report
    from ..train import TrainConfig, fit, train

    check_number("--amount", amount, at_least=0, below=1)
    check_seconds("--finetune", finetune, allow_zero=True)
    train_config = TrainConfig(epochs=200, max_seconds=seconds)  # checks --seconds up front
    out_dir.mkdir(parents=True, exist_ok=True)
    dense, pruned = out_dir / f"{arch}.pt", out_dir / f"{arch}_pruned{round(amount * 100)}.pt"
    console.print(f"[bold]1/3[/bold] training {arch} on {data} for up to {seconds:g} s")
    train(arch, data, dense, train_config, force=force)
    console.print(
        f"[bold]2/3[/bold] magnitude-pruning {100 * amount:.3g}% of the weights, "
        f"then {finetune:g} s of fine-tuning with the masks fixed"
    )
    loaded = load(dense)
    magnitude_prune_(loaded.model, amount, fold=False)
    if finetune > 0:
        config = TrainConfig(epochs=200, max_seconds=finetune, lr=5e-4)
        fit(loaded.model, load_dataset(data, "train"), loaded.input_shape, config)
    for module in loaded.model.modules():
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            prune.remove(module, "weight")
    loaded.model.eval()
    save_checkpoint(pruned, loaded.model, loaded.meta, force=force)
    console.print("[bold]3/3[/bold] profiling both on the CPU")
    report = profile([dense, pruned], ProfileConfig(data=data))
    print_report(report, console)
    for name in ("report.md", "report.json"):
        write_report(report, out_dir / name, force=True)
    console.print(f"wrote {out_dir}/report.md and report.json")
