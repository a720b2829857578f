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
from ..hf import DEFAULT_SEQ_LEN
from ..inputs import InputSpec, InputSpecs, as_batch
from ..load import LoadedModel, LoadOptions, check_input, resolve_inputs
from ..measure.macs import MacsResult
from ..measure.sparsity import SparsitySummary
from ..metadata import check_meta_fields, check_shape, read_onnx_metadata
from ..verify import reference_from_json
from .base import Runtime, RuntimeModule, register_runtime
from .onnx_bounds import check_graph_bounds
from .onnx_graph import GraphSummary, count_onnx_macs

_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}
_TORCH_TYPES = {np.float32: torch.float32, np.float16: torch.float16, np.float64: torch.float64,
                np.int64: torch.int64, np.int32: torch.int32, np.bool_: torch.bool}  # fmt: skip
_DTYPE_NAMES = {"tensor(float)": "float32", "tensor(float16)": "float16",
                "tensor(double)": "float64", "tensor(int64)": "int64", "tensor(int32)": "int32",
                "tensor(bool)": "bool"}  # fmt: skip


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
        graph_inputs = self.session.get_inputs()
        self.input_names = [i.name for i in graph_inputs]
        self.input_dims = {i.name: list(i.shape) for i in graph_inputs}
        self.input_types = {i.name: i.type for i in graph_inputs}
        self.input_name = self.input_names[0]
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

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        if len(tensors) != len(self.input_names):
            raise SparsebenchError(
                f"the ONNX model takes {len(self.input_names)} inputs "
                f"({', '.join(self.input_names)}), not {len(tensors)}"
            )
        if self.device.startswith("cuda"):
            return self._forward_cuda(tensors)
        feed = {}
        for name, x in zip(self.input_names, tensors, strict=True):
            array = x.detach().cpu().numpy()
            wanted = _NUMPY_TYPES.get(self.input_types[name])
            feed[name] = array.astype(wanted) if wanted and array.dtype != wanted else array
        (out,) = self.session.run([self.output_name], feed)
        return torch.from_numpy(out)

    def _forward_cuda(self, tensors) -> torch.Tensor:
        binding = self.session.io_binding()
        device = torch.device(self.device)
        index = device.index or 0
        kept = []
        for name, x in zip(self.input_names, tensors, strict=True):
            wanted = _NUMPY_TYPES.get(self.input_types[name], np.float32)
            x = x.to(device, _TORCH_TYPES[wanted]).contiguous()
            kept.append(x)
            binding.bind_input(name, "cuda", index, wanted, list(x.shape), x.data_ptr())
        binding.bind_output(self.output_name, "cuda", index)
        torch.cuda.current_stream(device).synchronize()  # inputs are written before ORT reads
        self.session.run_with_iobinding(binding)
        return torch.from_numpy(binding.copy_outputs_to_cpu()[0]).to(device)

    def sparsity(self) -> SparsitySummary:
        return self.summary.sparsity

    def macs(self, example) -> MacsResult:
        batch = as_batch(example)
        shapes = {n: tuple(t.shape) for n, t in zip(self.input_names, batch.tensors, strict=True)}
        return count_onnx_macs(self.summary, shapes if len(shapes) > 1 else batch.shape)

    def close(self) -> None:
        self.session = None


def _graph_specs(module: OnnxRuntimeModule, path: Path, options: LoadOptions) -> InputSpecs:
    """The inputs the graph declares: a dynamic batch read as 1, a dynamic sequence of a
    token input as --seq-len (else DEFAULT_SEQ_LEN); integer inputs take values 0-1, which
    fit any embedding (give the real range with --input)."""
    specs = []
    for name in module.input_names:
        dtype = _DTYPE_NAMES.get(module.input_types[name])
        if dtype is None:
            raise SparsebenchError(
                f"{path}: input '{name}' is a {module.input_types[name]}, which sparsebench "
                "cannot feed"
            )
        dims = module.input_dims[name]
        shape = []
        for axis, dim in enumerate(dims):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            elif axis == 0:
                shape.append(1)
            elif axis == 1 and len(dims) == 2 and not dtype.startswith("float"):
                shape.append(options.seq_len or DEFAULT_SEQ_LEN)
            else:
                raise SparsebenchError(
                    f"cannot tell the input shape of {path}: dimension {axis} of input "
                    f"'{name}' is dynamic ({dim!r}); pass --input-shape, e.g. 1,3,224,224, or "
                    f"--input {name}:SHAPE:{dtype}"
                )
        bounds = (None, None) if dtype.startswith("float") else (0, 1)
        specs.append(InputSpec(name, tuple(shape), dtype, *bounds))
    return InputSpecs(tuple(specs))


def _check_declared(module: OnnxRuntimeModule, specs: InputSpecs, path: Path) -> None:
    """Refuse inputs the graph's declared inputs cannot take, naming what they take."""
    if specs.names != module.input_names and len(specs.specs) > 1:
        raise SparsebenchError(
            f"{path.name} takes inputs {', '.join(module.input_names)}, not "
            f"{', '.join(specs.names)}"
        )
    if len(specs.specs) != len(module.input_names):
        raise SparsebenchError(
            f"{path.name} takes {len(module.input_names)} inputs "
            f"({', '.join(module.input_names)}); give each with --input"
        )
    for spec, name in zip(specs.specs, module.input_names, strict=True):
        dims, shape = module.input_dims[name], spec.shape
        fits = len(dims) == len(shape) and all(
            not isinstance(d, int) or d <= 0 or d == s for d, s in zip(dims, shape, strict=True)
        )
        if not fits:
            declared = [d if isinstance(d, int) and d > 0 else (d or "?") for d in dims]
            what = f"input shape {list(shape)}" if specs.is_plain else f"input {spec.text()}"
            raise SparsebenchError(
                f"{what} does not fit {path.name}: its input '{name}' is {declared}"
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
    keys = ("arch", "dataset", "input_shape", "inputs", "classes")
    fields = {key: metadata.get(key) for key in keys}
    fields = check_meta_fields({**fields, "arch": fields["arch"] or "(onnx)"}, "ONNX metadata")
    return CheckpointMeta(
        arch=fields["arch"],
        input_shape=fields.get("input_shape"),
        inputs=fields.get("inputs"),
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
        check_graph_bounds(model_proto, _bound_hint(metadata, options, path), path)
        module = OnnxRuntimeModule(model_proto, path, options.device)
    except SparsebenchError:
        raise
    except Exception as exc:  # protobuf, onnx and onnxruntime each fail their own way
        raise SparsebenchError(f"cannot read ONNX model {path}: {first_line(exc)}") from exc
    del model_proto  # the session holds the weights; the graph summary holds no data
    try:
        specs = resolve_inputs(options, _stored_specs(metadata, path, module, options), path)
        _check_declared(module, specs, path)
        check_input(module, specs, options.device)
    except BaseException:
        module.close()
        raise
    return LoadedModel(
        model=module,
        input_shape=specs.shape,
        specs=specs,
        kind="onnx",
        name=path.stem,
        source=str(path),
        meta=_checkpoint_meta(metadata),
        options=options,
        reference=reference_from_json((metadata or {}).get("reference_outputs"), str(path)),
    )


def _stored_specs(metadata, path: Path, module, options: LoadOptions) -> InputSpecs | None:
    """The inputs the file's sparsebench metadata records, else those the graph declares."""
    metadata = metadata or {}
    if metadata.get("inputs") is not None:
        return InputSpecs.from_json(metadata["inputs"], str(path))
    if metadata.get("input_shape") is not None:
        return InputSpecs.single(check_shape(metadata["input_shape"], str(path)))
    if options.inputs or (options.input_shape and len(module.input_names) == 1):
        return None  # resolve_inputs takes the user's
    return _graph_specs(module, path, options)


def _bound_hint(metadata, options: LoadOptions, path: Path):
    """Input shapes to bound the graph with before a session opens ({name: shape})."""
    if options.inputs:
        return {s.name: s.shape for s in options.inputs}
    if options.input_shape:
        return tuple(options.input_shape)
    metadata = metadata or {}
    if metadata.get("inputs") is not None:
        specs = InputSpecs.from_json(metadata["inputs"], str(path))
        return {s.name: s.shape for s in specs.specs}
    stored = metadata.get("input_shape")
    return tuple(check_shape(stored, str(path))) if stored else ()


@register_runtime
class OnnxRuntime(Runtime):
    """ONNX Runtime: opens `.onnx` files (CPU provider, or CUDA with onnxruntime-gpu)."""

    name = "onnxruntime"
    description = "ONNX Runtime (.onnx files; CPU, or CUDA with onnxruntime-gpu)"
    accepts = ("onnx",)
    suffixes = (".onnx",)

    def open_file(self, path: Path, options: LoadOptions) -> LoadedModel:
        return load_onnx(path, options)
