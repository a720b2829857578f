"""`tensorrt`: a TensorRT engine built from ONNX, verified, written with a JSON sidecar.

File-based: `export` hands over to `TensorRTExporter.export_file`, which
1. checks the options (INT8 needs `--data`), then for a CUDA GPU and the tensorrt package,
   before any work (one error naming what is missing: the GPU first, since without one the
   package would not help);
2. loads the source as the reference (a PyTorch checkpoint, or an `.onnx` file run by ONNX
   Runtime) and, for a checkpoint, exports it to a temporary ONNX file with the `onnx` format;
3. builds the engine: FP16 by default (`--dtype float32|float16|bfloat16|int8`; INT8 needs
   `--data`, whose train split calibrates with an entropy calibrator), the SPARSE_WEIGHTS flag
   when Conv/Gemm/MatMul weights are 2:4 sparse (or as `--[no-]sparse-weights` says), a dynamic
   batch profile from 1 to max(64, batch) with the given batch as the optimum;
4. verifies the engine's outputs against the reference (relative tolerance 1e-2 for FP16 and
   BF16, 1e-4 for FP32 with TF32 off, 1e-1 for INT8); a failure writes nothing;
5. writes OUT (the serialized engine) and OUT.json (input shape, classes, source, precision
   flags, verification, per-layer tactics and precisions from the engine inspector, and the
   source model's sparsity and MACs), each atomically.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..device import check_device
from ..errors import SparsebenchError, first_line
from ..inputs import call
from ..io import atomic_write, atomic_write_text, check_writable
from ..metadata import sidecar_path, sidecar_text
from ..runtimes.tensorrt import TensorRTModule, require_tensorrt
from ..verify import check_inputs, compare_outputs, reference_to_json, require_passed
from ._tensorrt_build import BuiltEngine, build_engine, inspect_engine
from ._tensorrt_layers import parse_engine_layers, summarize_layers
from ._tensorrt_plan import PRECISIONS, BuildPlan, check_options, plan_build, scan_onnx_weights
from .base import (
    ExportConfig,
    Exporter,
    ExportResult,
    LayerReport,
    get_exporter,
    register_format,
    verification_inputs,
)

CALIBRATION_SAMPLES = 512


def build_device(device: str) -> str:
    """The CUDA device to build on: `device` when it is one, else the current CUDA device."""
    if device.startswith("cuda"):
        return check_device(device)
    return f"cuda:{torch.cuda.current_device()}"


def calibration_batches(spec: str, input_shape: tuple[int, ...], batch: int) -> list[torch.Tensor]:
    """Up to CALIBRATION_SAMPLES samples of `spec`'s train split, in whole batches of `batch`."""
    from ..data import load_dataset
    from ..measure.accuracy import fit_samples

    x = fit_samples(load_dataset(spec, "train").x[:CALIBRATION_SAMPLES], input_shape).float()
    usable = len(x) // batch * batch
    if usable == 0:
        raise SparsebenchError(
            f"INT8 calibration needs at least one batch of {batch} samples; "
            f"the train split of {spec} has {len(x)}"
        )
    return list(x[:usable].split(batch))


def record(compute) -> dict:
    """`{"available": True, "value": ...}` from a dataclass-returning call, else the reason."""
    try:
        return {"available": True, "value": asdict(compute())}
    except (NotImplementedError, SparsebenchError) as exc:
        reason = first_line(exc) if str(exc) else "the source's runtime does not report it"
        return {"available": False, "reason": reason}


def source_stats(model, example: torch.Tensor) -> dict:
    """Sparsity and MACs of the source model, for the sidecar (a runtime module answers itself)."""
    from ..measure.macs import count_macs
    from ..measure.sparsity import measure_sparsity
    from ..runtimes.base import RuntimeModule

    if isinstance(model, RuntimeModule):
        return {"sparsity": record(model.sparsity), "macs": record(lambda: model.macs(example))}
    return {
        "sparsity": record(lambda: measure_sparsity(model)),
        "macs": record(lambda: count_macs(model, example)),
    }


def _onnx_file(loaded, folder: Path, config: ExportConfig) -> Path:
    """The source itself when it is ONNX, else its export by the `onnx` format into `folder`."""
    source = Path(loaded.source)
    if source.suffix.lower() == ".onnx":
        return source
    path = folder / f"{source.stem}.onnx"
    onnx_config = ExportConfig.of(
        format="onnx", data=config.data, verify_samples=config.verify_samples
    )
    get_exporter("onnx").export_file(loaded, path, onnx_config, force=False)
    return path


def _verify(module, reference, inputs, label: str, plan: BuildPlan, built: BuiltEngine):
    """Compare the engine with the reference on `inputs` (the module slices large batches)."""
    low = built.batch[0]
    usable = len(inputs) // low * low  # a fixed-batch engine (low == high) takes whole batches
    if usable == 0:
        raise SparsebenchError(f"verification needs at least {low} samples, got {len(inputs)}")
    check = compare_outputs(reference, module, inputs[:usable], plan.tolerance, label, "cpu")
    require_passed(check, "the tensorrt engine")
    return check


def _build_info(trt, device: str) -> dict:
    index = torch.device(device).index or 0
    major, minor = torch.cuda.get_device_capability(index)
    return {
        "tensorrt": trt.__version__,
        "gpu": torch.cuda.get_device_name(index),
        "capability": f"{major}.{minor}",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def _sidecar(source: Path, output: Path, loaded, built: BuiltEngine, plan: BuildPlan) -> dict:
    """The sidecar fields known once the engine is built (the caller adds the measured ones)."""
    meta = loaded.meta
    calibration = {"data": plan.calibration, "split": "train", "samples": built.calibrated_samples}
    return {
        "engine": output.name,
        "source": str(source),
        "source_kind": loaded.kind,
        "arch": meta.arch if meta else None,
        "classes": meta.classes if meta else None,
        "input_name": built.input_name,
        "output_name": built.output_name,
        "input_shape": list(loaded.input_shape),
        "batch": dict(zip(("min", "opt", "max"), built.batch, strict=True)),
        "precision": {
            "dtype": plan.dtype,
            "flags": list(plan.flags),
            "cleared_flags": list(plan.cleared),
            "sparse_weights": plan.sparse_weights,
            "sparse_weights_reason": plan.sparse_reason,
        },
        "calibration": calibration if plan.int8 else None,
    }


def _reference_outputs(loaded) -> dict:
    """The source model's outputs on the check batch, which `load` re-checks the engine on."""
    with torch.inference_mode():
        return reference_to_json(call(loaded.model, check_inputs(loaded.specs)))


def _notes(plan, built, summary, stats, build, layer_notes, sidecar) -> list[str]:
    low, opt, high = built.batch
    sparse = summary["sparse_layers"]
    notes = [
        f"{plan.dtype} engine for {build['gpu']} (sm{build['capability'].replace('.', '')}) "
        f"with TensorRT {build['tensorrt']}; batch profile {low}/{opt}/{high} (min/opt/max)",
        f"SPARSE_WEIGHTS {plan.sparse_reason}",
        f"{len(sparse)} of {summary['compute_layers']} Conv/GEMM layers run 2:4 sparse tactics"
        + (f": {', '.join(sparse[:3])}" if sparse else ""),
    ]
    if plan.int8:
        notes.append(f"INT8 calibrated on {built.calibrated_samples} samples ({plan.calibration})")
    notes += plan.notes + layer_notes
    notes += [f"{k} unavailable: {v['reason']}" for k, v in stats.items() if not v["available"]]
    notes.append(f"sidecar {sidecar.name}")
    return notes


def table_rows(layers: list[LayerReport]) -> list[dict]:
    """The CLI's view: compute layers (sparse or dense tactic) and their precisions only."""
    compute = [layer for layer in layers if layer.action in ("sparse", "dense")] or layers
    rows = []
    for layer in compute:
        shown = {"precision": "precision", "weights": "weights_precision"}
        details = {key: layer.details.get(field) for key, field in shown.items()}
        rows.append(asdict(replace(layer, details={k: v for k, v in details.items() if v})))
    return rows


def _write(output: Path, sidecar: Path, data: bytes, info: dict, force: bool) -> None:
    atomic_write(output, lambda f: f.write(data), force=force)
    try:
        atomic_write_text(sidecar, sidecar_text(info), force=force)
    except BaseException:
        output.unlink(missing_ok=True)  # an engine without its sidecar cannot be loaded
        raise


@dataclass(frozen=True)
class TensorRTOptions:
    """`dtype`: float16 (default), bfloat16, float32 or int8 (calibrated on `data`);
    `sparse_weights`: the SPARSE_WEIGHTS builder flag (None: on when weights are 2:4)."""

    dtype: str | None = None
    sparse_weights: bool | None = None


@register_format
class TensorRTExporter(Exporter):
    """A serialized TensorRT engine (+ JSON sidecar), with 2:4 sparse tactics where they apply."""

    name = "tensorrt"
    options_type = TensorRTOptions
    description = "TensorRT engine + JSON sidecar (fp16/bf16/fp32/int8, 2:4 sparse tactics; GPU)"
    tolerance = 1e-2
    file_based = True

    def artifact_tolerance(self, model) -> float:
        """The tolerance of the precision the engine was built with (from this code's table)."""
        dtype = getattr(model, "info", {}).get("precision", {}).get("dtype")
        if dtype not in PRECISIONS:
            raise SparsebenchError(f"engine sidecar names an unknown precision {dtype!r}")
        return PRECISIONS[dtype][2]

    def check_ready(self, config: ExportConfig) -> None:
        """The options, the tensorrt package and a CUDA GPU, checked before anything loads."""
        check_options(config)
        require_tensorrt("TensorRT engines")
        build_device(config.device)

    def export_file(self, loaded, output: Path, config: ExportConfig, force: bool):
        """Build, verify and write the engine and its sidecar (see the module docstring)."""
        source = Path(loaded.source)
        sidecar = check_writable(sidecar_path(output), force)
        trt = require_tensorrt("TensorRT engines")
        device = build_device(config.device)
        inputs, label = verification_inputs(loaded, config)
        with tempfile.TemporaryDirectory(prefix="sparsebench-trt-") as folder:
            onnx_path = _onnx_file(loaded, Path(folder), config)
            weights = scan_onnx_weights(onnx_path)
            plan = plan_build(config, weights, loaded.input_shape[0])
            calibration = None
            if plan.int8:
                calibration = calibration_batches(plan.calibration, loaded.input_shape, plan.opt)
            built = build_engine(trt, onnx_path, plan, loaded.input_shape, device, calibration)
        module = TensorRTModule(trt, built.data, device)
        try:
            layers, layer_notes = parse_engine_layers(inspect_engine(trt, module.engine))
            verification = _verify(module, loaded.model, inputs, label, plan, built)
        finally:
            module.close()
        summary = summarize_layers(layers)
        stats = source_stats(loaded.model, inputs[:1])
        build = _build_info(trt, device)
        info = _sidecar(source, output, loaded, built, plan)
        info.update(weights_24=weights, verification=verification.to_dict(), layer_summary=summary)
        info.update(layers=[asdict(layer) for layer in layers], **stats, build=build)
        info["reference_outputs"] = _reference_outputs(loaded)
        _write(output, sidecar, built.data, info, force)
        notes = _notes(plan, built, summary, stats, build, layer_notes, sidecar)
        rows = table_rows(layers)
        return ExportResult(output, self.name, rows, len(built.data), verification, notes)
