"""`sparsebench reproduce`: every recipe in --quick mode writes its report, results and
checkpoints, with figures in results.json that match the report's tables; bad input is one
line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.errors import SparsebenchError
from sparsebench.reproduce import RECIPES, ReproduceConfig, reproduce
from sparsebench.reproduce.common import beats
from sparsebench.reproduce.recipes.lottery_ticket import expected_counts

runner = CliRunner()
QUICK = ReproduceConfig(quick=True)


def invoke(*args):
    return runner.invoke(app, ["reproduce", *[str(a) for a in args]])


def _written(folder):
    report = (folder / "report.md").read_text()
    results = json.loads((folder / "results.json").read_text())
    assert results["schema"] == 1 and results["quick"] is True
    assert results["verdict"] in ("reproduced", "partly reproduced", "not reproduced")
    assert f"**{results['verdict']}**" in report and "## The claim" in report
    assert "## Deployment: `sparsebench compare`" in report and results["compare"]
    for plot in folder.glob("*.png"):
        assert f"]({plot.name})" in report
    assert list((folder / "checkpoints").glob("*.pt"))
    return report, results


def test_list_names_every_recipe():
    result = invoke("--list")
    assert result.exit_code == 0
    for name in ("gradient-vs-magnitude", "assignment", "gumbel-gates", "lottery-ticket"):
        assert f"{name}: " in result.output and name in RECIPES


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lotery-ticket", "-o", "{tmp}/x"], "Did you mean lottery-ticket"),
        (["lottery-ticket"], "--output DIR"),
        ([], "name a recipe"),
        (["lottery-ticket", "--data", "cifar10:{tmp}", "-o", "{tmp}/x"], "takes no --data"),
        (["assignment", "--data", "cifar10:{tmp}/none", "-o", "{tmp}/x"], "no such"),
        (["assignment", "--data", "mnist", "-o", "{tmp}/x"], "cifar10:DIR or cifar100:DIR"),
        (["lottery-ticket", "--seeds", "0", "-o", "{tmp}/x"], "--seeds"),
        (["lottery-ticket", "-o", "{tmp}/file.txt"], "not a directory"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, message):
    (tmp_path / "file.txt").write_text("x")
    result = invoke(*[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and message in result.output


def test_an_existing_report_needs_force(tmp_path):
    (tmp_path / "report.md").write_text("earlier")
    with pytest.raises(SparsebenchError, match="--force"):
        reproduce("gradient-vs-magnitude", tmp_path, QUICK)
    assert (tmp_path / "report.md").read_text() == "earlier"


def test_gradient_vs_magnitude_quick(tmp_path):
    result = invoke("gradient-vs-magnitude", "--quick", "-o", tmp_path / "gvm")
    assert result.exit_code == 0, result.output
    report, results = _written(tmp_path / "gvm")
    figures = results["results"]
    for sparsity in figures["sparsities"]:
        magnitude = figures["top1"]["magnitude"][str(sparsity)][0]
        gradient = figures["top1"]["gradient"][str(sparsity)][0]
        assert f"| {sparsity:.0%} | {magnitude:.2f} | {gradient:.2f} |" in report
    wins = sum(figures["top1"]["magnitude"][str(s)][0] > figures["top1"]["gradient"][str(s)][0]
               for s in figures["sparsities"])  # fmt: skip
    assert f"at {wins} of {len(figures['sparsities'])} sparsities" in report


def test_a_gap_within_the_spread_over_seeds_is_a_tie():
    assert beats([52.93, 52.5, 53.36], [52.97, 52.7, 53.2]) == 0  # seed 000's 10 % row
    assert beats([47.4, 46.4, 48.5], [24.0, 20.0, 28.2]) == 1
    assert beats([24.0, 20.0, 28.2], [47.4, 46.4, 48.5]) == -1
    assert beats([50.1], [50.0]) == 1  # one seed: no spread to hide in


def test_lottery_ticket_quick_counts_follow_the_schedule(tmp_path):
    reproduce("lottery-ticket", tmp_path, QUICK)
    report, results = _written(tmp_path)
    assert expected_counts() == [266_200, 212_960, 170_368, 136_294, 109_035, 87_228]
    figures = results["results"]
    assert figures["nonzero_exact"] is True and "exactly as expected" in report
    for row in figures["tickets"][0]:
        assert f"| {row['nonzero']:,} | {100 * row['nonzero'] / 266_200:.2f}% |" in report
        assert f"{row['test_top1']:.2f}" in report
    assert len(figures["controls"][0]) == 5


def test_gumbel_gates_quick(tmp_path):
    reproduce("gumbel-gates", tmp_path, QUICK)
    report, results = _written(tmp_path)
    figures = results["results"]
    for density in figures["densities"]:
        kept = figures["survivors"][str(density)][0]
        assert sum(kept.values()) == round(density * 266_200)
        assert f"{figures['top1'][str(density)][0]:.2f}" in report
    assert len(figures["pixels"]) == 28 and sum(map(sum, figures["pixels"])) == kept["fc1"]


def test_assignment_quick_on_the_offline_stand_in(tmp_path):
    reproduce("assignment", tmp_path, QUICK)
    report, results = _written(tmp_path)
    assert "offline stand-in" in report and "Task 0 layout" in report and "Task 1/2" in report
    rows = results["results"]["rows"]
    assert set(rows) == {"task0-baseline", "task1a-sensitivity80", "task1b-grasp80",
                         "task2-regression"}  # fmt: skip
    assert abs(rows["task1a-sensitivity80"]["sparsity_pct"] - 80) < 0.5
    assert rows["task2-regression"]["macs_m"] < 0.5 * rows["task0-baseline"]["macs_m"]
    for row in rows.values():
        assert f"{row['macs_m']:.3f}" in report
