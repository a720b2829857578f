"""Read PyTorch files of every kind; the loaded-model types every runtime returns.

Kinds, detected from the file itself (never from its name):
- `sparsebench`: a checkpoint written by sparsebench (state_dict + architecture metadata);
  an exported artifact is returned unrestored (`TorchFile.artifact`): `artifact.py` rebuilds
  it through its format and re-verifies it;
- `state_dict`: a plain state_dict, which needs `arch` (zoo name or `module:factory`);
- `torchscript`: a `torch.jit.save` archive, and `export`: a `torch.export.save` program,
  both code-bearing, so only with `trust_checkpoint=True`;
- `pickled-module`: a fully pickled nn.Module, only with `trust_checkpoint=True`;
- `safetensors`: a `.safetensors` state_dict (detected from its header), read like a state_dict;
- `huggingface`: a `save_pretrained` folder (config.json + model.safetensors or
  pytorch_model.bin), built with transformers from its config (`hf.py`).
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

from .adapt import adapt, adapted_settings, is_adapted
from .arch import build_for_state, is_code_arch, zoo_input_shape
from .checkpoint import CheckpointMeta, is_sparsebench_checkpoint, read_meta
from .errors import SparsebenchError, first_line
from .inputs import Batch, InputSpec, InputSpecs, call, dtype_name
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
    inputs: tuple[InputSpec, ...] | None = None  # --input, in call order
    seq_len: int | None = None  # --seq-len: dimension 1 of token inputs
    output_key: str | None = None  # --output-key: which output of a dict/tuple to measure


@dataclass
class LoadedModel:
    """An eval-mode model on its device, with its inputs and where it came from.

    `model` takes the inputs of `specs` positionally and returns one tensor (`adapt.py`);
    `input_shape` is the first input's shape.
    """

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
    specs: InputSpecs | None = None  # the model's inputs; one float input of input_shape if None

    def __post_init__(self):
        if self.specs is None:
            self.specs = InputSpecs.single(self.input_shape)
        self.input_shape = tuple(self.specs.shape)

    @property
    def batch_size(self) -> int:
        return self.specs.batch_size

    def synthetic(self, seed: int = 0, batch: int | None = None) -> Batch:
        """A seeded batch of the model's inputs."""
        return self.specs.synthetic(seed, batch)

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
    found_shape: tuple[int, ...] | InputSpecs | None = None

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
    except (ModuleNotFoundError, AttributeError) as exc:
        if not trust:
            raise SparsebenchError(
                f"cannot read {path}: corrupt or not a PyTorch checkpoint ({_reason(exc)})"
            ) from exc
        raise SparsebenchError(
            f"{path} is a pickled model whose code cannot be imported here ({first_line(exc)}): "
            "run sparsebench where the model's module is importable (its folder on PYTHONPATH), "
            "or save model.state_dict() and pass --arch package.module:factory"
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
    if meta.inputs is not None:
        shape = InputSpecs.from_json(meta.inputs, str(path))
    found = TorchFile("sparsebench", None, meta, arch, kwargs, state, found_shape=shape)
    if meta.export or (meta.format or "dense") != "dense":  # an artifact: artifact.py rebuilds it
        found.kind = f"artifact:{meta.format}"
        found.tensors = _tensor_dict(obj.get("tensors", {}), path, "tensors")
        return found
    found.model, found.folded = _from_state(state, arch, kwargs)
    return found


def _read_torch_save(path: Path, options: LoadOptions) -> TorchFile:
    obj = _torch_load(path, options.trust_checkpoint)
    return _read_object(obj, path, options)


def _read_object(obj: Any, path: Path, options: LoadOptions, kind: str = "state_dict"):
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
    return TorchFile(kind, model, arch=options.arch, folded=folded, found_shape=shape)


def read_torch_file(path: Path, options: LoadOptions) -> TorchFile:
    """Read a PyTorch file of any kind, refusing code-bearing kinds unless trusted."""
    if path.is_dir():
        return read_hf_folder(path, options)
    if is_safetensors(path):
        if not options.arch and (path.parent / "config.json").is_file():
            return read_hf_folder(path.parent, options, weights=path)
        return _read_object(read_safetensors(path), path, options, kind="safetensors")
    kind = detect_kind(path)
    refuse_code_bearing(kind, path, options.trust_checkpoint)
    if kind == "torchscript":
        return TorchFile(kind, _load_torchscript(path))
    if kind == "export":
        model, specs = _load_export(path)
        return TorchFile(kind, model, found_shape=specs)
    return _read_torch_save(path, options)


MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library's own limit


def is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    length = int.from_bytes(head[:8], "little")
    return 2 <= length <= MAX_SAFETENSORS_HEADER and length + 8 <= path.stat().st_size


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file (a format that holds data only, never code)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise SparsebenchError(f"cannot read {path}: corrupt safetensors file ({exc})") from exc
    if not state:
        raise SparsebenchError(f"{path} holds no tensors")
    for key, tensor in state.items():
        check_tensor(tensor, f"{path}: '{key}'")
    return state


HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
MAX_CONFIG_BYTES = 10_000_000


def read_hf_folder(folder: Path, options: LoadOptions, weights: Path | None = None) -> TorchFile:
    """A `save_pretrained` folder: its config builds the transformers model, its weights
    (safetensors, or a weights-only `pytorch_model.bin`) are checked against it and loaded."""
    import json

    from . import hf
    from .arch import MAX_GROWTH, build_skeleton
    from .metadata import check_json

    config_path = folder / "config.json"
    if not config_path.is_file():
        raise SparsebenchError(
            f"{folder} is a directory without config.json; pass a checkpoint file or a "
            "Hugging Face save_pretrained folder"
        )
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise SparsebenchError(f"{config_path} is over {MAX_CONFIG_BYTES:,} bytes; refused")
    try:
        config = check_json(json.loads(config_path.read_text()), str(config_path), "config")
    except (ValueError, UnicodeDecodeError) as exc:
        raise SparsebenchError(f"cannot read {config_path}: not JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise SparsebenchError(f"{config_path} is not a JSON object")
    weights = weights or next((folder / n for n in HF_WEIGHTS if (folder / n).is_file()), None)
    if weights is None:
        sharded = sorted(folder.glob("*.index.json"))
        hint = " (sharded checkpoints are not supported yet)" if sharded else ""
        raise SparsebenchError(f"{folder} has no {' or '.join(HF_WEIGHTS)}{hint}")
    if not is_safetensors(weights):  # validated here before transformers reads it again
        for key, tensor in _tensor_dict(_torch_load(weights, False), weights, "weights").items():
            check_tensor(tensor, f"{weights}: '{key}'")
    label = f"Hugging Face model {folder}"
    kwargs = {"config": config}
    skeleton = build_skeleton(hf.HF_ARCH, kwargs)  # weightless, time-limited
    wanted = sum(t.numel() * t.element_size() for t in skeleton.state_dict().values())
    held = weights.stat().st_size
    if wanted > MAX_GROWTH * max(held, 400_000):
        raise SparsebenchError(
            f"{label}: its config builds {wanted:,} bytes of weights for {held:,} stored; refused"
        )
    model = hf.from_folder(folder, config, weights, label)
    specs = hf.default_inputs(model, config)
    meta = CheckpointMeta(arch=hf.HF_ARCH, arch_kwargs=kwargs)
    return TorchFile("huggingface", model, meta=meta, arch=hf.HF_ARCH, arch_kwargs=kwargs,
                     found_shape=specs)  # fmt: skip


def _load_torchscript(path: Path) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise SparsebenchError(f"cannot read TorchScript archive {path}: {exc}") from exc


def _load_export(path: Path) -> tuple[nn.Module, InputSpecs | None]:
    """A `torch.export` program's module, taking its example inputs' names, dtypes and
    shapes (integer inputs take values in the example's range)."""
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        detail = first_line(exc)
        raise SparsebenchError(f"cannot read torch.export program {path}: {detail}") from exc
    args, kwargs = getattr(program, "example_inputs", None) or ((), {})
    module = program.module()  # built once: each call makes a new GraphModule
    names = _argument_names(module, len(args))
    named = list(zip(names, args, strict=True)) + list((kwargs or {}).items())
    if not named or not all(isinstance(v, torch.Tensor) for _, v in named):
        return adapt(module), None
    specs = InputSpecs(tuple(_example_spec(name, value) for name, value in named))
    keywords = [name for name, _ in named] if kwargs else None  # then every input by name
    model = adapt(module, keywords)
    try:  # a program traced without a dynamic batch takes only its example's batch size
        with torch.inference_mode():
            call(model, specs.synthetic(seed=0, batch=specs.batch_size + 1))
    except Exception:
        model.fixed_batch = specs.batch_size
    return model, specs


def _argument_names(module: nn.Module, count: int) -> list[str]:
    """The names of a program module's first `count` positional arguments."""
    import inspect

    try:
        params = list(inspect.signature(module.forward).parameters)[:count]
    except (TypeError, ValueError):
        params = []
    return params if len(params) == count else [f"arg{i}" for i in range(count)]


def _example_spec(name: str, value: torch.Tensor) -> InputSpec:
    shape = tuple(int(d) for d in value.shape) or (1,)
    dtype = dtype_name(value.dtype)
    if value.dtype.is_floating_point or value.numel() == 0:
        return InputSpec(name, shape, dtype)
    return InputSpec(name, shape, dtype, int(value.min()), int(value.max()))


def resolve_inputs(options: LoadOptions, found, path: Path) -> InputSpecs:
    """The model's inputs: `--input` specs, else `--input-shape` (keeping the dtype and range
    of a one-input model the file describes), else what the file or architecture says;
    then `--batch-size` and `--seq-len`."""
    found = InputSpecs.single(found) if isinstance(found, tuple | list) else found
    if options.inputs:
        specs = InputSpecs(tuple(options.inputs))
    elif options.input_shape:
        shape = tuple(int(s) for s in options.input_shape)
        if not shape or min(shape) < 1:
            raise SparsebenchError(f"invalid input shape {list(shape)}: dimensions must be >= 1")
        if found is not None and len(found.specs) == 1:
            specs = InputSpecs((InputSpec(**{**found.specs[0].__dict__, "shape": shape}),))
        elif found is not None:
            raise SparsebenchError(
                f"{path} takes {len(found.specs)} inputs ({', '.join(found.names)}); "
                "give each with --input name:shape:dtype instead of --input-shape"
            )
        else:
            specs = InputSpecs.single(shape)
    elif found is not None:
        specs = found
    else:
        raise SparsebenchError(
            f"cannot tell the inputs of {path}; pass --input-shape, e.g. 1,3,32,32, or "
            "--input name:shape:dtype[:low-high] for each input"
        )
    if options.batch_size is not None:
        specs = specs.with_batch(int(options.batch_size))
    if options.seq_len is not None:
        specs = specs.with_seq_len(int(options.seq_len))
    return specs


def check_input(model: nn.Module, specs: InputSpecs | tuple, device: str) -> torch.Tensor:
    """Run one forward pass on a synthetic batch, turning an input error into one line;
    returns the output (one tensor, `adapt.select_output`)."""
    specs = InputSpecs.single(specs) if isinstance(specs, tuple | list) else specs
    try:
        with torch.inference_mode():
            output = call(model, specs.synthetic(seed=0).to(device))
    except SparsebenchError:
        raise
    except Exception as exc:
        detail = first_line(exc)
        what = f"input shape {list(specs.shape)}" if specs.is_plain else f"inputs {specs.text()}"
        hint = ""
        if specs.is_plain and re.search(r"scalar type|Long|indices|Int\b", detail):
            hint = (" (the model takes integer inputs such as token ids: pass e.g. "
                    "--input input_ids:1x128:int64:0-VOCAB)")  # fmt: skip
        verb = "does" if specs.is_plain else "do"
        raise SparsebenchError(f"{what} {verb} not fit the model: {detail}{hint}") from exc
    if not isinstance(output, torch.Tensor):
        raise SparsebenchError(f"the model returned a {type(output).__name__}, not a tensor")
    return output


def _probe(model: nn.Module, specs: InputSpecs, options: LoadOptions) -> nn.Module:
    """Adapt a model whose output is a tuple or dict (or an --output-key is given); a model
    adapted to keyword inputs takes the names of `specs`."""
    if is_adapted(model):
        names, key = adapted_settings(model)
        names = specs.names if names is not None else None
        key = options.output_key if options.output_key is not None else key
        return adapt(model, names, key)
    if options.output_key is not None:
        return adapt(model, None, options.output_key)
    try:
        with torch.inference_mode():
            output = call(model, specs.synthetic(seed=0, batch=1).to(options.device))
    except Exception:  # check_input reports it in one line
        return model
    return model if isinstance(output, torch.Tensor) else adapt(model, None, None)


def finish_loading(model: nn.Module, path: Path, options: LoadOptions, kind: str,
                   found_shape=None, **fields) -> LoadedModel:  # fmt: skip
    """Resolve the inputs, put `model` in eval mode on its device and check it runs."""
    specs = resolve_inputs(options, found_shape, path)
    if not isinstance(model, torch.fx.GraphModule) and kind != "export":
        model = model.eval()  # an exported program is already captured in its mode
    model = model.to(options.device)
    if fields.get("meta") is not None and fields["meta"].arch == "hf":
        from .hf import check_inputs_fit

        check_inputs_fit(specs, fields["meta"].arch_kwargs.get("config") or {}, str(path))
    model = _probe(model, specs, options)
    fixed = getattr(model, "fixed_batch", None)
    if fixed and specs.batch_size != fixed:
        raise SparsebenchError(
            f"{path} was exported with a static batch of {fixed}; --batch-size "
            f"{specs.batch_size} needs a program exported with a dynamic batch dimension "
            "(torch.export.export(..., dynamic_shapes=...))"
        )
    check_input(model, specs, options.device)
    name = path.name if path.is_dir() else path.stem
    return LoadedModel(model, specs.shape, kind, name, str(path), options=options, specs=specs,
                       **fields)  # fmt: skip
