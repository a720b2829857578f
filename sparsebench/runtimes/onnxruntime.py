"""ONNX Runtime: run `.onnx` models behind the torch-tensor interface the profiler measures.

Sessions get the thread budget PyTorch has (`torch.get_num_threads()`, which `--threads`
sets): that many intra-op threads, one inter-op thread, sequential execution, all graph
optimisations (ONNX Runtime folds constants and fuses Conv+BatchNorm itself at load).
Devices: `cpu` runs the CPU execution provider; `cuda[:N]` the CUDA provider of the
onnxruntime-gpu package (TF32 off: float32 math, as the export was verified), with the CPU
provider for nodes CUDA cannot run. The TensorRT provider is not used: TensorRT is its own
runtime in sparsebench. On CUDA the input is bound in place from PyTorch's CUDA memory (IO
binding); the output, batch x classes, comes back through host memory: a small copy inside
each timed run. The CUDA path needs onnxruntime-gpu and has not run in CI.

Sparsity and MACs come from the ONNX graph itself (`onnx_graph`), not from PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._optional import require
from ..checkpoint import CheckpointMeta
from ..errors import SparsebenchError, first_line
from ..load import LoadedModel, LoadOptions, check_input, resolve_input_shape
from ..measure.macs import MacsResult
from ..measure.sparsity import SparsitySummary
from ..metadata import check_meta_fields, check_shape, read_onnx_metadata
from ..verify import reference_from_json
from .base import Runtime, RuntimeModule, register_runtime
from .onnx_bounds import check_graph_bounds
from .onnx_graph import GraphSummary, count_onnx_macs

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
_NUMPY_TYPES["tensor(double)"] = np.float64


def _ort():
    return require("onnxruntime", "onnx", "ONNX Runtime")


def providers_for(device: str, available: list[str]) -> list:
    """Execution providers for `device`, from those this onnxruntime build has."""
    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise SparsebenchError(
            f"onnxruntime has no CUDA provider (it has {', '.join(available)}): "
            "pip install onnxruntime-gpu"
        )
    index = torch.device(device).index or 0
    cuda = {"device_id": index, "use_tf32": 0}  # float32 math, as the export was verified
    return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]


def session_options(threads: int):
    """The same thread budget as PyTorch: `threads` intra-op, one inter-op, sequential."""
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    return options


class OnnxRuntimeModule(RuntimeModule):
    """An ONNX model in an InferenceSession; forward takes and returns torch tensors."""

    runtime = "onnxruntime"
    format = "onnx"

    def __init__(self, model_proto, source=None, device: str = "cpu", threads: int | None = None):
        """Open a session on `source` (a path, or the serialized model by default)."""
        super().__init__()
        ort = _ort()
        self.summary = GraphSummary.from_model(model_proto)  # keeps no weight data
        self.device = device
        threads = threads or torch.get_num_threads()
        providers = providers_for(device, ort.get_available_providers())
        data = str(source) if source is not None else model_proto.SerializeToString()
        self.session = ort.InferenceSession(data, session_options(threads), providers=providers)
        first_input = self.session.get_inputs()[0]
        self.input_name = first_input.name
        self.input_dims = list(first_input.shape)
        self.input_dtype = _NUMPY_TYPES.get(first_input.type, np.float32)
        self.output_name = self.session.get_outputs()[0].name
        chosen = self.session.get_session_options()
        self.settings = {
            "onnxruntime": ort.__version__,
            "providers": self.session.get_providers(),
            "intra_op_num_threads": chosen.intra_op_num_threads,
            "inter_op_num_threads": chosen.inter_op_num_threads,
            "execution_mode": "sequential",
            "graph_optimization_level": "all",
        }

    @property
    def threads(self) -> int:
        """Intra-op threads of the session."""
        return self.settings["intra_op_num_threads"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.startswith("cuda"):
            return self._forward_cuda(x)
        array = x.detach().cpu().numpy()
        if array.dtype != self.input_dtype:
            array = array.astype(self.input_dtype)
        (out,) = self.session.run([self.output_name], {self.input_name: array})
        return torch.from_numpy(out)

    def _forward_cuda(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32).contiguous()
        index = x.device.index or 0
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", index, np.float32, list(x.shape), x.data_ptr())
        binding.bind_output(self.output_name, "cuda", index)
        torch.cuda.current_stream(x.device).synchronize()  # x is written before ORT reads it
        self.session.run_with_iobinding(binding)
        return torch.from_numpy(binding.copy_outputs_to_cpu()[0]).to(x.device)

    def sparsity(self) -> SparsitySummary:
        return self.summary.sparsity

    def macs(self, example: torch.Tensor) -> MacsResult:
        return count_onnx_macs(self.summary, tuple(example.shape))

    def close(self) -> None:
        self.session = None


def _graph_shape(module: OnnxRuntimeModule, path: Path) -> tuple[int, ...]:
    """The input shape the graph declares, a dynamic batch read as 1."""
    shape = []
    for axis, dim in enumerate(module.input_dims):
        if isinstance(dim, int) and dim > 0:
            shape.append(dim)
        elif axis == 0:
            shape.append(1)
        else:
            raise SparsebenchError(
                f"cannot tell the input shape of {path}: dimension {axis} of input "
                f"'{module.input_name}' is dynamic ({dim!r}); pass --input-shape, e.g. 1,3,224,224"
            )
    return tuple(shape)


def _check_declared(module: OnnxRuntimeModule, shape: tuple[int, ...], path: Path) -> None:
    """Refuse a shape the graph's declared input cannot take, naming what it takes."""
    dims = module.input_dims
    fits = len(dims) == len(shape) and all(
        not isinstance(d, int) or d <= 0 or d == s for d, s in zip(dims, shape, strict=True)
    )
    if not fits:
        declared = [d if isinstance(d, int) and d > 0 else (d or "?") for d in dims]
        raise SparsebenchError(
            f"input shape {list(shape)} does not fit {path.name}: its input "
            f"'{module.input_name}' is {declared}"
        )


def _checkpoint_meta(metadata: dict | None) -> CheckpointMeta | None:
    if not metadata:
        return None
    keys = ("source", "source_kind", "source_format", "opset", "exporter", "sparse_initializers")
    export = {key: metadata.get(key) for key in keys}
    export.update(
        verification=metadata.get("verification"),
        stored_bytes=metadata.get("stored_bytes", 0),
        layers=metadata.get("layers", []),
    )
    fields = {key: metadata.get(key) for key in ("arch", "dataset", "input_shape", "classes")}
    fields = check_meta_fields({**fields, "arch": fields["arch"] or "(onnx)"}, "ONNX metadata")
    return CheckpointMeta(
        arch=fields["arch"],
        input_shape=fields.get("input_shape"),
        dataset=fields.get("dataset"),
        classes=fields.get("classes"),
        format="onnx",
        export=export,
    )


def load_onnx(path: str | Path, options: LoadOptions) -> LoadedModel:
    """Open an `.onnx` file in ONNX Runtime and check it runs (`artifact.load` verifies it)."""
    onnx = require("onnx", "onnx", "Loading ONNX models")
    path = Path(path)
    try:
        model_proto = onnx.load(str(path))
        metadata = read_onnx_metadata(model_proto, path)
        stored = (metadata or {}).get("input_shape")
        hint = options.input_shape or (tuple(check_shape(stored, str(path))) if stored else ())
        check_graph_bounds(model_proto, tuple(hint), path)
        module = OnnxRuntimeModule(model_proto, path, options.device)
    except SparsebenchError:
        raise
    except Exception as exc:  # protobuf, onnx and onnxruntime each fail their own way
        raise SparsebenchError(f"cannot read ONNX model {path}: {first_line(exc)}") from exc
    del model_proto  # the session holds the weights; the graph summary holds no data
    found = None
    if not options.input_shape:
        stored = (metadata or {}).get("input_shape")
        found = check_shape(stored or list(_graph_shape(module, path)), str(path), "input_shape")
        found = tuple(found)
    shape = resolve_input_shape(options, found, path)
    _check_declared(module, shape, path)
    check_input(module, shape, options.device)
    return LoadedModel(
        model=module,
        input_shape=shape,
        kind="onnx",
        name=path.stem,
        source=str(path),
        meta=_checkpoint_meta(metadata),
        options=options,
        reference=reference_from_json((metadata or {}).get("reference_outputs"), str(path)),
    )


@register_runtime
class OnnxRuntime(Runtime):
    """ONNX Runtime: opens `.onnx` files (CPU provider, or CUDA with onnxruntime-gpu)."""

    name = "onnxruntime"
    description = "ONNX Runtime (.onnx files; CPU, or CUDA with onnxruntime-gpu)"
    accepts = ("onnx",)
    suffixes = (".onnx",)

    def open_file(self, path: Path, options: LoadOptions) -> LoadedModel:
        return load_onnx(path, options)
