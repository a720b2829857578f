"""Metadata in files: its encodings, and the checks that make it safe to use.

Three encodings carry sparsebench's metadata: the checkpoint's `{"sparsebench": meta}` dict
(`checkpoint.py` writes it, `check_meta_fields` checks it), an ONNX model's
`metadata_props["sparsebench"]` JSON (`read_onnx_metadata` / `write_onnx_metadata`) and the
JSON sidecar beside a TensorRT engine (`read_sidecar` / `sidecar_text`). Metadata read from
a file is untrusted: every value is type- and bound-checked here, and a bad one is a one-line
`SparsebenchError` naming the file and the field, so a crafted file never reaches code that
expects another type (a `KeyError` deep in an exporter, a huge allocation).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from .errors import SparsebenchError

# ONNX: the JSON object sparsebench writes into `metadata_props` under this key
METADATA_KEY = "sparsebench"
# TensorRT: what marks a JSON sidecar beside an engine as sparsebench's
SIDECAR_KIND = "tensorrt-engine"
SIDECAR_VERSION = 1

MAX_DEPTH = 16
MAX_INPUT_DIMS = 8
# a shape read from a file (or an ONNX graph) must not ask for more than this per sample
# (64 MiB of float32; the 8-sample check batch then takes 512 MiB)
MAX_INPUT_ELEMENTS = 2**24
MAX_BATCH_ELEMENTS = 2**26  # and per batch: 256 MiB of float32
MAX_NODES = 1_000_000  # values in one file's metadata (a reference of 8 x 1000 logits is 8,000)


class CorruptMetadata(SparsebenchError):
    """A field of a file's metadata has the wrong type or an impossible value."""


def _fail(source: str, field: str, problem: str) -> CorruptMetadata:
    return CorruptMetadata(f"{source}: corrupt metadata: '{field}' {problem}")


def check_json(value: Any, source: str, field: str) -> Any:
    """`value` if it is plain JSON (None, bool, finite numbers, str, lists, str-keyed dicts),
    nested at most MAX_DEPTH deep and of at most MAX_NODES values in all.

    The node count bounds the work: a pickle can share one list many times over, so a file of
    a kilobyte can describe more paths than any walk could visit.
    """
    budget = [MAX_NODES]
    return _plain(value, source, field, 0, budget)


def _plain(value: Any, source: str, field: str, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _fail(source, field, f"makes the metadata larger than {MAX_NODES:,} values")
    if depth > MAX_DEPTH:
        raise _fail(source, field, "is nested too deeply")
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(source, field, f"holds a non-finite number ({value})")
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, source, f"{field}[{i}]", depth + 1, budget) for i, v in enumerate(value)]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise _fail(source, field, f"has a non-text key {key!r}")
        return {k: _plain(v, source, f"{field}.{k}", depth + 1, budget) for k, v in value.items()}
    raise _fail(source, field, f"holds a {type(value).__name__}, not plain data")


def expect(value: Any, kind: type | tuple[type, ...], source: str, field: str) -> Any:
    """`value` if it is an instance of `kind` (a bool is never taken for a number)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise _fail(source, field, f"is a {type(value).__name__}, not {names}")
    return value


def check_shape(value: Any, source: str, field: str = "input_shape") -> list[int]:
    """A positive integer shape of at most MAX_INPUT_DIMS dimensions and MAX_INPUT_ELEMENTS
    elements per sample and MAX_BATCH_ELEMENTS in all (the first dimension is the batch)."""
    expect(value, (list, tuple), source, field)
    if not 1 <= len(value) <= MAX_INPUT_DIMS:
        raise _fail(source, field, f"has {len(value)} dimensions")
    dims = [expect(d, int, source, field) for d in value]
    if min(dims) < 1:
        raise _fail(source, field, f"has a dimension < 1 ({list(dims)})")
    if math.prod(dims[1:]) > MAX_INPUT_ELEMENTS or math.prod(dims) > MAX_BATCH_ELEMENTS:
        raise _fail(source, field, f"{list(dims)} is implausibly large")
    return dims


def check_str_list(value: Any, source: str, field: str) -> list[str]:
    """A list of strings."""
    expect(value, (list, tuple), source, field)
    return [expect(v, str, source, f"{field}[{i}]") for i, v in enumerate(value)]


def check_meta_fields(raw: dict, source: str) -> dict:
    """The fields of a sparsebench checkpoint's metadata, each type-checked."""
    fields = {key: check_json(value, source, key) for key, value in raw.items()}
    arch = expect(fields.get("arch"), str, source, "arch")
    if not arch or len(arch) > 500:
        raise _fail(source, "arch", "is empty or too long")
    for key in ("arch_kwargs", "extra", "export"):
        if key in fields:
            expect(fields[key], dict, source, key)
    for key in ("dataset", "format"):
        if fields.get(key) is not None:
            expect(fields[key], str, source, key)
    if fields.get("input_shape") is not None:
        fields["input_shape"] = check_shape(fields["input_shape"], source)
    if fields.get("classes") is not None:
        fields["classes"] = check_str_list(fields["classes"], source, "classes")
    return fields


def read_onnx_metadata(model_proto, path) -> dict | None:
    """The sparsebench metadata of an ONNX model, or None for a foreign file."""
    for prop in model_proto.metadata_props:
        if prop.key == METADATA_KEY:
            try:
                value = json.loads(prop.value)
            except json.JSONDecodeError as exc:
                raise SparsebenchError(f"{path}: corrupt sparsebench metadata ({exc})") from exc
            if not isinstance(value, dict):
                raise SparsebenchError(f"{path}: corrupt sparsebench metadata (not an object)")
            return check_json(value, str(path), METADATA_KEY)
    return None


def write_onnx_metadata(model_proto, metadata: dict) -> None:
    """Store `metadata` (plain JSON) in an ONNX model's `metadata_props`."""
    model_proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(metadata))


def sidecar_text(info: dict) -> str:
    """The JSON text of an engine's sidecar (`read_sidecar` reads it back)."""
    marked = {"sparsebench": {"kind": SIDECAR_KIND, "version": SIDECAR_VERSION}, **info}
    return json.dumps(marked, indent=2) + "\n"


def sidecar_path(engine: str | Path) -> Path:
    """The JSON sidecar written beside an engine: `model.engine` -> `model.engine.json`."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def read_sidecar(engine: str | Path) -> dict[str, Any]:
    """The engine's sidecar, checked for the fields `load_engine` needs."""
    path = sidecar_path(engine)
    if not path.is_file():
        raise SparsebenchError(
            f"{engine} has no sidecar {path}: sparsebench reads the input shape, precision and "
            "verification of an engine from it; copy it beside the engine or re-export with "
            "`sparsebench export -f tensorrt`"
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SparsebenchError(f"cannot read the engine sidecar {path}: {exc}") from exc
    marker = info.get("sparsebench", {}) if isinstance(info, dict) else {}
    if not isinstance(marker, dict) or marker.get("kind") != SIDECAR_KIND:
        raise SparsebenchError(f"{path} is not a sparsebench TensorRT sidecar")
    if not info.get("input_shape"):
        raise SparsebenchError(f"{path} is not a sparsebench TensorRT sidecar")
    info = check_json(info, str(path), "sidecar")
    info["input_shape"] = check_shape(info["input_shape"], str(path))
    return info


def check_tensor(tensor: torch.Tensor, where: str) -> torch.Tensor:
    """A tensor read from a file, if it is one sparsebench can use: on the CPU, not nested or
    quantized, and holding every element it claims (no expanded view of a tiny storage
    posing as a large weight)."""
    if tensor.device.type != "cpu":
        raise SparsebenchError(f"{where} is a {tensor.device.type} tensor, not a CPU one")
    if tensor.layout not in (torch.strided, torch.sparse_coo, torch.sparse_csr):
        raise SparsebenchError(f"{where} is a {tensor.layout} tensor; sparsebench reads dense, "
                               "COO and CSR tensors")  # fmt: skip
    if tensor.is_nested or tensor.is_quantized:
        kind = "nested" if tensor.is_nested else "quantized"
        raise SparsebenchError(f"{where} is a {kind} tensor; sparsebench reads plain tensors")
    if tensor.layout == torch.strided and type(tensor) in (torch.Tensor, torch.nn.Parameter):
        held = tensor.untyped_storage().nbytes()
        if tensor.numel() * tensor.element_size() > held:
            raise SparsebenchError(
                f"{where} claims {tensor.numel():,} elements but its storage holds {held:,} "
                "bytes (an expanded view); refused"
            )
    return tensor


def stored_bytes(tensors) -> int:
    """Bytes the tensors really hold in storage (sparse ones: their values and indices)."""
    seen, total = set(), 0
    for tensor in tensors:
        if tensor.layout == torch.sparse_coo:
            parts = [tensor._values(), tensor._indices()]
        elif tensor.layout == torch.sparse_csr:
            parts = [tensor.values(), tensor.col_indices(), tensor.crow_indices()]
        else:
            parts = [tensor]
        for part in parts:
            if type(part) not in (torch.Tensor, torch.nn.Parameter):  # a wrapper (2:4) tensor
                total += part.numel() * part.element_size()
                continue
            storage = part.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total


MAX_PLAIN_BYTES = 64 * 2**20  # a zip member this large must not inflate more than MAX_RATIO
MAX_RATIO = 100
MAX_ZIP_BYTES = 16 * 2**30  # and no archive may inflate to more than this in all


def check_zip_members(archive, path) -> None:
    """Refuse a zip (torch.save file, .npz) whose members inflate far beyond their compressed
    size (a zip bomb: torch.save itself never compresses)."""
    total = 0
    for info in archive.infolist():
        total += info.file_size
        inflated = info.file_size > MAX_PLAIN_BYTES
        if (inflated and info.file_size > MAX_RATIO * max(info.compress_size, 1)) or (
            total > MAX_ZIP_BYTES
        ):
            raise SparsebenchError(
                f"{path}: {info.filename} inflates {info.compress_size:,} bytes to "
                f"{info.file_size:,}; refused as a zip bomb"
            )
