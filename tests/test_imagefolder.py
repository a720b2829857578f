"""Image folders: resize / center crop / normalisation, channels, and lazy batched reading."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sparsebench.data import Dataset, ImageOptions, LazySamples, load_dataset
from sparsebench.data import imagefolder as imagefolder_module
from sparsebench.errors import SparsebenchError
from sparsebench.measure.accuracy import fit_samples, measure_accuracy


def save(path, array, mode=None):
    """Write a uint8/uint16 array (H, W) or (H, W, 3) as an image file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(array))
    (image.convert(mode) if mode else image).save(path)
    return path


def solid(path, size, color=(255, 0, 0), mode="RGB"):
    """A one-colour image of (width, height) `size`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def gradient(width, height):
    """uint8 RGB (H, W, 3) whose pixel (r, c) is (10r + c, 100 + c, 200) - distinct per pixel."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([10 * rows + cols, 100 + cols, np.full_like(rows, 200)], -1).astype(np.uint8)


def load(tmp_path, **options):
    return load_dataset(f"imagefolder:{tmp_path}", image=ImageOptions.parse(**options))


# --- options -------------------------------------------------------------------------------------


def test_parse_reads_cli_text_and_presets():
    options = ImageOptions.parse(resize="256", center_crop=224, mean="0.5, 0.4,0.3", std="1,2,3")
    assert options == ImageOptions(256, 224, (0.5, 0.4, 0.3), (1.0, 2.0, 3.0))
    imagenet = ImageOptions.parse(normalize="imagenet")
    assert imagenet.mean == (0.485, 0.456, 0.406) and imagenet.std == (0.229, 0.224, 0.225)
    cifar = ImageOptions.parse(normalize="CIFAR10")
    assert cifar.mean == (0.4914, 0.4822, 0.4465) and cifar.std == (0.2470, 0.2435, 0.2616)
    assert ImageOptions.parse(normalize="none").is_identity and ImageOptions.parse().is_identity
    assert not ImageOptions.parse(resize=8).is_identity


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"resize": "0"}, "--resize must be a positive"),
        ({"resize": -3}, "--resize must be a positive"),
        ({"resize": "big"}, "--resize must be a whole number"),
        ({"center_crop": 0}, "--center-crop must be a positive"),
        ({"resize": 200, "center_crop": 224}, "--center-crop 224 is larger than --resize 200"),
        ({"mean": "0.5", "std": "0"}, "--std values must be positive"),
        ({"mean": "0.5,0.5,0.5", "std": "0.2,0,0.2"}, "--std values must be positive"),
        ({"mean": "0.5,0.5", "std": "0.5,0.5"}, "--mean needs 1 or 3 values"),
        ({"mean": "0.5,0.5,0.5", "std": "0.5"}, "--mean has 3 values but --std has 1"),
        ({"mean": "0.5,x,0.5", "std": "1"}, "--mean must be 1 or 3 comma-separated numbers"),
        ({"mean": "nan", "std": "1"}, "--mean must be finite"),
        ({"mean": "0.5"}, "--mean needs --std too"),
        ({"std": "0.5"}, "--std needs --mean too"),
        ({"normalize": "coco"}, "unknown --normalize preset 'coco': use one of imagenet, cifar10"),
        ({"normalize": "imagenet", "mean": "0.5", "std": "1"}, "either --normalize or --mean"),
    ],
)
def test_bad_option_values_are_one_line_errors(options, message):
    with pytest.raises(SparsebenchError, match=message) as info:
        ImageOptions.parse(**options)
    assert "\n" not in str(info.value)


def test_options_built_directly_are_checked_too():
    with pytest.raises(SparsebenchError, match="--resize must be a positive"):
        ImageOptions(resize=0)
    with pytest.raises(SparsebenchError, match="--std values must be positive"):
        ImageOptions(mean=(0.0,), std=(-1.0,))


def test_resized_size_keeps_the_aspect_like_torchvision():
    assert imagefolder_module.resized_size(10, 7, 5) == (7, 5)  # 5 * 10 / 7 = 7.14 -> 7
    assert imagefolder_module.resized_size(7, 10, 5) == (5, 7)
    assert imagefolder_module.resized_size(640, 480, 256) == (341, 256)
    assert imagefolder_module.crop_box(5, 4, 3) == (1, 0, 4, 3)  # round(0.5) == 0


# --- transforms ----------------------------------------------------------------------------------


def test_resize_and_center_crop_shapes(tmp_path):
    solid(tmp_path / "a" / "0.png", (10, 7))
    solid(tmp_path / "a" / "1.png", (10, 7))
    assert load(tmp_path).x.shape == (2, 3, 7, 10)
    assert load(tmp_path, resize=5).x.shape == (2, 3, 5, 7)
    assert load(tmp_path, resize=5).x[:].shape == (2, 3, 5, 7)
    assert load(tmp_path, resize=6, center_crop=4).x[:1].shape == (1, 3, 4, 4)
    assert load(tmp_path, center_crop=7).x[0].shape == (3, 7, 7)


def test_values_follow_resize_then_crop_then_scale(tmp_path):
    pixels = gradient(8, 6)
    save(tmp_path / "a" / "0.png", pixels)
    data = load(tmp_path, resize=4, center_crop=4)  # 8x6 -> 5x4 -> crop 4x4 from left 0
    expected = Image.fromarray(pixels).resize((5, 4), Image.Resampling.BILINEAR).crop((0, 0, 4, 4))
    want = torch.from_numpy(np.asarray(expected, dtype=np.float32) / 255).permute(2, 0, 1)
    assert torch.allclose(data.x[0], want)


def test_center_crop_takes_the_middle_pixels(tmp_path):
    pixels = gradient(5, 5)
    save(tmp_path / "a" / "0.png", pixels)
    crop = load(tmp_path, center_crop=3).x[0]
    assert torch.equal(
        crop * 255, torch.from_numpy(pixels[1:4, 1:4].astype(np.float32)).permute(2, 0, 1)
    )


def test_normalisation_matches_a_hand_computation(tmp_path):
    save(tmp_path / "a" / "0.png", np.array([[[51, 102, 204], [0, 255, 0]]], np.uint8))
    data = load(tmp_path, mean="0.5,0.4,0.3", std="0.25,0.5,0.2")
    # (51/255 - 0.5) / 0.25 = (0.2 - 0.5) / 0.25 = -1.2 ; (102/255 - 0.4) / 0.5 = 0 ; ...
    expected = [[[-1.2, -2.0]], [[0.0, 1.2]], [[2.5, -1.5]]]
    assert torch.allclose(data.x[0], torch.tensor(expected), atol=1e-6)
    one = load(tmp_path, mean="0.5", std="0.5").x[0]  # one value for every channel
    assert torch.allclose(one[:, 0, 0], torch.tensor([-0.6, -0.2, 0.6]), atol=1e-6)


def test_imagenet_preset_numbers(tmp_path):
    save(tmp_path / "a" / "0.png", np.array([[[255, 0, 51]]], np.uint8))
    pixel = load(tmp_path, normalize="imagenet").x[0, :, 0, 0]
    want = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    assert torch.allclose(pixel, torch.tensor(want), atol=1e-5)


# --- sizes and channels --------------------------------------------------------------------------


def test_mixed_sizes_are_an_error_without_resize_and_read_with_it(tmp_path):
    solid(tmp_path / "a" / "0.png", (5, 4))
    solid(tmp_path / "b" / "0.png", (9, 6))
    with pytest.raises(SparsebenchError, match=r"b/0\.png is 9x6 but .*a/0\.png is 5x4") as info:
        load(tmp_path)
    assert "--resize N --center-crop N" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(SparsebenchError, match=r"6x4 and 5x4 after resizing"):
        load(tmp_path, resize=4)  # aspect ratios differ, so resizing alone is not enough
    assert load(tmp_path, resize=4, center_crop=4).x[:].shape == (2, 3, 4, 4)


def test_resize_alone_is_enough_for_one_aspect_ratio(tmp_path):
    solid(tmp_path / "a" / "0.png", (4, 2))
    solid(tmp_path / "a" / "1.png", (8, 4))
    assert load(tmp_path, resize=2).x[:].shape == (2, 3, 2, 4)


def test_a_crop_larger_than_an_image_is_an_error(tmp_path):
    solid(tmp_path / "a" / "0.png", (5, 4))
    with pytest.raises(SparsebenchError, match=r"--center-crop 5 is larger than .*0\.png \(5x4\)"):
        load(tmp_path, center_crop=5)


def test_gray_only_folder_gives_one_channel(tmp_path):
    save(tmp_path / "a" / "0.png", np.array([[0, 51], [102, 255]], np.uint8))
    save(tmp_path / "b" / "0.png", np.array([[0, 65535], [0, 13107]], np.uint16))  # 16-bit
    assert Image.open(tmp_path / "b" / "0.png").mode == "I;16"
    data = load(tmp_path)
    assert data.x.shape == (2, 1, 2, 2) and data.notes == []
    assert torch.allclose(data.x[0, 0], torch.tensor([[0.0, 0.2], [0.4, 1.0]]))
    assert torch.allclose(data.x[1, 0], torch.tensor([[0.0, 1.0], [0.0, 0.2]]))
    assert torch.allclose(load(tmp_path, mean="0.2", std="0.5").x[0, 0, 0], torch.tensor([-0.4, 0]))
    with pytest.raises(SparsebenchError, match="3 values but the images .* are gray") as info:
        load(tmp_path, normalize="imagenet")
    assert "\n" not in str(info.value)


def test_mixed_gray_and_colour_gives_three_channels_with_a_note(tmp_path):
    save(tmp_path / "a" / "0.png", np.full((2, 2), 51, np.uint8))
    solid(tmp_path / "a" / "1.png", (2, 2), (255, 0, 0))
    solid(tmp_path / "b" / "0.png", (2, 2), (0, 0, 255, 128), mode="RGBA")
    data = load(tmp_path)
    assert data.x.shape == (3, 3, 2, 2)
    assert torch.allclose(data.x[0], torch.full((3, 2, 2), 0.2))  # gray repeated per channel
    assert data.x[2, :, 0, 0].tolist() == [0.0, 0.0, 1.0]  # alpha dropped
    assert len(data.notes) == 1 and "1 of 3 images are gray" in data.notes[0]
    assert "a/0.png" in data.notes[0] and "3 channels" in data.notes[0]


def test_oversized_images_are_refused_from_the_header(tmp_path, monkeypatch):
    monkeypatch.setattr(imagefolder_module, "MAX_PIXELS", 10)
    solid(tmp_path / "a" / "0.png", (4, 4))
    with pytest.raises(SparsebenchError, match="4x4, over 10 pixels"):
        load(tmp_path)


# --- laziness ------------------------------------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch):
    """The paths `decode_image` was called with, in order."""
    calls = []
    real = imagefolder_module.decode_image

    def counting(path, *args):
        calls.append(path)
        return real(path, *args)

    monkeypatch.setattr(imagefolder_module, "decode_image", counting)
    return calls


def test_opening_and_slicing_decode_only_what_is_read(tmp_path, decodes):
    for i in range(7):
        solid(tmp_path / ("a" if i < 3 else "b") / f"{i}.png", (6, 5), (i * 30, 0, 0))
    data = load(tmp_path, resize=4, center_crop=4)
    assert len(data) == 7 and data.x.shape[1:] == (3, 4, 4) and data.x.dtype == torch.float32
    assert data.y.tolist() == [0, 0, 0, 1, 1, 1, 1] and data.num_classes == 2
    assert decodes == []  # headers only: sizes, modes and the sample shape need no pixels
    assert data.x[:4].shape == (4, 3, 4, 4)
    assert len(decodes) <= 4 + 1  # the four read (+ one for the shape, if a design needs it)
    assert [p.name for p in decodes] == ["0.png", "1.png", "2.png", "3.png"]
    assert torch.equal(data.x[[1, -1]], torch.stack([data.x[1], data.x[6]]))
    assert torch.equal(data.x[torch.tensor([2])][0], data.x[2])


def test_batches_walk_the_set_in_order(tmp_path, decodes):
    for i in range(5):
        solid(tmp_path / "a" / f"{i}.png", (3, 3), (i * 50, 0, 0))
    data = load(tmp_path)
    sizes, reds = [], []
    for x, y in data.batches(2):
        sizes.append(len(x))
        reds += [round(float(v) * 255) for v in x[:, 0, 0, 0]]
        assert isinstance(x, torch.Tensor) and y.tolist() == [0] * len(x)
    assert sizes == [2, 2, 1] and reds == [0, 50, 100, 150, 200] and len(decodes) == 5
    with pytest.raises(SparsebenchError, match="batch size must be a positive"):
        next(data.batches(0))


def test_a_read_over_the_batch_bound_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(imagefolder_module, "MAX_BATCH_PIXELS", 2 * 16)
    for i in range(3):
        solid(tmp_path / "a" / f"{i}.png", (4, 4))
    data = load(tmp_path)
    assert data.x[:2].shape == (2, 3, 4, 4)
    with pytest.raises(SparsebenchError, match="reading 3 images of 4x4 at once"):
        data.x[:3]


def test_lazy_samples_index_like_a_tensor():
    table = torch.arange(24.0).reshape(4, 2, 3)
    reads = []

    def read(indices):
        reads.append(list(indices))
        return table[indices]

    x = LazySamples(4, (2, 3), read)
    assert x.shape == (4, 2, 3) and len(x) == 4 and x.ndim == 3
    assert torch.equal(x[1], table[1]) and torch.equal(x[-1], table[3])
    assert torch.equal(x[1:3], table[1:3]) and torch.equal(x[::2], table[::2])
    assert torch.equal(x[0, 1], table[0, 1]) and torch.equal(x[1:, :, 0], table[1:, :, 0])
    assert torch.equal(x[torch.tensor([[0, 1], [2, 3]])], table[torch.tensor([[0, 1], [2, 3]])])
    assert torch.equal(x[torch.tensor([True, False, True, False])], table[[0, 2]])
    assert x[4:].shape == (0, 2, 3)
    with pytest.raises(IndexError):
        x[4]
    flat = fit_samples(x, (1, 6))  # reshaped without reading anything
    reads.clear()
    assert isinstance(flat, LazySamples) and flat.shape == (4, 6) and reads == []
    assert torch.equal(flat[:2], table[:2].reshape(2, 6))


# --- loading and accuracy ------------------------------------------------------------------------


def test_image_options_are_refused_for_other_datasets(tmp_path):
    torch.save({"x": torch.randn(4, 3), "y": torch.tensor([0, 1, 0, 1])}, tmp_path / "d.pt")
    spec = f"tensors:{tmp_path / 'd.pt'}"
    with pytest.raises(SparsebenchError, match="apply to imagefolder datasets only") as info:
        load_dataset(spec, image=ImageOptions.parse(resize=8))
    assert "'tensors'" in str(info.value) and "\n" not in str(info.value)
    assert len(load_dataset(spec, image=ImageOptions.parse(normalize="none"))) == 4
    assert len(load_dataset(spec, "test", None)) == 4


def test_bare_directory_specs_take_image_options(tmp_path):
    solid(tmp_path / "cat" / "0.png", (6, 4))
    assert load_dataset(str(tmp_path), image=ImageOptions(resize=2)).x.shape == (1, 3, 2, 3)


class Linear(nn.Module):
    """Fixed weights, so two runs are comparable."""

    def __init__(self, inputs, classes):
        super().__init__()
        self.fc = nn.Linear(inputs, classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.linspace(-1, 1, inputs * classes).reshape(classes, inputs))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x)


def _reference_accuracy(model, x, y):
    """Top-1 and top-5 over the whole set in one go, the way the old code counted."""
    with torch.inference_mode():
        top = model(x).topk(5, dim=1).indices
    top1 = 100.0 * float((top[:, 0] == y).sum()) / len(y)
    return top1, 100.0 * float((top == y[:, None]).any(dim=1).sum()) / len(y)


def test_accuracy_on_a_tensor_dataset_is_unchanged():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(37, 1, 2, 4, generator=generator)
    y = torch.randint(0, 6, (37,), generator=generator)
    model, data = Linear(8, 6), Dataset("t", x, y, [str(i) for i in range(6)])
    top1, top5 = _reference_accuracy(model, x.reshape(37, 8), y)
    for batch_size in (1, 5, 256):
        result = measure_accuracy(model, data, (1, 8), batch_size=batch_size)
        assert (result.top1, result.top5, result.samples) == (top1, top5, 37)
    lazy = Dataset("t", LazySamples(37, (1, 2, 4), lambda i: x[i]), y, data.classes)
    assert measure_accuracy(model, lazy, (1, 8), batch_size=4).top1 == top1


class RedVsBlue(nn.Module):
    """Logits (mean blue, mean red): class 0 is "blue", class 1 is "red"."""

    def forward(self, x):
        return torch.stack([x[:, 2].mean((1, 2)), x[:, 0].mean((1, 2))], dim=1)


def test_accuracy_on_an_image_folder(tmp_path, decodes):
    for i in range(3):
        solid(tmp_path / "red" / f"{i}.png", (8, 6), (255, 0, 0))
        solid(tmp_path / "blue" / f"{i}.png", (8, 6), (0, 0, 255))
    solid(tmp_path / "blue" / "odd.png", (8, 6), (255, 0, 0))  # labelled blue, looks red
    data = load(tmp_path, resize=4, center_crop=4, normalize="imagenet")
    result = measure_accuracy(RedVsBlue(), data, (1, 3, 4, 4), batch_size=3)
    assert result.samples == 7 and result.top1 == pytest.approx(600 / 7)
    assert result.top5 is None and len(decodes) == 7
