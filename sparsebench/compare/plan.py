"""Build the variants of a comparison: each checkpoint converted to each format, in memory.

Formats that convert in memory (dense, csr, channels, semi24) run their exporter on a copy of
the loaded model, as the format sweep does; onnx is exported to a temporary .onnx file and
loaded back into ONNX Runtime. A format that cannot run here (semi24 on a CPU, channels with
nothing to remove) becomes a variant with the reason instead of a model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

from ..artifact import load
from ..errors import SparsebenchError, first_line
from ..formats import ExportConfig, get_exporter
from ..inputs import Batch, InputSpecs
from ..load import LoadedModel, LoadOptions
from ..progress import step
from ..results import MB
from .config import CompareConfig

VERIFY_SAMPLES = 16


@dataclass
class Variant:
    """One (checkpoint, format, runtime) to measure, or the reason it cannot be."""

    checkpoint: str
    model_name: str
    format: str
    runtime: str
    input_shape: tuple[int, ...]
    model: nn.Module | None = None
    reference: nn.Module | None = None  # what it must reproduce (the dense model)
    stored_mb: float | None = None
    size_source: str = ""
    converted: list[str] = field(default_factory=list)
    unavailable: str | None = None
    specs: InputSpecs | None = None  # the model's inputs (one float input of input_shape if None)

    def __post_init__(self):
        if self.specs is None:
            self.specs = InputSpecs.single(self.input_shape)

    @property
    def key(self) -> str:
        return f"{self.checkpoint}|{self.format}|{self.runtime}"

    @property
    def baseline_key(self) -> str:
        return f"{self.checkpoint}|dense|torch"


def verify_inputs(specs: InputSpecs | tuple[int, ...]) -> Batch:
    """The synthetic batch every variant is verified on."""
    specs = specs if isinstance(specs, InputSpecs) else InputSpecs.single(specs)
    return specs.synthetic(seed=0, batch=VERIFY_SAMPLES)


def _in_memory(loaded: LoadedModel, fmt: str, config: CompareConfig, base: Variant) -> Variant:
    # --ratio is the channels format's option: every other format converts as it is
    extra = {"ratio": config.ratio} if fmt == "channels" else {}
    export_config = ExportConfig.of(fmt, device=config.device, **extra)
    example = verify_inputs(loaded.specs)[:1].to(config.device)
    conversion = get_exporter(fmt).convert(copy.deepcopy(loaded.model), example, export_config)
    converted = [x.name for x in conversion.layers if x.action == "converted"]
    return replace(base, model=conversion.model.eval(),
                   reference=conversion.reference or loaded.model,
                   stored_mb=conversion.stored_bytes / MB, size_source="stored weights",
                   converted=converted)  # fmt: skip


def _onnx(path: Path, loaded: LoadedModel, options: LoadOptions, folder: Path, base: Variant):
    from ..export import export

    target = folder / f"{len(list(folder.iterdir()))}-{path.stem}.onnx"
    export(path, target, ExportConfig.of(format="onnx"), replace(options, device="cpu"))
    model = load(target, options).model
    return replace(base, model=model, reference=loaded.model,
                   stored_mb=target.stat().st_size / MB, size_source="ONNX file")  # fmt: skip


def plan_checkpoint(path: Path, config: CompareConfig, options: LoadOptions, folder: Path):
    """All variants of one checkpoint, dense/torch first."""
    loaded = load(path, options)
    loaded.model.eval()
    variants = []
    for fmt, runtime in config.variants():
        base = Variant(str(path), loaded.name, fmt, runtime, tuple(loaded.input_shape),
                       specs=loaded.specs)  # fmt: skip
        try:
            with step(f"converting {loaded.name} to {fmt}"):
                if fmt == "onnx":
                    variants.append(_onnx(Path(path), loaded, options, folder, base))
                else:
                    variants.append(_in_memory(loaded, fmt, config, base))
        except Exception as exc:  # one format failing here must not drop the others
            if fmt == "dense":
                raise
            detail = first_line(exc, with_type=not isinstance(exc, SparsebenchError))
            variants.append(replace(base, unavailable=detail))
    return variants


def plan_variants(paths, config: CompareConfig, options: LoadOptions, folder: Path):
    """Every variant of every checkpoint; loading errors fail before anything is timed."""
    missing = [
        str(p) for p in paths if not (Path(p).is_file() or (Path(p) / "config.json").is_file())
    ]
    if missing:
        raise SparsebenchError(f"no such checkpoint: {missing[0]}")
    if len({str(Path(p).resolve()) for p in paths}) != len(paths):
        raise SparsebenchError("a checkpoint is given twice")
    return [v for path in paths for v in plan_checkpoint(Path(path), config, options, folder)]


def close_variants(variants: list[Variant]) -> None:
    """Release runtime sessions (ONNX Runtime) held by the variants."""
    for variant in variants:
        close = getattr(variant.model, "close", None)
        if callable(close):
            close()
