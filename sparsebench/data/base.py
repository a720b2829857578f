"""The dataset type and registry every loader in this package registers with."""

import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import SparsebenchError
from ..registry import Registry

# Reads the samples at these indices as one float tensor (len(indices), *sample_shape).
SampleReader = Callable[[list[int]], torch.Tensor]


class LazySamples:
    """Samples read on demand: indexing decodes only the samples asked for.

    It stands in for a samples tensor where holding every sample in memory is not an option
    (an image folder): `len(x)`, `x.shape`, `x.dtype`, `x[i]`, `x[a:b]`, `x[[i, j]]`, `x[index
    tensor]` and `x[a:b, ...]` behave as on a tensor, each returning a real tensor; nothing
    read is kept.
    """

    def __init__(self, count: int, sample_shape: Sequence[int], read: SampleReader):
        self._count = int(count)
        self._sample_shape = tuple(int(d) for d in sample_shape)
        self._read = read

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self._count, *self._sample_shape))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def ndim(self) -> int:
        return 1 + len(self._sample_shape)

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"LazySamples(shape={list(self.shape)})"

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, tuple):
            if not index:
                return self[:]
            head, rest = self[index[0]], index[1:]
            return head[rest] if _scalar(index[0]) is not None else head[(slice(None), *rest)]
        if isinstance(index, slice):
            return self.read(list(range(self._count)[index]))
        position = _scalar(index)
        if position is not None:
            return self.read([self._position(position)])[0]
        positions = self._positions(index)
        flat = self.read([self._position(i) for i in positions.reshape(-1).tolist()])
        return flat.reshape(*positions.shape, *self._sample_shape)

    def read(self, indices: list[int]) -> torch.Tensor:
        """The samples at `indices` (non-negative, in range) as (len(indices), *sample_shape)."""
        if not indices:
            return torch.empty((0, *self._sample_shape), dtype=self.dtype)
        return self._read(indices)

    def reshape(self, *shape) -> "LazySamples":
        """The same samples, each reshaped: `shape` is (len(self), *new_sample_shape)."""
        shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        new = tuple(self.shape[1:].numel() if d == -1 else d for d in shape[1:])
        if shape[0] not in (-1, self._count) or torch.Size(new).numel() != self.shape[1:].numel():
            raise SparsebenchError(f"cannot reshape samples {list(self.shape)} to {list(shape)}")
        return LazySamples(
            self._count, new, lambda indices: self.read(indices).reshape(len(indices), *new)
        )

    def _position(self, index: int) -> int:
        position = index + self._count if index < 0 else index
        if not 0 <= position < self._count:
            raise IndexError(f"sample {index} is out of range for {self._count} samples")
        return position

    def _positions(self, index) -> torch.Tensor:
        """An index list, integer tensor or boolean mask as an integer tensor of positions."""
        try:
            positions = torch.as_tensor(index)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"LazySamples cannot be indexed with {index!r}") from None
        if positions.dtype == torch.bool:
            if positions.shape != (self._count,):
                raise IndexError(
                    f"a mask of shape {list(positions.shape)} for {self._count} samples"
                )
            return positions.nonzero().reshape(-1)
        if positions.is_floating_point() or positions.is_complex():
            raise TypeError(f"LazySamples indices must be integers, not {positions.dtype}")
        return positions


def _scalar(index) -> int | None:
    """`index` as an int when it selects a single sample (an int or 0-d integer tensor)."""
    if isinstance(index, bool):
        return None
    if isinstance(index, torch.Tensor):
        if index.dim() != 0 or index.is_floating_point() or index.dtype == torch.bool:
            return None
        return int(index)
    try:
        return operator.index(index)
    except TypeError:
        return None


@dataclass
class Dataset:
    """Samples `x` (float, first dim N), integer labels `y` (N,), and class names.

    `x` is a tensor, or `LazySamples` for loaders that read samples on demand; walk the whole
    set with `batches`. `notes` records what a loader decided for the user (a report shows it).
    """

    name: str
    x: torch.Tensor | LazySamples
    y: torch.Tensor
    classes: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(samples, labels) tensors of up to `batch_size` samples each, in order."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise SparsebenchError(f"batch size must be a positive integer, not {batch_size!r}")
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield self.x[start:stop], self.y[start:stop]


# A loader takes (path or None, split) and returns a Dataset; split is "train" or "test".
# A loader with `takes_image_options = True` also accepts an `image=` keyword (imagefolder).
Loader = Callable[[Path | None, str], Dataset]

DATASETS: Registry[Loader] = Registry("dataset", list_command="sparsebench datasets")

SPLITS = ("train", "test")


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Register a loader `(path | None, split) -> Dataset` under `name`."""
    return DATASETS.decorator(name, lambda fn: fn)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching a shell-style wildcard."""
    return DATASETS.names(pattern)
