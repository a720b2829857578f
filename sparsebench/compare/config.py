"""What `sparsebench compare` measures: formats, runtimes, timing and the accuracy budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..device import check_device, check_threads
from ..errors import SparsebenchError
from ..measure.interleaved import TimingConfig
from ..options import check_count, check_number, check_seconds

FORMATS = ("dense", "csr", "bitmask", "channels", "semi24", "onnx")
RUNTIMES = ("torch", "onnxruntime")
RUNTIME_OF = {"onnx": "onnxruntime"}  # every other format runs in torch


def runtime_of(fmt: str) -> str:
    """The runtime that runs `fmt` (ONNX files in ONNX Runtime, the rest in PyTorch)."""
    return RUNTIME_OF.get(fmt, "torch")


@dataclass(frozen=True)
class CompareConfig:
    """Options of a comparison; the dense/torch baseline of each checkpoint is always measured.

    `ratio` None makes `channels` remove only channels that are already all zero.
    """

    formats: tuple[str, ...] = ("dense", "csr", "channels", "onnx")
    runtimes: tuple[str, ...] = RUNTIMES
    device: str = "cpu"
    data: str | None = None
    data_split: str = "test"
    image: Any = None  # data.ImageOptions for an image folder (--resize, --normalize, ...)
    max_acc_drop: float = 1.0
    ratio: float | None = None
    rounds: int = 5
    block_seconds: float = 0.2
    block_iters: int = 3
    warmup: int = 2
    threads: int | None = None

    def __post_init__(self):
        """Refuse bad options before anything loads; cap `threads` to the CPUs available."""
        self._check_choices()
        self._check_numbers()
        check_device(self.device)
        object.__setattr__(self, "threads", check_threads(self.threads))

    def _check_choices(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise SparsebenchError(
                f"unknown format '{unknown[0]}' for compare: use {', '.join(FORMATS)}"
            )
        bad = [r for r in self.runtimes if r not in RUNTIMES]
        if bad:
            raise SparsebenchError(f"unknown runtime '{bad[0]}': use {' or '.join(RUNTIMES)}")
        if "torch" not in self.runtimes:
            raise SparsebenchError("compare needs the torch runtime for the dense baseline")

    def _check_numbers(self) -> None:
        rounds_rule = "--rounds must be at least 2 (speedups are per-round ratios)"
        check_count("--rounds", self.rounds, 2, rule=rounds_rule)
        if self.ratio is not None:
            check_number("--ratio", self.ratio, above=0, below=1)
        check_number("--max-acc-drop", self.max_acc_drop, at_least=0)
        check_seconds("--block-seconds", self.block_seconds, allow_zero=True)
        check_count("block_iters", self.block_iters, 1)
        check_count("warmup", self.warmup, 0)

    @property
    def timing(self) -> TimingConfig:
        """The interleaved timing these options describe."""
        return TimingConfig(self.rounds, self.block_seconds, self.block_iters, self.warmup)

    def variants(self) -> list[tuple[str, str]]:
        """(format, runtime) pairs to build, dense/torch first, in the order asked."""
        pairs = [("dense", "torch")]
        for fmt in self.formats:
            pair = (fmt, runtime_of(fmt))
            if pair[1] in self.runtimes and pair not in pairs:
                pairs.append(pair)
        return pairs
