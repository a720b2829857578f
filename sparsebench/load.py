"""Read PyTorch files of every kind; the loaded-model types every runtime returns.

Kinds, detected from the file itself (never from its name):
- `sparsebench`: a checkpoint written by sparsebench (state_dict + architecture metadata);
  an exported artifact is returned unrestored (`TorchFile.artifact`): `artifact.py` rebuilds
  it through its format and re-verifies it;
- `state_dict`: a plain state_dict, which needs `arch` (zoo name or `module:factory`);
- `torchscript`: a `torch.jit.save` archive, and `export`: a `torch.export.save` program,
  both code-bearing, so only with `trust_checkpoint=True`;
- `pickled-module`: a fully pickled nn.Module, only with `trust_checkpoint=True`.
Pruning masks (`torch.nn.utils.prune`, parametrizations) are folded into the weights. This
module imports nothing from `formats/`, `runtimes/` or `artifact.py` (tests/test_layers.py).
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .arch import build_for_state, is_code_arch, zoo_input_shape
from .checkpoint import CheckpointMeta, is_sparsebench_checkpoint, read_meta
from .errors import SparsebenchError, first_line
from .masks import fold_module_, fold_state_dict
from .metadata import check_tensor, check_zip_members

_STATE_KEYS = ("state_dict", "model_state_dict", "model")


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
    # outputs stored in the file on `verify.check_inputs` (None for a file that has none)
    reference: torch.Tensor | None = None
    # the check the artifact passed at this load (`verify.Verification`); None if none
    verification: Any = None
    # the file this model was converted from on the fly (profile --runtime), if it was
    converted_from: str | None = None

    @property
    def batch_size(self) -> int:
        return self.input_shape[0]

    @property
    def format(self) -> str:
        """The format the model is stored in ('dense' for a plain checkpoint)."""
        return self.meta.format if self.meta and self.meta.format else "dense"

    @property
    def is_artifact(self) -> bool:
        """Whether the file claims to be a sparsebench export (and so must verify)."""
        return self.meta is not None and (bool(self.meta.export) or self.format != "dense")

    def close(self) -> None:
        """Release what a runtime holds for the model (a session, an engine)."""
        close = getattr(self.model, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclass
class TorchFile:
    """What a PyTorch file holds: a built model, or an artifact's unrestored parts."""

    kind: str
    model: nn.Module | None = None
    meta: CheckpointMeta | None = None
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    folded: list[str] = field(default_factory=list)
    found_shape: tuple[int, ...] | None = None

    @property
    def artifact(self) -> bool:
        """An exported artifact whose format must rebuild the model."""
        return self.model is None


def detect_kind(path: Path) -> str:
    """'torchscript', 'export' or 'torch' (a torch.save file) from the archive layout."""
    if not zipfile.is_zipfile(path):
        return "torch"
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip_members(archive, path)
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


_CODE_BEARING = {
    "torchscript": "a TorchScript archive, which is code: loading and calling it runs it",
    "export": "a torch.export program, whose loader unpickles some entries and runs its graph",
}


def refuse_code_bearing(kind: str, path: Path, trust: bool) -> None:
    """Refuse a file kind that executes code from the file, unless the user trusts it."""
    if kind in _CODE_BEARING and not trust:
        raise SparsebenchError(
            f"{path} is {_CODE_BEARING[kind]}; pass --trust-checkpoint if you trust its "
            "source, or save its state_dict and pass --arch"
        )


def _torch_load(path: Path, trust: bool) -> Any:
    """torch.load, weights only unless trusted, with every sparse tensor's indices validated."""
    try:
        with warnings.catch_warnings():  # CSR artifacts: torch's one-time "beta" notice
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            with torch.sparse.check_sparse_tensor_invariants():  # crafted indices: no SIGSEGV
                return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        unsafe = _unsafe_global(str(exc))
        if trust or unsafe is None:
            raise SparsebenchError(
                f"cannot read {path}: corrupt or not a PyTorch checkpoint ({_pickle_reason(exc)})"
            ) from exc
        raise SparsebenchError(
            f"{path} holds pickled Python objects ({unsafe}); unpickling runs arbitrary code "
            "from the file. Pass --trust-checkpoint if you trust its source, or save "
            "model.state_dict() and pass --arch"
        ) from exc
    except Exception as exc:  # torch.load fails in many ways on a damaged file
        raise SparsebenchError(
            f"cannot read {path}: corrupt or not a PyTorch checkpoint ({_reason(exc)})"
        ) from exc


def _unsafe_global(message: str) -> str | None:
    """The Python global a weights-only load refused, or None when the pickle is just corrupt."""
    match = re.search(r"GLOBAL ([\w.]+)", message)
    return match.group(1) if match else None


def _pickle_reason(exc: BaseException) -> str:
    """The informative line of torch's long weights-only error ('Unsupported operand 195')."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("WeightsUnpickler error") and index + 1 < len(lines):
            return line.split(":", 1)[1].strip() or lines[index + 1]
    return lines[0][:200] if lines else type(exc).__name__


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)[:200]}"


def _as_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    def is_tensor_dict(d):
        return (
            isinstance(d, dict)
            and d
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())
        )

    if is_tensor_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in _STATE_KEYS:
            if is_tensor_dict(obj.get(key)):
                return obj[key]
    return None


def _tensor_dict(value: Any, path: Path, field: str) -> dict[str, torch.Tensor]:
    """`value` if it is a dict of text keys to plain CPU tensors (what a checkpoint must hold)."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    ):
        raise SparsebenchError(f"{path}: corrupt checkpoint: '{field}' is not a dict of tensors")
    for key, tensor in value.items():
        check_tensor(tensor, f"{path}: '{field}.{key}'")
    return value


def file_arch(meta: CheckpointMeta, options: LoadOptions, path: Path) -> str:
    """The architecture to build for a checkpoint's metadata, refusing code the file names.

    Metadata may name zoo architectures only; a `module:callable` or `file.py:factory` in a
    file runs only when the user names it too (`--arch`) or trusts the file.
    """
    if options.arch:
        return options.arch
    if is_code_arch(meta.arch) and not options.trust_checkpoint:
        raise SparsebenchError(
            f"{path} names the architecture '{meta.arch}', which is code to import, not a zoo "
            f"model; pass --arch {meta.arch} (or --trust-checkpoint) if you trust it"
        )
    return meta.arch


def _from_state(state, arch, kwargs, label=None) -> tuple[nn.Module, list[str]]:
    state, folded = fold_state_dict(state)
    return build_for_state(arch, kwargs, state, label or arch), folded


def _read_checkpoint(obj: dict, path: Path, options: LoadOptions) -> TorchFile:
    meta = read_meta(obj, str(path))
    arch = file_arch(meta, options, path)
    kwargs = {**meta.arch_kwargs, **(options.arch_kwargs or {})}
    state = _tensor_dict(obj["state_dict"], path, "state_dict")
    shape = tuple(meta.input_shape) if meta.input_shape else zoo_input_shape(arch)
    found = TorchFile("sparsebench", None, meta, arch, kwargs, state, found_shape=shape)
    if meta.export or (meta.format or "dense") != "dense":  # an artifact: artifact.py rebuilds it
        found.kind = f"artifact:{meta.format}"
        found.tensors = _tensor_dict(obj.get("tensors", {}), path, "tensors")
        return found
    found.model, found.folded = _from_state(state, arch, kwargs)
    return found


def _read_torch_save(path: Path, options: LoadOptions) -> TorchFile:
    obj = _torch_load(path, options.trust_checkpoint)
    if is_sparsebench_checkpoint(obj):
        return _read_checkpoint(obj, path, options)
    if isinstance(obj, nn.Module):
        return TorchFile("pickled-module", obj, folded=fold_module_(obj))
    state = _as_state_dict(obj)
    if state is None:
        raise SparsebenchError(
            f"{path} holds a {type(obj).__name__}, not a model or a state_dict of tensors"
        )
    if not options.arch:
        raise SparsebenchError(
            f"{path} is a plain state_dict: pass --arch NAME (see `sparsebench models`), "
            "--arch package.module:factory or --arch path/file.py:factory"
        )
    for key, tensor in state.items():
        check_tensor(tensor, f"{path}: '{key}'")
    model, folded = _from_state(state, options.arch, options.arch_kwargs)
    shape = zoo_input_shape(options.arch)
    return TorchFile("state_dict", model, arch=options.arch, folded=folded, found_shape=shape)


def read_torch_file(path: Path, options: LoadOptions) -> TorchFile:
    """Read a PyTorch file of any kind, refusing code-bearing kinds unless trusted."""
    kind = detect_kind(path)
    refuse_code_bearing(kind, path, options.trust_checkpoint)
    if kind == "torchscript":
        return TorchFile(kind, _load_torchscript(path))
    if kind == "export":
        model, shape = _load_export(path)
        return TorchFile(kind, model, found_shape=shape)
    return _read_torch_save(path, options)


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


def resolve_input_shape(options: LoadOptions, found: tuple[int, ...] | None, path: Path) -> tuple:
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


def finish_loading(model: nn.Module, path: Path, options: LoadOptions, kind: str,
                   found_shape=None, **fields) -> LoadedModel:  # fmt: skip
    """Resolve the input shape, put `model` in eval mode on its device and check it runs."""
    shape = resolve_input_shape(options, found_shape, path)
    if kind != "export":  # an exported program is already captured in its mode
        model = model.eval()
    model = model.to(options.device)
    check_input(model, shape, options.device)
    return LoadedModel(model, shape, kind, path.stem, str(path), options=options, **fields)
