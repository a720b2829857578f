"""Measured comparison of the pruning methods (issue 13): held-out top-1 of every unstructured
method at 50/80/90/95 % on the mnist1d MLP and LeNet-300-100 (bundled 5,000-image MNIST
subset), mean and std over seeds, then each seed-0 checkpoint profiled by sparsebench.

With `--part channels`: the channel methods (torch-pruning L1, BN scale, Taylor; regression)
on a CIFAR-style ResNet-20 trained briefly on digits upsampled to 3x32x32, each seed-0 model
exported to `channels` (zeroed channels removed, verified) and profiled beside the dense one.

Usage: python benchmarks/prune_methods.py [--quick] [--seeds 3] [--part unstructured|channels]
       [--output docs/prune-methods.md]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("GOMP_SPINCOUNT", "100000")

from sparsebench import progress  # noqa: E402
from sparsebench.bench import prune_methods as pm  # noqa: E402
from sparsebench.environment import collect_environment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, two sparsities")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", default="mnist1d_mlp,lenet_300_100")
    parser.add_argument("--methods", default=",".join(pm.UNSTRUCTURED))
    parser.add_argument("--part", choices=("unstructured", "channels"), default="unstructured")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.part == "channels":
        return channels(args)
    args.output = args.output or Path("docs/prune-methods.md")
    sparsities = [0.5, 0.9] if args.quick else [0.5, 0.8, 0.9, 0.95]
    seeds = 1 if args.quick else args.seeds
    tasks, methods = args.tasks.split(","), args.methods.split(",")
    progress.set_quiet(True)
    import torch

    torch.set_num_threads(1)  # small models: one thread trains fastest and does not oversubscribe
    folder = pm.temporary_folder()
    study = pm.run_study(tasks, methods, sparsities, seeds, folder,
                         log=lambda line: print(line, file=sys.stderr, flush=True))  # fmt: skip
    lines = ["# Pruning methods compared (issue 13)", "",
             f"`python benchmarks/prune_methods.py{' --quick' if args.quick else ''}`: "
             f"{seeds} seed(s); held-out top-1 (%) as mean ± std over seeds. "
             "Budgets: see `sparsebench/bench/prune_methods.py` (after-training methods "
             "fine-tune, at-init methods train from the seed's initial weights).", ""]  # fmt: skip
    for task in tasks:
        spec = pm.TASKS[task]
        lines += [f"## {task} on {spec.data} (dense {spec.train} epochs, fine-tune "
                  f"{spec.finetune})", ""]  # fmt: skip
        lines += pm.accuracy_table(study, task, sparsities) + [""]
        rows = pm.profile_checkpoints(study, task)
        lines += ["Seed-0 checkpoints profiled by `sparsebench profile` (dense PyTorch "
                  "runtime, 1 thread, batch 1, one interleaved run):", ""]  # fmt: skip
        lines += pm.profile_table(rows) + [""]
    env = collect_environment("cpu")
    lines += [
        f"Machine: {env['cpu']}, {env['cpu_count_logical']} logical CPUs, torch {env['torch']}.",
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    payload = {"schema": 1, "runs": [asdict(r) for r in study.runs], "dense": study.dense,
               "profiles": study.profiles}  # fmt: skip
    args.output.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    print("\n".join(lines))


def channels(args) -> None:
    import torch

    torch.set_num_threads(1)
    progress.set_quiet(True)
    ratios = [0.5] if args.quick else [0.25, 0.5]
    seeds = 1 if args.quick else args.seeds
    epochs = (2, 1) if args.quick else (8, 3)
    folder = pm.temporary_folder()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    study = pm.run_channel_study(ratios, seeds, folder, *epochs, log=log)
    labels = [label for label, _ in study["exported"]]
    paths = [path for _, path in study["exported"]]
    rows = pm.profile_files([str(folder / "resnet20-dense.pt"), *paths], ["dense", *labels])
    quick = " --quick" if args.quick else ""
    lines = ["# Channel pruning methods on ResNet-20 (issue 13)", "",
             f"`python benchmarks/prune_methods.py --part channels{quick}`: CIFAR-style ResNet-20 "
             f"trained {epochs[0]} epochs on scikit-learn's digits "
             "upsampled to 3x32x32 (an offline stand-in for CIFAR-10: 1,437 train / 360 test "
             f"images), each method then fine-tuned {epochs[1]} epochs; held-out top-1 (%) as "
             f"mean ± std over {seeds} seed(s).", ""]  # fmt: skip
    lines += pm.channel_table(study, ratios) + [""]
    lines += ["Seed-0 models exported with `-f channels` (every zeroed channel the exporter can "
              "cut is removed; outputs verified against the pruned model) and profiled by "
              "`sparsebench profile` in one interleaved run (1 thread, batch 1):", ""]  # fmt: skip
    lines += pm.profile_table(rows) + [""]
    env = collect_environment("cpu")
    lines += [f"Machine: {env['cpu']}, {env['cpu_count_logical']} logical CPUs, "
              f"torch {env['torch']}.", ""]  # fmt: skip
    output = args.output or Path("docs/prune-channels.md")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + "\n")
    payload = {"schema": 1, "runs": [asdict(r) for r in study["runs"]], "dense": study["dense"],
               "profiles": rows}  # fmt: skip
    output.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
