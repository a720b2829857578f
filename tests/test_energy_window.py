"""measure_energy's window (>= 100 inferences or the seconds, capped), its warm-up, the
latency x power cross-check, codecarbon's model integrated over the window, and the JSON of
the new fields. Everything runs on a fake clock and a fake counter: no timing is asserted."""

from __future__ import annotations

import json
import types
from dataclasses import asdict

import pytest

from sparsebench.errors import SparsebenchError
from sparsebench.measure import energy
from sparsebench.measure.energy import measure_energy
from sparsebench.measure.energy_backends import codecarbon_estimate
from sparsebench.measure.energy_backends.codecarbon_estimate import (
    TASK_FALLBACK_NOTE,
    CodecarbonCounter,
    PowerModel,
    power_model,
)
from sparsebench.report import read_report, write_report
from sparsebench.results import EnergyResult, LatencyStats, MemoryResult, ProfileRow, Report

IDLE_W = 20.0
ACTIVE_W = 70.0
BATCH_S = 1 / 64  # binary fractions keep the fake clock exact


class Meter:
    """A fake clock, the joules spent by it, and CPU seconds for the codecarbon model."""

    def __init__(self):
        self.now = 0.0
        self.joules = 0.0
        self.cpu_s = 0.0

    def spend(self, seconds: float, watts: float, cpus: float = 0.0) -> None:
        self.now += seconds
        self.joules += seconds * watts
        self.cpu_s += seconds * cpus


class FakeCounter:
    """An EnergyCounter reading the meter's joules."""

    method = "fake-counter"
    is_estimate = False

    def __init__(self, meter: Meter, min_window_s: float = 0.0):
        self.meter = meter
        self.min_window_s = min_window_s
        self.closed = False

    def read(self) -> float:
        return self.meter.joules

    def joules_between(self, start: float, end: float) -> float:
        return end - start

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def meter(monkeypatch) -> Meter:
    """measure_energy on a fake clock and counter; idling spends IDLE_W."""
    fake = Meter()
    monkeypatch.setattr(energy, "_clock", lambda: fake.now)
    monkeypatch.setattr(energy, "_sleep", lambda seconds: fake.spend(seconds, IDLE_W))
    monkeypatch.setattr(energy, "open_counter", lambda device: FakeCounter(fake))
    return fake


class Model:
    """run_batch: each call spends `seconds` at `watts`; `calls` counts them all."""

    def __init__(self, meter: Meter, seconds: float = BATCH_S, watts: float = ACTIVE_W):
        self.meter, self.seconds, self.watts = meter, seconds, watts
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        self.meter.spend(self.seconds, self.watts, cpus=2.0)


def no_sync() -> None:
    pass


def steady_mj(seconds: float = BATCH_S, watts: float = ACTIVE_W) -> float:
    return (watts - IDLE_W) * seconds * 1e3


# --- the window: at least 100 inferences or the seconds, whichever is longer ---------------


def test_fast_model_runs_for_the_seconds(meter):
    fast = 1 / 1024  # 1024 batches in a second: far more than 100
    result = measure_energy(Model(meter, fast), no_sync, min_seconds=1.0)
    assert result.inferences == 1024
    assert result.window_s == pytest.approx(1.0)
    assert result.mj_per_inference == pytest.approx(steady_mj(fast))
    assert result.warnings == []


def test_slow_model_runs_for_100_inferences(meter):
    slow = 1 / 16  # 16 batches in the second: the window goes on to 100
    result = measure_energy(Model(meter, slow), no_sync, min_seconds=1.0)
    assert result.inferences == 100
    assert result.window_s == pytest.approx(100 * slow)
    assert result.mj_per_inference == pytest.approx(steady_mj(slow))
    assert result.warnings == []


def test_inferences_count_samples_of_the_batch(meter):
    slow = 1 / 16
    result = measure_energy(Model(meter, slow), no_sync, batch_size=8, min_seconds=0.25)
    assert result.inferences == 13  # ceil(100 / 8) batches: 104 samples, more than 4 batches
    assert result.batch_size == 8
    big = measure_energy(Model(meter, slow), no_sync, batch_size=64, min_seconds=0.5)
    assert big.inferences == 8  # the seconds (8 batches) outlast 100 samples (2 batches)


def test_min_inferences_is_a_keyword(meter):
    slow = 1 / 16
    result = measure_energy(Model(meter, slow), no_sync, min_seconds=0.25, min_inferences=10)
    assert result.inferences == 10
    floor = measure_energy(Model(meter, slow), no_sync, min_seconds=1 / 16, min_inferences=0)
    assert floor.inferences == energy.MIN_BATCHES
    with pytest.raises(SparsebenchError):
        measure_energy(Model(meter), no_sync, min_inferences=-1)


def test_counter_resolution_still_lengthens_the_window(meter, monkeypatch):
    monkeypatch.setattr(energy, "open_counter", lambda device: FakeCounter(meter, 2.0))
    fast = 1 / 1024
    result = measure_energy(Model(meter, fast), no_sync, min_seconds=0.5)
    assert result.window_s == pytest.approx(2.0)
    assert result.inferences == 2048


def test_pathologically_slow_model_stops_at_the_cap_and_says_so(meter):
    result = measure_energy(Model(meter, 8.0), no_sync, min_seconds=1.0)
    assert energy.MAX_WINDOW_S == 30.0
    assert result.inferences == 4  # the 4th batch is the first to end past the 30 s cap
    assert result.window_s == pytest.approx(32.0)
    assert result.mj_per_inference == pytest.approx(steady_mj(8.0))
    [warning] = result.warnings
    assert "30 s cap after 4 batches of 1 (4 samples, fewer than the 100 asked)" in warning


def test_cap_is_min_seconds_when_that_is_longer(meter):
    result = measure_energy(Model(meter, 16.0), no_sync, min_seconds=40.0)
    assert result.inferences == 3  # 48 s >= the 40 s cap
    assert "40 s cap" in result.warnings[0]


def test_a_batch_longer_than_the_cap_still_runs_once(meter):
    result = measure_energy(Model(meter, 64.0), no_sync)
    assert result.inferences == 1
    assert result.mj_per_inference == pytest.approx(steady_mj(64.0))
    assert "after 1 batch of 1 (1 sample," in result.warnings[0]


def test_warm_up_runs_between_idle_and_window(meter):
    class ColdStart(Model):
        """The first call after the idle wait is slow (threads parked, clocks down)."""

        def __call__(self):
            super().__call__()
            if self.calls == 1:
                self.meter.spend(1.0, ACTIVE_W)

    model = ColdStart(meter, 1 / 16)
    result = measure_energy(model, no_sync, min_seconds=1.0)
    assert result.mj_per_inference == pytest.approx(steady_mj(1 / 16))  # the cold call is out
    assert model.calls == result.inferences + 1  # one warm-up call: it took over WARMUP_S
    fast = Model(meter, 1 / 64)
    measure_energy(fast, no_sync, min_seconds=1.0)
    assert fast.calls == 100 + 13  # warm-up until 0.2 s: 13 calls of 1/64 s


# --- cross-check against latency x power ----------------------------------------------------


def test_agreeing_latency_gives_implied_mj_and_no_warning(meter):
    result = measure_energy(Model(meter), no_sync, min_seconds=1.0, latency_s=BATCH_S)
    assert result.avg_power_w == pytest.approx(ACTIVE_W)
    assert result.avg_power_w == result.active_power_w
    # idle-subtracted like the window figure: 50 W x 15.6 ms, not 70 W x 15.6 ms
    assert result.implied_mj == pytest.approx(steady_mj())
    assert result.implied_mj == pytest.approx(result.mj_per_inference)
    assert result.warnings == []


def test_latency_within_2x_does_not_warn(meter):
    for latency_s in (BATCH_S / 1.9, BATCH_S * 1.9, BATCH_S / 1.5, BATCH_S * 1.5):
        result = measure_energy(Model(meter), no_sync, latency_s=latency_s)
        assert result.warnings == [], latency_s
        assert result.implied_mj == pytest.approx(steady_mj() * latency_s / BATCH_S)
    for latency_s in (BATCH_S / 2.1, BATCH_S * 2.1):
        assert len(measure_energy(Model(meter), no_sync, latency_s=latency_s).warnings) == 1


def test_window_slower_than_latency_warns_with_both_numbers(meter):
    latency_s = BATCH_S / 4  # the model ran 4x slower in the energy window than when timed
    result = measure_energy(Model(meter), no_sync, min_seconds=1.0, latency_s=latency_s)
    assert result.mj_per_inference == pytest.approx(steady_mj())  # the figure stays measured
    [warning] = result.warnings
    assert "energy 781 mJ/inference disagrees with latency x power" in warning
    assert "3.9 ms x 50.0 W above idle = 195 mJ; 70.0 W in all, 20.0 W idle" in warning
    assert "by 4.0x" in warning
    assert "ran 100 batches of 1 in 1.56 s, 15.6 ms each against the 3.9 ms" in warning
    assert "ran slower while its energy was measured" in warning


def test_window_faster_than_latency_warns_too(meter):
    result = measure_energy(Model(meter), no_sync, latency_s=BATCH_S * 2.5)
    [warning] = result.warnings
    assert "by 2.5x" in warning and "ran faster" in warning


def test_no_cross_check_without_latency_or_figure(meter):
    plain = measure_energy(Model(meter), no_sync)
    assert plain.implied_mj is None and plain.warnings == []
    below = measure_energy(Model(meter, watts=IDLE_W), no_sync, latency_s=BATCH_S / 10)
    assert below.mj_per_inference is None and "not above idle" in below.unavailable_reason
    assert below.implied_mj is None and below.warnings == []


@pytest.mark.parametrize("latency_s", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_latency_is_refused(meter, latency_s):
    with pytest.raises(SparsebenchError, match="latency_s"):
        measure_energy(Model(meter), no_sync, latency_s=latency_s)


# --- codecarbon: its model, integrated over exactly the window --------------------------------


@pytest.fixture
def cpu_meter(meter, monkeypatch) -> Meter:
    """The codecarbon counter reads the meter's CPU seconds and clock."""
    monkeypatch.setattr(codecarbon_estimate, "process_cpu_seconds", lambda process: meter.cpu_s)
    monkeypatch.setattr(codecarbon_estimate, "_clock", lambda: meter.now)
    return meter


def test_codecarbon_model_is_integrated_over_the_window(cpu_meter, monkeypatch):
    model = PowerModel(tdp_w=64.0, cpu_count=16, ram_watts=lambda: 10.0)
    counter = CodecarbonCounter.from_model(model, process=object())
    monkeypatch.setattr(energy, "open_counter", lambda device: counter)

    result = measure_energy(Model(cpu_meter), no_sync, min_seconds=1.0, latency_s=BATCH_S)

    # 2 CPUs busy of 16 at a 64 W TDP: 8 W above the (RAM-only) idle, for each batch's time
    assert result.idle_power_w == pytest.approx(10.0)
    assert result.avg_power_w == pytest.approx(18.0)
    assert result.mj_per_inference == pytest.approx(8.0 * BATCH_S * 1e3)
    assert result.implied_mj == pytest.approx(result.mj_per_inference)
    assert result.warnings == []


def test_codecarbon_pue_scales_both_terms(cpu_meter):
    model = PowerModel(tdp_w=64.0, cpu_count=16, ram_watts=lambda: 10.0, pue=1.5)
    counter = CodecarbonCounter.from_model(model, process=object())
    start = counter.read()
    cpu_meter.spend(2.0, 0.0, cpus=4.0)
    assert counter.joules_between(start, counter.read()) == pytest.approx(1.5 * (32 + 20))


class CPU:  # named like codecarbon's hardware classes, which power_model matches by name
    def __init__(self, mode="cpu_load", tdp=64, count=16):
        self._mode, self._tdp, self._cpu_count = mode, tdp, count


class RAM:
    def total_power(self):
        return types.SimpleNamespace(W=10.0)


def test_power_model_reads_codecarbons_hardware():
    tracker = types.SimpleNamespace(_hardware=[RAM(), CPU()], _pue=1.2)
    model = power_model(tracker)
    assert (model.tdp_w, model.cpu_count, model.pue, model.ram_watts()) == (64.0, 16, 1.2, 10.0)


@pytest.mark.parametrize(
    "hardware",
    [[], [RAM()], [CPU(mode="intel_rapl"), RAM()], [CPU(tdp=None)], [CPU(count=0)]],
)
def test_power_model_falls_back_when_it_cannot_be_read(hardware):
    assert power_model(types.SimpleNamespace(_hardware=hardware)) is None


def fake_codecarbon(hardware: list) -> types.ModuleType:
    """A codecarbon whose tracker has `hardware` and whose every task used 1 J of CPU."""

    class OfflineEmissionsTracker:
        def __init__(self, **options):
            self._hardware, self._pue = hardware, 1.0
            self.started = self.stopped = 0

        def start_task(self):
            self.started += 1

        def stop_task(self):
            self.stopped += 1
            return types.SimpleNamespace(cpu_energy=1 / 3.6e6, ram_energy=0.0)

    return types.SimpleNamespace(OfflineEmissionsTracker=OfflineEmissionsTracker)


def test_counter_takes_the_model_and_ends_the_task(cpu_meter, monkeypatch):
    fake = fake_codecarbon([CPU(), RAM()])
    monkeypatch.setattr(codecarbon_estimate, "require", lambda *args: fake)
    counter = CodecarbonCounter()
    assert counter._tracker is None  # ended already: no codecarbon task or thread in a window
    assert counter.model is not None and counter.notes == []
    start = counter.read()
    cpu_meter.spend(1.0, 0.0, cpus=1.0)
    assert counter.joules_between(start, counter.read()) == pytest.approx(64 / 16 + 10)
    counter.close()  # twice is fine


def test_counter_falls_back_to_tasks_where_the_model_is_unreadable(monkeypatch):
    fake = fake_codecarbon([])
    monkeypatch.setattr(codecarbon_estimate, "require", lambda *args: fake)
    counter = CodecarbonCounter()
    try:
        assert counter.model is None and counter.notes == [TASK_FALLBACK_NOTE]
        start = counter.read()
        assert counter.joules_between(start, counter.read()) == pytest.approx(1.0)
    finally:
        counter.close()
    assert counter._tracker is None


def test_task_fallback_is_noted_in_the_warnings(meter, monkeypatch):
    class TaskCounter(FakeCounter):
        notes = [TASK_FALLBACK_NOTE]

    monkeypatch.setattr(energy, "open_counter", lambda device: TaskCounter(meter))
    result = measure_energy(Model(meter), no_sync)
    assert result.warnings == [TASK_FALLBACK_NOTE]


def test_real_codecarbon_uses_its_model():
    pytest.importorskip("codecarbon")
    counter = CodecarbonCounter()
    try:
        assert counter.model is not None  # this codecarbon's model was readable
        assert counter.notes == []
        assert counter.model.tdp_w > 0 and counter.model.cpu_count >= 1
        start = counter.read()
        assert counter.joules_between(start, counter.read()) >= 0
    finally:
        counter.close()


# --- JSON: new fields round-trip, old JSON still reads --------------------------------------


def _row(energy_result: EnergyResult) -> ProfileRow:
    return ProfileRow(
        model="vit", format="dense", runtime="torch", device="cpu", batch_size=1,
        input_shape=[1, 3, 224, 224], params=100, nonzero_params=20, sparsity_pct=80.0,
        prunable_params=90, size_mb=22.0, size_source="file", macs_m=1000.0,
        effective_macs_m=200.0, peak_mem_mb=457.388, avg_mem_mb=455.0,
        latency_ms=LatencyStats.from_samples([44.0]), throughput=22.7,
        energy_mj=energy_result.mj_per_inference, energy_method=energy_result.method,
        energy=energy_result,
        memory=MemoryResult(457.388, 455.0, baseline_mb=450.0, method="rss-sampled-subprocess"),
    )  # fmt: skip


def test_new_fields_round_trip_through_json(meter, tmp_path):
    result = measure_energy(Model(meter), no_sync, latency_s=BATCH_S / 4)
    assert result.warnings and result.implied_mj is not None
    report = Report(environment={}, config={}, results=[_row(result)])
    path = write_report(report, tmp_path / "r.json")
    saved = json.loads(path.read_text())["results"][0]["energy"]
    for key in ("inferences", "window_s", "avg_power_w", "implied_mj", "warnings", "batch_size"):
        assert saved[key] == asdict(result)[key]
    assert read_report(path) == report


def test_old_json_without_the_new_fields_still_reads(tmp_path):
    old = EnergyResult(265.0, "codecarbon-estimate", 9.9, 14.6, 1.02, 18, True)
    report = Report(environment={}, config={}, results=[_row(old)])
    data = report.to_dict()
    for key in ("batch_size", "avg_power_w", "implied_mj", "warnings"):
        del data["results"][0]["energy"][key]
    (tmp_path / "old.json").write_text(json.dumps(data))

    energy_read = read_report(tmp_path / "old.json").results[0].energy
    assert energy_read.mj_per_inference == 265.0 and energy_read.inferences == 18
    assert energy_read.warnings == [] and energy_read.implied_mj is None
    assert energy_read.avg_power_w is None and energy_read.batch_size == 1
