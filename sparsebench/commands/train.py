"""`sparsebench train` and `sparsebench prune`: make real baselines and pruned checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import SparsebenchError
from ..options import check_number, check_optional_count
from .shared import (
    Arch,
    ArchKwargs,
    BatchSize,
    Force,
    Inputs,
    InputShape,
    OutputKey,
    SeqLen,
    Trust,
    app,
    console,
    friendly_errors,
    load_options,
    parse_kwargs,
)

Output = Annotated[Path, typer.Option("--output", "-o", help="Checkpoint to write.")]


@app.command()
@friendly_errors
def train(
    arch: Annotated[str, typer.Option(help="Zoo architecture to train.")],
    data: Annotated[str, typer.Option(help="Dataset: name, name:PATH or a path.")],
    output: Output,
    epochs: Annotated[int, typer.Option(help="At most this many epochs.")] = 20,
    seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    arch_kwargs: ArchKwargs = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    force: Force = False,
) -> None:
    """Train a zoo model on an offline dataset and save a sparsebench checkpoint."""
    from ..train import TrainConfig
    from ..train import train as run_train

    config = TrainConfig(
        epochs=epochs, max_seconds=seconds, batch_size=batch_size, lr=lr, seed=seed
    )
    summary = run_train(arch, data, output, config, parse_kwargs(arch_kwargs), force)
    top5 = "n/a" if summary["top5"] is None else f"{summary['top5']:.2f}%"
    console.print(
        f"trained {arch} for {summary['epochs']} epochs: test top-1 {summary['top1']:.2f}%, "
        f"top-5 {top5}; wrote {output}"
    )


@app.command()
@friendly_errors
def prune(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint to prune.")],
    output: Output,
    amount: Annotated[
        float,
        typer.Option("--amount", "--sparsity", help="Fraction of weights (or channels) to zero."),
    ] = 0.8,
    scope: Annotated[str, typer.Option(help="global (rank all weights) or layer.")] = "global",
    method: Annotated[
        str, typer.Option(help="Pruning method (`sparsebench prune-methods`).")
    ] = "magnitude",
    seed: Annotated[int, typer.Option(help="Seed of methods that draw at random.")] = 0,
    data: Annotated[
        str | None,
        typer.Option(help="Dataset to train or score on (its test split is held out)."),
    ] = None,
    epochs: Annotated[
        int, typer.Option(help="Epochs the method trains (fine-tuning, per IMP round...).")
    ] = 1,
    train_batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate of the training.")] = 1e-3,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-O", help="Method option KEY=VALUE (repeatable)."),
    ] = None,
    arch: Arch = None,
    arch_kwargs: ArchKwargs = None,
    input_shape: InputShape = None,
    input: Inputs = None,
    seq_len: SeqLen = None,
    output_key: OutputKey = None,
    batch_size: BatchSize = None,
    trust_checkpoint: Trust = False,
    force: Force = False,
) -> None:
    """Prune with a registered method (magnitude by default); writes a sparsebench checkpoint
    whose metadata records the method, its options, the sparsity reached per layer and, with
    --data, held-out accuracy before and after."""
    from ..artifact import load
    from ..checkpoint import CheckpointMeta, save_checkpoint
    from ..io import check_writable
    from ..prune import METHODS, PruneConfig, load_prune_data
    from ..prune.base import run_method

    check_number("--sparsity", amount, at_least=0, below=1)
    pruning = METHODS.get(method)  # unknown names: one line with close matches
    if pruning.fixed_sparsity is not None:  # the pattern decides (2:4 is 50 %)
        amount = pruning.fixed_sparsity
    config = PruneConfig(amount, scope, seed, parse_options(option))
    pruning.check_options(config)
    if pruning.needs_data and data is None:
        raise SparsebenchError(f"method '{method}' trains or scores on data: pass --data")
    if pruning.trains and epochs < 1:
        raise SparsebenchError(f"method '{method}' prunes while it trains: pass --epochs 1 or more")
    check_writable(output, force)
    check_optional_count("--batch-size", batch_size)  # LoadOptions checks it only on load
    options = load_options(arch, arch_kwargs, input_shape, batch_size, trust_checkpoint, "cpu",
                           input, seq_len, output_key)  # fmt: skip
    loaded = load(checkpoint, options)
    meta = loaded.meta or (
        CheckpointMeta(arch=arch, arch_kwargs=options.arch_kwargs or {}) if arch else None
    )
    if meta is None:
        raise SparsebenchError(
            f"prune writes a state_dict checkpoint and needs the architecture: {checkpoint} is a "
            f"{loaded.kind} file; pass --arch"
        )
    meta.input_shape = meta.input_shape or list(loaded.input_shape)
    meta.inputs = meta.inputs or loaded.specs.to_json()
    prune_data = None
    if data is not None:
        prune_data = load_prune_data(data, loaded.input_shape, epochs, train_batch_size, lr)
    before = prune_data.accuracy(loaded.model) if prune_data is not None else None
    example = loaded.specs.synthetic(seed=0, batch=1)
    result = run_method(pruning, loaded.model, config, prune_data, example)
    after = prune_data.accuracy(loaded.model) if prune_data is not None else None
    record = {"method": method, "amount": amount, "scope": scope if pruning.uses_scope else None,
              "seed": seed,
              "granularity": pruning.granularity, "options": result.options,
              "sparsity": result.sparsity, "layers": result.layers}  # fmt: skip
    if prune_data is not None:
        record.update({"data": data, "epochs": epochs, "train_batch_size": train_batch_size,
                       "lr": lr, "test_top1_before": before, "test_top1_after": after})  # fmt: skip
    if result.extra:
        record["details"] = result.extra
    meta.extra = {**meta.extra, "pruned": record}
    save_checkpoint(output, loaded.model, meta, force=force)
    for table in result.tables:
        console.print(table, markup=False, highlight=False, soft_wrap=True)
    reached = f"{100 * result.sparsity:.2f}% sparsity"
    if pruning.granularity == "channels":
        reached = f"{100 * amount:g}% of each group's channels zeroed ({reached} of the weights)"
    accuracy = "" if after is None else f" (held-out top-1 {before:.2f}% -> {after:.2f}%)"
    console.print(f"pruned {checkpoint} with {method}: {reached}{accuracy}; wrote {output}",
                  markup=False, highlight=False)  # fmt: skip


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """-O KEY=VALUE pairs -> dict (the method converts the values)."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SparsebenchError(f"--option takes KEY=VALUE, got {pair!r}")
        options[key.strip()] = value.strip()
    return options
