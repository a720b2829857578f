"""`onnx`: the model as an ONNX file (opset 17) with a dynamic batch, run by ONNX Runtime.

Exporter: `torch.onnx.export(..., dynamo=False)`, the TorchScript-based exporter. On these
models it is 4-10x faster than the torch.export-based one (vgg16_bn: 1.5 s vs 6-7 s on two
CPU cores), which matters when `profile --runtime onnxruntime` exports on the fly, and with
`training=PRESERVE`, `do_constant_folding=False` and `keep_initializers_as_inputs=True` it
keeps the graph layer for layer: BatchNormalization nodes stay (ONNX Runtime fuses them into
the convolutions when it loads the model), every weight keeps its PyTorch name (a folded
Linear weight would become an anonymous transposed constant) and no two equal tensors are
merged into one initializer. So the ONNX graph reports the same per-layer sparsity and MACs as
the PyTorch model. PyTorch marks that exporter deprecated; it still ships in torch 2.13.
Opset 17 is the first with LayerNormalization as one op (the transformers' LayerNorm is not
decomposed) and runs on ONNX Runtime >= 1.11 and TensorRT >= 8.6.

The written file is verified in ONNX Runtime (CPU) against the PyTorch model on the
verification batch (64 samples, so the dynamic batch is exercised) before it is renamed into
place. Its `metadata_props["sparsebench"]` (JSON) records the input shape, classes, source,
verification and the PyTorch outputs on the fixed check batch (`verify.check_inputs`), so
`load` re-checks the file: a tampered or corrupted model fails before it is measured.

`--sparse-initializers` stores mostly-zero weights (2-D and up) as ONNX `sparse_initializer`s
in COO form: the non-zero values plus int64 linear indices (the ONNX checker requires int64).
That costs 4 + 8 bytes per non-zero float32 against 4 per element, so it shrinks a tensor only
above 2/3 zeros; a tensor is rewritten only when that makes it smaller. ONNX Runtime converts
every sparse initializer to a dense tensor when it builds the graph ("there are currently no
supported ops that consume sparse initializers directly", onnxruntime/core/graph/graph.cc), so
any op accepts them and memory and latency stay those of the dense model: only the file shrinks.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._optional import require
from ..errors import SparsebenchError, first_line
from ..inputs import InputSpecs, as_batch, call
from ..io import atomic_write
from ..measure.sparsity import is_compressed, prunable_layers
from ..metadata import write_onnx_metadata
from ..progress import step
from ..results import MB
from ..runtimes.base import RuntimeModule
from ..runtimes.onnx_graph import initializer_stats, layer_name, weight_names
from ..runtimes.onnxruntime import OnnxRuntimeModule
from ..verify import CHECK_SEED, check_inputs, compare_outputs, reference_to_json, require_passed
from .base import (
    Conversion,
    ExportConfig,
    Exporter,
    ExportResult,
    LayerReport,
    register_format,
    verification_inputs,
)

OPSET = 17
METADATA_VERSION = 1
INPUT_NAME, OUTPUT_NAME = "input", "logits"
INDEX_BYTES = 8  # int64 linear indices of a sparse initializer


def dynamic_axes(specs: InputSpecs | None, names: list[str]) -> dict[str, dict[int, str]]:
    """The batch of every input (and the output) dynamic, and the sequence of token inputs."""
    axes = {name: {0: "batch"} for name in [*names, OUTPUT_NAME]}
    for spec, name in zip(specs.specs if specs else (), names, strict=False):
        if not spec.is_float and len(spec.shape) == 2:
            axes[name][1] = "sequence"
    return axes


def torch_to_onnx(model: nn.Module, example, specs: InputSpecs | None = None):
    """The ModelProto of `model` traced on `example` (a tensor or a Batch), the batch dynamic,
    and the sequence length of token inputs; inputs named as `specs` names them."""
    onnx = require("onnx", "onnx", "ONNX export")
    example = as_batch(example)
    names = [INPUT_NAME] if specs is None else specs.names
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the exporter's own notice
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # HF shape checks
            warnings.simplefilter("ignore", UserWarning)  # opset notes beside our own lines
            torch.onnx.export(
                model,
                tuple(example.tensors),
                buffer,
                dynamo=False,
                opset_version=OPSET,
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes(specs, names),
                training=torch.onnx.TrainingMode.PRESERVE,
                do_constant_folding=False,
                keep_initializers_as_inputs=True,
            )
    except Exception as exc:  # tracing fails in many ways on unsupported models
        detail = first_line(exc)
        raise SparsebenchError(f"torch.onnx.export cannot export the model: {detail}") from exc
    model_proto = onnx.load_from_string(buffer.getvalue())
    graph = model_proto.graph
    constant = {t.name for t in graph.initializer}
    for index in reversed(range(len(graph.input))):  # weights are constants, not inputs
        if graph.input[index].name in constant:
            del graph.input[index]
    return model_proto


def _has_sequence(specs: InputSpecs) -> bool:
    return any(not s.is_float and len(s.shape) == 2 for s in specs.specs)


def weight_reports(graph) -> list[LayerReport]:
    """One 'kept' report per Conv/Gemm/MatMul weight, with its share of zeros."""
    stats = initializer_stats(graph)
    weights = weight_names(graph, stats)
    reports = {}
    for index, name in weights.items():
        zeros = 1 - stats[name].density
        reports[name] = LayerReport(
            layer_name(name),
            graph.node[index].op_type,
            "kept",
            "dense initializer",
            {"zeros_pct": round(100 * zeros, 2)},
        )
    return list(reports.values())


def sparsify_initializers_(graph) -> list[LayerReport]:
    """Store each 2-D+ float initializer as a COO sparse_initializer when that is smaller."""
    from onnx import helper, numpy_helper

    names = {t.name for t in graph.initializer}
    kinds = {name: graph.node[i].op_type for i, name in weight_names(graph, names).items()}
    reports, converted = [], []
    for index, tensor in enumerate(graph.initializer):
        array = numpy_helper.to_array(tensor)
        if array.ndim < 2 or not np.issubdtype(array.dtype, np.floating):
            continue
        flat = array.reshape(-1)
        nonzero = np.flatnonzero(flat)
        dense_bytes = flat.nbytes
        sparse_bytes = nonzero.size * (array.itemsize + INDEX_BYTES)
        details = {"zeros_pct": round(100 * (1 - nonzero.size / max(flat.size, 1)), 2)}
        details.update(dense_bytes=dense_bytes, sparse_bytes=sparse_bytes)
        kind = kinds.get(tensor.name, "initializer")
        if sparse_bytes >= dense_bytes:
            reason = "COO (values + int64 indices) would not be smaller"
            reports.append(LayerReport(layer_name(tensor.name), kind, "skipped", reason, details))
            continue
        values = numpy_helper.from_array(flat[nonzero], tensor.name)
        indices = numpy_helper.from_array(nonzero.astype(np.int64), f"{tensor.name}.indices")
        graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, array.shape))
        converted.append(index)
        reason = "stored as a COO sparse_initializer"
        reports.append(LayerReport(layer_name(tensor.name), kind, "converted", reason, details))
    for index in reversed(converted):
        del graph.initializer[index]
    return reports


def stored_bytes(graph) -> int:
    """Bytes of the initializers as stored: dense data, or sparse values plus indices."""
    total = 0
    for tensor in graph.initializer:
        total += math.prod(tensor.dims) * _itemsize(tensor.data_type)
    for sparse in graph.sparse_initializer:
        total += math.prod(sparse.values.dims) * _itemsize(sparse.values.data_type)
        total += math.prod(sparse.indices.dims) * _itemsize(sparse.indices.data_type)
    return total


def _itemsize(data_type: int) -> int:
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize


def _refuse(loaded, config: ExportConfig) -> None:
    if isinstance(loaded.model, RuntimeModule):
        raise SparsebenchError(
            f"{loaded.source} is already a {loaded.model.runtime} model; "
            "export the PyTorch checkpoint it was made from"
        )
    if any(is_compressed(m.weight) for _, m in prunable_layers(loaded.model)):
        raise SparsebenchError(
            f"{loaded.source} holds sparse-layout weights that torch.onnx cannot export; "
            "export the checkpoint it was made from (or its dense artifact) instead"
        )
    fixed = getattr(loaded.model, "fixed_batch", None)
    if fixed:
        raise SparsebenchError(
            f"{loaded.source} was exported with a static batch of {fixed}, so its ONNX graph "
            "would take that batch only; export the program with a dynamic batch dimension "
            "(torch.export.export(..., dynamic_shapes=...))"
        )


def _metadata(loaded, config, verification, reference: torch.Tensor, layers, stored) -> dict:
    meta = loaded.meta
    return {
        "version": METADATA_VERSION,
        "format": "onnx",
        "source": loaded.source,
        "source_kind": loaded.kind,
        "source_format": meta.format if meta else None,
        "arch": meta.arch if meta else loaded.options.arch,
        "arch_kwargs": meta.arch_kwargs if meta else loaded.options.arch_kwargs,
        "dataset": meta.dataset if meta else None,
        "classes": meta.classes if meta else None,
        "input_shape": list(loaded.input_shape),
        "inputs": loaded.specs.to_json(),
        "opset": OPSET,
        "exporter": f"torch.onnx.export (TorchScript-based), torch {torch.__version__}",
        "sparse_initializers": config.options.sparse_initializers,
        "verification": verification.to_dict(),
        "stored_bytes": stored,
        "layers": [asdict(layer) for layer in layers],
        "reference_outputs": {"seed": CHECK_SEED, **reference_to_json(reference)},
    }


@dataclass(frozen=True)
class OnnxOptions:
    """`sparse_initializers`: store mostly-zero weights as COO `sparse_initializer`s."""

    sparse_initializers: bool = False


@register_format
class OnnxExporter(Exporter):
    """An ONNX file with a dynamic batch, verified in ONNX Runtime (a file-based format)."""

    name = "onnx"
    options_type = OnnxOptions
    file_based = True
    description = "ONNX file (opset 17, dynamic batch) for ONNX Runtime; --sparse-initializers"

    def convert(self, model: nn.Module, example: torch.Tensor, config: ExportConfig) -> Conversion:
        raise SparsebenchError("onnx writes its own file: use sparsebench.export(..., 'onnx')")

    def restore(self, model: nn.Module, payload: dict, state_dict: dict, device: str) -> nn.Module:
        raise SparsebenchError("an onnx model loads from its .onnx file, not a checkpoint")

    def export_file(self, loaded, output: Path, config: ExportConfig, force: bool):
        """Export the loaded model, verify it in ONNX Runtime, write `output` atomically."""
        _refuse(loaded, config)
        inputs, label = verification_inputs(loaded, config)
        model = loaded.model.cpu().eval()
        with step("exporting to ONNX"):
            model_proto = torch_to_onnx(model, inputs[:1], loaded.specs)
        graph = model_proto.graph
        dense_mb = stored_bytes(graph) / MB
        if config.options.sparse_initializers:
            layers = sparsify_initializers_(graph)
        else:
            layers = weight_reports(graph)
        stored = stored_bytes(graph)
        what = f"verifying the ONNX model in ONNX Runtime on {len(inputs)} samples"
        with step(what), OnnxRuntimeModule(model_proto, device="cpu") as runtime:
            verification = compare_outputs(model, runtime, inputs, self.tolerance, label)
        require_passed(verification, "the onnx export")
        with torch.inference_mode():
            reference = call(model, check_inputs(loaded.specs)).float()
        metadata = _metadata(loaded, config, verification, reference, layers, stored)
        write_onnx_metadata(model_proto, metadata)
        data = model_proto.SerializeToString()
        atomic_write(output, lambda handle: handle.write(data), force=force)
        axes = "dynamic batch and sequence" if _has_sequence(loaded.specs) else "dynamic batch"
        notes = [f"torch.onnx.export (TorchScript-based), opset {OPSET}, {axes}"]
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            notes.append("BatchNorm kept as BatchNormalization (ONNX Runtime fuses it at load)")
        notes.append(f"file {len(data) / MB:.3f} MB")
        if config.options.sparse_initializers:
            count = sum(layer.action == "converted" for layer in layers)
            notes.append(
                f"{count} initializer(s) stored sparse: weights {dense_mb:.3f} -> "
                f"{stored / MB:.3f} MB; ONNX Runtime densifies them when it loads the model, "
                "so its memory and latency are the dense model's"
            )
        layer_dicts = [asdict(layer) for layer in layers]
        return ExportResult(Path(output), "onnx", layer_dicts, stored, verification, notes)
