"""`gradient-vs-magnitude` (seed 000): pruning by the moving average of |grad| against
magnitude pruning on the mnist1d MLP, 10 % to 90 % sparsity."""

from __future__ import annotations

import copy

from ...prune import prune
from ...prune.training import train
from .. import plots
from ..base import Outcome, Recipe, fresh, register_recipe
from ..common import beats, mean, mean_std, prune_data, table

ARCH, SHAPE, WARMUP = "mnist1d_mlp", (1, 40), 10


@register_recipe
class GradientVsMagnitude(Recipe):
    name = "gradient-vs-magnitude"
    seed = "000 (gradient-based pruning experiment: an MLP on mnist1d)"
    title = "Gradient-magnitude vs magnitude pruning on mnist1d"
    claim = (
        "The moving average of the absolute value of each weight's gradient was tracked "
        "during training. After a warm-up period of 10 epochs, a certain percentage of the "
        "weights with the lowest average gradient magnitudes were pruned.\n"
        "The results show that magnitude-based pruning consistently outperforms "
        "gradient-based pruning across all tested sparsity levels."
    )

    def run(self, config, workspace):
        sparsities = [0.3, 0.6, 0.9] if config.quick else [s / 10 for s in range(1, 10)]
        finetune = 2 if config.quick else 5
        data = prune_data("mnist1d", SHAPE, finetune, batch_size=128)
        accuracy = {"magnitude": {}, "gradient": {}}
        dense_top1, saved = [], []
        for seed in range(self.seeds(config)):
            workspace.log(f"gradient-vs-magnitude: seed {seed}")
            dense = fresh(ARCH, seed)
            train(dense, data, WARMUP, seed, "warm-up")  # the magnitude side's 10 epochs
            dense_top1.append(data.accuracy(dense))
            if seed == 0:
                saved.append(workspace.save(dense, "dense", ARCH, SHAPE, dataset="mnist1d"))
            for sparsity in sparsities:
                magnitude = copy.deepcopy(dense)
                prune(magnitude, "magnitude", sparsity, scope="global", seed=seed, data=data)
                gradient = fresh(ARCH, seed)  # trains the same 10 epochs while it tracks |grad|
                prune(
                    gradient,
                    "gradient",
                    sparsity,
                    scope="global",
                    seed=seed,
                    data=data,
                    warmup=WARMUP,
                    momentum=0.9,
                )
                for name, model in (("magnitude", magnitude), ("gradient", gradient)):
                    accuracy[name].setdefault(sparsity, []).append(data.accuracy(model))
                    if seed == 0 and sparsity == sparsities[-1]:
                        saved.append(
                            workspace.save(
                                model, f"{name}-{sparsity:g}", ARCH, SHAPE, dataset="mnist1d"
                            )
                        )
        return self._outcome(accuracy, dense_top1, sparsities, finetune, workspace, saved)

    def _outcome(self, accuracy, dense_top1, sparsities, finetune, workspace, saved) -> Outcome:
        rows = [
            [
                f"{s:.0%}",
                mean_std(accuracy["magnitude"][s]),
                mean_std(accuracy["gradient"][s]),
                f"{mean(accuracy['magnitude'][s]) - mean(accuracy['gradient'][s]):+.2f}",
            ]
            for s in sparsities
        ]
        sections = [
            f"`mnist1d_mlp` (40-100-100-10) on mnist1d (4,000 train / 1,000 test), Adam lr "
            f"1e-3, batch 128. Both sides train {WARMUP} epochs from the same initial weights: "
            "the gradient side tracks the moving average of |grad| (momentum 0.9 per step) "
            "while it trains, the magnitude side prunes the trained weights; each then prunes "
            f"globally and fine-tunes {finetune} epochs under the mask. Dense after the warm-up:"
            f" {mean_std(dense_top1)}% test top-1. Mean ± std over seeds.",
            "",
            table(
                ["sparsity", "magnitude top-1 (%)", "gradient top-1 (%)", "magnitude - gradient"],
                rows,
            ),
        ]
        gaps = [beats(accuracy["magnitude"][s], accuracy["gradient"][s]) for s in sparsities]
        wins, losses = gaps.count(1), gaps.count(-1)
        verdict = (
            "reproduced"
            if losses == 0 and wins >= len(sparsities) / 2
            else "partly reproduced"
            if wins > losses
            else "not reproduced"
        )
        reason = (
            f"magnitude pruning beats gradient-magnitude pruning (mean over seeds, by more than "
            f"the larger std) at {wins} of {len(sparsities)} sparsities, ties within the spread "
            f"at {gaps.count(0)} and loses at {losses} (rule: no loss and at least half won "
            "reproduces, more wins than losses partly)"
        )
        series = {name: [accuracy[name][s] for s in sparsities] for name in accuracy}
        plot = plots.curves(
            workspace.plot_path("accuracy_vs_sparsity.png"),
            [100 * s for s in sparsities],
            series,
            "sparsity (%)",
            "test top-1 (%)",
            "mnist1d MLP: mean and min-max over seeds",
        )
        results = {
            "sparsities": sparsities,
            "top1": {k: {str(s): v for s, v in d.items()} for k, d in accuracy.items()},
            "dense_top1": dense_top1,
            "warmup_epochs": WARMUP,
            "finetune_epochs": finetune,
        }
        return Outcome(
            sections,
            results,
            verdict,
            reason,
            [plot],
            saved,
            compare_data="mnist1d",
            data_note="mnist1d generated offline (mnist1d package)",
        )
