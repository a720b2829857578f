"""measure_energy: idle-subtracted energy per batch from each source, or an honest reason."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from sparsebench.errors import SparsebenchError
from sparsebench.measure import _nvml, energy
from sparsebench.measure.energy import energy_source_for, measure_energy
from sparsebench.measure.energy_backends import nvml, rapl

IDLE_W = 20.0
ACTIVE_W = 70.0
BATCH_S = 0.01


class FakeMeter:
    """A fake clock and the energy spent by it; `listeners` see every change."""

    def __init__(self):
        self.now = 0.0
        self.joules = 0.0
        self.watts = 0.0
        self.listeners = []

    def clock(self) -> float:
        return self.now

    def spend(self, seconds: float, watts: float) -> None:
        self.now += seconds
        self.joules += seconds * watts
        self.watts = watts
        for listener in self.listeners:
            listener(self)


@pytest.fixture
def meter(monkeypatch) -> FakeMeter:
    """Drives measure_energy's clock; idling spends IDLE_W."""
    fake = FakeMeter()
    monkeypatch.setattr(energy, "_clock", fake.clock)
    monkeypatch.setattr(energy, "_sleep", lambda seconds: fake.spend(seconds, IDLE_W))
    return fake


def run_one_batch(meter: FakeMeter, watts: float = ACTIVE_W, seconds: float = BATCH_S):
    return lambda: meter.spend(seconds, watts)


def no_sync():
    pass


# --- RAPL, from a fake sysfs tree ----------------------------------------------------------


def make_domain(root: Path, folder: str, name: str, max_range_uj: int, start_uj: int) -> Path:
    path = root / folder
    path.mkdir(parents=True)
    (path / "name").write_text(f"{name}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    (path / "energy_uj").write_text(f"{start_uj}\n")
    return path


def feed_counters(meter: FakeMeter, packages: list[tuple[Path, int, int]]) -> None:
    """Each package counts an equal share of the meter's energy, wrapping at its range."""

    def write(m: FakeMeter) -> None:
        share_uj = m.joules * 1e6 / len(packages)
        for path, start_uj, max_range_uj in packages:
            (path / "energy_uj").write_text(f"{round(start_uj + share_uj) % max_range_uj}\n")

    meter.listeners.append(write)


def test_rapl_energy_per_batch_is_idle_subtracted(tmp_path, monkeypatch, meter):
    big = 2**40
    package0 = make_domain(tmp_path, "intel-rapl:0", "package-0", big, 5_000)
    package1 = make_domain(tmp_path, "intel-rapl:1", "package-1", big, 7_000)
    make_domain(tmp_path, "intel-rapl:0:0", "core", big, 0)  # a subdomain: not counted twice
    make_domain(tmp_path, "intel-rapl:2", "psys", big, 0)  # the platform: not a package
    make_domain(tmp_path, "intel-rapl-mmio:0", "package-0", big, 0)  # a second view of :0
    feed_counters(meter, [(package0, 5_000, big), (package1, 7_000, big)])
    monkeypatch.setattr(rapl, "RAPL_ROOT", tmp_path)

    assert energy_source_for("cpu") == "rapl-package"
    result = measure_energy(run_one_batch(meter), no_sync, min_seconds=1.0, idle_seconds=0.5)

    assert result.method == "rapl-package"
    assert result.is_estimate is False
    assert result.unavailable_reason is None
    assert result.mj_per_inference == pytest.approx((ACTIVE_W - IDLE_W) * BATCH_S * 1e3, rel=1e-6)
    assert result.idle_power_w == pytest.approx(IDLE_W, rel=1e-6)
    assert result.active_power_w == pytest.approx(ACTIVE_W, rel=1e-6)
    assert result.inferences == round(1.0 / BATCH_S)
    assert result.window_s == pytest.approx(1.0)


def test_rapl_counter_wrap_around_is_handled(tmp_path, monkeypatch, meter):
    max_range_uj = 100_000_000  # 100 J: idle (10 J) and active (70 J) wrap it once
    start_uj = max_range_uj - 20_000_000
    package = make_domain(tmp_path, "intel-rapl:0", "package-0", max_range_uj, start_uj)
    feed_counters(meter, [(package, start_uj, max_range_uj)])
    monkeypatch.setattr(rapl, "RAPL_ROOT", tmp_path)

    result = measure_energy(run_one_batch(meter), no_sync, min_seconds=1.0, idle_seconds=0.5)

    assert result.mj_per_inference == pytest.approx((ACTIVE_W - IDLE_W) * BATCH_S * 1e3, rel=1e-6)
    assert result.active_power_w == pytest.approx(ACTIVE_W, rel=1e-6)


def test_unreadable_rapl_says_so(tmp_path):
    package = make_domain(tmp_path, "intel-rapl:0", "package-0", 2**32, 0)
    (package / "energy_uj").unlink()
    (package / "energy_uj").mkdir()  # unreadable, even for root
    assert "not readable" in rapl.unavailable_reason(tmp_path)


def test_power_not_above_idle_gives_no_number(tmp_path, monkeypatch, meter):
    package = make_domain(tmp_path, "intel-rapl:0", "package-0", 2**40, 0)
    feed_counters(meter, [(package, 0, 2**40)])
    monkeypatch.setattr(rapl, "RAPL_ROOT", tmp_path)

    result = measure_energy(run_one_batch(meter, watts=IDLE_W), no_sync, min_seconds=0.2)

    assert result.mj_per_inference is None
    assert "not above idle" in result.unavailable_reason
    assert result.idle_power_w == pytest.approx(IDLE_W)


# --- unavailable ---------------------------------------------------------------------------


def test_no_rapl_and_no_codecarbon_is_unavailable_with_reason(tmp_path, monkeypatch, meter):
    monkeypatch.setattr(rapl, "RAPL_ROOT", tmp_path / "missing")
    monkeypatch.setattr(energy, "is_available", lambda module: False)

    result = measure_energy(run_one_batch(meter), no_sync)

    assert result.mj_per_inference is None
    assert result.method == "unavailable"
    assert "no RAPL package counters" in result.unavailable_reason
    assert "pip install 'sparsebench[energy]'" in result.unavailable_reason
    assert meter.now == 0.0  # nothing was run
    assert energy_source_for("cpu").startswith("unavailable: no RAPL")


def test_unknown_device_is_refused():
    with pytest.raises(SparsebenchError, match="device 'tpu'"):
        measure_energy(no_sync, no_sync, device="tpu")
    with pytest.raises(SparsebenchError):
        energy_source_for("cudax")


def test_importing_measurements_touches_no_gpu_and_loads_no_codecarbon():
    # torch itself imports pynvml (without initialising NVML), so that is not checked
    code = (
        "import sys, torch, sparsebench.measure.energy, sparsebench.measure.memory\n"
        "assert 'codecarbon' not in sys.modules\n"
        "assert not torch.cuda.is_initialized()\n"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# --- NVML, through a fake pynvml ------------------------------------------------------------


class FakeNVMLError(Exception):
    pass


def fake_pynvml(meter: FakeMeter, energy_counter: bool = True) -> types.ModuleType:
    fake = types.ModuleType("pynvml")
    fake.NVMLError = FakeNVMLError
    fake.nvmlInit = lambda: None
    fake.nvmlShutdown = lambda: None
    fake.nvmlDeviceGetHandleByIndex = lambda index: f"gpu{index}"

    def total_energy(handle):
        if not energy_counter:
            raise FakeNVMLError("Not Supported")
        return int(meter.joules * 1e3)

    fake.nvmlDeviceGetTotalEnergyConsumption = total_energy
    fake.nvmlDeviceGetPowerUsage = lambda handle: int(meter.watts * 1e3)
    return fake


@pytest.fixture
def gpu(monkeypatch, meter) -> FakeMeter:
    """A fake GPU behind NVML that idles at 60 W."""
    monkeypatch.setattr(_nvml, "_torch_uuid", lambda index: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(energy, "_sleep", lambda seconds: meter.spend(seconds, 60.0))
    return meter


def test_nvml_energy_counter(monkeypatch, gpu):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpu))

    assert energy_source_for("cuda:0") == "nvml-energy-counter"
    result = measure_energy(run_one_batch(gpu, 300.0, 0.005), no_sync, device="cuda:0")

    assert result.method == "nvml-energy-counter"
    assert result.mj_per_inference == pytest.approx((300.0 - 60.0) * 0.005 * 1e3, rel=1e-3)
    assert result.idle_power_w == pytest.approx(60.0, rel=1e-3)
    assert result.active_power_w == pytest.approx(300.0, rel=1e-3)
    assert result.window_s >= nvml.NvmlEnergyCounter.min_window_s


def test_nvml_falls_back_to_power_sampling(monkeypatch, gpu):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpu, energy_counter=False))
    assert energy_source_for("cuda:0") == "nvml-power-sampling"


def test_power_integrator_integrates_trapezoids(monkeypatch):
    meter = FakeMeter()
    monkeypatch.setattr(nvml, "perf_counter", meter.clock)
    meter.watts = 100.0
    source = nvml.NvmlPowerIntegrator(fake_pynvml(meter), "gpu0", interval_s=3600)
    try:
        start = source.read()
        meter.spend(1.0, 100.0)
        middle = source.read()
        meter.spend(1.0, 300.0)
        end = source.read()
    finally:
        source.close()
    assert source.joules_between(start, middle) == pytest.approx(100.0)
    assert source.joules_between(middle, end) == pytest.approx((100.0 + 300.0) / 2)


def test_nvml_failure_is_unavailable(monkeypatch, meter):
    broken = fake_pynvml(meter)

    def fail():
        raise FakeNVMLError("Driver Not Loaded")

    broken.nvmlInit = fail
    monkeypatch.setitem(sys.modules, "pynvml", broken)

    result = measure_energy(no_sync, no_sync, device="cuda")

    assert result.mj_per_inference is None
    assert "Driver Not Loaded" in result.unavailable_reason


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_real_gpu_energy():
    a = torch.randn(4096, 4096, device="cuda")
    result = measure_energy(lambda: a @ a, torch.cuda.synchronize, device="cuda")
    assert result.method.startswith("nvml")
    assert result.mj_per_inference is not None or result.unavailable_reason


# --- codecarbon, for real where installed ---------------------------------------------------


def test_codecarbon_estimate(tmp_path, monkeypatch):
    pytest.importorskip("codecarbon")
    monkeypatch.setattr(rapl, "RAPL_ROOT", tmp_path)  # force the path even where RAPL exists
    weights = torch.randn(256, 256)

    result = measure_energy(lambda: weights @ weights, no_sync, min_seconds=0.5, idle_seconds=0.5)

    assert result.method == "codecarbon-estimate"
    assert result.is_estimate is True
    if result.mj_per_inference is None:
        assert result.unavailable_reason
    else:
        assert result.mj_per_inference > 0
        assert result.active_power_w > result.idle_power_w
        assert result.inferences >= energy.MIN_BATCHES
