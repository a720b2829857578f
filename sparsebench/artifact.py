"""The seam between files and runtimes: `load` turns any file into a verified, runnable model.

- PyTorch files are read by `load.py`; an exported artifact among them is rebuilt through its
  format's `restore` (`formats/`);
- files of another runtime (`.onnx`, `.engine`) are opened by the runtime registered for
  their suffix (`runtimes/`);
- every artifact, whatever its encoding, is then re-checked against the reference outputs it
  stores, with the tolerance of its format's code. One without reference outputs is refused.

Nothing a file says about itself is trusted: metadata is type-checked (`metadata.py`), code
it names runs only when the user trusts the file, and reported figures are measured.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from .arch import build_model, build_skeleton, check_growth, is_code_arch
from .device import check_device
from .errors import SparsebenchError, first_line
from .formats import get_exporter
from .inputs import InputSpecs
from .load import (
    LoadedModel,
    LoadOptions,
    TorchFile,
    finish_loading,
    read_torch_file,
)
from .progress import step
from .runtimes import runtime_for_file
from .verify import REFERENCE_KEY, check_reference


def load(path: str | Path, options: LoadOptions | None = None, **kwargs) -> LoadedModel:
    """Load a file of any supported kind, verified if it is an artifact; `kwargs` are
    LoadOptions fields."""
    options = options or LoadOptions(**kwargs)
    path = Path(path)
    if not path.exists():
        raise SparsebenchError(f"no such file: {path}")
    if not path.is_file() and not (path / "config.json").is_file():
        raise SparsebenchError(
            f"{path} is not a file (nor a Hugging Face save_pretrained folder with config.json)"
        )
    check_device(options.device)
    runtime = runtime_for_file(path)
    with step(f"loading {path.name}"):
        if runtime is not None:  # a model for another runtime (ONNX Runtime, TensorRT)
            loaded = runtime.open_file(path, options)
        else:
            loaded = _load_torch(path, options)
        try:
            return verify_loaded(loaded)
        except BaseException:
            loaded.close()
            raise


def _load_torch(path: Path, options: LoadOptions) -> LoadedModel:
    found = read_torch_file(path, options)
    model, reference = found.model, None
    if found.artifact:
        reference = found.tensors.get(REFERENCE_KEY)
        if reference is None:  # before its format runs anything on the file's contents
            raise _no_reference(f"{found.meta.format} artifact {path}")
        model = _restore(found, options.device)
    fields = {"meta": found.meta, "folded": found.folded, "reference": reference}
    return finish_loading(model, path, options, found.kind, found.found_shape, **fields)


def verify_loaded(loaded: LoadedModel) -> LoadedModel:
    """Re-check an artifact against its stored reference outputs; refuse one without any."""
    if not loaded.is_artifact:
        return loaded
    what = f"{loaded.format} artifact {loaded.source}"
    if loaded.reference is None:
        raise _no_reference(what)
    tolerance = get_exporter(loaded.format).artifact_tolerance(loaded.model)
    device = loaded.options.device
    loaded.verification = check_reference(
        loaded.model, loaded.reference, _check_specs(loaded), tolerance, what, device
    )
    return loaded


def _check_specs(loaded: LoadedModel) -> InputSpecs:
    """The inputs an artifact's reference outputs were computed on: those it records (its
    batch and sequence length as exported), else its stored input shape."""
    meta = loaded.meta
    if meta.inputs is not None:
        return InputSpecs.from_json(meta.inputs, f"artifact {loaded.source}")
    if meta.input_shape:
        return InputSpecs((replace(loaded.specs.specs[0], shape=tuple(meta.input_shape)),))
    return loaded.specs


def _no_reference(what: str) -> SparsebenchError:
    return SparsebenchError(f"{what} has no reference outputs to verify against; refused")


def _restore(found: TorchFile, device: str) -> nn.Module:
    """Rebuild an artifact's runnable model through its format; crafted contents fail cleanly."""
    fmt = found.meta.format or "dense"
    exporter = get_exporter(fmt)
    if exporter.file_based:
        raise SparsebenchError(f"corrupt artifact: a checkpoint cannot hold the {fmt} format")
    model = _build_bounded(found, fmt)
    payload = found.meta.export.get("payload", {})
    payload = payload if isinstance(payload, dict) else {}
    try:
        return exporter.restore(model, payload, found.state, device)
    except SparsebenchError:
        raise
    except Exception as exc:  # crafted payloads fail in the format's code in many ways
        raise SparsebenchError(
            f"corrupt {fmt} artifact: its contents do not rebuild ({first_line(exc)})"
        ) from exc


def _build_bounded(found: TorchFile, fmt: str) -> nn.Module:
    """Build the architecture, refusing arguments that make it far larger than the weights
    the file really stores (`arch.check_growth`). Code the user named runs once, as written."""
    if not is_code_arch(found.arch):
        skeleton = build_skeleton(found.arch, found.arch_kwargs)
        check_growth(skeleton, found.state.values(), f"corrupt {fmt} artifact")
    return build_model(found.arch, found.arch_kwargs)
