"""TensorRT engines run from PyTorch: `load_engine` for `.engine` / `.plan` files.

An engine is written by the `tensorrt` exporter together with a JSON sidecar (`NAME.engine.json`)
that holds what the engine itself cannot tell: the input shape and classes, the precision and
sparsity flags it was built with, its verification, and the sparsity and MACs of the model it
was built from. The engine runs on torch CUDA tensors (TensorRT 10: `set_input_shape`,
`set_tensor_address`, `execute_async_v3`), ordered after and before the caller's current torch
stream, so latency, memory and energy are measured by the same code as for PyTorch models.

Nothing here imports tensorrt or touches CUDA at import time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import torch

from .._optional import is_available, require
from ..checkpoint import CheckpointMeta
from ..device import cuda_available
from ..errors import SparsebenchError
from ..load import LoadedModel, LoadOptions, resolve_inputs
from ..measure.macs import MacsResult
from ..measure.sparsity import LayerSparsity, SparsitySummary
from ..metadata import read_sidecar
from ..verify import reference_from_json
from .base import Runtime, RuntimeModule, register_runtime

NO_GPU = "TensorRT needs an NVIDIA GPU; this machine has none"
# TensorRT DataType member -> torch dtype (members missing from an older TensorRT are skipped)
_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
}


def require_tensorrt(purpose: str = "TensorRT engines") -> ModuleType:
    """The tensorrt module once a CUDA GPU is known to exist; else one error naming what is missing.

    The GPU is checked first: without one, installing the package would not help (both missing
    are named in one message).
    """
    if not cuda_available():
        detail = f"torch {torch.__version__} sees no CUDA device"
        if not is_available("tensorrt"):
            detail += "; the tensorrt package is missing too: pip install 'sparsebench[tensorrt]'"
        raise SparsebenchError(f"{NO_GPU} ({detail})")
    return require("tensorrt", "tensorrt", purpose)


def tensorrt_usable() -> bool:
    """Whether TensorRT engines can be built and run here (for test skips)."""
    return cuda_available() and is_available("tensorrt")


def make_logger(trt: ModuleType):
    """A TensorRT logger that prints warnings and keeps the errors for the one-line message."""

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            levels = trt.ILogger.Severity
            if severity in (levels.INTERNAL_ERROR, levels.ERROR):
                self.errors.append(str(msg))
            if severity in (levels.INTERNAL_ERROR, levels.ERROR, levels.WARNING):
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return _Logger()


def torch_dtype(trt: ModuleType, dtype) -> torch.dtype:
    """The torch dtype of a TensorRT DataType."""
    for name, torch_type in _DTYPES.items():
        if getattr(trt.DataType, name, None) == dtype:
            return torch_type
    raise SparsebenchError(f"TensorRT tensor type {dtype} has no torch equivalent")


def _recorded(info: dict, key: str) -> dict:
    entry = info.get(key) or {}
    if not entry.get("available"):
        reason = entry.get("reason", "not recorded in the engine's sidecar")
        raise SparsebenchError(f"{key} of this TensorRT engine is unavailable: {reason}")
    return entry["value"]


def recorded_sparsity(info: dict) -> SparsitySummary:
    """The source model's sparsity stored in a sidecar (SparsebenchError with the reason if not)."""
    data = _recorded(info, "sparsity")
    layers = [LayerSparsity(**layer) for layer in data["layers"]]
    return SparsitySummary(layers, params=data["params"], nonzero_params=data["nonzero_params"])


def recorded_macs(info: dict) -> MacsResult:
    """The source model's MACs per sample stored in a sidecar (SparsebenchError if not)."""
    return MacsResult(**_recorded(info, "macs"))


class TensorRTModule(RuntimeModule):
    """A serialized TensorRT engine with one input and one output, called with torch tensors.

    `info` is the engine's sidecar (the source model's sparsity and MACs, its build).
    """

    runtime = "tensorrt"
    format = "tensorrt"

    def __init__(self, trt: ModuleType, data: bytes, device: str, info: dict | None = None):
        super().__init__()
        self.device = torch.device(device)
        self.info = info or {}
        self._runtime, self.engine = deserialize(trt, data, device, self.info.get("build"))
        engine = self.engine
        with torch.cuda.device(self.device):
            self._context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise SparsebenchError(
                f"sparsebench runs engines with one input and one output, not {inputs} -> {outputs}"
            )
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = torch_dtype(trt, engine.get_tensor_dtype(self.input_name))
        self.output_dtype = torch_dtype(trt, engine.get_tensor_dtype(self.output_name))
        low, _, high = engine.get_tensor_profile_shape(self.input_name, 0)
        self.batch_range = (int(low[0]), int(high[0]))
        # TensorRT adds synchronisations when enqueued on the legacy default stream: use our own
        self._stream = torch.cuda.Stream(self.device)

    def check_batch(self, batch: int) -> None:
        """Raise when `batch` lies outside the engine's optimization profile."""
        low, high = self.batch_range
        if not low <= batch <= high:
            raise SparsebenchError(
                f"batch {batch} is outside the engine's optimization profile ({low} to {high}); "
                "re-export with a --batch-size in that range"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.batch_range[1]:  # e.g. accuracy batches: slices the profile takes
            return torch.cat([self(part) for part in x.split(self.batch_range[1])])
        self.check_batch(x.shape[0])
        with torch.cuda.device(self.device):
            x = x.to(self.device, self.input_dtype).contiguous()
            if not self._context.set_input_shape(self.input_name, tuple(x.shape)):
                raise SparsebenchError(f"input shape {list(x.shape)} does not fit the engine")
            shape = tuple(self._context.get_tensor_shape(self.output_name))
            out = torch.empty(shape, dtype=self.output_dtype, device=self.device)
            self._context.set_tensor_address(self.input_name, x.data_ptr())
            self._context.set_tensor_address(self.output_name, out.data_ptr())
            caller = torch.cuda.current_stream(self.device)
            self._stream.wait_stream(caller)  # the input is ready
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise SparsebenchError("TensorRT failed to run the engine (see its log above)")
            caller.wait_stream(self._stream)  # later work (and memory reuse) waits for the output
        return out

    def sparsity(self) -> SparsitySummary:
        """Sparsity of the model the engine was built from (recorded in the sidecar)."""
        return recorded_sparsity(self.info)

    def macs(self, example: torch.Tensor) -> MacsResult:
        """Dense and effective MACs per sample of the model the engine was built from."""
        return recorded_macs(self.info)

    def close(self) -> None:
        """Release the execution context, the engine and its runtime (in that order)."""
        self._context = None
        self.engine = None
        self._runtime = None


def deserialize(trt: ModuleType, data: bytes, device: str, built_with: dict | None = None):
    """(IRuntime, ICudaEngine) from serialized bytes; a clear error when this GPU/TensorRT cannot.

    The runtime is returned so that it outlives the engine.
    """
    logger = make_logger(trt)
    runtime = trt.Runtime(logger)
    with torch.cuda.device(torch.device(device)):
        engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        built = built_with or {}
        here = f"TensorRT {trt.__version__} on {torch.cuda.get_device_name(torch.device(device))}"
        there = f"TensorRT {built.get('tensorrt', '?')} on {built.get('gpu', '?')}"
        detail = "; ".join(logger.errors[:1]) or "no detail"
        raise SparsebenchError(
            f"cannot deserialize the engine with {here} (built with {there}): {detail}; "
            "engines only run on the GPU model and TensorRT version they were built with"
        )
    return runtime, engine


def engine_device(device: str) -> str:
    """The CUDA device an engine runs on; a CPU device is refused (engines run on GPUs only)."""
    if not device.startswith("cuda"):
        raise SparsebenchError(f"TensorRT engines run on a GPU: pass --device cuda, not {device}")
    return device


def load_engine(path: str | Path, options: LoadOptions) -> LoadedModel:
    """Load `path` (an engine with its sidecar) as a LoadedModel run by TensorRT.

    An engine is code-bearing (NVIDIA calls serialized engines executable artifacts), so it is
    opened only with `trust_checkpoint`; its sidecar's reference outputs are checked by
    `artifact.load` like every artifact's.
    """
    path = Path(path)
    if not options.trust_checkpoint:
        raise SparsebenchError(
            f"{path} is a TensorRT engine, an executable artifact (NVIDIA: never deserialize "
            "one from an untrusted source); pass --trust-checkpoint if you trust its source"
        )
    info = read_sidecar(path)
    trt = require_tensorrt("running TensorRT engines")
    device = engine_device(options.device)
    module = TensorRTModule(trt, path.read_bytes(), device, info)
    shape = resolve_inputs(options, tuple(info["input_shape"]), path).shape
    module.check_batch(shape[0])
    meta = CheckpointMeta(
        arch=info.get("arch") if isinstance(info.get("arch"), str) else "",
        input_shape=list(shape),
        classes=info.get("classes"),
        format="tensorrt",
        export={"source": info.get("source"), "precision": info.get("precision")},
    )
    return LoadedModel(
        model=module,
        input_shape=shape,
        kind="tensorrt",
        name=path.stem,
        source=str(path),
        meta=meta,
        options=options,
        reference=reference_from_json(info.get("reference_outputs"), str(path)),
    )


@register_runtime
class TensorRTRuntime(Runtime):
    """TensorRT: opens `.engine`/`.plan` files with their JSON sidecar (NVIDIA GPU only)."""

    name = "tensorrt"
    description = "TensorRT engines (.engine/.plan + JSON sidecar; NVIDIA GPU, trusted files)"
    accepts = ("tensorrt",)
    suffixes = (".engine", ".plan")

    def open_file(self, path: Path, options: LoadOptions) -> LoadedModel:
        return load_engine(path, options)
