"""Models sparsebench did not write, built as a user would: Hugging Face folders from small
configs (random weights, saved with `save_pretrained`), `.safetensors` state_dicts, `torch.export`
programs with integer inputs, token-id inputs and modules returning dicts or tuples."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from sparsebench import load
from sparsebench.cli import app
from sparsebench.errors import SparsebenchError
from sparsebench.inputs import InputSpec, InputSpecs, parse_input, parse_inputs

transformers = pytest.importorskip("transformers")
runner = CliRunner()
QUICK = ["--min-iters", "3", "--min-seconds", "0", "--warmup", "1", "--no-memory", "--no-energy"]
SEQ = 16


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _bert():
    config = transformers.BertConfig(
        vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, num_labels=3,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def _gpt2():
    config = transformers.GPT2Config(
        vocab_size=500, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def _vit():
    config = transformers.ViTConfig(
        image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, num_labels=5,
    )  # fmt: skip
    return transformers.ViTForImageClassification(config)


BUILDERS = {"bert": _bert, "gpt2": _gpt2, "vit": _vit}


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    folders = {}
    for name, build in BUILDERS.items():
        torch.manual_seed(0)
        build().save_pretrained(root / name)
        folders[name] = root / name
    return folders


# -- input specs ---------------------------------------------------------------------------


def test_input_specs_parse_and_refuse_in_one_line():
    spec = parse_input("input_ids:2x16:int64:0-499")
    assert spec == InputSpec("input_ids", (2, 16), "int64", 0, 499)
    assert spec.text() == "input_ids:2x16:int64:0-499"
    for bad, message in [
        ("ids:1x16", "name:shape:dtype"),
        ("ids:1xq:int64", "shape"),
        ("ids:1x16:int65", "unknown dtype"),
        ("ids:1x16:int64:5-1", "empty"),
        ("ids:1x16:int64:0.5-3", "whole-number"),
        ("ids:0x16:int64", ">= 1"),
        ("ids:1x16:int8:0-1000", "does not fit"),
    ]:
        with pytest.raises(SparsebenchError, match=message) as info:
            parse_input(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(SparsebenchError, match="same batch size"):
        parse_inputs(["a:1x4:int64", "b:2x4:int64"])
    with pytest.raises(SparsebenchError, match="repeat"):
        parse_inputs(["a:1x4:int64", "a:1x4:int64"])


def test_synthetic_inputs_respect_dtype_and_range():
    specs = InputSpecs(
        (InputSpec("ids", (4, 32), "int64", 3, 9), InputSpec("mask", (4, 32), "int64", 1, 1),
         InputSpec("x", (4, 8), "float16", -2.0, 2.0))
    )  # fmt: skip
    batch = specs.synthetic(seed=5)
    ids, mask, x = batch.tensors
    assert ids.dtype == torch.int64 and int(ids.min()) >= 3 and int(ids.max()) <= 9
    assert len(set(ids.flatten().tolist())) > 1
    assert bool((mask == 1).all())
    assert x.dtype == torch.float16 and float(x.min()) >= -2 and float(x.max()) <= 2
    assert torch.equal(specs.synthetic(seed=5).tensors[0], ids)  # seeded
    assert specs.with_batch(2).batch_size == 2 and specs.with_seq_len(8).shape == (4, 8)
    assert specs.with_seq_len(8).specs[2].shape == (4, 8)  # float input untouched
    assert InputSpecs.from_json(specs.to_json(), "test") == specs


def test_seq_len_needs_token_inputs():
    with pytest.raises(SparsebenchError, match="--seq-len applies to token inputs"):
        InputSpecs.single((1, 3, 8, 8)).with_seq_len(4)


# -- Hugging Face folders --------------------------------------------------------------------


def test_hf_folders_load_with_inputs_from_their_config(hf_folders):
    bert = load(hf_folders["bert"])
    assert bert.kind == "huggingface"
    assert bert.specs.text() == "input_ids:1x64:int64:0-499 attention_mask:1x64:int64:1-1"
    assert bert.model(*bert.synthetic().tensors).shape == (1, 3)  # logits of the ModelOutput
    vit = load(hf_folders["vit"])
    assert vit.specs.text() == "pixel_values:1x3x16x16:float32"
    gpt2 = load(hf_folders["gpt2"], seq_len=SEQ, batch_size=2)
    assert gpt2.specs.shape == (2, SEQ)
    assert gpt2.model(*gpt2.synthetic().tensors).shape == (2, SEQ, 500)  # tied lm_head loaded
    assert torch.equal(
        gpt2.model.lm_head.weight, gpt2.model.transformer.wte.weight
    )  # weights really tied, not random


def test_hf_weights_are_the_saved_ones(hf_folders):
    torch.manual_seed(0)
    original = _bert().eval()
    loaded = load(hf_folders["bert"], seq_len=SEQ)
    batch = loaded.synthetic()
    with torch.inference_mode():
        expected = original(input_ids=batch.tensors[0], attention_mask=batch.tensors[1]).logits
        assert torch.allclose(loaded.model(*batch.tensors), expected, atol=1e-6)


def test_hf_input_ids_beyond_the_vocabulary_are_refused(hf_folders):
    with pytest.raises(SparsebenchError, match="outside the vocabulary"):
        load(hf_folders["bert"], inputs=(InputSpec("input_ids", (1, 8), "int64", 0, 500),))
    with pytest.raises(SparsebenchError, match="longer than the model's 64 positions"):
        load(hf_folders["bert"], seq_len=65)


def test_hf_folder_missing_weights_or_remote_code_is_refused(hf_folders, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    config = json.loads((hf_folders["bert"] / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SparsebenchError, match="has no model.safetensors or pytorch_model.bin"):
        load(folder)
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(SparsebenchError, match="cannot"):
        load(folder)
    config["architectures"] = ["os.system"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SparsebenchError, match="not a transformers model class"):
        load(folder)


def test_pytorch_model_bin_folder_loads(hf_folders, tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "config.json").write_text((hf_folders["bert"] / "config.json").read_text())
    torch.manual_seed(0)
    torch.save(_bert().state_dict(), folder / "pytorch_model.bin")
    loaded = load(folder, seq_len=SEQ)
    reference = load(hf_folders["bert"], seq_len=SEQ)
    batch = loaded.synthetic()
    assert torch.allclose(loaded.model(*batch.tensors), reference.model(*batch.tensors))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bert", "gpt2", "vit"])
def test_hf_models_profile_export_and_compare(name, hf_folders, tmp_path):
    folder = hf_folders[name]
    seq = ["--seq-len", SEQ] if name != "vit" else []
    result = invoke("profile", folder, *seq, *QUICK, "-o", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "p.json").read_text())["results"][0]
    assert row["source_kind"] == "huggingface" and row["macs_m"] > 0
    weights = (folder / "model.safetensors").stat().st_size / 2**20
    assert row["size_mb"] >= weights  # the folder's files, not the directory entry
    assert [i["name"] for i in row["inputs"]][0] in ("input_ids", "pixel_values")
    pruned = tmp_path / "pruned.pt"
    result = invoke("prune", folder, "-o", pruned, "--amount", "0.8", "--scope", "layer", *seq)
    assert result.exit_code == 0, result.output
    exports = []
    for fmt, suffix in [("csr", ".pt"), ("channels", ".pt"), ("onnx", ".onnx")]:
        out = tmp_path / f"{fmt}{suffix}"
        result = invoke("export", pruned, "-f", fmt, "-o", out, "--quiet")
        assert result.exit_code == 0, result.output
        exports.append(out)
    result = invoke("profile", *exports, *QUICK, "-o", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "e.json").read_text())["results"]
    assert [r["format"] for r in rows] == ["csr", "channels", "onnx"]
    assert all(r["verification"]["passed"] for r in rows)
    assert rows[0]["sparsity_pct"] == pytest.approx(80, abs=1)
    assert rows[2]["macs_m"] == pytest.approx(row["macs_m"], rel=0.01)  # ONNX count binds dims
    result = invoke("compare", pruned, "--formats", "dense,csr,channels,onnx", "--rounds", "2",
                    "--block-seconds", "0.01", "-o", tmp_path / "c.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    compared = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert [r["format"] for r in compared] == ["dense", "csr", "channels", "onnx"]
    assert all(r["unavailable"] is None for r in compared), compared


def test_bert_macs_equal_an_independent_count(hf_folders):
    """Linears: in x out per token they see (pooler and classifier see one token); attention:
    Q.K^T and probs.V, seq^2 x hidden each per layer."""
    from sparsebench.runtimes.base import static_figures

    loaded = load(hf_folders["bert"], seq_len=SEQ)
    _, macs = static_figures(loaded.model, loaded.synthetic()[:1])
    model, hidden, layers = loaded.model, 32, 2
    encoder = sum(
        m.in_features * m.out_features for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and ".encoder." in f".{n}."
    )  # fmt: skip
    heads = model.bert.pooler.dense.weight.numel() + model.classifier.weight.numel()
    expected = encoder * SEQ + heads + 2 * layers * SEQ * SEQ * hidden
    assert macs.dense == pytest.approx(expected, rel=0.01)


def test_safetensors_state_dict_works_like_a_pt_one(tmp_path):
    from safetensors.torch import save_file

    from sparsebench.zoo import create_model

    from .conftest import ARCH

    model = create_model(ARCH)
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    loaded = load(tmp_path / "w.safetensors", arch=ARCH)
    assert loaded.kind == "safetensors"
    x = loaded.synthetic()
    assert torch.allclose(loaded.model(*x.tensors), model.eval()(x.first))
    with pytest.raises(SparsebenchError, match="plain state_dict"):
        load(tmp_path / "w.safetensors")


def test_safetensors_inside_an_hf_folder_loads_the_folder(hf_folders):
    assert load(hf_folders["bert"] / "model.safetensors").kind == "huggingface"


# -- torch.export programs, token models from code, outputs ---------------------------------


class TokenClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, ids):
        return {"logits": self.head(self.embed(ids).mean(1)), "hidden": self.embed(ids)}


def _program(tmp_path, dynamic: bool):
    torch.manual_seed(0)
    model = TokenClassifier().eval()
    example = (torch.randint(0, 100, (2, 8)),)
    shapes = ({0: torch.export.Dim("batch", min=1, max=64)},) if dynamic else None
    program = torch.export.export(model, example, dynamic_shapes=shapes)
    path = tmp_path / ("dyn.pt2" if dynamic else "static.pt2")
    torch.export.save(program, path)
    return path


def test_pt2_with_integer_inputs_profiles_and_exports_to_onnx(tmp_path):
    path = _program(tmp_path, dynamic=True)
    loaded = load(path, trust_checkpoint=True)
    assert loaded.specs.specs[0].name == "ids" and loaded.specs.specs[0].dtype == "int64"
    result = invoke("profile", path, "--trust-checkpoint", *QUICK)
    assert result.exit_code == 0, result.output  # no "Calling eval() is not supported"
    out = tmp_path / "p.onnx"
    result = invoke("export", path, "-f", "onnx", "-o", out, "--trust-checkpoint")
    assert result.exit_code == 0, result.output
    assert load(out).specs.specs[0].dtype == "int64"
    result = invoke("export", path, "-f", "csr", "-o", tmp_path / "c.pt", "--trust-checkpoint")
    assert result.exit_code == 2 and "is a torch.export program;" in result.output


def test_static_batch_program_refuses_another_batch_in_one_line(tmp_path):
    path = _program(tmp_path, dynamic=False)
    loaded = load(path, trust_checkpoint=True)
    assert loaded.batch_size == 2 and loaded.model.fixed_batch == 2
    out = loaded.model(*loaded.synthetic(batch=5).tensors)  # verification batches: chunked
    assert out.shape == (5, 4)
    with pytest.raises(SparsebenchError, match="static batch of 2"):
        load(path, trust_checkpoint=True, batch_size=4)


def test_token_model_from_code_says_it_needs_integer_inputs(tmp_path):
    factory = tmp_path / "tokmodel.py"
    factory.write_text(
        "import torch\n"
        "from torch import nn\n"
        "class M(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.e = nn.Embedding(50, 8); self.l = nn.Linear(8, 3)\n"
        "    def forward(self, ids):\n"
        "        return (self.l(self.e(ids).mean(1)), ids)\n"
        "def build():\n"
        "    return M()\n"
    )
    from sparsebench.checkpoint import CheckpointMeta, save_checkpoint

    ckpt = tmp_path / "tok.pt"
    import importlib.util

    spec = importlib.util.spec_from_file_location("tokmodel", factory)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    save_checkpoint(ckpt, module.build(), CheckpointMeta(arch=f"{factory}:build"))
    arch = f"{factory}:build"
    result = invoke("profile", ckpt, "--arch", arch, "--input-shape", "1,12", *QUICK)
    assert result.exit_code == 2
    assert "does not fit the model" in result.output and "integer inputs" in result.output
    result = invoke("profile", ckpt, "--arch", arch, "--input", "ids:1x12:int64:0-49", *QUICK)
    assert result.exit_code == 0, result.output  # a tuple output: the first tensor is measured
    result = invoke("profile", ckpt, "--arch", arch, "--input", "ids:1x12:int64:0-49",
                    "--output-key", "5", *QUICK)  # fmt: skip
    assert result.exit_code == 2 and "2-tuple" in result.output


def test_pickled_module_whose_code_is_missing_names_the_module(tmp_path, monkeypatch):
    import sys

    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mybert.py").write_text(
        "from torch import nn\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__(); self.l = nn.Linear(4, 2)\n"
        "    def forward(self, x):\n        return self.l(x)\n"
    )
    monkeypatch.syspath_prepend(str(package))
    import mybert

    torch.save(mybert.Net(), tmp_path / "net.pt")
    monkeypatch.delitem(sys.modules, "mybert")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(package)])
    with pytest.raises(SparsebenchError, match="whose code cannot be imported here") as info:
        load(tmp_path / "net.pt", trust_checkpoint=True, input_shape=(1, 4))
    assert "No module named 'mybert'" in str(info.value)
    assert "truncated" not in str(info.value) and "corrupt" not in str(info.value)


# -- messages and help ---------------------------------------------------------------------


def test_help_shows_no_bool_metavar_and_names_every_arch_form():
    result = runner.invoke(app, ["profile", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    assert "file.py:factory" in result.output and "--input" in result.output


def test_onnx_notes_mention_batchnorm_only_when_there_is_one(sb_ckpt, tmp_path):
    result = invoke("export", sb_ckpt, "-f", "onnx", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    assert "BatchNorm" not in result.output  # the MLP has none


def test_progress_lines_are_silent_with_quiet(sb_ckpt, tmp_path, monkeypatch):
    from sparsebench import progress

    monkeypatch.setattr(progress, "REPORT_AFTER_S", 0.0)
    result = invoke("export", sb_ckpt, "-f", "csr", "-o", tmp_path / "a.pt")
    assert result.exit_code == 0, result.output
    assert "loading" in result.stderr and "verifying csr against the dense model" in result.stderr
    result = invoke("export", sb_ckpt, "-f", "csr", "-o", tmp_path / "b.pt", "--quiet")
    assert result.exit_code == 0 and result.stderr == ""
    progress.set_quiet(False)


def test_profile_flags_an_emptied_classifier(tmp_path):
    from sparsebench.checkpoint import CheckpointMeta, save_checkpoint
    from sparsebench.zoo import create_model

    from .conftest import ARCH

    model = create_model(ARCH)
    with torch.no_grad():
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        last.weight.zero_()
        last.bias.zero_()
    ckpt = tmp_path / "empty.pt"
    save_checkpoint(ckpt, model, CheckpointMeta(arch=ARCH))
    result = invoke("profile", ckpt, *QUICK, "-o", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert row["flags"]["constant_outputs"] is True
    assert row["flags"]["empty_layers"] and any("100 % sparse" in w for w in row["warnings"])


def test_kernel_column_counts_layers_instead_of_saying_no():
    from types import SimpleNamespace

    from sparsebench.report.columns import _kernel

    def row(ran, converted):
        return SimpleNamespace(kernels={"sparse_layers": ran, "converted_layers": converted,
                                        "sparse_kernel_ran": ran == converted})  # fmt: skip

    assert _kernel(row(35, 36)) == "yes (35 of 36 layers; 1 fell back)"
    assert _kernel(row(36, 36)) == "yes (36 of 36 layers)"
    assert _kernel(row(0, 36)) == "no (0 of 36 layers; all fell back to dense)"
