"""Hugging Face transformers models: built from a `config.json`, offline, without remote code.

A `save_pretrained` folder is read by `load.py` (weights from `model.safetensors` or
`pytorch_model.bin`, validated like any checkpoint); this module turns its config into a model
and its default inputs. The model class comes from the config's `architectures` and must be
one of transformers' own `PreTrainedModel` classes: `auto_map` and remote code are never used.
Exported artifacts of such a model record the architecture as `hf` with the config as its
keyword arguments, so they rebuild the same way.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from ._optional import require
from .adapt import adapt
from .errors import SparsebenchError, first_line
from .inputs import InputSpec, InputSpecs

HF_ARCH = "hf"
DEFAULT_SEQ_LEN = 128
_CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{1,80}$")
# config fields that name code transformers would import (with trust_remote_code)
_CODE_FIELDS = ("auto_map", "custom_pipelines")


def _transformers():
    transformers = require("transformers", "hf", "loading Hugging Face models")
    transformers.logging.set_verbosity_error()  # config notices would sit beside our lines
    transformers.logging.disable_progress_bar()
    return transformers


def model_class(config: dict, source: str) -> type:
    """The transformers class the config's `architectures` names (one of transformers' own)."""
    transformers = _transformers()
    names = config.get("architectures") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SparsebenchError(f"{source}: 'architectures' must be a list of class names")
    if not names:
        model_type = config.get("model_type")
        raise SparsebenchError(
            f"{source}: the config names no 'architectures' (model_type {model_type!r}); "
            "save the model with save_pretrained so its task head is recorded"
        )
    name = names[0]
    cls = getattr(transformers, name, None) if _CLASS_NAME.match(name) else None
    if not isinstance(cls, type) or not issubclass(cls, transformers.PreTrainedModel):
        raise SparsebenchError(
            f"{source}: architecture {name!r} is not a transformers model class "
            f"(transformers {transformers.__version__}); custom code is never imported"
        )
    return cls


def build_config(cls: type, config: dict, source: str):
    """The config object of `cls` from the plain dict (no remote code, cache off, eager
    attention: every matmul is an op that MAC counting, ONNX export and pruning can see)."""
    fields = {k: v for k, v in config.items() if k not in _CODE_FIELDS}
    try:
        built = cls.config_class.from_dict(fields)
    except Exception as exc:  # transformers validates fields in many ways
        raise SparsebenchError(f"{source}: bad config ({first_line(exc)})") from exc
    built.use_cache = False
    built._attn_implementation = "eager"
    return built


def build(kwargs: dict[str, Any], source: str = "hf config") -> nn.Module:
    """The model of `kwargs = {"config": {...}}`, randomly initialised, adapted to take
    positional inputs (`input_names`) and return one tensor (`output_key`)."""
    config = kwargs.get("config")
    if not isinstance(config, dict):
        raise SparsebenchError(f"{source}: an hf architecture needs its config (a JSON object)")
    unknown = set(kwargs) - {"config", "input_names", "output_key"}
    if unknown:
        raise SparsebenchError(f"{source}: unknown hf arguments {sorted(unknown)}")
    cls = model_class(config, source)
    built = build_config(cls, config, source)
    try:
        model = cls(built)
    except Exception as exc:
        raise SparsebenchError(
            f"{source}: {cls.__name__} does not build ({first_line(exc)})"
        ) from exc
    names = kwargs.get("input_names") or [getattr(cls, "main_input_name", "input_ids")]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SparsebenchError(f"{source}: input_names must be a list of names")
    output_key = kwargs.get("output_key")
    if output_key is not None and not isinstance(output_key, str):
        raise SparsebenchError(f"{source}: output_key must be a name")
    return adapt(model.eval(), names, output_key)


def from_folder(folder, config: dict, weights, label: str) -> nn.Module:
    """The model of a `save_pretrained` folder, its weights read by transformers itself (it
    maps saved key names to the current ones and ties shared weights), offline, data only:
    safetensors, or a pickle read with `weights_only=True`. A weight the files lack is an
    error: random values would be measured as the user's model."""
    cls = model_class(config, label)
    built = build_config(cls, config, label)
    try:
        model, info = cls.from_pretrained(
            str(folder), config=built, local_files_only=True, output_loading_info=True,
            use_safetensors=str(weights).endswith(".safetensors"), weights_only=True,
        )  # fmt: skip
    except Exception as exc:  # transformers reports bad files in many ways
        raise SparsebenchError(f"cannot load {label}: {first_line(exc)}") from exc
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise SparsebenchError(
            f"{label}: the weights lack {', '.join(missing[:3])}{more} (they would be random)"
        )
    names = [getattr(cls, "main_input_name", "input_ids")]
    return adapt(model.eval(), names, None)


def default_inputs(model: nn.Module, config: dict, seq_len: int | None = None) -> InputSpecs:
    """What the model takes: token ids (and an all-ones attention mask) in the vocabulary for a
    text model, `pixel_values` of the config's image size for a vision model."""
    main = getattr(type(model), "main_input_name", "input_ids")
    if main == "pixel_values":
        size = config.get("image_size", 224)
        size = size if isinstance(size, int) else 224
        channels = config.get("num_channels", 3)
        return InputSpecs((InputSpec("pixel_values", (1, int(channels), size, size)),))
    if main != "input_ids":
        raise SparsebenchError(
            f"cannot tell the inputs of a {type(model).__name__} (it takes {main}); pass --input"
        )
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or vocab < 1:
        raise SparsebenchError(
            "the config has no vocab_size; pass --input input_ids:1x128:int64:0-N"
        )
    longest = _max_positions(config)
    seq = seq_len or min(DEFAULT_SEQ_LEN, longest or DEFAULT_SEQ_LEN)
    ids = InputSpec("input_ids", (1, seq), "int64", 0, vocab - 1)
    mask = InputSpec("attention_mask", (1, seq), "int64", 1, 1)
    return InputSpecs((ids, mask))


def _max_positions(config: dict) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_inputs_fit(specs: InputSpecs, config: dict, source: str) -> None:
    """Refuse token ids beyond the vocabulary or sequences beyond the position table (they
    would fail deep in the model as an IndexError)."""
    vocab, longest = config.get("vocab_size"), _max_positions(config)
    for spec in specs.specs:
        if spec.name == "input_ids" and isinstance(vocab, int) and spec.high is not None:
            if spec.low < 0 or spec.high > vocab - 1:
                raise SparsebenchError(
                    f"{source}: input_ids range {spec.range_text} is outside the vocabulary "
                    f"(ids 0-{vocab - 1})"
                )
        if spec.name in ("input_ids", "attention_mask") and longest and len(spec.shape) == 2:
            if spec.shape[1] > longest:
                raise SparsebenchError(
                    f"{source}: sequence length {spec.shape[1]} is longer than the model's "
                    f"{longest} positions"
                )


def tied_keys(model: nn.Module) -> set[str]:
    """State-dict keys transformers ties to another weight (absent from saved files)."""
    tied = getattr(model, "_tied_weights_keys", None) or getattr(
        type(model), "_tied_weights_keys", None
    )
    if isinstance(tied, dict):
        return set(tied)
    return set(tied or [])
