"""Bad options fail up front, in one line and exit code 2, from the CLI and the config classes.

Nothing here measures: every error is raised while the options are checked, before loading.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparsebench import device as device_module
from sparsebench.bench.formats import SweepConfig
from sparsebench.check import Timing, load_profile
from sparsebench.check.profile import CheckProfile, ModelEntry, Thresholds
from sparsebench.cli import app
from sparsebench.compare import CompareConfig
from sparsebench.device import check_device, check_threads
from sparsebench.errors import SparsebenchError
from sparsebench.formats import ExportConfig
from sparsebench.measure.latency import LatencyConfig
from sparsebench.options import check_count, check_number, check_seconds
from sparsebench.profiler import ProfileConfig
from sparsebench.train import TrainConfig

runner = CliRunner()
CPUS = 2  # what the machine is made to have, so the capping message is predictable
NAN, INF = float("nan"), float("inf")
TRAIN = ["train", "--arch", "mnist1d_mlp", "--data", "mnist1d", "-o", "{tmp}/t.pt"]
PROFILE = Path("p.toml")  # a CheckProfile built in Python, not read from a file
MODEL = '[[models]]\nname = "m"\nzoo = "mnist1d_mlp"\n'


@pytest.fixture(autouse=True)
def _two_cpus(monkeypatch):
    monkeypatch.setattr(device_module, "available_cpus", lambda: CPUS)


def invoke(args, **fill) -> str:
    """Run the CLI; assert the one-line-error contract; return the output."""
    result = runner.invoke(app, [str(a).format(**fill) for a in args])
    assert result.exit_code == 2, result.output
    assert "unexpected" not in result.output and "Traceback" not in result.output
    return result.output


def refused(message: str, build) -> None:
    """`build()` raises a SparsebenchError mentioning `message`."""
    with pytest.raises(SparsebenchError) as caught:
        build()
    assert message in str(caught.value)


# --- threads: capped to the CPUs, with a warning ------------------------------------------


def test_check_threads_caps_to_the_cpus_with_a_warning(capsys):
    assert check_threads(100000) == CPUS
    assert "--threads 100000 capped to 2, the CPUs available" in capsys.readouterr().err
    assert check_threads(1) == 1 and check_threads(None) is None
    refused("--threads must be >= 1", lambda: check_threads(0))
    refused("--threads must be an integer", lambda: check_threads("4"))


@pytest.mark.parametrize(
    "build",
    [
        lambda: ProfileConfig(threads=100000),
        lambda: CompareConfig(threads=100000),
        lambda: SweepConfig(threads=100000),
        lambda: CheckProfile("p", PROFILE, (ModelEntry("m", zoo="mnist1d_mlp"),), threads=100000),
    ],
)
def test_every_config_caps_threads(build, capsys):
    assert build().threads == CPUS
    assert "100000 capped to 2, the CPUs available" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["profile", "{ckpt}"], ["compare", "{ckpt}"]])
def test_cli_prints_the_cap(command, sb_ckpt):
    # --batch-size 0 stops the command right after its config was built: nothing is timed
    output = invoke([*command, "--threads", "100000", "--batch-size", "0"], ckpt=sb_ckpt)
    assert "--threads 100000 capped to 2, the CPUs available" in output
    assert "--batch-size must be >= 1" in output


def test_check_profile_caps_threads(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("threads = 100000\n" + MODEL)
    output = invoke(["check", path])  # exits 2 for the missing baseline, after the cap
    assert "threads 100000 capped to 2" in output and "--update-baseline first" in output


# --- durations: finite, > 0 (>= 0 where 0 means "no minimum") -----------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["profile", "{ckpt}", "--memory-seconds", "inf"], "(got --memory-seconds inf)"),
        (["profile", "{ckpt}", "--memory-seconds", "nan"], "(got --memory-seconds nan)"),
        (["profile", "{ckpt}", "--energy-seconds", "nan"], "(got --energy-seconds nan)"),
        (["profile", "{ckpt}", "--min-seconds", "nan"], "a finite --min-seconds >= 0"),
        (["profile", "{ckpt}", "--min-seconds", "inf"], "a finite --min-seconds >= 0"),
        (["compare", "{ckpt}", "--block-seconds", "nan"], "--block-seconds must be >= 0"),
        (["compare", "{ckpt}", "--block-seconds", "inf"], "--block-seconds must be >= 0"),
        ([*TRAIN, "--seconds", "inf"], "--seconds must be > 0 seconds and finite"),
        (["demo", "--out-dir", "{tmp}/d", "--finetune", "nan"], "--finetune must be >= 0"),
    ],
)
def test_cli_durations_must_be_finite(args, message, sb_ckpt, tmp_path):
    assert message in invoke(args, ckpt=sb_ckpt, tmp=tmp_path)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("message", "build"),
    [
        ("--memory-seconds inf", lambda: ProfileConfig(memory_seconds=INF)),
        ("--energy-seconds nan", lambda: ProfileConfig(energy_seconds=NAN)),
        ("--min-seconds nan", lambda: LatencyConfig(min_seconds=NAN)),
        ("--block-seconds", lambda: CompareConfig(block_seconds=INF)),
        ("block_seconds", lambda: SweepConfig(block_seconds=NAN)),
        ("timing.block_seconds", lambda: Timing(block_seconds=INF)),
        ("--seconds", lambda: TrainConfig(max_seconds=NAN)),
        ("x must be > 0 seconds", lambda: check_seconds("x", 0)),
    ],
)
def test_config_durations_must_be_finite(message, build):
    refused(message, build)


def test_zero_seconds_stays_meaningful_where_it_was():
    assert LatencyConfig(min_seconds=0).min_seconds == 0  # min_iters alone decides
    assert CompareConfig(block_seconds=0).block_seconds == 0  # block_iters alone decides
    assert Timing(block_seconds=0).block_seconds == 0
    assert check_seconds("x", 0, allow_zero=True) == 0 and math.isinf(INF)


# --- train ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seconds", "-1"], "--seconds must be > 0 seconds and finite (got -1.0)"),
        (["--seconds", "nan"], "--seconds must be > 0 seconds and finite (got nan)"),
        (["--batch-size", "0"], "--batch-size must be >= 1 (got 0)"),
        (["--lr", "nan"], "--lr must be > 0 and finite (got nan)"),
        (["--lr", "-0.1"], "--lr must be > 0 and finite"),
        (["--epochs", "0"], "--epochs must be >= 1 (got 0)"),
    ],
)
def test_cli_train_options(args, message, tmp_path):
    assert message in invoke([*TRAIN, *args], tmp=tmp_path)
    assert not (tmp_path / "t.pt").exists()


@pytest.mark.parametrize(
    ("message", "options"),
    [
        ("--seconds", {"max_seconds": -1.0}),
        ("--batch-size", {"batch_size": 0}),
        ("--lr", {"lr": NAN}),
        ("--epochs", {"epochs": 0}),
        ("weight_decay", {"weight_decay": INF}),
    ],
)
def test_train_config_options(message, options):
    refused(message, lambda: TrainConfig(**options))


# --- devices: one check, in every config ---------------------------------------------------

DEVICE_COMMANDS = [
    ["profile", "{ckpt}"],
    ["compare", "{ckpt}"],
    ["export", "{ckpt}", "-f", "dense", "-o", "{tmp}/out.pt"],
    ["bench-formats", "--quick"],
]


@pytest.mark.parametrize("command", DEVICE_COMMANDS)
@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu", "unknown device 'tpu'"),
        ("cuda:x", "unknown device 'cuda:x'"),
        ("cuda:7", "--device cuda:7"),  # no GPU here, or fewer than 8: a clean error either way
    ],
)
def test_cli_devices_are_checked_alike(command, device, message, sb_ckpt, tmp_path):
    assert message in invoke([*command, "--device", device], ckpt=sb_ckpt, tmp=tmp_path)
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize(
    "build",
    [
        lambda: ExportConfig.of(format="dense", device="tpu"),
        lambda: CompareConfig(device="tpu"),
        lambda: SweepConfig(device="tpu"),
        lambda: ProfileConfig(device="tpu"),
        lambda: CheckProfile("p", PROFILE, (ModelEntry("m", zoo="mnist1d_mlp"),), device="tpu"),
        lambda: check_device("cuda:-1"),
    ],
)
def test_configs_check_the_device(build):
    refused("unknown device", build)


# --- check profiles: every key typed, every model resolved before measuring ----------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('batch_sizes = "12"\n' + MODEL, "batch_sizes must be a list of positive integers"),
        ("batch_sizes = [1, 0]\n" + MODEL, "batch_sizes must be a list of positive integers"),
        ("batch_sizes = [1.5]\n" + MODEL, "batch_sizes must be a list of positive integers"),
        ('device = "tpu"\n' + MODEL, "unknown device 'tpu'"),
        ("device = 3\n" + MODEL, "device must be a string (got 3)"),
        ('threads = "2"\n' + MODEL, "threads must be an integer"),
        ("batchsizes = [1]\n" + MODEL, "unknown key 'batchsizes'; did you mean 'batch_sizes'?"),
        ("[timing]\nblock_seconds = inf\n" + MODEL, "block_seconds must be a finite number"),
        ("[timing]\nblock_secs = 1\n" + MODEL, "did you mean 'block_seconds'?"),
        ("[thresholds]\nconfidence = nan\n" + MODEL, "confidence must be a finite number"),
        ('[thresholds]\nmax_slowdown = "2"\n' + MODEL, "max_slowdown must be a finite number"),
        ('[[models]]\nname = "m"\nzoo = "mnist1d_mpl"\n', "unknown architecture 'mnist1d_mpl'"),
        ('[[models]]\nname = "m"\npath = "gone.pt"\n', "no such file"),
        (
            '[[models]]\nname = "m"\nfactory = "gone.py:build"\ninput_shape = [1, 40]\n',
            "no such file",
        ),
        (MODEL + 'input_shape = "1,40"\n', "input_shape must be a list of positive integers"),
        (MODEL + "seed = 1.5\n", "seed must be an integer"),
        (MODEL + "pruned = 0.5\n", "did you mean 'prune'?"),
        (MODEL + "train_epochs = 2\n", "sets train_epochs but the profile has no data"),
        ("models = 3\n", "models must be an array of tables"),
    ],
)
def test_bad_check_profiles(toml, message, tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(toml)
    assert message in invoke(["check", path])
    assert not (tmp_path / "p.baseline.json").exists()
    refused(message, lambda: load_profile(path))


def test_check_config_classes_refuse_non_finite_numbers():
    refused("thresholds.max_slowdown", lambda: Thresholds(max_slowdown=NAN))
    refused("thresholds.confidence", lambda: Thresholds(confidence=INF))
    refused("no such file", lambda: ModelEntry("m", path="/nonexistent/model.pt"))
    refused("unknown architecture", lambda: ModelEntry("m", zoo="nope"))


# --- counts and other numbers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["profile", "{ckpt}", "--batch-size", "0"], "--batch-size must be >= 1 (got 0)"),
        (["profile", "{ckpt}", "--batch-size", "-2"], "--batch-size must be >= 1 (got -2)"),
        (["compare", "{ckpt}", "--batch-size", "0"], "--batch-size must be >= 1"),
        (
            ["export", "{ckpt}", "-f", "dense", "-o", "{tmp}/o.pt", "--batch-size", "0"],
            "--batch-size must be >= 1",
        ),
        (["prune", "{ckpt}", "-o", "{tmp}/o.pt", "--batch-size", "0"], "--batch-size must be"),
        (["prune", "{ckpt}", "-o", "{tmp}/o.pt", "--amount", "nan"], "--sparsity must be >= 0"),
        (["profile", "{ckpt}", "--warmup", "-1"], "(got --warmup -1)"),
        (["profile", "{ckpt}", "--min-iters", "-5"], "(got --min-iters -5)"),
        (["compare", "{ckpt}", "--max-acc-drop", "nan"], "--max-acc-drop must be >= 0"),
        (["compare", "{ckpt}", "--ratio", "nan"], "--ratio must be > 0 and < 1"),
        (
            ["export", "{ckpt}", "-f", "channels", "-o", "{tmp}/o.pt", "--ratio", "1.5"],
            "--ratio must be >= 0 and < 1",
        ),
        (["bench-formats", "--rounds", "0"], "--rounds must be >= 1"),
        (["demo", "--out-dir", "{tmp}/d", "--amount", "1.5"], "--amount must be >= 0 and < 1"),
    ],
)
def test_cli_counts_and_numbers(args, message, sb_ckpt, tmp_path):
    assert message in invoke(args, ckpt=sb_ckpt, tmp=tmp_path)
    assert not (tmp_path / "o.pt").exists() and not (tmp_path / "d").exists()


def test_number_helpers():
    assert check_count("n", 0, 0) == 0 and check_number("x", 0.5, above=0, below=1) == 0.5
    refused("n must be an integer >= 1 (got True)", lambda: check_count("n", True))
    refused("x must be a finite number (got inf)", lambda: check_number("x", INF))
    refused("x must be > 0 and finite (got nan)", lambda: check_number("x", NAN, above=0))
    refused("sparsity", lambda: SweepConfig(sparsities=(1.0,)))
    refused("verify_samples", lambda: ExportConfig.of(format="dense", verify_samples=0))
