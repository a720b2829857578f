"""A model's inputs as named, typed tensors: the spec every measurement, exporter and dataset uses.

An `InputSpec` is one input: its name, its shape with the batch first, its dtype and the range
synthetic values are drawn from (`--input input_ids:1x128:int64:0-30521`, bounds inclusive).
`InputSpecs` is a model's inputs in call order; `Batch` is one set of tensors for one call, and
`call(model, batch)` runs the model on it positionally (keyword models are adapted to take
positional tensors at load, `adapt.py`). A float model keeps the one-shape behaviour of
`--input-shape`: a single float32 input named `input`, standard-normal synthetic values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import torch

from .errors import SparsebenchError

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
MAX_DIMS = 8
MAX_SAMPLE_ELEMENTS = 2**24  # per sample, per input (as `metadata.check_shape`)
MAX_BATCH_ELEMENTS = 2**26  # per input, the whole batch
MAX_INPUTS = 16
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
_NUMBER = r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^({_NUMBER})-({_NUMBER})$")


def dtype_name(dtype: torch.dtype) -> str:
    """'int64' for torch.int64 (one of DTYPES), else a one-line error."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise SparsebenchError(f"inputs of dtype {dtype} are not supported (use {', '.join(DTYPES)})")


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, shape (batch first), dtype name and inclusive value range."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    low: float | None = None
    high: float | None = None

    def __post_init__(self):
        where = f"input '{self.name}'"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SparsebenchError(f"input name {self.name!r} must be a plain identifier")
        shape = tuple(self.shape)
        if not shape or len(shape) > MAX_DIMS:
            raise SparsebenchError(f"{where}: a shape needs 1 to {MAX_DIMS} dimensions")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
            raise SparsebenchError(f"{where}: every dimension must be a whole number >= 1")
        if math.prod(shape[1:]) > MAX_SAMPLE_ELEMENTS:
            raise SparsebenchError(
                f"{where}: {math.prod(shape[1:]):,} elements per sample (at most "
                f"{MAX_SAMPLE_ELEMENTS:,})"
            )
        if math.prod(shape) > MAX_BATCH_ELEMENTS:
            raise SparsebenchError(
                f"{where}: {math.prod(shape):,} elements in a batch "
                f"(at most {MAX_BATCH_ELEMENTS:,})"
            )
        object.__setattr__(self, "shape", shape)
        if self.dtype not in DTYPES:
            raise SparsebenchError(
                f"{where}: unknown dtype '{self.dtype}' (use {', '.join(DTYPES)})"
            )
        for bound in (self.low, self.high):
            if bound is not None and (isinstance(bound, bool) or not math.isfinite(bound)):
                raise SparsebenchError(f"{where}: value range bounds must be finite numbers")
        if (self.low is None) != (self.high is None):
            raise SparsebenchError(f"{where}: give both ends of the value range, e.g. 0-999")
        if self.low is not None and self.low > self.high:
            raise SparsebenchError(f"{where}: value range {self.low:g}-{self.high:g} is empty")
        if not self.is_float and self.low is not None:
            if self.low != int(self.low) or self.high != int(self.high):
                raise SparsebenchError(f"{where}: an integer input takes a whole-number range")
            info = torch.iinfo(self.torch_dtype) if self.dtype != "bool" else None
            if info is not None and (self.low < info.min or self.high > info.max):
                raise SparsebenchError(
                    f"{where}: range {self.range_text} does not fit {self.dtype}"
                )

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def is_float(self) -> bool:
        return self.torch_dtype.is_floating_point

    @property
    def range_text(self) -> str:
        return "" if self.low is None else f"{self.low:g}-{self.high:g}"

    def text(self) -> str:
        """The `--input` form of this spec."""
        parts = [self.name, "x".join(str(d) for d in self.shape), self.dtype]
        return ":".join(parts + ([self.range_text] if self.low is not None else []))

    def synthetic(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """`batch` samples: standard normal (or uniform in the range) for floats, uniform
        whole numbers in the inclusive range for integers (0-1 without one)."""
        shape = (batch, *self.shape[1:])
        if self.is_float:
            if self.low is None:
                values = torch.randn(shape, generator=generator, dtype=torch.float32)
            else:
                values = torch.rand(shape, generator=generator, dtype=torch.float32)
                values = values * (self.high - self.low) + self.low
            return values.to(self.torch_dtype)
        low, high = (0, 1) if self.low is None else (int(self.low), int(self.high))
        values = torch.randint(low, high + 1, shape, generator=generator, dtype=torch.int64)
        return values.to(self.torch_dtype)

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "low": self.low, "high": self.high}  # fmt: skip


@dataclass(frozen=True)
class Batch:
    """The tensors of one call, in the model's input order (all with the same batch size)."""

    tensors: tuple[torch.Tensor, ...]

    def __post_init__(self):
        object.__setattr__(self, "tensors", tuple(self.tensors))

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0])

    def __getitem__(self, index: slice) -> Batch:
        if not isinstance(index, slice):
            raise TypeError("a Batch is sliced along the batch dimension only")
        return Batch(tuple(t[index] for t in self.tensors))

    def to(self, device) -> Batch:
        return Batch(tuple(t.to(device) for t in self.tensors))

    @property
    def shape(self) -> torch.Size:
        """The first input's shape (the `input_shape` of a one-input model)."""
        return self.tensors[0].shape

    @property
    def first(self) -> torch.Tensor:
        return self.tensors[0]


@dataclass(frozen=True)
class InputSpecs:
    """A model's inputs in call order."""

    specs: tuple[InputSpec, ...]

    def __post_init__(self):
        specs = tuple(self.specs)
        if not specs or len(specs) > MAX_INPUTS:
            raise SparsebenchError(f"a model takes 1 to {MAX_INPUTS} inputs, not {len(specs)}")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise SparsebenchError(f"input names repeat: {', '.join(names)}")
        if len({s.shape[0] for s in specs}) != 1:
            raise SparsebenchError(
                "every input needs the same batch size: " + ", ".join(s.text() for s in specs)
            )
        object.__setattr__(self, "specs", specs)

    @classmethod
    def single(cls, shape: Sequence[int], name: str = "input") -> InputSpecs:
        """One float32 input (the `--input-shape` case)."""
        return cls((InputSpec(name, tuple(int(d) for d in shape)),))

    @property
    def shape(self) -> tuple[int, ...]:
        """The first input's shape."""
        return self.specs[0].shape

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def batch_size(self) -> int:
        return self.specs[0].shape[0]

    @property
    def is_plain(self) -> bool:
        """One float input without a value range: what `--input-shape` describes."""
        only = self.specs[0]
        return len(self.specs) == 1 and only.is_float and only.low is None

    def text(self) -> str:
        return " ".join(s.text() for s in self.specs)

    def with_batch(self, batch: int) -> InputSpecs:
        return InputSpecs(tuple(replace(s, shape=(batch, *s.shape[1:])) for s in self.specs))

    def with_seq_len(self, seq_len: int) -> InputSpecs:
        """Set the sequence length: dimension 1 of every integer (token) input of rank 2."""
        tokens = [s for s in self.specs if not s.is_float and len(s.shape) == 2]
        if not tokens:
            raise SparsebenchError(
                f"--seq-len applies to token inputs (integer, batch x sequence); this model "
                f"takes {self.text()} (use --input to set shapes)"
            )
        return InputSpecs(
            tuple(replace(s, shape=(s.shape[0], seq_len)) if s in tokens else s for s in self.specs)
        )

    def synthetic(self, seed: int = 0, batch: int | None = None) -> Batch:
        """A seeded batch (the same for a given seed, whatever the device)."""
        generator = torch.Generator().manual_seed(seed)
        count = self.batch_size if batch is None else batch
        return Batch(tuple(s.synthetic(count, generator) for s in self.specs))

    def to_json(self) -> list[dict]:
        return [s.to_json() for s in self.specs]

    @classmethod
    def from_json(cls, value, source: str) -> InputSpecs:
        """Specs kept in a file's metadata; anything malformed is a one-line error."""
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise SparsebenchError(f"{source}: corrupt input specs (not a list of objects)")
        try:
            return cls(tuple(_spec_from_json(v) for v in value))
        except SparsebenchError as exc:
            raise SparsebenchError(f"{source}: corrupt input specs: {exc}") from None

    def matches(self, other: InputSpecs) -> bool:
        """Same names, dtypes and per-sample shapes (the batch may differ)."""
        return len(self.specs) == len(other.specs) and all(
            a.name == b.name and a.dtype == b.dtype and a.shape[1:] == b.shape[1:]
            for a, b in zip(self.specs, other.specs, strict=True)
        )


def _spec_from_json(value: dict) -> InputSpec:
    known = {"name", "shape", "dtype", "low", "high"}
    if set(value) - known or not {"name", "shape"} <= set(value):
        raise SparsebenchError(f"fields {sorted(value)} (expected {sorted(known)})")
    shape, low, high = value["shape"], value.get("low"), value.get("high")
    if not isinstance(shape, list) or not all(type(d) is int for d in shape):
        raise SparsebenchError("a shape is a list of whole numbers")
    for bound in (low, high):
        if bound is not None and type(bound) not in (int, float):
            raise SparsebenchError("range bounds are numbers")
    if not isinstance(value.get("dtype", "float32"), str):
        raise SparsebenchError("a dtype is a name")
    return InputSpec(value["name"], tuple(shape), value.get("dtype", "float32"), low, high)


def parse_input(text: str) -> InputSpec:
    """`name:shape:dtype[:low-high]`, e.g. `input_ids:1x128:int64:0-30521`."""
    parts = text.split(":")
    usage = "use name:shape:dtype[:low-high], e.g. input_ids:1x128:int64:0-30521"
    if len(parts) not in (3, 4):
        raise SparsebenchError(f"--input '{text}': {usage}")
    name, shape_text, dtype = parts[0], parts[1], parts[2]
    try:
        shape = tuple(int(d) for d in re.split(r"[x,]", shape_text) if d.strip())
    except ValueError:
        raise SparsebenchError(
            f"--input '{text}': shape '{shape_text}' must be like 1x128"
        ) from None
    low = high = None
    if len(parts) == 4:
        match = _RANGE.match(parts[3].strip())
        if not match:
            raise SparsebenchError(f"--input '{text}': range '{parts[3]}' must be like 0-999")
        low, high = float(match.group(1)), float(match.group(2))
        if (
            low == int(low)
            and high == int(high)
            and not DTYPES.get(dtype, torch.float32).is_floating_point
        ):
            low, high = int(low), int(high)
    try:
        return InputSpec(name, shape, dtype, low, high)
    except SparsebenchError as exc:
        raise SparsebenchError(f"--input '{text}': {exc}") from None


def parse_inputs(texts: Iterable[str] | None) -> tuple[InputSpec, ...] | None:
    """Every `--input` given (None when there are none)."""
    texts = list(texts or [])
    if not texts:
        return None
    specs = tuple(parse_input(t) for t in texts)
    InputSpecs(specs)  # names unique, one batch size
    return specs


def as_batch(inputs: Batch | torch.Tensor) -> Batch:
    """A Batch of one tensor for a plain tensor (one-input models), else `inputs`."""
    return inputs if isinstance(inputs, Batch) else Batch((inputs,))


def call(model, inputs: Batch | torch.Tensor):
    """Run `model` on one batch, positionally in input order."""
    return model(*as_batch(inputs).tensors)
