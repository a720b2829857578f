"""How often does `sparsebench check` cry wolf, and how often does it catch a real slowdown?

Runs the check N times (each a fresh `sparsebench check` process, exactly as CI runs it) on the
CI profile's models unchanged and slowed by calibrated amounts, on an idle machine and beside a
bounded, bursty CPU-load generator that this script starts and stops itself, then prints
false-alarm, inconclusive and detection rates as a markdown table.

The profile is profiles/ci-cpu.toml's models, batch sizes, thresholds and timing, without the
training data (accuracy does not enter the latency decision, and training would triple the run
time). The baseline is recorded once, idle, before the runs. Cases are interleaved run by run,
so drift over the benchmark's half hour hits every case alike.

Usage: python benchmarks/gate.py [--runs 20] [--slowdowns 0,10,20,30] [--output docs/check-gate.md]
       python benchmarks/gate.py --load-worker DUTY SECONDS   (internal: one load process)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CI_PROFILE = ROOT / "profiles" / "ci-cpu.toml"


# ---------------------------------------------------------------- load generator
def load_worker(duty: float, seconds: float) -> None:
    """Bursty load: busy for 5-300 ms (a 256x256 matmul and a sweep over 8 MB, so the FPU and
    the caches are both contended), then idle for a random time giving `duty` on average.
    Bounded: stops after `seconds`, or as soon as its parent is gone."""
    import numpy as np

    parent, deadline = os.getppid(), time.monotonic() + seconds
    rng = random.Random(os.getpid())
    a = np.random.default_rng(0).random((256, 256), dtype=np.float32)
    sweep = np.zeros(2 * 2**20, dtype=np.float32)
    while time.monotonic() < deadline and os.getppid() == parent:
        busy = rng.uniform(0.005, 0.3)
        start = time.perf_counter()
        while time.perf_counter() - start < busy:
            a @ a
            sweep += 1.0
        time.sleep(busy * (1 - duty) / duty * rng.uniform(0.3, 1.7))


class LoadGenerator:
    """`workers` load processes at `duty`, started on enter and killed on exit."""

    def __init__(self, workers: int, duty: float, seconds: float):
        self.workers, self.duty, self.seconds = workers, duty, seconds
        self.processes: list[subprocess.Popen] = []

    def __enter__(self):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        command = [sys.executable, __file__, "--load-worker", str(self.duty), str(self.seconds)]
        self.processes = [subprocess.Popen(command, env=env) for _ in range(self.workers)]
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait()


# ---------------------------------------------------------------- profile and calibration
def write_profile(directory: Path) -> Path:
    """The CI profile's settings with the slowable factory models of gate_models.py."""
    ci = tomllib.loads(CI_PROFILE.read_text(encoding="utf-8"))
    lines = ['name = "gate"', f'device = "{ci.get("device", "cpu")}"',
             f"threads = {ci.get('threads', 1)}", f"batch_sizes = {ci['batch_sizes']}"]  # fmt: skip
    if "reference" in ci:
        lines.append(f'reference = "{ci["reference"]}"')
    for table in ("thresholds", "timing"):
        lines.append(f"[{table}]")
        lines += [f"{key} = {value!r}" for key, value in ci.get(table, {}).items()]
    for model in ci["models"]:
        name = model["name"]
        shape = "[1, 1, 40]" if name == "cnn" else "[1, 40]"
        factory = f"{HERE / 'gate_models.py'}:{name}"
        lines += ["[[models]]", f'name = "{name}"', f'factory = "{factory}"',
                  f"input_shape = {shape}"]  # fmt: skip
    path = directory / "gate.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _batch(model_name: str, batch: int):
    import torch

    shape = (batch, 1, 40) if model_name == "cnn" else (batch, 40)
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def _min_ratio(slow, plain, batch_input) -> float:
    """Median slow/plain block-minimum ratio over the rounds where both ran in the machine's
    fast state (each within 5 % of its own fastest decile), timed interleaved."""
    import torch

    from sparsebench.check.decision import quiet_rounds
    from sparsebench.measure.interleaved import TimingConfig, time_interleaved

    with torch.inference_mode():
        comparison = time_interleaved(
            {"plain": lambda: plain(batch_input), "slow": lambda: slow(batch_input)},
            TimingConfig(rounds=80, block_seconds=0.005, block_iters=10, warmup=5),
        )
    minima = {name: [min(block) for block in blocks] for name, blocks in comparison.rounds.items()}
    quiet_plain = quiet_rounds([[m, m] for m in minima["plain"]])
    quiet_slow = quiet_rounds([[m, m] for m in minima["slow"]])
    ratios = [s / p for s, p, a, b in zip(minima["slow"], minima["plain"], quiet_plain,
                                          quiet_slow, strict=True) if a and b]  # fmt: skip
    return statistics.median(ratios)


def _solve(plain, x, batch: int, fraction: float, make) -> tuple[int, float]:
    """Loop iterations whose measured slowdown is within 5 % of `fraction` (secant steps; at
    most 8 tries), and the slowdown measured for them."""
    points: list[tuple[int, float]] = []
    iterations = 100
    for _ in range(8):
        got = _min_ratio(make(plain, {batch: iterations}).eval(), plain, x) - 1
        points.append((iterations, got))
        if abs(got - fraction) <= 0.05 * fraction:
            break
        (n1, g1), (n2, g2) = points[-2:] if len(points) > 1 else ((0, 0.0), points[-1])
        slope = (g2 - g1) / (n2 - n1) if n2 != n1 else 0
        guess = n2 + (fraction - g2) / slope if slope > 0 else n2 * fraction / max(g2, 1e-3)
        iterations = max(0, min(round(guess), 10_000_000))
    return min(points, key=lambda point: abs(point[1] - fraction))  # the best one measured


def calibrate(models: list[str], batches: list[int], slowdowns: list[float]) -> dict:
    """Per model, slowdown and batch: loop iterations giving that slowdown, with the slowdown
    measured for them (block minima over quiet rounds, interleaved)."""
    import torch

    sys.path.insert(0, str(HERE))
    import gate_models

    torch.set_num_threads(1)
    table: dict = {}
    measured: dict = {}
    for name in models:
        plain = gate_models.base_model(name)
        for fraction in slowdowns:
            for batch in batches:
                work, got = _solve(plain, _batch(name, batch), batch, fraction, gate_models.slowed)
                table.setdefault(name, {}).setdefault(f"{fraction:g}", {})[str(batch)] = work
                measured.setdefault(f"{fraction:g}", []).append(got)
                print(f"  {name} b={batch} {fraction:.0%}: {work} iterations -> {got:.1%}",
                      flush=True)  # fmt: skip
    return {"table": table, "measured": measured}


# ---------------------------------------------------------------- runs
def run_check(profile: Path, baseline: Path, slowdown: float, calibration: Path, out: Path):
    env = {**os.environ, "SPARSEBENCH_GATE_SLOWDOWN": f"{slowdown:g}",
           "SPARSEBENCH_GATE_CALIBRATION": str(calibration), "PYTHONPATH": str(HERE)}  # fmt: skip
    env.pop("GITHUB_STEP_SUMMARY", None)
    command = [sys.executable, "-m", "sparsebench", "check", str(profile), "--baseline",
               str(baseline), "--json", str(out)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1, 3):
        raise SystemExit(f"check failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    result = json.loads(out.read_text(encoding="utf-8"))
    latency = [f for f in result["findings"] if f["metric"].startswith("latency/")]
    return {
        "exit": done.returncode,
        "seconds": seconds,
        "noise_floor": result["noise"]["floor"],
        "confirmed": result["confirmation"] is not None,
        "entries": {f"{f['model']} {f['metric']}": [f["status"], f["change"]] for f in latency},
    }


def _factor(change: str) -> float | None:
    """'x1.034' -> 1.034; None for a row that could not compare ('n/a')."""
    try:
        return float(change.removeprefix("x"))
    except ValueError:
        return None


def summarise(records: list[dict], slowdown: float) -> dict:
    codes = [r["exit"] for r in records]
    entries = [status for r in records for status, _ in r["entries"].values()]
    parsed = [_factor(change) for r in records for _, change in r["entries"].values()]
    compared = [f for f in parsed if f is not None]
    factors = compared or [math.nan]
    floors = [r["noise_floor"] for r in records if r["noise_floor"] is not None] or [math.nan]
    return {
        "runs": len(records),
        "regression": codes.count(1),
        "inconclusive": codes.count(3),
        "pass": codes.count(0),
        "entry_regression": entries.count("regression"),
        "entry_total": len(entries),
        "factor_median": statistics.median(factors),
        "factor_low": min(factors),
        "factor_high": max(factors),
        "noise_median": statistics.median(floors),
        "noise_max": max(floors),
        "entries_not_compared": len(parsed) - len(compared),
        "confirmations": sum(r["confirmed"] for r in records),
        "seconds_median": statistics.median(r["seconds"] for r in records),
        "slowdown": slowdown,
    }


def _row(condition: str, s: dict, measured: float | None) -> str:
    case = "unchanged" if not s["slowdown"] else f"{s['slowdown']:.0%} slower"
    if measured is not None:
        case += f" (measured {measured:.1%})"
    outcome = (
        f"{s['regression']} false alarm(s)"
        if not s["slowdown"]
        else f"detected {s['regression']}/{s['runs']}"
    )
    return (
        f"| {case} | {condition} | {outcome} | {s['inconclusive']} | {s['pass']} | "
        f"{s['entry_regression']}/{s['entry_total']} | x{s['factor_median']:.3f} "
        f"(x{s['factor_low']:.3f}-{s['factor_high']:.3f}) | {s['noise_median']:.1%} / "
        f"{s['noise_max']:.1%} | {s['confirmations']} | {s['seconds_median']:.1f} s |"
    )


def ci_profile_runs(count: int, directory: Path) -> list[dict]:
    """The committed profile and baseline, as CI runs them (with training and accuracy)."""
    records = []
    for index in range(count):
        out = directory / f"ci-{index}.json"
        command = [sys.executable, "-m", "sparsebench", "check", str(CI_PROFILE), "--json",
                   str(out)]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        records.append({"exit": done.returncode, "seconds": time.perf_counter() - start})
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--slowdowns", default="0,10,20,30", help="percent, comma-separated")
    parser.add_argument("--conditions", default="idle,load")
    parser.add_argument("--load-workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--duty", type=float, default=0.5, help="busy fraction of each worker")
    parser.add_argument("--ci-runs", type=int, default=5, help="runs of the committed profile")
    parser.add_argument("--output", type=Path, help="write the markdown report here")
    parser.add_argument("--raw", type=Path, help="write every run's record here (JSON)")
    args = parser.parse_args(argv)
    slowdowns = [int(p) / 100 for p in args.slowdowns.split(",")]
    conditions = args.conditions.split(",")
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        profile = write_profile(directory)
        ci = tomllib.loads(CI_PROFILE.read_text(encoding="utf-8"))
        print("calibrating the extra work (idle) ...", flush=True)
        cal = calibrate([m["name"] for m in ci["models"]], ci["batch_sizes"],
                        [s for s in slowdowns if s])  # fmt: skip
        calibration = directory / "calibration.json"
        calibration.write_text(json.dumps(cal["table"]), encoding="utf-8")
        baseline = directory / "gate.baseline.json"
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        record = subprocess.run([sys.executable, "-m", "sparsebench", "check", str(profile),
                                 "--update-baseline", "--baseline", str(baseline)], env=env,
                                capture_output=True, text=True)  # fmt: skip
        if record.returncode:
            raise SystemExit(f"could not record the baseline: {record.stdout}{record.stderr}")
        print(record.stdout.strip(), flush=True)
        records: dict = {}
        for condition in conditions:
            budget = args.runs * len(slowdowns) * 120 + 600  # workers also stop with us
            load = None
            if condition == "load":
                load = LoadGenerator(args.load_workers, args.duty, budget)
            if load:
                load.__enter__()
            try:
                for index in range(args.runs):
                    for slowdown in slowdowns:
                        out = directory / f"{condition}-{slowdown:g}-{index}.json"
                        rec = run_check(profile, baseline, slowdown, calibration, out)
                        case = records.setdefault(condition, {}).setdefault(f"{slowdown:g}", [])
                        case.append(rec)
                        if args.raw:
                            with open(f"{args.raw}.jsonl", "a", encoding="utf-8") as log:
                                log.write(
                                    json.dumps(
                                        {"condition": condition, "slowdown": slowdown, **rec}
                                    )
                                    + "\n"
                                )
                        print(f"{condition} {slowdown:.0%} run {index + 1}: exit {rec['exit']}",
                              flush=True)  # fmt: skip
            finally:
                if load:
                    load.__exit__(None, None, None)
        ci_records = ci_profile_runs(args.ci_runs, directory)
    thresholds = ci.get("thresholds", {})
    measured = {k: statistics.median(v) for k, v in cal["measured"].items()}
    lines = [
        "# `sparsebench check`: false alarms and detection (benchmarks/gate.py)",
        "",
        f"Machine: {os.cpu_count()} CPUs, {_cpu()}; "
        f"{time.strftime('%Y-%m-%d', time.gmtime(started))}; "
        f"{args.runs} runs per case, each a fresh `sparsebench check` process.",
        f"Settings: profiles/ci-cpu.toml's models, batch sizes {ci['batch_sizes']}, threads "
        f"{ci.get('threads', 1)}, reference `{ci.get('reference', 'mlp')}`, thresholds "
        f"{thresholds}, timing {ci.get('timing', {})}.",
        f"Load generator: {args.load_workers} processes, each busy {args.duty:.0%} of the time in "
        "bursts of 5-300 ms (256x256 matmul + 8 MB sweep).",
        "",
        "| case | machine | outcome | inconclusive (exit 3) | pass (exit 0) | entries flagged "
        "| slowdown measured by the check: median (range) | noise floor median / max "
        "| runs with a confirmation re-run | time per check |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    summaries = {}
    for condition in conditions:
        for slowdown in slowdowns:
            s = summarise(records[condition][f"{slowdown:g}"], slowdown)
            summaries[f"{condition}/{slowdown:g}"] = s
            lines.append(_row(condition, s, measured.get(f"{slowdown:g}")))
    ci_codes = [r["exit"] for r in ci_records]
    lines += [
        "",
        f"`sparsebench check profiles/ci-cpu.toml` with the committed baseline, {len(ci_records)} "
        f"runs (idle, with training and accuracy): exit codes {ci_codes}, wall time "
        + ", ".join(f"{r['seconds']:.0f} s" for r in ci_records)
        + ".",
        "",
        "'measured' is the calibrated slowdown as timed interleaved in the calibration step "
        "(block minima, idle). 'entries flagged' counts (model, batch) entries reported as "
        "REGRESSION over all runs. Total benchmark time "
        f"{(time.time() - started) / 60:.0f} min.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output:
        args.output.write_text(report, encoding="utf-8")
    if args.raw:
        raw = {"summaries": summaries, "records": records, "calibration": cal, "ci": ci_records}
        args.raw.write_text(json.dumps(raw, indent=1))
    return 0


def _cpu() -> str:
    sys.path.insert(0, str(ROOT))
    from sparsebench.check.machine import cpu_identity

    ident = cpu_identity()
    return f"{ident['name']} family {ident['family']} model {ident['model']}"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--load-worker":
        load_worker(float(sys.argv[2]), float(sys.argv[3]))
        raise SystemExit(0)
    raise SystemExit(main())
