"""The input fuzzer (benchmarks/fuzz_inputs.py).

A short run, at least one case of every mutator family, ends with no traceback, signal,
hang or code executed; and the fuzzer's code-running payloads are live: they do run when a
loader trusts them, so a run that reports "0 code executed" means something.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_inputs.py"


@pytest.fixture(scope="module")
def fuzz():
    """The script as a module (registered, so that dataclasses and TorchScript see it)."""
    if "fuzz_inputs" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fuzz_inputs", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["fuzz_inputs"] = module
        spec.loader.exec_module(module)
    return sys.modules["fuzz_inputs"]


@pytest.fixture(scope="module")
def seeds(fuzz, tmp_path_factory):
    return fuzz.build_seeds(tmp_path_factory.mktemp("seeds"))


def test_classify(fuzz):
    assert fuzz.classify(0, "table", False) == "ok"
    assert fuzz.classify(2, "error: cannot read x.pt: corrupt\n", False) == "clean error"
    assert fuzz.classify(2, "error: a\nerror: b\n", False) == "other exit"
    assert fuzz.classify(2, "error: unexpected KeyError: 'x'\n", False) == "traceback"
    assert fuzz.classify(1, "Traceback (most recent call last):\n", False) == "traceback"
    assert fuzz.classify(-11, "", False) == "signal"
    assert fuzz.classify(None, "", True) == "hang"
    assert fuzz.classify(1, "error: x\n", False) == "other exit"


@pytest.mark.slow
def test_short_run_has_no_traceback_signal_hang_or_code_executed(fuzz, seeds, tmp_path):
    table = fuzz.families(64 * 2**20)
    picks = fuzz.plan_picks(fuzz.plan_slots(seeds, table, set()), 20)
    assert {slot.family for slot, _ in picks} == set(table)  # every family at least once
    cases, skipped = fuzz.build_cases(picks, table, tmp_path, seed=0)
    assert not skipped
    results = fuzz.run_cases(cases, tmp_path, 60, 2, 8.0, log=lambda line: None)
    assert len(results) == 20
    bad = fuzz.failed(results)
    assert not bad, fuzz.render_cases(bad)


def _trusted_load(path: Path, kind: str) -> None:
    """Load `path` the way a loader that trusts it would (errors after the payload ran are
    expected: the payload's result is not a tensor)."""
    try:
        if kind == "torchscript":
            torch.jit.load(str(path))(torch.zeros(1, 40))
        elif kind == "export-pt2":
            torch.export.load(str(path))
        else:
            torch.load(path, weights_only=False)
    except Exception:
        pass


@pytest.mark.slow
def test_code_payloads_run_when_trusted(fuzz, seeds, tmp_path):
    for seed in seeds:
        for variant in fuzz.code_exec_variants(seed):
            out = tmp_path / f"{seed.kind}-{variant}"
            out.mkdir()
            ctx = fuzz.Ctx(seed, out, random.Random(0), "t")
            _trusted_load(fuzz.mutate_code_exec(ctx, variant), seed.kind)
            changed = [v for v, data in ctx.victims.items() if v.read_bytes() != data]
            assert any(m.exists() for m in ctx.markers) or changed, (seed.kind, variant)
