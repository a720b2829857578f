"""`sparsebench.export`: load, convert, verify against the dense reference, write the artifact.

The one export path of every command: the source is loaded (and, if an artifact, verified)
here; in-memory formats only `convert` and this module writes the checkpoint; file-based
formats (onnx, tensorrt) get the loaded model and write their own encoding.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, replace
from pathlib import Path

import torch

from .artifact import load
from .checkpoint import CheckpointMeta, save_checkpoint
from .errors import SparsebenchError
from .formats import ExportConfig, get_exporter
from .formats.base import Conversion, ExportResult, verification_inputs
from .inputs import call
from .io import check_writable
from .load import LoadedModel, LoadOptions
from .measure.sanity import sanity_warnings
from .progress import step
from .runtimes import RuntimeModule
from .verify import REFERENCE_KEY, Verification, check_inputs, compare_outputs, require_passed

__all__ = ["ExportResult", "export"]


def _meta(loaded: LoadedModel, options: LoadOptions) -> CheckpointMeta:
    if loaded.meta is not None:
        return copy.deepcopy(loaded.meta)
    if options.arch:
        return CheckpointMeta(arch=options.arch, arch_kwargs=dict(options.arch_kwargs or {}))
    raise SparsebenchError(
        f"export needs the architecture to rebuild the model: {loaded.source} is "
        f"{KIND_NAMES.get(loaded.kind, loaded.kind + ' file')}; export from a sparsebench "
        "checkpoint, a Hugging Face folder, or a state_dict with --arch"
    )


KIND_NAMES = {
    "export": "a torch.export program",
    "torchscript": "a TorchScript archive",
    "pickled-module": "a pickled module",
}


def _verify(conversion: Conversion, source, inputs, label, config, tolerance) -> Verification:
    reference = conversion.reference or source
    with step(f"verifying {config.format} against the dense model on {len(inputs)} samples"):
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
    exporter.check_ready(config)
    options = options or LoadOptions()
    with load(source, replace(options, device="cpu")) as loaded:
        warnings = _sanity(loaded)
        if exporter.file_based:  # onnx, tensorrt: the format writes its own encoding
            result = exporter.export_file(loaded, Path(output), config, force)
        else:
            result = _export_checkpoint(loaded, source, output, config, options, force)
    result.warnings = warnings + result.warnings
    return result


def _sanity(loaded: LoadedModel) -> list[str]:
    """All-zero layers and constant outputs of the source: a verification error of 0 means
    nothing when the model ignores its input."""
    if isinstance(loaded.model, RuntimeModule):
        return []
    with torch.inference_mode():
        outputs = call(loaded.model, loaded.synthetic(seed=1, batch=8))
    return sanity_warnings(loaded.model, outputs)[0]


def _export_checkpoint(loaded, source, output, config, options, force) -> ExportResult:
    """Convert in memory, verify, and write the artifact as a sparsebench checkpoint."""
    exporter = get_exporter(config.format)
    if isinstance(loaded.model, RuntimeModule):
        raise SparsebenchError(
            f"{source} runs in {loaded.model.runtime}; the {config.format} format converts "
            "PyTorch checkpoints (export from the checkpoint the ONNX/engine file came from)"
        )
    meta = _meta(loaded, options)
    inputs, label = verification_inputs(loaded, config)
    dense_reference = copy.deepcopy(loaded.model)
    with step(f"converting to {config.format}"):
        conversion = exporter.convert(loaded.model, inputs[:1], config)
    tolerance = exporter.tolerance_for(config)
    verification = _verify(conversion, dense_reference, inputs, label, config, tolerance)
    with torch.inference_mode():
        check = check_inputs(loaded.specs).to(config.device)
        reference_outputs = call(conversion.model, check)
    layers = [asdict(layer) for layer in conversion.layers]
    meta.input_shape = list(loaded.input_shape)
    meta.inputs = loaded.specs.to_json()
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
