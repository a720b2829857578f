"""`sparsebench check`: the decision rule on hand-made samples, and the command end to end
with a deterministic stand-in for the timer (timed behaviour is benchmarks/gate.py's job)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sparsebench.check import (
    INCONCLUSIVE,
    PASS,
    REGRESSION,
    Thresholds,
    confirm,
    latency_verdict,
    load_profile,
    noise_floor,
    slowdown_interval,
)
from sparsebench.check import measure as check_measure
from sparsebench.check.decision import quiet_rounds, reference_spread
from sparsebench.check.machine import cpu_differences, cpu_identity
from sparsebench.checkpoint import CheckpointMeta, save_checkpoint
from sparsebench.cli import app
from sparsebench.errors import SparsebenchError
from sparsebench.measure.interleaved import Comparison
from sparsebench.zoo import create_model

runner = CliRunner()

QUICK = """
name = "quick"
batch_sizes = [1]
[timing]
rounds = 12
block_seconds = 0.0
block_iters = 2
warmup = 0
max_seconds = 0.0
[[models]]
{model}
"""
MLP = 'name = "mlp"\nzoo = "mnist1d_mlp"\nseed = 0\nprune = 0.5'
CNN = 'name = "cnn"\nzoo = "mnist1d_cnn"\nseed = 0'


def _profile(tmp_path, models: str = MLP, extra: str = "") -> str:
    path = tmp_path / "quick.toml"
    path.write_text(extra + QUICK.format(model=models))
    return str(path)


def _check(*args):
    return runner.invoke(app, ["check", *args])


def _samples(center: float, spread: float, n: int = 20, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


THRESHOLDS = Thresholds(max_slowdown=1.10, confidence=0.95)


# ---------------------------------------------------------------- the decision rule
def test_unchanged_ratios_pass():
    verdict = latency_verdict(_samples(1.0, 0.01), _samples(1.0, 0.01, seed=1), THRESHOLDS)
    assert verdict.status == PASS
    assert verdict.low <= verdict.factor <= verdict.high < 1.10


def test_clear_slowdown_is_a_regression():
    verdict = latency_verdict(_samples(1.0, 0.01), _samples(1.2, 0.01, seed=1), THRESHOLDS)
    assert verdict.status == REGRESSION and verdict.low > 1.10
    assert verdict.factor == pytest.approx(1.2, rel=0.02)


def test_wide_interval_across_the_threshold_is_inconclusive():
    base = _samples(1.0, 0.3, seed=2)
    current = _samples(1.12, 0.3, seed=3)
    verdict = latency_verdict(base, current, THRESHOLDS)
    assert verdict.low < 1.10 < verdict.high
    assert verdict.status == INCONCLUSIVE


def test_small_slowdown_with_a_tight_interval_passes():
    verdict = latency_verdict(_samples(1.0, 0.002), _samples(1.05, 0.002, seed=1), THRESHOLDS)
    assert verdict.low > 1.0 and verdict.high < 1.10  # significant, but under the threshold
    assert verdict.status == PASS


def test_faster_is_never_a_regression():
    verdict = latency_verdict(_samples(1.0, 0.05), _samples(0.5, 0.05, seed=1), THRESHOLDS)
    assert verdict.status == PASS


def test_a_noisy_run_is_inconclusive_even_when_the_interval_is_clear():
    verdict = latency_verdict(_samples(1.0, 0.01), _samples(1.5, 0.01), THRESHOLDS, noisy=True)
    assert verdict.low > 1.10 and verdict.status == INCONCLUSIVE


def test_interval_is_reproducible_and_needs_five_rounds():
    base, current = _samples(1.0, 0.05), _samples(1.1, 0.05, seed=1)
    assert slowdown_interval(base, current, 0.95) == slowdown_interval(base, current, 0.95)
    assert slowdown_interval([1.0] * 6, [1.2] * 6, 0.95) == pytest.approx((1.2, 1.2, 1.2))
    with pytest.raises(SparsebenchError, match="at least 5 rounds"):
        slowdown_interval([1.0] * 4, [1.0] * 10, 0.95)


def test_confirmation_decides_what_the_first_run_suspected():
    assert confirm(PASS, None) == PASS
    assert confirm(REGRESSION, REGRESSION) == REGRESSION
    assert confirm(REGRESSION, PASS) == PASS  # a burst in the first run
    assert confirm(REGRESSION, INCONCLUSIVE) == INCONCLUSIVE
    assert confirm(INCONCLUSIVE, REGRESSION) == REGRESSION


def test_quiet_rounds_drop_the_machines_slow_state():
    fast, slow = [1.0, 1.01], [1.6, 1.62]
    pairs = [fast] * 8 + [slow] * 10 + [[1.0, 1.7]] + [fast] * 3
    quiet = quiet_rounds(pairs)
    assert quiet == [True] * 8 + [False] * 11 + [True] * 3


def test_a_run_wholly_in_the_slow_state_has_no_quiet_rounds_under_the_baseline_ceiling():
    slow = [[1.6, 1.61], [1.62, 1.6], [1.6, 1.6]]
    assert quiet_rounds(slow) == [True] * 3  # on its own, its fastest state looks quiet
    assert quiet_rounds(slow, ceiling=1.1) == [False] * 3
    assert quiet_rounds([[1.0, 1.02], [1.6, 1.6]], ceiling=1.1) == [True, False]


def test_noise_floor_is_the_reference_against_itself():
    steady = [[1.0 * s, 1.0 * s] for s in (1.0, 1.5, 1.2, 1.7, 1.1, 1.3)]  # speed moves, A=B
    assert noise_floor(steady) == pytest.approx(0.0)
    assert reference_spread(steady) > 0.1
    jittery = [[1.0, b] for b in (1.0, 1.2, 0.8, 1.25, 0.85, 1.1, 0.9)]
    assert noise_floor(jittery) > 0.1
    assert noise_floor(jittery, [True, False, False, False, False, False, True]) < 0.1


def test_thresholds_validate():
    with pytest.raises(SparsebenchError, match="max_slowdown"):
        Thresholds(max_slowdown=0.9)
    with pytest.raises(SparsebenchError, match="confidence"):
        Thresholds(confidence=1.5)
    assert Thresholds(max_slowdown=1.2).noise_limit == pytest.approx(0.2)
    assert Thresholds(max_noise=0.05).noise_limit == 0.05


def test_cpu_identity_and_differences():
    here = cpu_identity()
    assert cpu_differences(here, here) == []
    other = {**here, "model": "999", "isa": [*here["isa"], "made_up_isa"]}
    found = cpu_differences(other, here)
    assert found[0].startswith("CPU ") and "model 999 ->" in found[0]
    assert found[1] == "instruction sets -made_up_isa"
    assert cpu_differences(None, here) == ["the baseline does not record its CPU"]


# ---------------------------------------------------------------- the command, timer faked
class FakeTimer:
    """Stands in for `time_interleaved`: every block's minimum is the variant's time in ms
    times the round's machine speed (which the ratio must cancel), times a per-pass factor
    for chosen entries, and the reference copies may disagree by `jitter`."""

    def __init__(self, monkeypatch):
        self.times = {"reference": 0.03, "mlp": 0.025, "cnn": 0.06}
        self.slow: dict[str, list[float]] = {}  # entry name -> factor per pass
        self.jitter = 0.0
        self.passes = 0
        monkeypatch.setattr(check_measure, "time_interleaved", self)

    def __call__(self, variants, timing, device="cpu", offset=0):
        rng = random.Random(self.passes)
        comparison = Comparison({name: [] for name in variants})
        for index in range(timing.rounds):
            speed = 1 + 0.02 * (index % 3)  # the machine's speed moves from round to round
            for name in variants:
                model = name.split("@")[0].split(" ")[0]
                factor = self.slow.get(model, [1.0])
                factor = factor[min(self.passes, len(factor) - 1)]
                time_ms = self.times[model] * speed * factor
                if name.startswith("reference ("):
                    time_ms *= 1 + rng.uniform(-self.jitter, self.jitter)
                comparison.rounds[name].append([time_ms * (1 + rng.uniform(0, 0.0002))] * 2)
        self.passes += 1
        return comparison


@pytest.fixture
def timer(monkeypatch):
    return FakeTimer(monkeypatch)


def _record(profile: str, timer: FakeTimer) -> None:
    result = _check(profile, "--update-baseline")
    assert result.exit_code == 0, result.output
    timer.passes = 0


def test_unchanged_model_passes_with_summary_and_json(tmp_path, timer, monkeypatch):
    profile = _profile(tmp_path)
    _record(profile, timer)
    baseline = json.loads((tmp_path / "quick.baseline.json").read_text())
    assert baseline["schema"] == "sparsebench.check/v2"
    assert baseline["environment"]["cpu_identity"] == cpu_identity()
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = _check(profile, "--json", str(tmp_path / "result.json"))
    assert result.exit_code == 0, result.output
    assert "pass: no regression" in result.output
    assert "confirmation: not needed" in result.output
    text = summary.read_text()
    assert "**pass: no regression**" in text and "noise floor 0.0%" in text
    assert "| mlp | latency/ref b=1 |" in text
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["status"] == "pass" and data["exit_code"] == 0
    assert data["noise"]["quiet_rounds"] == 12 and data["confirmation"] is None
    latency = [f for f in data["findings"] if f["metric"] == "latency/ref b=1"]
    assert latency[0]["change"] == "x1.000"


def test_confirmed_slowdown_fails(tmp_path, timer):
    profile = _profile(tmp_path, f"{MLP}\n[[models]]\n{CNN}")
    _record(profile, timer)
    timer.slow = {"cnn": [1.3]}
    result = _check(profile, "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 1, result.output
    assert "REGRESSION (confirmed)" in result.output
    assert "REGRESSION (1): cnn latency/ref b=1" in result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["confirmation"]["entries"] == ["cnn latency/ref b=1"]  # only the suspect
    assert data["confirmation"]["outcomes"] == {"cnn latency/ref b=1": ["regression"] * 2}


def test_a_slowdown_the_confirmation_does_not_see_passes(tmp_path, timer):
    profile = _profile(tmp_path)
    _record(profile, timer)
    timer.slow = {"mlp": [1.4, 1.0]}  # slow in the first pass only: a burst
    result = _check(profile)
    assert result.exit_code == 0, result.output
    assert "regression not confirmed" in result.output
    assert "mlp latency/ref b=1: regression -> pass" in result.output


def test_noisy_machine_is_inconclusive_exit_3(tmp_path, timer):
    profile = _profile(tmp_path)
    _record(profile, timer)
    timer.jitter = 0.5
    result = _check(profile)
    assert result.exit_code == 3, result.output
    assert "INCONCLUSIVE" in result.output and "too noisy" in result.output


def test_noisy_baseline_is_not_written(tmp_path, timer):
    profile = _profile(tmp_path)
    timer.jitter = 0.5
    result = _check(profile, "--update-baseline")
    assert result.exit_code == 3
    assert "baseline was not written" in result.output
    assert not (tmp_path / "quick.baseline.json").exists()


def test_baseline_from_another_cpu_warns_and_still_decides(tmp_path, timer):
    profile = _profile(tmp_path)
    _record(profile, timer)
    path = tmp_path / "quick.baseline.json"
    data = json.loads(path.read_text())
    data["environment"]["cpu_identity"]["name"] = "Some Other CPU"
    path.write_text(json.dumps(data))
    result = _check(profile)
    assert result.exit_code == 0, result.output
    assert "different machine" in result.output and "--update-baseline" in result.output


def test_a_run_wholly_in_a_slow_state_is_inconclusive_with_strict_json(tmp_path, timer):
    profile = _profile(tmp_path)
    _record(profile, timer)
    timer.times = {name: t * 1.6 for name, t in timer.times.items()}  # everything, same CPU
    result = _check(profile, "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 3, result.output
    assert "only 0 of 12 rounds were quiet" in result.output
    assert "reference ran x1.60 slower than when the baseline was recorded" in result.output

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    data = json.loads((tmp_path / "r.json").read_text(), parse_constant=refuse)
    assert data["noise_floor"] is None and data["noise"]["quiet_rounds"] == 0
    assert {f["status"] for f in data["findings"] if f["metric"].startswith("latency")} == {
        "inconclusive"
    }


def test_old_baseline_schema_is_one_line_exit_2(tmp_path, timer):
    profile = _profile(tmp_path)
    (tmp_path / "quick.baseline.json").write_text('{"schema": "sparsebench.check/v1"}')
    result = _check(profile)
    assert result.exit_code == 2
    assert "--update-baseline" in result.output
    assert len(result.output.strip().splitlines()) == 1


# ---------------------------------------------------------------- real timing, exact checks
def test_real_measurement_has_the_baseline_layout(tmp_path):
    from sparsebench.check import build_models, measure_built

    config = load_profile(_profile(tmp_path, f"{MLP}\n[[models]]\n{CNN}"))
    measured = measure_built(config, build_models(config), None)
    pairs, quiet = measured["reference_minima_ms"], measured["quiet"]
    assert len(pairs) >= 12 and len(quiet) == len(pairs)
    assert all(len(pair) == 2 and min(pair) > 0 for pair in pairs)
    for name in ("mlp", "cnn"):
        timed = measured["models"][name]["latency"]["1"]
        assert len(timed["minima_ms"]) == len(pairs)
        assert len(timed["ratios"]) == sum(quiet)


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
    first = _check(profile, "--update-baseline")
    if first.exit_code == 3:  # the real machine was too noisy to record: write it anyway
        from sparsebench.check import build_models, measure_built, write_baseline

        config = load_profile(profile)
        write_baseline(tmp_path / "quick.baseline.json", measure_built(
            config, build_models(config), load_dataset("mnist1d", "test")))  # fmt: skip
    with torch.no_grad():  # shuffle the classes: same weights, sizes and sparsity
        model.fc3.weight.copy_(model.fc3.weight.roll(3, dims=0))
        model.fc3.bias.copy_(model.fc3.bias.roll(3))
    save_checkpoint(checkpoint, model, meta, force=True)
    result = _check(profile)
    assert result.exit_code == 1, result.output  # a regression outranks an inconclusive latency
    assert "trained accuracy_top1" in result.output


# ---------------------------------------------------------------- bad input
def test_missing_baseline_is_one_line_exit_2(tmp_path):
    result = _check(_profile(tmp_path))
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
    path.write_text('reference = "fft"\n[[models]]\nname = "m"\nzoo = "mnist1d_mlp"\n')
    with pytest.raises(SparsebenchError, match="reference must be one of mlp, matmul"):
        load_profile(path)


def test_old_alpha_key_points_to_confidence(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text('[thresholds]\nalpha = 0.01\n[[models]]\nname = "m"\nzoo = "mnist1d_mlp"\n')
    with pytest.raises(SparsebenchError, match="did you mean 'confidence'"):
        load_profile(path)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("models", "mlp", "latency", "1", "ratios"), ["fast"], "is not a list of positive"),
        (("models", "mlp", "latency", "1", "ratios"), [0.0, 1.0], "is not a list of positive"),
        (("models", "mlp", "state_bytes"), 1.5, "state_bytes is not an integer"),
        (("reference_minima_ms",), [[1.0]], "reference_minima_ms is not a list"),
        (("quiet",), [True], "quiet is not a list of booleans"),
        (("environment",), [], "environment is not an object"),
        (("models", "mlp"), "x", "models.mlp is not an object"),
    ],
)
def test_a_crafted_baseline_is_one_line_exit_2_before_timing(tmp_path, timer, path, value, message):
    profile = _profile(tmp_path)
    _record(profile, timer)
    baseline = tmp_path / "quick.baseline.json"
    data = json.loads(baseline.read_text())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    baseline.write_text(json.dumps(data))
    result = _check(profile)
    assert result.exit_code == 2, result.output
    assert "is corrupt" in result.output and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert timer.passes == 0


def test_a_baseline_without_a_batch_size_is_refused_before_building(tmp_path, timer):
    profile = _profile(tmp_path)
    _record(profile, timer)
    Path(profile).write_text(
        Path(profile).read_text().replace("batch_sizes = [1]", "batch_sizes = [1, 4]")
    )
    result = _check(profile)
    assert result.exit_code == 2 and "no latency for 'mlp' at batch 4" in result.output
    assert timer.passes == 0


def test_json_with_update_baseline_and_duplicate_batches_are_refused(tmp_path, timer):
    profile = _profile(tmp_path)
    result = _check(profile, "--update-baseline", "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 2 and "does not apply with --update-baseline" in result.output
    Path(profile).write_text(
        Path(profile).read_text().replace("batch_sizes = [1]", "batch_sizes = [1, 1]")
    )
    result = _check(profile)
    assert result.exit_code == 2 and "lists a size twice" in result.output


def test_json_output_that_is_not_a_regular_file_is_refused_before_timing(tmp_path, timer):
    profile = _profile(tmp_path)
    _record(profile, timer)
    result = _check(profile, "--json", str(tmp_path))
    assert result.exit_code == 2 and "is a directory" in result.output
    assert timer.passes == 0  # refused before anything was timed


def test_profile_models_can_name_a_pruning_method(tmp_path):
    from sparsebench.check.models import build_entry

    nm = 'name = "mlp24"\nzoo = "mnist1d_mlp"\nprune_method = "nm"'
    lottery = ('name = "ticket"\nzoo = "mnist1d_mlp"\nprune = 0.36\nprune_method = "lottery"\n'
               'prune_epochs = 1\nprune_options = {rate = 0.2}')  # fmt: skip
    config = load_profile(_profile(tmp_path, f"{nm}\n[[models]]\n{lottery}", 'data = "mnist1d"\n'))
    built = {m.name: build_entry(m, config).model for m in config.models}
    rows = built["mlp24"].fc1.weight.reshape(-1, 4)
    assert bool(((rows != 0).sum(1) <= 2).all())  # 2:4 everywhere
    weights = [built["ticket"].get_submodule(n).weight for n in ("fc1", "fc2", "fc3")]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert abs(zeros - 0.36) < 0.005


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        ('prune = 0.5\nprune_method = "lotery"', "", "unknown pruning method 'lotery'"),
        ('prune = 0.5\nprune_method = "snip"', "", "needs data|has no data"),
        ("prune = 0.5\nprune_options = {rat = 1}", "", "no option 'rat'"),
        ('prune = 0.5\nprune_scope = "net"', "", "unknown scope 'net'"),
    ],
)
def test_bad_pruning_method_in_a_profile_is_one_line(tmp_path, model, extra, message):
    path = _profile(tmp_path, f'name = "m"\nzoo = "mnist1d_mlp"\n{model}', extra)
    with pytest.raises(SparsebenchError, match=message):
        load_profile(path)
