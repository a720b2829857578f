"""`sparsebench check`: the latency gate end to end, its statistics and its errors."""

from __future__ import annotations

import random

import pytest
import torch
from typer.testing import CliRunner

from sparsebench.check import Thresholds, latency_verdict, load_profile
from sparsebench.checkpoint import CheckpointMeta, save_checkpoint
from sparsebench.cli import app
from sparsebench.errors import SparsebenchError
from sparsebench.zoo import create_model

runner = CliRunner()

QUICK = """
name = "quick"
batch_sizes = [1]
reference_matmul = 96
[timing]
rounds = 8
block_seconds = 0.005
[[models]]
{model}
"""

FACTORY = """
import time
from torch import nn

class Slow(nn.Sequential):
    def forward(self, x):
        time.sleep({sleep})
        return super().forward(x)

def build():
    return Slow(nn.Linear(40, 10))
"""


def _profile(tmp_path, model: str, extra: str = "") -> str:
    path = tmp_path / "quick.toml"
    path.write_text(extra + QUICK.format(model=model))
    return str(path)


def _check(*args):
    return runner.invoke(app, ["check", *args])


@pytest.fixture
def mlp_profile(tmp_path):
    return _profile(tmp_path, 'name = "mlp"\nzoo = "mnist1d_mlp"\nseed = 0\nprune = 0.5')


@pytest.mark.timing
def test_unchanged_model_passes_and_writes_step_summary(mlp_profile, tmp_path, monkeypatch):
    assert _check(mlp_profile, "--update-baseline").exit_code == 0
    assert (tmp_path / "quick.baseline.json").is_file()
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = _check(mlp_profile)
    assert result.exit_code == 0, result.output
    assert "latency/ref b=1" in result.output
    assert "| mlp | latency/ref b=1 |" in summary.read_text()


@pytest.mark.timing
def test_no_false_alarm_over_five_runs(mlp_profile):
    assert _check(mlp_profile, "--update-baseline").exit_code == 0
    codes = [_check(mlp_profile).exit_code for _ in range(5)]
    assert codes == [0] * 5


def test_slowed_model_fails_and_is_reported(tmp_path):
    factory = tmp_path / "slowmodel.py"
    factory.write_text(FACTORY.format(sleep=0))
    model = 'name = "slow"\nfactory = "slowmodel.py:build"\ninput_shape = [1, 40]'
    profile = _profile(tmp_path, model)
    assert _check(profile, "--update-baseline").exit_code == 0
    factory.write_text(FACTORY.format(sleep=0.002))
    result = _check(profile)
    assert result.exit_code == 1, result.output
    assert "REGRESSION" in result.output and "slow latency/ref b=1" in result.output


def test_accuracy_drop_fails(tmp_path):
    from sparsebench.data import load_dataset
    from sparsebench.train import TrainConfig, fit

    torch.manual_seed(0)
    model = create_model("mnist1d_mlp")
    fit(model, load_dataset("mnist1d", "train"), (1, 40), TrainConfig(epochs=3))
    checkpoint = tmp_path / "mlp.pt"
    meta = CheckpointMeta(arch="mnist1d_mlp", input_shape=[1, 40])
    save_checkpoint(checkpoint, model, meta)
    profile = _profile(tmp_path, 'name = "trained"\npath = "mlp.pt"', 'data = "mnist1d"\n')
    assert _check(profile, "--update-baseline").exit_code == 0
    with torch.no_grad():  # shuffle the classes: same weights, sizes and sparsity
        model.fc3.weight.copy_(model.fc3.weight.roll(3, dims=0))
        model.fc3.bias.copy_(model.fc3.bias.roll(3))
    save_checkpoint(checkpoint, model, meta, force=True)
    result = _check(profile)
    assert result.exit_code == 1, result.output
    assert "trained accuracy_top1" in result.output  # latency may move too: timing, not tested


def test_missing_baseline_is_one_line_exit_2(mlp_profile):
    result = _check(mlp_profile)
    assert result.exit_code == 2
    assert "--update-baseline first" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_profile_is_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[models]]\nname = "m"\nzoo = "mnist1d_mlp"\nprune = 1.5\n')
    result = _check(str(path))
    assert result.exit_code == 2
    assert "prune must be in [0, 1)" in result.output
    path.write_text('typo = 1\n[[models]]\nname = "m"\nzoo = "mnist1d_mlp"\n')
    with pytest.raises(SparsebenchError, match="unknown key"):
        load_profile(path)


def _samples(center: float, spread: float, n: int = 15, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def test_big_but_insignificant_change_passes():
    base = [1.0, 1.0, 1.0, 1.0, 5.0]
    current = [0.9, 1.6, 1.6, 5.0, 0.8]  # median x1.6, but the rounds overlap
    verdict = latency_verdict(base, current, max_slowdown=1.25, alpha=0.01)
    assert verdict.factor > 1.25 and verdict.p_value >= 0.01
    assert not verdict.regressed


def test_small_but_significant_change_passes():
    verdict = latency_verdict(_samples(1.0, 0.01), _samples(1.1, 0.01, seed=1), 1.25, 0.01)
    assert verdict.p_value < 1e-4 and verdict.factor < 1.25
    assert not verdict.regressed


def test_big_and_significant_change_fails():
    verdict = latency_verdict(_samples(1.0, 0.05), _samples(1.5, 0.05, seed=1), 1.25, 0.01)
    assert verdict.p_value < 1e-4 and verdict.factor > 1.4
    assert verdict.regressed


def test_faster_is_never_a_regression():
    verdict = latency_verdict(_samples(1.0, 0.05), _samples(0.5, 0.05, seed=1), 1.25, 0.01)
    assert verdict.p_value > 0.5 and not verdict.regressed


def test_thresholds_validate():
    with pytest.raises(SparsebenchError, match="max_slowdown"):
        Thresholds(max_slowdown=0.9)
