"""measure_memory: the CPU child process sees a known allocation; failures surface as one line."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import psutil
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


def build_tiny_marking(marker: str) -> tuple[nn.Module, torch.Tensor]:
    """build_tiny that first writes the (child) process's pid to `marker`."""
    Path(marker).write_text(str(os.getpid()))
    return build_tiny()


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


# --- the child never outlives its parent --------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    """No such process, or only a zombie (an orphan whose new parent has not reaped it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _kill_if_alive(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run_until_marked(script: str, marker: Path) -> tuple[subprocess.Popen, int]:
    """Start `script` in a python process; return it and the pid it writes to `marker`."""
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO)
    _wait_for(lambda: marker.exists() and marker.read_text(), 120, "the child to start")
    return parent, int(marker.read_text())


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_child_dies_when_parent_is_killed(tmp_path):
    marker = tmp_path / "child.pid"
    script = f"""
        import functools, sys
        sys.path.insert(0, {str(REPO)!r})
        from sparsebench.measure.memory import measure_memory
        from tests.test_memory import build_tiny_marking
        measure_memory(functools.partial(build_tiny_marking, {str(marker)!r}), min_seconds=60)
    """
    parent, child = _run_until_marked(script, marker)
    try:
        assert psutil.Process(child).ppid() == parent.pid
        parent.kill()
        parent.wait(30)
        _wait_for(lambda: _gone(child), 5, f"the orphaned child {child} to die")
    finally:
        parent.kill()
        parent.wait()
        _kill_if_alive(child)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_watchdog_alone_ends_an_orphan(tmp_path):
    # no PR_SET_PDEATHSIG here: only the polling thread can end the grandchild
    marker = tmp_path / "grandchild.pid"
    grandchild = f"""
        import os, pathlib, time
        from sparsebench.measure._memory_child import start_parent_watchdog
        start_parent_watchdog(os.getppid(), poll_s=0.1)
        pathlib.Path({str(marker)!r}).write_text(str(os.getpid()))
        time.sleep(60)
    """
    script = f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {textwrap.dedent(grandchild)!r}])
        time.sleep(60)
    """
    parent, child = _run_until_marked(script, marker)
    try:
        parent.kill()
        parent.wait(30)
        _wait_for(lambda: _gone(child), 5, f"the orphaned grandchild {child} to die")
    finally:
        parent.kill()
        parent.wait()
        _kill_if_alive(child)


def test_orphan_exits_at_start_if_parent_already_gone():
    code = "from sparsebench.measure._memory_child import die_with_parent; die_with_parent(1)"
    if os.getpid() == 1:
        pytest.skip("pid 1 would be the child's live parent")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 1


def test_interrupted_measurement_stops_the_child_at_once(monkeypatch):
    real = memory._sample_until
    seen = []

    def interrupt_while_running(conn, proc, watched, expected, *args):
        if expected == "done":
            seen.append((proc, time.perf_counter()))
            raise KeyboardInterrupt
        return real(conn, proc, watched, expected, *args)

    monkeypatch.setattr(memory, "_sample_until", interrupt_while_running)
    with pytest.raises(KeyboardInterrupt):
        measure_memory(build_tiny, min_seconds=60)
    ((proc, interrupted_at),) = seen
    assert time.perf_counter() - interrupted_at < 2.5  # not left to finish its 60 s window
    assert not proc.is_alive()
    assert proc.exitcode == -signal.SIGTERM


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
