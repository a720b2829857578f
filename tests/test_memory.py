"""measure_memory: the CPU child process sees a known allocation; failures surface as one line."""

from __future__ import annotations

import functools
import sys
import types

import pytest
import torch
from torch import nn

from sparsebench.errors import SparsebenchError
from sparsebench.measure import memory
from sparsebench.measure.memory import measure_memory
from sparsebench.results import MB

BIG_MB = 200


class AllocatesInForward(nn.Module):
    """Fills a temporary buffer of `mb` MB in every forward (filled, so its pages are resident)."""

    def __init__(self, mb: int):
        super().__init__()
        self.elements = mb * MB // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scratch = torch.ones(self.elements, device=x.device)
        return x + scratch[:1]


def build_allocating(mb: int) -> tuple[nn.Module, torch.Tensor]:
    return AllocatesInForward(mb).eval(), torch.zeros(1)


def build_tiny() -> tuple[nn.Module, torch.Tensor]:
    return nn.Linear(4, 2).eval(), torch.zeros(1, 4)


def build_broken() -> tuple[nn.Module, torch.Tensor]:
    raise ValueError("checkpoint is corrupt\nsecond line that must not appear")


def build_wrong_input() -> tuple[nn.Module, torch.Tensor]:
    return nn.Linear(4, 2).eval(), torch.zeros(1, 3)


def test_allocation_in_forward_shows_as_peak_over_baseline():
    result = measure_memory(functools.partial(build_allocating, BIG_MB), min_seconds=0.3, threads=1)
    assert result.method == "rss-sampled-subprocess"
    assert result.unavailable_reason is None
    over = result.details["peak_over_baseline_mb"]
    assert BIG_MB * 0.9 <= over <= BIG_MB * 1.15
    hwm = result.details["hwm_peak_mb"]
    if hwm is not None:
        assert hwm >= result.peak_mb - 1
    assert result.baseline_mb <= result.avg_mb <= result.peak_mb
    assert result.samples > 20
    assert result.details["iterations"] >= memory.MIN_ITERATIONS
    assert result.details["window_s"] >= 0.3
    assert result.details["achieved_interval_ms"] > 0
    assert result.details["threads"] == 1


def test_tiny_model_adds_little_over_baseline():
    result = measure_memory(build_tiny, min_seconds=0.3)
    assert result.details["peak_over_baseline_mb"] < 20
    assert result.avg_mb <= result.peak_mb
    assert result.samples > 20


def test_build_error_surfaces_with_its_first_line():
    with pytest.raises(SparsebenchError, match="ValueError: checkpoint is corrupt$"):
        measure_memory(build_broken, min_seconds=0.1)


def test_forward_error_surfaces():
    with pytest.raises(SparsebenchError, match="RuntimeError"):
        measure_memory(build_wrong_input, min_seconds=0.1)


def test_unpicklable_build_is_refused_before_spawning():
    with pytest.raises(SparsebenchError, match="picklable"):
        measure_memory(lambda: build_tiny(), min_seconds=0.1)


def test_unknown_device_is_refused():
    with pytest.raises(SparsebenchError, match="device 'tpu'"):
        measure_memory(build_tiny, device="tpu")


# --- CUDA path, driven by fakes (no GPU needed) -------------------------------------------


class _FakeCudaModel:
    """Stands in for a model on the GPU: each forward moves the fake allocator counters."""

    def __init__(self, cuda: _FakeCuda):
        self.cuda = cuda

    def to(self, device):
        return self

    def __call__(self, x):
        self.cuda.forward()
        return x


class _FakeInputs:
    def to(self, device):
        return self


class _FakeCuda:
    """torch.cuda counters: weights of 100 MB, 50 MB live after a forward, 300 MB peak."""

    def __init__(self):
        self.allocated = 100 * MB
        self.peak = self.allocated

    def forward(self):
        self.peak = max(self.peak, 300 * MB)
        self.allocated = 150 * MB

    def memory_allocated(self, device=None):
        return self.allocated

    def max_memory_allocated(self, device=None):
        return self.peak

    def reset_peak_memory_stats(self, device=None):
        self.peak = self.allocated

    def synchronize(self, device=None):
        pass


def _fake_pynvml(used_bytes: int) -> types.ModuleType:
    fake = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    fake.NVMLError = NVMLError
    fake.nvmlInit = lambda: None
    fake.nvmlShutdown = lambda: None
    fake.nvmlDeviceGetHandleByIndex = lambda index: f"gpu{index}"
    fake.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(used=used_bytes)
    return fake


def test_cuda_path_reads_allocator_and_nvml(monkeypatch):
    cuda = _FakeCuda()
    for name in ("memory_allocated", "max_memory_allocated", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, getattr(cuda, name))
    monkeypatch.setattr(torch.cuda, "synchronize", cuda.synchronize)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(2048 * MB))
    monkeypatch.setattr(memory._nvml, "_torch_uuid", lambda index: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def build():
        return _FakeCudaModel(cuda), _FakeInputs()

    result = measure_memory(build, device="cuda:0", min_seconds=0.05, interval_s=0.001)
    assert result.method == "cuda-allocator+nvml"
    assert result.baseline_mb == pytest.approx(150)  # after the warm-up forward
    assert result.peak_mb == pytest.approx(300)
    assert result.avg_mb == pytest.approx(150)
    assert result.details["peak_over_baseline_mb"] == pytest.approx(150)
    assert result.details["nvml_peak_used_mb"] == pytest.approx(2048)
    assert result.details["nvml_avg_used_mb"] == pytest.approx(2048)


def test_cuda_path_reports_why_nvml_failed(monkeypatch):
    cuda = _FakeCuda()
    for name in ("memory_allocated", "max_memory_allocated", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, getattr(cuda, name))
    monkeypatch.setattr(torch.cuda, "synchronize", cuda.synchronize)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    broken = _fake_pynvml(0)

    def fail():
        raise broken.NVMLError("Driver Not Loaded")

    broken.nvmlInit = fail
    monkeypatch.setitem(sys.modules, "pynvml", broken)

    def build():
        return _FakeCudaModel(cuda), _FakeInputs()

    result = measure_memory(build, device="cuda:0", min_seconds=0.02)
    assert result.peak_mb == pytest.approx(300)
    assert "Driver Not Loaded" in result.details["nvml_reason"]
    assert "nvml_peak_used_mb" not in result.details


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_allocation_in_forward_shows_as_peak():
    result = measure_memory(_build_cuda_allocating, device="cuda", min_seconds=0.2)
    assert result.details["peak_over_baseline_mb"] >= 64 * 0.95
    assert result.avg_mb <= result.peak_mb


def _build_cuda_allocating() -> tuple[nn.Module, torch.Tensor]:
    return AllocatesInForward(64).eval().to("cuda"), torch.zeros(1, device="cuda")
