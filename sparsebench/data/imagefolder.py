"""Images in class folders (DIR/class_name/*.png), optionally under DIR/train and DIR/test|val.

Images are read lazily, a batch at a time: opening the folder reads only file headers (sizes
and modes), so a bad folder fails before any measurement and memory stays bounded by a batch.
Each image goes through, in this order:

1. resize (`ImageOptions.resize`): the shorter side to N pixels, aspect kept (the longer side
   truncated to an integer, like torchvision `Resize(N)`), Pillow bilinear filtering;
2. center crop (`ImageOptions.center_crop`): an N x N square from the middle (offsets rounded
   like torchvision `CenterCrop(N)`);
3. scale to [0, 1]: divided by 255 (8-bit images) or 65535 (16-bit gray images);
4. gray images in a folder that also holds colour images are repeated to 3 channels;
5. normalise (`ImageOptions.mean` / `std`): (x - mean) / std per channel.

A folder of only gray images ("1", "L", "LA", "I;16") gives 1 channel, anything else 3 (RGB;
alpha is dropped).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import SparsebenchError
from ._checks import require_path
from .base import Dataset, LazySamples, register_dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

MAX_PIXELS = 2**25  # 32 MP: larger than any photo a classifier reads, far below a bomb
MAX_BATCH_PIXELS = 2**27  # 134 MP read at once: ~1.6 GB as float32 RGB (a batch, not the set)

# name -> (mean, std) per RGB channel
NORMALIZE_PRESETS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "none": (None, None),
}

GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"}
WIDE_GRAY_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}  # 16-bit PNGs: scaled by 65535
REFUSED_MODES = {"F"}  # float pixels have no known range


# --- options -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageOptions:
    """How images are transformed: resize -> center crop -> /255 -> (x - mean) / std.

    `resize` sets the shorter side in pixels (aspect kept), `center_crop` the side of a square
    crop, `mean` / `std` one value for every channel or one per RGB channel. Leaving all of
    them None reads images unchanged (scaled to [0, 1]).
    """

    resize: int | None = None
    center_crop: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        for name in ("mean", "std"):  # lists from Python callers become the tuples compared
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, _values(f"--{name}", getattr(self, name)))
        for flag, value in (("--resize", self.resize), ("--center-crop", self.center_crop)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise SparsebenchError(f"{flag} must be a whole number of pixels, not {value!r}")
            if value is not None and value < 1:
                raise SparsebenchError(f"{flag} must be a positive number of pixels, not {value}")
        if self.resize and self.center_crop and self.center_crop > self.resize:
            raise SparsebenchError(
                f"--center-crop {self.center_crop} is larger than --resize {self.resize} "
                "(the shorter side after resizing); use a crop of at most the resize"
            )
        _check_mean_std(self.mean, self.std)

    @property
    def is_identity(self) -> bool:
        """True when no option is set: images are only scaled to [0, 1]."""
        return self == ImageOptions()

    @classmethod
    def parse(
        cls,
        resize: int | str | None = None,
        center_crop: int | str | None = None,
        mean: str | tuple[float, ...] | list[float] | None = None,
        std: str | tuple[float, ...] | list[float] | None = None,
        normalize: str | None = None,
    ) -> "ImageOptions":
        """Options from CLI-style values: sizes as ints or text, mean/std as "0.5,0.5,0.5",
        `normalize` a preset name (imagenet, cifar10, none) instead of mean/std."""
        mean_values, std_values = _values("--mean", mean), _values("--std", std)
        if normalize is not None:
            if mean_values is not None or std_values is not None:
                raise SparsebenchError("give either --normalize or --mean/--std, not both")
            mean_values, std_values = _preset(normalize)
        return cls(
            resize=_pixels("--resize", resize),
            center_crop=_pixels("--center-crop", center_crop),
            mean=mean_values,
            std=std_values,
        )

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of a width x height image after resize and center crop."""
        if self.resize:
            width, height = resized_size(width, height, self.resize)
        if self.center_crop:
            return self.center_crop, self.center_crop
        return width, height


def _pixels(flag: str, value: int | str | None) -> int | None:
    """A size option as an int (validated by ImageOptions)."""
    if value is None or isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise SparsebenchError(f"{flag} must be a whole number of pixels, not '{value}'") from None


def _values(flag: str, value) -> tuple[float, ...] | None:
    """Comma-separated numbers (or a sequence of numbers) as a tuple of floats."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = tuple(float(item) for item in items)
    except (TypeError, ValueError):
        raise SparsebenchError(
            f"{flag} must be 1 or 3 comma-separated numbers like 0.485,0.456,0.406, not '{value}'"
        ) from None
    if not all(np.isfinite(numbers)):
        raise SparsebenchError(f"{flag} must be finite numbers, not '{value}'")
    return numbers


def _preset(name: str) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The (mean, std) of a --normalize preset."""
    key = str(name).strip().lower()
    if key not in NORMALIZE_PRESETS:
        known = ", ".join(NORMALIZE_PRESETS)
        raise SparsebenchError(f"unknown --normalize preset '{name}': use one of {known}")
    return NORMALIZE_PRESETS[key]


def _check_mean_std(mean, std) -> None:
    """Mean and std come together, with 1 or 3 values each, and std has no zero."""
    if (mean is None) != (std is None):
        given, missing = ("--mean", "--std") if std is None else ("--std", "--mean")
        raise SparsebenchError(f"{given} needs {missing} too (or use --normalize PRESET)")
    if mean is None:
        return
    for flag, values in (("--mean", mean), ("--std", std)):
        if not isinstance(values, tuple):
            raise SparsebenchError(f"{flag} must be a tuple of numbers, not {values!r}")
        if len(values) not in (1, 3):
            raise SparsebenchError(
                f"{flag} needs 1 or 3 values (one per channel), got {len(values)}"
            )
    if len(mean) != len(std):
        raise SparsebenchError(f"--mean has {len(mean)} values but --std has {len(std)}")
    if any(s <= 0 for s in std):
        raise SparsebenchError(f"--std values must be positive, got {','.join(map(str, std))}")


def resized_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """(width, height) with the shorter side `shorter`, the longer truncated (torchvision)."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def crop_box(width: int, height: int, side: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) of a centred side x side square (torchvision rounding)."""
    left, top = int(round((width - side) / 2.0)), int(round((height - side) / 2.0))
    return left, top, left + side, top + side


# --- the folder ----------------------------------------------------------------------------------


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


def _open(path: Path):
    """The image file opened by Pillow (header only), its size checked against MAX_PIXELS."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise SparsebenchError(f"cannot read image {path}: {exc}") from None
    if image.width * image.height > MAX_PIXELS:  # checked before decoding a pixel
        image.close()
        raise SparsebenchError(
            f"image {path} is {image.width}x{image.height}, over {MAX_PIXELS:,} pixels"
        )
    if image.mode in REFUSED_MODES:
        image.close()
        raise SparsebenchError(f"image {path} has {image.mode} pixels; use 8- or 16-bit images")
    return image


def read_header(path: Path) -> tuple[tuple[int, int], str]:
    """((width, height), Pillow mode) of an image file, without decoding its pixels."""
    with _open(path) as image:
        return image.size, image.mode


def decode_image(path: Path, options: ImageOptions, channels: int) -> np.ndarray:
    """An image file as float32 (channels, H, W): resized, cropped and scaled to [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _open(path) as image:
            gray = image.mode in GRAY_MODES
            scale = 65535.0 if image.mode in WIDE_GRAY_MODES else 255.0
            image = image.convert(("F" if scale > 255 else "L") if gray else "RGB")
            if options.resize:
                size = resized_size(image.width, image.height, options.resize)
                if size != image.size:
                    image = image.resize(size, Image.Resampling.BILINEAR)
            if options.center_crop:
                image = image.crop(crop_box(image.width, image.height, options.center_crop))
            pixels = np.asarray(image, dtype=np.float32) / scale
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise SparsebenchError(f"cannot read image {path}: {exc}") from None
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return np.repeat(pixels, channels, axis=0) if len(pixels) < channels else pixels


@dataclass(frozen=True)
class FolderImages:
    """The image files of one split and how to turn each into a (C, H, W) sample."""

    files: tuple[Path, ...]
    options: ImageOptions
    channels: int
    size: tuple[int, int]  # (width, height) of every image after resize and crop

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return self.channels, self.size[1], self.size[0]

    def read(self, indices: list[int]) -> torch.Tensor:
        """The images at `indices` as one normalised float32 (N, C, H, W) tensor."""
        width, height = self.size
        if len(indices) * width * height > MAX_BATCH_PIXELS:
            raise SparsebenchError(
                f"reading {len(indices)} images of {width}x{height} at once is over "
                f"{MAX_BATCH_PIXELS:,} pixels; use a smaller batch (or --resize/--center-crop)"
            )
        batch = np.empty((len(indices), *self.sample_shape), dtype=np.float32)
        for row, index in enumerate(indices):
            pixels = decode_image(self.files[index], self.options, self.channels)
            if pixels.shape != batch.shape[1:]:  # the file changed since the folder was opened
                raise SparsebenchError(
                    f"image {self.files[index]} now reads as {pixels.shape[2]}x{pixels.shape[1]}"
                    f", not {width}x{height} as when the folder was opened"
                )
            batch[row] = pixels
        return self.normalize(torch.from_numpy(batch))

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std per channel, when the options set them."""
        if self.options.mean is None:
            return batch
        mean = torch.tensor(self.options.mean, dtype=batch.dtype).reshape(1, -1, 1, 1)
        std = torch.tensor(self.options.std, dtype=batch.dtype).reshape(1, -1, 1, 1)
        return (batch - mean) / std


def common_size(files: list[Path], sizes: list[tuple[int, int]], options: ImageOptions):
    """The one (width, height) every image has after the options, or a one-line error."""
    out = [options.output_size(*size) for size in sizes]
    for path, size, result in zip(files, sizes, out, strict=True):
        width, height = resized_size(*size, options.resize) if options.resize else size
        if options.center_crop and options.center_crop > min(width, height):
            after = f", {width}x{height} after --resize {options.resize}" if options.resize else ""
            raise SparsebenchError(
                f"--center-crop {options.center_crop} is larger than {path} ({size[0]}x{size[1]}"
                f"{after}); pass --resize {options.center_crop} or more, or a smaller crop"
            )
        if result != out[0]:
            after = ""
            if options.resize:
                after = f" ({result[0]}x{result[1]} and {out[0][0]}x{out[0][1]} after resizing)"
            raise SparsebenchError(
                f"{path} is {size[0]}x{size[1]} but {files[0]} is {sizes[0][0]}x{sizes[0][1]}"
                f"{after}; imagefolder needs one image size: pass --resize N --center-crop N"
            )
    return out[0]


def folder_channels(files: list[Path], modes: list[str], notes: list[str]) -> int:
    """1 when every image is gray, else 3; a note says when gray images were made RGB."""
    gray = [path for path, mode in zip(files, modes, strict=True) if mode in GRAY_MODES]
    if len(gray) == len(files):
        return 1
    if gray:
        notes.append(
            f"imagefolder: {len(gray)} of {len(files)} images are gray (e.g. {gray[0]}) among "
            "colour images; they were converted to 3 channels (RGB)"
        )
    return 3


def check_channels(options: ImageOptions, channels: int, root: Path) -> None:
    """3-value mean/std need 3-channel images."""
    if options.mean is not None and len(options.mean) > channels:
        raise SparsebenchError(
            f"--mean/--std have {len(options.mean)} values but the images under {root} are "
            f"gray ({channels} channel); give one value each"
        )


def open_folder(root: Path, options: ImageOptions):
    """(class names, labels, FolderImages, notes) for `root`, from the file headers alone."""
    classes, pairs = list_images(root)
    files = [path for path, _ in pairs]
    headers = [read_header(path) for path in files]
    size = common_size(files, [s for s, _ in headers], options)
    notes: list[str] = []
    channels = folder_channels(files, [mode for _, mode in headers], notes)
    check_channels(options, channels, root)
    images = FolderImages(tuple(files), options, channels, size)
    return classes, [label for _, label in pairs], images, notes


@register_dataset("imagefolder")
def load_imagefolder(path: Path | None, split: str, image: ImageOptions | None = None) -> Dataset:
    """Images as (N, C, H, W) float samples read lazily (see the module docstring).

    Every image must have the same size after `image.resize` / `image.center_crop`.
    """
    directory = require_path("imagefolder", path, "directory", "/path/to/images")
    if not directory.is_dir():
        raise SparsebenchError(f"imagefolder needs a directory of class folders, not {directory}")
    options = image or ImageOptions()
    classes, labels, images, notes = open_folder(split_root(directory, split), options)
    x = LazySamples(len(labels), images.sample_shape, images.read)
    y = torch.tensor(labels, dtype=torch.int64)
    return Dataset("imagefolder", x, y, classes, notes)


load_imagefolder.takes_image_options = True  # load_dataset passes image= to this loader only
