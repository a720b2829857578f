"""Images in class folders (DIR/class_name/*.png), optionally under DIR/train and DIR/test|val."""

from pathlib import Path

import numpy as np

from ..errors import SparsebenchError
from ._checks import build_dataset, require_path
from .base import Dataset, register_dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def split_root(directory: Path, split: str) -> Path:
    """DIR/train or DIR/test (else DIR/val) when DIR has a train folder, else DIR for both."""
    if not (directory / "train").is_dir():
        return directory
    names = ["train"] if split == "train" else ["test", "val"]
    for name in names:
        if (directory / name).is_dir():
            return directory / name
    raise SparsebenchError(f"{directory} has a train folder but no {' or '.join(names)} folder")


def list_images(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Sorted class folder names and (image file, class index) pairs, in a stable order."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [
        (path, index)
        for index, name in enumerate(classes)
        for path in sorted((root / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    ]
    if not files:
        kinds = ", ".join(IMAGE_SUFFIXES)
        raise SparsebenchError(f"no images ({kinds}) in class folders under {root}")
    return classes, files


def read_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 (H, W, 3)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:  # checked before decoding a pixel
                raise SparsebenchError(
                    f"image {path} is {image.width}x{image.height}, over {MAX_PIXELS:,} pixels"
                )
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise SparsebenchError(f"cannot read image {path}: {exc}") from None


MAX_PIXELS = 2**25  # 32 MP: larger than any photo a classifier reads, far below a bomb
MAX_TOTAL_PIXELS = 2**27  # 134 MP in all: ~1.6 GB once converted to float32 RGB


@register_dataset("imagefolder")
def load_imagefolder(path: Path | None, split: str) -> Dataset:
    """RGB images in [0, 1] as (N, 3, H, W); all images must share one size."""
    directory = require_path("imagefolder", path, "directory", "/path/to/images")
    if not directory.is_dir():
        raise SparsebenchError(f"imagefolder needs a directory of class folders, not {directory}")
    classes, files = list_images(split_root(directory, split))
    images, pixels = [], 0
    for file, _ in files:
        image = read_rgb(file)
        pixels += image.shape[0] * image.shape[1]
        if pixels > MAX_TOTAL_PIXELS:  # the float copy takes 12 bytes a pixel
            raise SparsebenchError(
                f"{directory}: the images hold over {MAX_TOTAL_PIXELS:,} pixels in all; "
                "sparsebench reads an image folder into memory (use fewer or smaller images)"
            )
        if images and image.shape != images[0].shape:
            (h0, w0), (h, w) = images[0].shape[:2], image.shape[:2]
            raise SparsebenchError(
                f"{file} is {w}x{h} but {files[0][0]} is {w0}x{h0}; "
                "imagefolder needs all images the same size (resize them first)"
            )
        images.append(image)
    x = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return build_dataset("imagefolder", x, [label for _, label in files], classes, str(directory))
