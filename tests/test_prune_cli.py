"""`sparsebench prune --method`: data, epochs and options on the command line, what the
checkpoint records, one-line errors, and methods on architectures from outside the zoo (an
ImageNet ResNet-18 in a file of its own, a BERT-style encoder built from a config)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from typer.testing import CliRunner

import sparsebench
from sparsebench.checkpoint import CheckpointMeta, save_checkpoint
from sparsebench.cli import app
from sparsebench.data import Dataset
from sparsebench.inputs import InputSpec
from sparsebench.load import LoadOptions
from sparsebench.prune import PruneData, prune
from tests.test_format_bitmask import RESNET18

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def trained(tmp_path):
    path = tmp_path / "dense.pt"
    result = invoke("train", "--arch", "mnist1d_mlp", "--data", "mnist1d", "--epochs", "3",
                    "-o", path)  # fmt: skip
    assert result.exit_code == 0, result.output
    return path


def test_prune_with_data_records_method_options_and_accuracy(trained, tmp_path):
    out = tmp_path / "ticket.pt"
    result = invoke(
        "prune",
        trained,
        "--method",
        "lottery",
        "--sparsity",
        "0.75",
        "--data",
        "mnist1d",
        "--epochs",
        "1",
        "-O",
        "rate=0.5",
        "--scope",
        "layer",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "held-out top-1" in result.output
    record = torch.load(out, weights_only=True)["sparsebench"]["extra"]["pruned"]
    assert record["method"] == "lottery" and record["options"]["rate"] == 0.5
    assert record["options"]["reinit"] is False and record["data"] == "mnist1d"
    assert abs(record["sparsity"] - 0.75) < 0.005 and set(record["layers"]) == {"fc1", "fc2", "fc3"}
    assert [r["round"] for r in record["details"]["rounds"]] == [0, 1, 2]
    assert record["test_top1_before"] is not None and record["test_top1_after"] is not None
    json.dumps(record)  # plain JSON all the way down
    loaded = sparsebench.load(out)
    weights = torch.cat([loaded.model.get_submodule(n).weight.flatten() for n in ("fc1", "fc2")])
    assert abs(float((weights == 0).float().mean()) - 0.75) < 0.01


def test_sensitivity_prints_its_scan(trained, tmp_path):
    result = invoke(
        "prune",
        trained,
        "--method",
        "sensitivity",
        "--sparsity",
        "0.8",
        "--data",
        "mnist1d",
        "--epochs",
        "0",
        "-O",
        "ratios=0.5,0.9",
        "-o",
        tmp_path / "s.pt",
    )
    assert result.exit_code == 0, result.output
    assert "sensitivity scan" in result.output and "chosen" in result.output


def test_channel_method_says_it_counts_channels(tmp_path):
    torch.manual_seed(0)
    model = sparsebench.zoo.create_model("mnist1d_cnn")
    path = tmp_path / "cnn.pt"
    save_checkpoint(path, model, CheckpointMeta(arch="mnist1d_cnn", input_shape=[1, 1, 40]))
    result = invoke("prune", path, "--method", "channel", "--sparsity", "0.5", "-O",
                    "criterion=bn", "-o", tmp_path / "c.pt")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "50% of each group's channels zeroed" in result.output
    exported = invoke("export", tmp_path / "c.pt", "-f", "channels", "-o", tmp_path / "c.ch.pt")
    assert exported.exit_code == 0, exported.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "snip"], "needs data|pass --data"),
        (["--method", "snipp"], "Did you mean snip"),
        (["--method", "lottery", "--data", "mnist1d", "-O", "rate"], "KEY=VALUE"),
        (["--method", "lottery", "--data", "mnist1d", "-O", "rounds=3"], "no option 'rounds'"),
        (["--method", "lottery", "--data", "mnist1d", "-O", "rate=lots"], "must be a float"),
        (["--sparsity", "1.2"], r">= 0 and < 1"),
        (["--method", "movement", "--data", "nowhere/x.npz"], "no such file"),
        (["--method", "movement", "--data", "mnist1d", "--epochs", "0"], "--epochs 1 or more"),
    ],
)
def test_bad_prune_input_is_one_line(trained, tmp_path, args, message):
    out = tmp_path / "out.pt"
    result = invoke("prune", trained, *args, "-o", out)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert re.search(message, result.output), result.output
    assert not out.exists()


def _resnet18(tmp_path):
    factory = tmp_path / "my_resnet.py"
    factory.write_text(RESNET18)
    return f"{factory}:resnet18"


def _images(n=16, classes=1000):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=generator)
    y = torch.randint(0, classes, (n,), generator=generator)
    return Dataset("noise", x, y, [str(i) for i in range(classes)])


@pytest.mark.parametrize(
    "method",
    [
        "magnitude",
        "random",
        "snip",
        "grasp",
        "synflow",
        "lottery",
        "movement",
        "rigl",
        "gumbel",
        "gradient",
        "nm",
        "channel",
    ],
)
def test_methods_on_an_imagenet_resnet18_from_a_file(tmp_path, method):
    arch = _resnet18(tmp_path)
    torch.manual_seed(0)
    path = tmp_path / "r18.pt"
    import importlib.util

    spec = importlib.util.spec_from_file_location("my_resnet", arch.rsplit(":", 1)[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.resnet18().eval()
    save_checkpoint(path, model, CheckpointMeta(arch=arch, input_shape=[1, 3, 32, 32]))
    loaded = sparsebench.load(path, LoadOptions(arch=arch))
    data = PruneData(_images(), None, (1, 3, 32, 32), epochs=1, batch_size=8)
    options = {"iterations": 3} if method == "synflow" else {}
    options.update({"warmup": 1} if method == "gradient" else {})
    options.update({"rate": 0.6} if method == "lottery" else {})
    result = prune(loaded.model, method, 0.6, data=data, example=torch.zeros(1, 3, 32, 32),
                   **options)  # fmt: skip
    if method == "nm":
        assert abs(result.sparsity - 0.5) < 0.005
    elif method == "channel":
        assert result.extra["channels"] and all(
            c["zeroed"] == int(0.6 * c["of"]) for c in result.extra["channels"].values()
        )
    else:
        assert abs(result.sparsity - 0.6) < 0.005


def test_methods_on_a_bert_encoder_built_from_a_config(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64,
                                     max_position_embeddings=32, num_labels=3)  # fmt: skip
    folder = tmp_path / "bert"
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    ids_only = LoadOptions(inputs=(InputSpec("input_ids", (1, 16), "int64", 0, 199),))
    loaded = sparsebench.load(folder, ids_only)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 200, (32, 16), generator=generator)
    tokens = Dataset("tokens", ids, torch.randint(0, 3, (32,), generator=generator),
                     ["a", "b", "c"])  # fmt: skip
    data = PruneData(tokens, tokens, (1, 16), epochs=1, batch_size=8)
    for method in ("magnitude", "snip", "movement", "lottery"):
        model = sparsebench.load(folder, ids_only).model
        options = {"rate": 0.6} if method == "lottery" else {}
        result = prune(model, method, 0.6, data=data, scope="layer", **options)
        assert abs(result.sparsity - 0.6) < 0.005, method
        assert any("attention" in name for name in result.layers)
    assert len(loaded.model(ids[:2])) == 2  # the ids-only model still runs
