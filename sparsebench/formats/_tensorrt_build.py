"""Build a TensorRT engine from an ONNX file following a BuildPlan (needs tensorrt and a GPU).

The `trt` module is passed in by the caller, which imported it after checking the GPU; nothing
here imports tensorrt at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from ..errors import SparsebenchError
from ..runtimes.tensorrt import make_logger
from ._tensorrt_plan import BuildPlan, batch_profile


@dataclass
class BuiltEngine:
    """A serialized engine and what the build decided."""

    data: bytes
    input_name: str
    output_name: str
    batch: tuple[int, int, int]  # (min, opt, max) of the optimization profile
    calibrated_samples: int = 0


def make_calibrator(trt: ModuleType, batches: list[torch.Tensor], device: str):
    """An IInt8EntropyCalibrator2 that feeds `batches` (each of the profile's opt batch size)."""

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = iter(batches)
            self._current: torch.Tensor | None = None  # kept alive while TensorRT reads it
            self.samples = 0

        def get_batch_size(self):
            return 1  # ignored for explicit-batch networks: the batch is in the input shape

        def get_batch(self, names):
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._current = batch.to(device=device, dtype=torch.float32).contiguous()
            self.samples += int(batch.shape[0])
            return [int(self._current.data_ptr())]

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache):
            return None

    return _EntropyCalibrator()


def _parse(trt: ModuleType, builder, onnx_path: Path, logger):
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise SparsebenchError(f"TensorRT cannot parse {onnx_path.name}: {'; '.join(errors[:2])}")
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise SparsebenchError(
            f"sparsebench builds engines for one input and one output, not {network.num_inputs} "
            f"and {network.num_outputs}"
        )
    return network, parser  # the parser must outlive the network's weights


def _shapes(network, input_shape: tuple[int, ...], batch: tuple[int, int, int]):
    """(min, opt, max) input shapes: the batch range, the fixed dims, the model's for dynamic."""
    dims = list(network.get_input(0).shape)
    if len(dims) != len(input_shape):
        raise SparsebenchError(
            f"the ONNX input has {len(dims)} dimensions but the model's input shape "
            f"{list(input_shape)} has {len(input_shape)}"
        )
    rest = [d if d > 0 else int(s) for d, s in zip(dims[1:], input_shape[1:], strict=True)]
    return tuple((b, *rest) for b in batch)


def _configure(trt, builder, network, plan: BuildPlan, input_shape, calibrator):
    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    for name in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in plan.cleared:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    first = network.get_input(0).shape[0]
    batch = batch_profile(plan, first if first > 0 else None)
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, *_shapes(network, input_shape, batch))
    config.add_optimization_profile(profile)
    if calibrator is not None:
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    return config, batch


def build_engine(
    trt: ModuleType,
    onnx_path: Path,
    plan: BuildPlan,
    input_shape: tuple[int, ...],
    device: str,
    calibration: list[torch.Tensor] | None = None,
) -> BuiltEngine:
    """Parse `onnx_path`, configure the builder from `plan` and build a serialized engine."""
    logger = make_logger(trt)
    with torch.cuda.device(torch.device(device)):
        builder = trt.Builder(logger)
        network, _parser = _parse(trt, builder, onnx_path, logger)
        calibrator = make_calibrator(trt, calibration, device) if plan.int8 else None
        config, batch = _configure(trt, builder, network, plan, input_shape, calibrator)
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        detail = "; ".join(logger.errors[-2:]) or "no detail"
        raise SparsebenchError(f"TensorRT could not build an engine: {detail}")
    return BuiltEngine(
        data=bytes(serialized),
        input_name=network.get_input(0).name,
        output_name=network.get_output(0).name,
        batch=batch,
        calibrated_samples=calibrator.samples if calibrator is not None else 0,
    )


def inspect_engine(trt: ModuleType, engine) -> str:
    """The engine inspector's JSON for every layer (detailed when built with DETAILED)."""
    inspector = engine.create_engine_inspector()
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)
