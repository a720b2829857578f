"""Format sweep: each format's speedup over dense, measured side by side in one run.

Workloads: a single `nn.Linear` (1024x1024 and 4096x4096) at batch 1 and 32, and VGG16-BN
end to end, each magnitude-pruned layer by layer to 50/80/90/95 % unstructured sparsity;
VGG16-BN also with 50 % of its channels removed (the structured baseline). Every converted
model is verified against its dense counterpart before it is timed; a format that cannot run
here is listed with the reason instead of a number.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.synthetic import synthetic_inputs
from ..device import check_threads
from ..errors import SparsebenchError
from ..formats import ExportConfig, get_exporter
from ..measure.interleaved import TimingConfig, time_interleaved
from ..measure.threads import fixed_threads
from ..prune import magnitude_prune_
from ..verify import compare_outputs
from ..zoo import create_model


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep and how long to time each comparison."""

    sparsities: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
    linear_sizes: tuple[int, ...] = (1024, 4096)
    batches: tuple[int, ...] = (1, 32)
    formats: tuple[str, ...] = ("csr", "semi24", "bitmask")
    vgg: bool = True
    vgg_batch: int = 1
    channel_ratio: float = 0.5
    rounds: int = 5
    block_seconds: float = 0.2
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self):
        """Refuse bad options before anything is built; cap `threads` to the CPUs available."""
        from ..device import check_device
        from ..options import check_count, check_number, check_seconds

        for sparsity in self.sparsities:
            check_number("sparsity", sparsity, at_least=0, below=1)
        for name in ("linear_sizes", "batches"):
            for size in getattr(self, name):
                check_count(name, size, 1)
        check_count("vgg_batch", self.vgg_batch, 1)
        check_number("channel_ratio", self.channel_ratio, above=0, below=1)
        check_count("--rounds", self.rounds, 1)
        check_seconds("block_seconds", self.block_seconds, allow_zero=True)
        check_device(self.device)
        object.__setattr__(self, "threads", check_threads(self.threads))

    @property
    def timing(self) -> TimingConfig:
        """The interleaved timing of every comparison of the sweep."""
        return TimingConfig(rounds=self.rounds, block_seconds=self.block_seconds)


@dataclass
class SweepRow:
    """One format on one workload: its median latency and speedup over dense."""

    workload: str
    batch: int
    sparsity_pct: float
    format: str
    dense_ms: float | None = None
    format_ms: float | None = None
    speedup: float | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    max_rel_err: float | None = None
    unavailable: str | None = None
    extra: dict = field(default_factory=dict)


def _convert(fmt: str, model: nn.Module, example: torch.Tensor, config: ExportConfig):
    """Convert a copy of `model`; returns (converted, reference) or raises SparsebenchError."""
    conversion = get_exporter(fmt).convert(copy.deepcopy(model), example, config)
    return conversion.model, conversion.reference or model


def _compare(workload, batch, sparsity, dense, inputs, candidates, sweep: SweepConfig):
    """Verify each candidate (name -> (model, reference)) then time all of them interleaved."""
    rows, variants = [], {"dense": lambda: dense(inputs)}
    verified = {}
    for name, (model, reference) in candidates.items():
        check = compare_outputs(reference, model, inputs, 1e-4, "synthetic", sweep.device)
        if not check.passed:
            raise SparsebenchError(
                f"{name} on {workload} failed verification ({check.max_rel_err})"
            )
        verified[name] = check.max_rel_err
        variants[name] = lambda m=model: m(inputs)
    with torch.inference_mode():
        timing = time_interleaved(variants, sweep.timing, sweep.device)
    for name, error in verified.items():
        stats = timing.speedup(name, "dense")
        rows.append(
            SweepRow(workload, batch, 100 * sparsity, name, timing.median_ms("dense"),
                     timing.median_ms(name), stats.median, stats.low, stats.high, error)
        )  # fmt: skip
    return rows


def _candidates(model, example, sweep, formats, workload, batch, sparsity):
    candidates, skipped = {}, []
    for fmt in formats:
        try:
            candidates[fmt] = _convert(
                fmt, model, example, ExportConfig.of(fmt, device=sweep.device)
            )
        except SparsebenchError as exc:
            skipped.append(SweepRow(workload, batch, 100 * sparsity, fmt, unavailable=str(exc)))
    return candidates, skipped


def sweep_linear(size: int, batch: int, sparsity: float, sweep: SweepConfig) -> list[SweepRow]:
    """Dense vs each format for one pruned `nn.Linear(size, size)`."""
    torch.manual_seed(0)
    model = magnitude_prune_(nn.Sequential(nn.Linear(size, size)), sparsity, scope="layer").eval()
    inputs = synthetic_inputs((batch, size)).to(sweep.device)
    model = model.to(sweep.device)
    workload = f"Linear {size}x{size}"
    candidates, rows = _candidates(model, inputs[:1], sweep, sweep.formats, workload, batch,
                                   sparsity)  # fmt: skip
    return rows + _compare(workload, batch, sparsity, model, inputs, candidates, sweep)


def sweep_vgg(sparsity: float, sweep: SweepConfig) -> list[SweepRow]:
    """Dense vs each format for VGG16-BN magnitude-pruned to `sparsity` (random weights)."""
    torch.manual_seed(0)
    model = magnitude_prune_(create_model("vgg16_bn"), sparsity, scope="layer")
    model = model.eval().to(sweep.device)
    inputs = synthetic_inputs((sweep.vgg_batch, 3, 32, 32)).to(sweep.device)
    formats = tuple(f for f in sweep.formats if f != "semi24") or ()
    candidates, rows = _candidates(model, inputs[:1], sweep, formats, "VGG16-BN", sweep.vgg_batch,
                                   sparsity)  # fmt: skip
    return rows + _compare("VGG16-BN", sweep.vgg_batch, sparsity, model, inputs, candidates, sweep)


def sweep_vgg_channels(sweep: SweepConfig) -> list[SweepRow]:
    """Dense VGG16-BN vs the same network with `channel_ratio` of its channels removed."""
    torch.manual_seed(0)
    model = create_model("vgg16_bn").eval().to(sweep.device)
    inputs = synthetic_inputs((sweep.vgg_batch, 3, 32, 32)).to(sweep.device)
    config = ExportConfig.of("channels", device=sweep.device, ratio=sweep.channel_ratio)
    pruned, reference = _convert("channels", model, inputs[:1], config)
    # the dense baseline is the soft-pruned model: same function, full width
    workload = f"VGG16-BN ({sweep.channel_ratio:.0%} channels removed)"
    return _compare(workload, sweep.vgg_batch, 0.0, reference, inputs,
                    {"channels": (pruned, reference)}, sweep)  # fmt: skip


def run_sweep(sweep: SweepConfig, progress=None) -> list[SweepRow]:
    """Run every workload of the sweep; `progress(text)` is told what runs next."""
    with fixed_threads(sweep.threads):
        return _sweep(sweep, progress or (lambda text: None))


def _sweep(sweep: SweepConfig, say) -> list[SweepRow]:
    rows: list[SweepRow] = []
    for size in sweep.linear_sizes:
        for batch in sweep.batches:
            for sparsity in sweep.sparsities:
                say(f"Linear {size}x{size}, batch {batch}, {sparsity:.0%} sparse")
                rows += sweep_linear(size, batch, sparsity, sweep)
    if sweep.vgg:
        for sparsity in sweep.sparsities:
            say(f"VGG16-BN, {sparsity:.0%} unstructured")
            rows += sweep_vgg(sparsity, sweep)
        say(f"VGG16-BN, {sweep.channel_ratio:.0%} channels removed")
        rows += sweep_vgg_channels(sweep)
    return rows


def render_sweep(rows: list[SweepRow], environment: dict) -> str:
    """Markdown: one line per (workload, batch, sparsity, format); reasons for missing ones."""
    lines = [
        "| Workload | Batch | Sparsity (%) | Format | Dense (ms) | Format (ms) | Speedup "
        "(median [p10, p90] of rounds) | Verify err |",
        "|---|---|---|---|---|---|---|---|",
    ]
    reasons = {}
    for row in rows:
        if row.unavailable:
            reasons.setdefault(row.format, row.unavailable)
            continue
        lines.append(
            f"| {row.workload} | {row.batch} | {row.sparsity_pct:.0f} | {row.format} | "
            f"{row.dense_ms:.3f} | {row.format_ms:.3f} | {row.speedup:.2f}x "
            f"[{row.speedup_low:.2f}, {row.speedup_high:.2f}] | {row.max_rel_err:.1e} |"
        )
    header = (
        f"Device {environment.get('gpu') or environment.get('cpu')}, torch "
        f"{environment.get('torch')}, {environment.get('torch_threads')} threads. Speedup = dense "
        "median / format median per interleaved round; > 1 means the format is faster."
    )
    notes = [f"- {fmt}: not measured here: {reason}" for fmt, reason in reasons.items()]
    return "\n".join([header, "", *lines, "", *notes]) + "\n"
