"""CIFAR-10 and CIFAR-100 from a local copy of the official python-pickle release.

The pickles are read with an unpickler that only rebuilds plain containers and NumPy arrays,
so a file that tries to run code is refused instead of executed.
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SparsebenchError
from ._checks import build_dataset, require_path
from .base import Dataset, register_dataset

try:  # NumPy 2 moved the pickling helpers to numpy._core
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer


def _encode_text(text: str, encoding: str = "utf-8") -> bytes:
    """Python 3 protocol-2 pickles store bytes as `_codecs.encode(text, "latin1")`."""
    if encoding.lower().replace("-", "").replace("_", "") not in {"latin1", "utf8", "ascii"}:
        raise pickle.UnpicklingError(f"refusing to decode bytes with codec {encoding!r}")
    return text.encode(encoding)


_ALLOWED = {
    ("_codecs", "encode"): _encode_text,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}

# Per-channel mean and std of each training set, as used to train common CIFAR checkpoints.
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass(frozen=True)
class CifarLayout:
    """The files of one official CIFAR release and the pickle keys that matter."""

    subdir: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: bytes
    names_key: bytes

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train, self.test, self.meta)


LAYOUTS = {
    "cifar10": CifarLayout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        b"labels",
        b"label_names",
    ),
    "cifar100": CifarLayout(
        "cifar-100-python", ("train",), "test", "meta", b"fine_labels", b"fine_label_names"
    ),
}


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def load_pickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with bytes keys; anything but data is a SparsebenchError."""
    try:
        with open(path, "rb") as handle:
            obj = _DataOnlyUnpickler(handle, encoding="bytes").load()
    except Exception as exc:  # a damaged or hostile file can fail in many ways
        raise SparsebenchError(f"{path} is not a readable CIFAR data file: {exc}") from None
    if not isinstance(obj, dict):
        raise SparsebenchError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict")
    # The official files have bytes keys; a copy re-pickled from Python 3 may have str keys.
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def find_cifar_root(directory: Path, name: str) -> Path | None:
    """The directory holding `name`'s files: `directory` itself or its standard subdirectory."""
    layout = LAYOUTS[name]
    for root in (directory, directory / layout.subdir):
        if all((root / f).is_file() for f in layout.files):
            return root
    return None


def detect_cifar(directory: Path) -> str | None:
    """'cifar10' or 'cifar100' when `directory` holds that release, else None."""
    return next((name for name in LAYOUTS if find_cifar_root(directory, name)), None)


def _field(batch: dict, key: bytes, path: Path):
    if key not in batch:
        raise SparsebenchError(f"{path} has no {key.decode()!r} entry; is it a CIFAR file?")
    return batch[key]


def _read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = load_pickle(path)
    data = np.asarray(_field(batch, b"data", path))
    if data.nbytes > path.stat().st_size:  # the release stores its pixels literally
        raise SparsebenchError(f"{path}: its data array is larger than the file itself")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise SparsebenchError(f"{path}: data must be uint8 of shape (N, 3072)")
    labels = _field(batch, label_key, path)
    flat = isinstance(labels, list) and len(labels) == len(data)
    if not flat or not all(type(label) is int for label in labels):
        raise SparsebenchError(f"{path}: {label_key.decode()} are not one integer per image")
    return data, np.asarray(labels, dtype=np.int64)


def load_cifar(name: str, path: Path | None, split: str) -> Dataset:
    """Images as normalised float (N, 3, 32, 32) with the release's class names."""
    layout = LAYOUTS[name]
    directory = require_path(name, path, "directory", f"/path/to/{layout.subdir}")
    root = find_cifar_root(directory, name)
    if root is None:
        wanted = ", ".join(layout.files)
        raise SparsebenchError(f"{directory} is not a {name} directory (expected {wanted})")
    files = layout.train if split == "train" else (layout.test,)
    batches = [_read_batch(root / f, layout.label_key) for f in files]
    names = _field(load_pickle(root / layout.meta), layout.names_key, root / layout.meta)
    plain = isinstance(names, list | tuple) and len(names) <= 10_000
    if not plain or not all(isinstance(c, bytes | str) and len(c) <= 1000 for c in names):
        raise SparsebenchError(
            f"{root / layout.meta}: {layout.names_key.decode()} is not a list of class names"
        )
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in names]
    mean, std = (np.array(v, dtype=np.float32).reshape(1, 3, 1, 1) for v in NORMALIZATION[name])
    images = np.concatenate([data for data, _ in batches]).reshape(-1, 3, 32, 32)
    x = (images.astype(np.float32) / 255.0 - mean) / std
    return build_dataset(name, x, np.concatenate([y for _, y in batches]), classes, str(root))


@register_dataset("cifar10")
def load_cifar10(path: Path | None, split: str) -> Dataset:
    """CIFAR-10 from DIR (or DIR/cifar-10-batches-py): data_batch_1..5, test_batch."""
    return load_cifar("cifar10", path, split)


@register_dataset("cifar100")
def load_cifar100(path: Path | None, split: str) -> Dataset:
    """CIFAR-100 fine labels from DIR (or DIR/cifar-100-python): train, test, meta."""
    return load_cifar("cifar100", path, split)
