"""`sparsebench.export`: load, convert, verify against the dense reference, write the artifact."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..checkpoint import CheckpointMeta, save_checkpoint
from ..data import load_dataset
from ..data.synthetic import synthetic_inputs
from ..errors import SparsebenchError
from ..io import check_writable
from ..load import LoadedModel, LoadOptions, load
from ..measure.accuracy import fit_samples
from ..runtimes.base import RuntimeModule
from .artifact import REFERENCE_KEY, check_inputs
from .base import Conversion, ExportConfig, get_exporter
from .verify import Verification, compare_outputs, require_passed


@dataclass
class ExportResult:
    """What `export` wrote: the artifact path and its report."""

    path: Path
    format: str
    layers: list[dict]
    stored_bytes: int
    verification: Verification
    notes: list[str]


def verification_inputs(loaded: LoadedModel, config: ExportConfig) -> tuple[torch.Tensor, str]:
    """A batch of real samples when `config.data` is given, else a synthetic batch."""
    if config.data:
        dataset = load_dataset(config.data, "test")
        x = fit_samples(dataset.x[: config.verify_samples], loaded.input_shape)
        return x, config.data
    shape = (config.verify_samples, *loaded.input_shape[1:])
    return synthetic_inputs(shape, seed=0), "synthetic"


def _meta(loaded: LoadedModel, options: LoadOptions) -> CheckpointMeta:
    if loaded.meta is not None:
        return copy.deepcopy(loaded.meta)
    if options.arch:
        return CheckpointMeta(arch=options.arch, arch_kwargs=dict(options.arch_kwargs or {}))
    raise SparsebenchError(
        f"export needs the architecture to rebuild the model: {loaded.source} is a {loaded.kind} "
        "file; export from a sparsebench checkpoint or a state_dict with --arch"
    )


def _verify(conversion: Conversion, source, inputs, label, config, tolerance) -> Verification:
    reference = conversion.reference or source
    verification = compare_outputs(
        reference.to(config.device), conversion.model, inputs, tolerance, label, config.device
    )
    require_passed(verification, f"the {config.format} export")
    return verification


def export(
    source: str | Path,
    output: str | Path,
    config: ExportConfig,
    options: LoadOptions | None = None,
    force: bool = False,
) -> ExportResult:
    """Convert checkpoint `source` to `config.format`, verify it and write `output` atomically."""
    check_writable(output, force)
    exporter = get_exporter(config.format)
    options = options or LoadOptions()
    if exporter.file_based:  # e.g. a TensorRT engine: the exporter writes its own file
        return exporter.export_file(source, output, config, options, force)
    loaded = load(source, LoadOptions(**{**asdict(options), "device": "cpu"}))
    if isinstance(loaded.model, RuntimeModule):
        raise SparsebenchError(
            f"{source} runs in {loaded.model.runtime}; the {config.format} format converts "
            "PyTorch checkpoints (export from the checkpoint the ONNX/engine file came from)"
        )
    meta = _meta(loaded, options)
    inputs, label = verification_inputs(loaded, config)
    dense_reference = copy.deepcopy(loaded.model)
    conversion = exporter.convert(loaded.model, inputs[:1], config)
    tolerance = exporter.tolerance_for(config)
    verification = _verify(conversion, dense_reference, inputs, label, config, tolerance)
    with torch.inference_mode():
        reference_outputs = conversion.model(check_inputs(loaded.input_shape).to(config.device))
    layers = [asdict(layer) for layer in conversion.layers]
    meta.input_shape = list(loaded.input_shape)
    meta.format = config.format
    meta.export = {
        "source": str(source),
        "config": asdict(config),
        "layers": layers,
        "stored_bytes": conversion.stored_bytes,
        "verification": verification.to_dict(),
        "payload": conversion.payload,
        "notes": conversion.notes,
    }
    tensors = {REFERENCE_KEY: reference_outputs.float()}
    save_checkpoint(output, conversion.model, meta, force=force, tensors=tensors)
    return ExportResult(
        Path(output), config.format, layers, conversion.stored_bytes, verification, conversion.notes
    )
