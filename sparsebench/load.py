"""Load a checkpoint of any supported kind into an eval-mode nn.Module plus its input shape.

Kinds, detected from the file itself:
- `sparsebench`: a checkpoint written by sparsebench (state_dict + architecture metadata);
- `state_dict`: a plain state_dict, which needs `arch` (zoo name or `module:factory`);
- `torchscript`: a `torch.jit.save` archive;
- `export`: a `torch.export.save` program (`.pt2`);
- `pickled-module`: a fully pickled nn.Module, only with `trust_checkpoint=True`;
- `.onnx` / `.engine` files, run by ONNX Runtime / TensorRT (`runtimes/`).
Pruning masks (`torch.nn.utils.prune`, parametrizations) are folded into the weights.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .arch import build_model, load_state_dict_strict, zoo_input_shape
from .checkpoint import CheckpointMeta, is_sparsebench_checkpoint, read_meta
from .device import check_device
from .errors import SparsebenchError, first_line
from .masks import fold_module_, fold_state_dict

_STATE_KEYS = ("state_dict", "model_state_dict", "model")
# file suffix -> (module, function) that loads it into a RuntimeModule, imported on demand
_FOREIGN_LOADERS = {
    ".onnx": (".runtimes.onnxruntime", "load_onnx"),
    ".engine": (".runtimes.tensorrt", "load_engine"),
    ".plan": (".runtimes.tensorrt", "load_engine"),
}


@dataclass(frozen=True)
class LoadOptions:
    """Everything besides the path that decides how a checkpoint loads (picklable)."""

    arch: str | None = None
    arch_kwargs: dict[str, Any] | None = None
    input_shape: tuple[int, ...] | None = None
    batch_size: int | None = None
    trust_checkpoint: bool = False
    device: str = "cpu"


@dataclass
class LoadedModel:
    """An eval-mode model on its device, with its input shape and where it came from."""

    model: nn.Module
    input_shape: tuple[int, ...]
    kind: str
    name: str
    source: str | None = None
    meta: CheckpointMeta | None = None
    folded: list[str] = field(default_factory=list)
    options: LoadOptions = field(default_factory=LoadOptions)

    @property
    def batch_size(self) -> int:
        return self.input_shape[0]


def detect_kind(path: Path) -> str:
    """'torchscript', 'export' or 'torch' (a torch.save file) from the archive layout."""
    if not zipfile.is_zipfile(path):
        return "torch"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise SparsebenchError(f"cannot read {path}: corrupt archive ({exc})") from exc
    if any(n.endswith("serialized_exported_program.json") for n in names) or any(
        "/models/" in n and n.endswith(".json") for n in names
    ):
        return "export"
    if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    return "torch"


def _torch_load(path: Path, trust: bool) -> Any:
    try:
        with warnings.catch_warnings():  # CSR artifacts: torch's one-time "beta" notice
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if trust or "weights_only" not in str(exc).lower():
            raise SparsebenchError(f"cannot read {path}: not a valid PyTorch checkpoint") from exc
        raise SparsebenchError(
            f"{path} holds pickled Python objects (e.g. a whole nn.Module); unpickling runs "
            "arbitrary code from the file. Pass --trust-checkpoint if you trust its source, "
            "or save model.state_dict() and pass --arch"
        ) from exc
    except Exception as exc:  # torch.load fails in many ways on a damaged file
        detail = first_line(exc)
        raise SparsebenchError(
            f"cannot read {path}: truncated or not a PyTorch checkpoint ({detail})"
        ) from exc


def _as_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    def is_tensor_dict(d):
        return isinstance(d, dict) and d and all(isinstance(v, torch.Tensor) for v in d.values())

    if is_tensor_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in _STATE_KEYS:
            if is_tensor_dict(obj.get(key)):
                return obj[key]
    return None


def _from_state(state, arch, kwargs) -> tuple[nn.Module, list[str]]:
    state, folded = fold_state_dict(state)
    model = build_model(arch, kwargs)
    load_state_dict_strict(model, state, arch)
    return model, folded


def _load_torch_file(path: Path, options: LoadOptions) -> tuple[nn.Module, str, dict]:
    obj = _torch_load(path, options.trust_checkpoint)
    if is_sparsebench_checkpoint(obj):
        meta = read_meta(obj)
        kwargs = {**meta.arch_kwargs, **(options.arch_kwargs or {})}
        info = {"meta": meta, "arch": meta.arch, "folded": []}
        if meta.export:  # an exported artifact: its format rebuilds and re-verifies it
            from .formats.artifact import restore_artifact

            model = build_model(meta.arch, kwargs)
            tensors = obj.get("tensors", {})
            model = restore_artifact(meta, model, obj["state_dict"], tensors, options.device)
            return model, f"artifact:{meta.format}", info
        model, info["folded"] = _from_state(obj["state_dict"], meta.arch, kwargs)
        return model, "sparsebench", info
    if isinstance(obj, nn.Module):
        return obj, "pickled-module", {"folded": fold_module_(obj)}
    state = _as_state_dict(obj)
    if state is None:
        raise SparsebenchError(
            f"{path} holds a {type(obj).__name__}, not a model or a state_dict of tensors"
        )
    if not options.arch:
        raise SparsebenchError(
            f"{path} is a plain state_dict: pass --arch NAME (see `sparsebench models`) "
            "or --arch package.module:factory"
        )
    model, folded = _from_state(state, options.arch, options.arch_kwargs)
    return model, "state_dict", {"folded": folded, "arch": options.arch}


def _load_torchscript(path: Path) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise SparsebenchError(f"cannot read TorchScript archive {path}: {exc}") from exc


def _load_export(path: Path) -> tuple[nn.Module, tuple[int, ...] | None]:
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        detail = first_line(exc)
        raise SparsebenchError(f"cannot read torch.export program {path}: {detail}") from exc
    shape = None
    args = (getattr(program, "example_inputs", None) or ((), {}))[0]
    if args and isinstance(args[0], torch.Tensor):
        shape = tuple(int(s) for s in args[0].shape)
    return program.module(), shape


def _input_shape(options: LoadOptions, found: tuple[int, ...] | None, path: Path) -> tuple:
    shape = options.input_shape or found
    if shape is None:
        raise SparsebenchError(
            f"cannot tell the input shape of {path}; pass --input-shape, e.g. 1,3,32,32"
        )
    shape = tuple(int(s) for s in shape)
    if options.batch_size is not None:
        shape = (int(options.batch_size), *shape[1:])
    if not shape or min(shape) < 1:
        raise SparsebenchError(f"invalid input shape {list(shape)}: every dimension must be >= 1")
    return shape


def check_input(model: nn.Module, shape: tuple[int, ...], device: str) -> None:
    """Run one forward pass on zeros, turning a shape error into a one-line message."""
    try:
        with torch.inference_mode():
            model(torch.zeros(shape, device=device))
    except Exception as exc:
        detail = first_line(exc)
        raise SparsebenchError(
            f"input shape {list(shape)} does not fit the model: {detail}"
        ) from exc


def load(path: str | Path, options: LoadOptions | None = None, **kwargs) -> LoadedModel:
    """Load a checkpoint of any supported kind; `kwargs` are LoadOptions fields."""
    options = options or LoadOptions(**kwargs)
    path = Path(path)
    if not path.exists():
        raise SparsebenchError(f"no such file: {path}")
    if not path.is_file():
        raise SparsebenchError(f"{path} is not a file")
    device = check_device(options.device)
    foreign = _FOREIGN_LOADERS.get(path.suffix.lower())
    if foreign is not None:  # a model for another runtime (ONNX Runtime, TensorRT)
        module_name, function = foreign
        return getattr(import_module(module_name, __package__), function)(path, options)
    kind = detect_kind(path)
    info: dict[str, Any] = {}
    found_shape = None
    if kind == "torchscript":
        model = _load_torchscript(path)
    elif kind == "export":
        model, found_shape = _load_export(path)
    else:
        model, kind, info = _load_torch_file(path, options)
    meta = info.get("meta")
    if meta is not None and meta.input_shape:
        found_shape = tuple(meta.input_shape)
    elif info.get("arch"):
        found_shape = zoo_input_shape(info["arch"])
    shape = _input_shape(options, found_shape, path)
    if kind != "export":  # an exported program is already captured in its mode
        model = model.eval()
    model = model.to(device)
    check_input(model, shape, device)
    return LoadedModel(
        model=model,
        input_shape=shape,
        kind=kind,
        name=path.stem,
        source=str(path),
        meta=meta,
        folded=info.get("folded", []),
        options=options,
    )
