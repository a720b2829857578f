"""The measured comparison of the pruning methods (issue 13): held-out accuracy of every
unstructured method at several sparsities over seeds, on small offline tasks, each seed-0
checkpoint then profiled by sparsebench's own pipeline (size, MACs, effective MACs, latency).

Every method gets the same data and a stated training budget (`Task`): after-training methods
prune the trained dense model and fine-tune `finetune` epochs; at-initialisation methods
(SNIP, GraSP, SynFlow) and RigL start from the seed's initial weights and train
`train + finetune` epochs; the gradient method tracks |grad| while it trains the `train`
epochs from the initial weights (seed 000); IMP trains `train` epochs per round (its budget
grows with the rounds, as in the paper).
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..arch import build_model
from ..checkpoint import CheckpointMeta, save_checkpoint
from ..data import load_dataset
from ..prune import PruneData, prune

AFTER_TRAINING = ("magnitude", "random", "sensitivity", "movement", "gumbel")
AT_INIT = ("snip", "grasp", "synflow", "rigl")
FROM_INIT = ("gradient", "lottery")
# every method ranks all layers together except random and RigL (uniform per layer, as in
# their papers) and sensitivity (per-layer ratios from its scan)
SCOPE = {"random": "layer", "rigl": "layer", "sensitivity": "layer"}
UNSTRUCTURED = AFTER_TRAINING[:2] + ("gradient", "snip", "grasp", "synflow", "lottery",
                                     "movement", "rigl", "gumbel", "sensitivity")  # fmt: skip


@dataclass(frozen=True)
class Task:
    """A model and dataset and the epochs of its training budget."""

    arch: str
    data: str
    input_shape: tuple[int, ...]
    train: int  # epochs of the dense model (and per IMP round)
    finetune: int  # epochs after pruning
    lr: float = 1e-3
    batch_size: int = 128


TASKS = {
    "mnist1d_mlp": Task("mnist1d_mlp", "mnist1d", (1, 40), train=30, finetune=10),
    "lenet_300_100": Task("lenet_300_100", "mnist", (1, 784), train=5, finetune=2),
}


@dataclass
class Run:
    task: str
    method: str
    sparsity: float
    seed: int
    top1: float
    reached: float
    seconds: float
    epochs: int
    checkpoint: str | None = None


@dataclass
class Study:
    runs: list[Run] = field(default_factory=list)
    dense: dict[str, list[float]] = field(default_factory=dict)  # task -> top1 per seed
    profiles: dict[str, list[dict]] = field(default_factory=dict)  # task -> profiled rows


def _data(task: Task, epochs: int) -> PruneData:
    return PruneData(load_dataset(task.data, "train"), load_dataset(task.data, "test"),
                     task.input_shape, epochs, task.batch_size, task.lr)  # fmt: skip


def _fresh(task: Task, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(task.arch, None)


def _train_dense(task: Task, seed: int) -> nn.Module:
    from ..prune.training import train

    model = _fresh(task, seed)
    train(model, _data(task, task.train), task.train, seed, "dense")
    return model


def run_method(task: Task, method: str, sparsity: float, seed: int, dense: nn.Module) -> tuple:
    """(pruned model, held-out top-1, reached sparsity, epochs trained) for one method under
    `task`'s budget."""
    options: dict = {}
    if method in AFTER_TRAINING:
        model, epochs = copy.deepcopy(dense), task.finetune
        if method == "gumbel":
            epochs = task.train  # its gates learn from the trained weights: a dense budget
        data = _data(task, epochs)
        trained = task.train + epochs
    elif method in AT_INIT:
        model, epochs = _fresh(task, seed), task.train + task.finetune
        data, trained = _data(task, epochs), epochs
        if method == "rigl":
            options["delta"] = max(data.steps_per_epoch // 2, 1)
    elif method == "gradient":
        model, data = _fresh(task, seed), _data(task, task.finetune)
        options["warmup"] = task.train
        trained = task.train + task.finetune
    else:  # lottery: `train` epochs per round, the ticket trained as long
        model, data = _fresh(task, seed), _data(task, task.train)
        trained = None
    result = prune(model, method, sparsity, scope=SCOPE.get(method, "global"), seed=seed,
                   data=data, example=torch.zeros(task.input_shape), **options)  # fmt: skip
    if trained is None:
        trained = task.train * len(result.extra["rounds"])
    return model, data.accuracy(model), result.sparsity, trained


def run_study(tasks: list[str], methods: list[str], sparsities: list[float], seeds: int,
              folder: Path, log=print) -> Study:  # fmt: skip
    study = Study()
    for name in tasks:
        task = TASKS[name]
        study.dense[name] = []
        for seed in range(seeds):
            dense = _train_dense(task, seed)
            study.dense[name].append(_data(task, 0).accuracy(dense))
            if seed == 0:
                _save(dense, task, folder / f"{name}-dense.pt")
            for method in methods:
                for sparsity in sparsities:
                    started = time.perf_counter()
                    model, top1, reached, epochs = run_method(task, method, sparsity, seed, dense)
                    run = Run(name, method, sparsity, seed, top1, reached,
                              time.perf_counter() - started, epochs)  # fmt: skip
                    if seed == 0:
                        run.checkpoint = str(folder / f"{name}-{method}-{sparsity:g}.pt")
                        _save(model, task, Path(run.checkpoint))
                    study.runs.append(run)
                    log(f"{name} seed {seed} {method} {sparsity:g}: top-1 {top1:.2f}% "
                        f"(sparsity {reached:.4f}, {run.seconds:.1f} s)")  # fmt: skip
    return study


def _save(model: nn.Module, task: Task, path: Path) -> None:
    meta = CheckpointMeta(arch=task.arch, arch_kwargs={}, input_shape=list(task.input_shape),
                          dataset=task.data)  # fmt: skip
    save_checkpoint(path, model, meta, force=True)


def profile_checkpoints(study: Study, task: str, threads: int = 1) -> list[dict]:
    """Profile the task's seed-0 checkpoints in one interleaved run (sparsebench profile)."""
    runs = [r for r in study.runs if r.task == task and r.checkpoint]
    dense = str(Path(runs[0].checkpoint).with_name(f"{task}-dense.pt"))
    labels = ["dense", *[f"{r.method} {r.sparsity:g}" for r in runs]]
    rows = profile_files([dense, *[r.checkpoint for r in runs]], labels, threads)
    study.profiles[task] = rows
    return rows


def _iqr(samples: list[float]) -> list[float]:
    import numpy as np

    return [float(v) for v in np.percentile(samples, [25, 75])] if samples else [0.0, 0.0]


def accuracy_table(study: Study, task: str, sparsities: list[float]) -> list[str]:
    """Markdown: mean +- std of held-out top-1 per method and sparsity."""
    dense = study.dense[task]
    lines = [f"| method | scope | {' | '.join(f'{s:.0%}' for s in sparsities)} | epochs trained |",
             "|---|---|" + "---|" * (len(sparsities) + 1)]  # fmt: skip
    lines.append(f"| dense | - | {' | '.join([_mean_std(dense)] * len(sparsities))} | "
                 f"{TASKS[task].train} |")  # fmt: skip
    methods = list(dict.fromkeys(r.method for r in study.runs if r.task == task))
    for method in methods:
        cells, epochs = [], set()
        for sparsity in sparsities:
            runs = [
                r for r in study.runs if (r.task, r.method, r.sparsity) == (task, method, sparsity)
            ]
            cells.append(_mean_std([r.top1 for r in runs]))
            epochs.update(r.epochs for r in runs)
        scope = SCOPE.get(method, "global")
        lines.append(
            f"| {method} | {scope} | {' | '.join(cells)} | {'/'.join(map(str, sorted(epochs)))} |"
        )
    return lines


def _mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def profile_table(rows: list[dict]) -> list[str]:
    head = ["row", "params", "sparsity %", "size MB", "MACs M", "effective MACs M",
            "latency ms (median, IQR)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in rows:
        low, high = r["latency_iqr"]
        lines.append(f"| {r['row']} | {r['params']:,} | {r['sparsity_pct']:.1f} | "
                     f"{r['size_mb']:.3f} | {r['macs_m']:.3f} | {r['effective_macs_m']:.3f} | "
                     f"{r['latency_ms']:.4f} ({low:.4f}-{high:.4f}) |")  # fmt: skip
    return lines


def temporary_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="sparsebench-prune-study-"))


# ---------------------------------------------------------------- channel methods, ResNet-20

CHANNEL_METHODS = (("channel", {"criterion": "l1"}), ("channel", {"criterion": "bn"}),
                   ("channel", {"criterion": "taylor"}), ("regression", {}))  # fmt: skip


@dataclass
class ChannelRun:
    method: str
    ratio: float
    seed: int
    top1: float
    weight_sparsity: float
    checkpoint: str | None = None


def run_channel_study(ratios: list[float], seeds: int, folder: Path, train_epochs: int = 6,
                      finetune: int = 2, log=print) -> dict:  # fmt: skip
    """ResNet-20 on digits-as-CIFAR: dense, then every channel method at every ratio,
    fine-tuned `finetune` epochs; seed-0 models exported to `channels` (the zeroed channels
    removed, verified) and profiled with the dense model."""
    from ..export import export
    from ..formats.base import ExportConfig

    shape = (1, 3, 32, 32)
    train_set, test_set = load_dataset("digits32", "train"), load_dataset("digits32", "test")

    def data(epochs):
        return PruneData(train_set, test_set, shape, epochs, batch_size=64, lr=2e-3)

    task = Task("resnet20", "digits32", shape, train_epochs, finetune)
    runs, dense_top1, exported = [], [], []
    for seed in range(seeds):
        from ..prune.training import train

        torch.manual_seed(seed)
        dense = build_model("resnet20", {"num_classes": 10})
        train(dense, data(train_epochs), train_epochs, seed, "dense")
        dense_top1.append(data(0).accuracy(dense))
        log(f"resnet20 seed {seed} dense: top-1 {dense_top1[-1]:.2f}%")
        if seed == 0:
            _save_with(dense, "resnet20", shape, folder / "resnet20-dense.pt")
        for method, options in CHANNEL_METHODS:
            for ratio in ratios:
                model = copy.deepcopy(dense)
                result = prune(model, method, ratio, seed=seed, data=data(finetune),
                               example=torch.zeros(shape), **options)  # fmt: skip
                label = method if method != "channel" else f"channel-{options['criterion']}"
                run = ChannelRun(label, ratio, seed, data(0).accuracy(model), result.sparsity)
                if seed == 0:
                    run.checkpoint = str(folder / f"resnet20-{label}-{ratio:g}.pt")
                    _save_with(model, "resnet20", shape, Path(run.checkpoint))
                    out = Path(run.checkpoint).with_suffix(".channels.pt")
                    export(run.checkpoint, out, ExportConfig.of(format="channels"), force=True)
                    exported.append((f"{label} {ratio:g} (channels export)", str(out)))
                runs.append(run)
                log(f"resnet20 seed {seed} {label} {ratio:g}: top-1 {run.top1:.2f}%")
    return {"task": task, "runs": runs, "dense": dense_top1, "exported": exported}


def _save_with(model: nn.Module, arch: str, shape, path: Path) -> None:
    meta = CheckpointMeta(arch=arch, arch_kwargs={"num_classes": 10}, input_shape=list(shape),
                          dataset="digits32")  # fmt: skip
    save_checkpoint(path, model, meta, force=True)


def profile_files(paths: list[str], labels: list[str], threads: int = 1) -> list[dict]:
    """Profile files in one interleaved run: size, MACs, effective MACs, latency."""
    from ..measure.latency import LatencyConfig
    from ..profiler import ProfileConfig, profile

    config = ProfileConfig(
        threads=threads,
        memory=False,
        energy=False,
        latency=LatencyConfig(warmup=5, min_iters=20, min_seconds=0.3),
    )
    report = profile(paths, config)
    return [_profile_row(label, row) for label, row in zip(labels, report.results, strict=True)]


def _profile_row(label: str, row) -> dict:
    return {"row": label, "size_mb": row.size_mb, "macs_m": row.macs_m,
            "effective_macs_m": row.effective_macs_m, "sparsity_pct": row.sparsity_pct,
            "latency_ms": row.latency_ms.median, "latency_iqr": _iqr(row.latency_ms.samples),
            "format": row.format, "params": row.params}  # fmt: skip


def channel_table(study: dict, ratios: list[float]) -> list[str]:
    lines = [f"| method | {' | '.join(f'{r:.0%} of channels' for r in ratios)} |",
             "|---|" + "---|" * len(ratios)]  # fmt: skip
    lines.append(f"| dense | {' | '.join([_mean_std(study['dense'])] * len(ratios))} |")
    for method in dict.fromkeys(r.method for r in study["runs"]):
        cells = [_mean_std([r.top1 for r in study["runs"] if (r.method, r.ratio) == (method, q)])
                 for q in ratios]  # fmt: skip
        lines.append(f"| {method} | {' | '.join(cells)} |")
    return lines
