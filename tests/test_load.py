"""Loading: every checkpoint kind, mask folding, and a clear error for each bad input."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch.nn.utils import prune

from sparsebench import LoadOptions, SparsebenchError, load
from sparsebench.masks import fold_state_dict

from .conftest import ARCH, SHAPE


def _same_outputs(a, b, batch=3):
    x = torch.randn(batch, *SHAPE[1:])
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-6)


def test_sparsebench_checkpoint_needs_no_flags(sb_ckpt, mlp):
    loaded = load(sb_ckpt)
    assert loaded.kind == "sparsebench"
    assert loaded.input_shape == SHAPE
    assert loaded.meta.arch == ARCH
    assert _same_outputs(loaded.model, mlp)


def test_batch_size_overrides_batch_dimension(sb_ckpt):
    assert load(sb_ckpt, batch_size=8).input_shape == (8, 40)


def test_plain_state_dict_with_zoo_arch(state_dict_ckpt, mlp):
    loaded = load(state_dict_ckpt, arch=ARCH)
    assert loaded.kind == "state_dict"
    assert loaded.input_shape == SHAPE  # from the zoo entry
    assert _same_outputs(loaded.model, mlp)


def test_plain_state_dict_without_arch_says_what_to_do(state_dict_ckpt):
    with pytest.raises(SparsebenchError, match="--arch"):
        load(state_dict_ckpt)


def test_arch_as_factory_in_a_file_outside_the_package(tmp_path):
    source = tmp_path / "my_models.py"
    source.write_text(
        textwrap.dedent(
            """
            from torch import nn
            def tiny(width=8):
                return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 3))
            """
        )
    )
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    loaded = load(ckpt, arch=f"{source}:tiny", arch_kwargs={"width": 16}, input_shape=(2, 4))
    assert loaded.input_shape == (2, 4)
    x = torch.randn(2, 4)
    assert torch.allclose(loaded.model(x), model(x))


def test_arch_factory_without_input_shape_asks_for_it(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from torch import nn\ndef f():\n    return nn.Linear(4, 2)\n")
    ckpt = tmp_path / "m.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), ckpt)
    with pytest.raises(SparsebenchError, match="--input-shape"):
        load(ckpt, arch=f"{source}:f")


def test_torchscript_archive(tmp_path, mlp):
    path = tmp_path / "mlp.ts"
    torch.jit.save(torch.jit.script(mlp), str(path))
    with pytest.raises(SparsebenchError, match="TorchScript archive, which is code.*--trust"):
        load(path, input_shape=SHAPE)  # TorchScript is code: it runs only when trusted
    loaded = load(path, input_shape=SHAPE, trust_checkpoint=True)
    assert loaded.kind == "torchscript"
    assert _same_outputs(loaded.model, mlp)


def test_torch_export_program_brings_its_input_shape(tmp_path, mlp):
    path = tmp_path / "mlp.pt2"
    torch.export.save(torch.export.export(mlp, (torch.randn(*SHAPE),)), str(path))
    with pytest.raises(SparsebenchError, match="torch.export program.*--trust-checkpoint"):
        load(path)  # its loader unpickles entries: only when trusted, whatever the suffix
    loaded = load(path, trust_checkpoint=True)
    assert loaded.kind == "export"
    assert loaded.input_shape == SHAPE
    assert _same_outputs(loaded.model, mlp, batch=1)
    with pytest.raises(SparsebenchError, match="static batch of 1; --batch-size 4 needs"):
        load(path, batch_size=4, trust_checkpoint=True)


def test_pickled_module_requires_trust(tmp_path, mlp):
    path = tmp_path / "whole.pt"
    torch.save(mlp, path)
    with pytest.raises(SparsebenchError, match="--trust-checkpoint"):
        load(path, input_shape=SHAPE)
    loaded = load(path, input_shape=SHAPE, trust_checkpoint=True)
    assert loaded.kind == "pickled-module"
    assert _same_outputs(loaded.model, mlp)


def test_prune_masks_in_state_dict_are_folded(tmp_path, mlp):
    linears = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    for module in linears:
        prune.l1_unstructured(module, "weight", amount=0.5)
    state = mlp.state_dict()
    assert any(k.endswith("weight_orig") for k in state)
    path = tmp_path / "pruned_state.pt"
    torch.save(state, path)
    loaded = load(path, arch=ARCH)
    assert len(loaded.folded) == len(linears)
    weights = [m.weight for m in loaded.model.modules() if isinstance(m, torch.nn.Linear)]
    assert all(abs(float((w == 0).float().mean()) - 0.5) < 0.01 for w in weights)
    assert _same_outputs(loaded.model, mlp)  # mlp still applies its masks through hooks


def test_prune_hooks_on_pickled_module_are_folded(tmp_path, mlp):
    layer = next(m for m in mlp.modules() if isinstance(m, torch.nn.Linear))
    prune.random_unstructured(layer, "weight", amount=0.3)
    path = tmp_path / "pruned_whole.pt"
    torch.save(mlp, path)
    loaded = load(path, input_shape=SHAPE, trust_checkpoint=True)
    assert loaded.folded
    assert not any(k.endswith("_orig") for k in loaded.model.state_dict())


def test_parametrization_masks_are_folded():
    original = torch.arange(1.0, 7.0).reshape(2, 3)
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    state = {
        "fc.parametrizations.weight.original": original,
        "fc.parametrizations.weight.0.mask": mask,
        "fc.bias": torch.zeros(2),
    }
    folded, names = fold_state_dict(state)
    assert names == ["fc.weight"]
    assert torch.equal(folded["fc.weight"], original * mask)
    assert set(folded) == {"fc.weight", "fc.bias"}


def test_dataparallel_prefix_is_stripped(tmp_path, mlp):
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in mlp.state_dict().items()}, path)
    assert _same_outputs(load(path, arch=ARCH).model, mlp)


# --- bad input: one clear SparsebenchError each -------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(SparsebenchError, match="no such file"):
        load(tmp_path / "nope.pt")


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_truncated_file(tmp_path, sb_ckpt, keep):
    data = sb_ckpt.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(SparsebenchError, match="truncated|corrupt|cannot read"):
        load(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(SparsebenchError, match="cannot read"):
        load(path)


def test_state_dict_mismatch_names_keys_and_shapes(state_dict_ckpt):
    with pytest.raises(SparsebenchError) as info:
        load(state_dict_ckpt, arch="lenet_300_100")
    message = str(info.value)
    assert "does not fit architecture 'lenet_300_100'" in message
    assert "checkpoint [" in message and "vs model [" in message


def test_missing_keys_are_named(tmp_path, mlp):
    state = mlp.state_dict()
    dropped = next(iter(state))
    del state[dropped]
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(SparsebenchError, match=f"missing: {dropped}"):
        load(path, arch=ARCH)


def test_wrong_input_shape(sb_ckpt):
    with pytest.raises(SparsebenchError, match=r"input shape \[1, 3, 32, 32\] does not fit"):
        load(sb_ckpt, input_shape=(1, 3, 32, 32))


def test_unknown_architecture(state_dict_ckpt):
    with pytest.raises(SparsebenchError, match="unknown architecture 'vgg16'.*vgg16_bn"):
        load(state_dict_ckpt, arch="vgg16")


def test_bad_arch_kwargs(state_dict_ckpt):
    with pytest.raises(SparsebenchError, match="arch-kwargs"):
        load(state_dict_ckpt, arch=ARCH, arch_kwargs={"no_such_option": 1})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error shown without a GPU")
def test_cuda_without_gpu(sb_ckpt):
    with pytest.raises(SparsebenchError, match="no CUDA GPU is available"):
        load(sb_ckpt, options=LoadOptions(device="cuda"))


def test_unknown_device(sb_ckpt):
    with pytest.raises(SparsebenchError, match="unknown device"):
        load(sb_ckpt, device="tpu")


def test_parametrized_pickled_module_is_folded(tmp_path, mlp):
    from torch.nn.utils import parametrize

    class Mask(torch.nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, weight):
            return weight * self.mask

    layer = mlp.fc1
    mask = (torch.rand_like(layer.weight) > 0.5).float()
    expected = (layer.weight * mask).detach().clone()
    parametrize.register_parametrization(layer, "weight", Mask(mask))
    loaded_model = mlp  # fold in place, as load() does for a pickled module
    from sparsebench.masks import fold_module_

    assert fold_module_(loaded_model) == ["fc1.weight"]
    assert not parametrize.is_parametrized(loaded_model.fc1)
    assert torch.equal(loaded_model.fc1.weight, expected)
