"""ONNX graphs with several, integer-typed inputs and symbolic dims: transformers' exports.

MACs of tiny Hugging Face models (random weights, built from a config: no downloads) exported
with a dynamic batch and sequence, against an independent count from their modules and
against torch's flop counter; the single-input tuple API; the bounds on foreign graphs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sparsebench.errors import SparsebenchError  # noqa: E402
from sparsebench.measure.macs import count_macs  # noqa: E402
from sparsebench.runtimes import _onnx_shapes  # noqa: E402
from sparsebench.runtimes._onnx_shapes import bind_inputs, skeleton, static_shapes  # noqa: E402
from sparsebench.runtimes.onnx_bounds import check_graph_bounds  # noqa: E402
from sparsebench.runtimes.onnx_graph import (  # noqa: E402
    GraphSummary,
    count_onnx_macs,
    graph_input,
    graph_inputs,
)

SEQ = 32
HIDDEN, LAYERS = 64, 2
DYNAMIC = {0: "batch", 1: "sequence"}
NAMES = ["input_ids", "attention_mask"]


class Logits(nn.Module):
    """forward(input_ids, attention_mask) -> logits, as an exporter wants it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _example(batch: int = 1, seq: int = SEQ):
    torch.manual_seed(0)
    return torch.randint(0, 1000, (batch, seq)), torch.ones(batch, seq, dtype=torch.long)


def _export(wrapper: nn.Module, path, logits_axes: dict) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's tracer warnings
        torch.onnx.export(
            wrapper, _example(), str(path), dynamo=False, input_names=NAMES,
            output_names=["logits"], opset_version=17,
            dynamic_axes={"input_ids": DYNAMIC, "attention_mask": DYNAMIC, "logits": logits_axes},
        )  # fmt: skip
    return onnx.load(str(path))


def _bert(attention: str) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=1000, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64, num_labels=3,
        attn_implementation=attention,
    )  # fmt: skip
    torch.manual_seed(0)
    return Logits(transformers.BertForSequenceClassification(config).eval()).eval()


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def bert(request, tmp_path_factory):
    """(wrapper, exported ModelProto, attention) of a tiny BERT, eager or SDPA attention."""
    wrapper = _bert(request.param)
    path = tmp_path_factory.mktemp("bert") / f"bert_{request.param}.onnx"
    return wrapper, _export(wrapper, path, {0: "batch"}), request.param


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=1000, n_embd=HIDDEN, n_layer=LAYERS, n_head=4, n_positions=64,
        attn_implementation="eager", bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    wrapper = Logits(transformers.GPT2LMHeadModel(config).eval()).eval()
    path = tmp_path_factory.mktemp("gpt2") / "gpt2.onnx"
    return wrapper, _export(wrapper, path, DYNAMIC)


def _attention_macs(seq: int) -> int:
    return 2 * LAYERS * seq * seq * HIDDEN  # QK^T and probabilities @ V, all heads together


def _independent_bert_macs(wrapper: nn.Module, seq: int = SEQ) -> int:
    """Every nn.Linear's weights x the tokens it sees, plus attention; per sample."""
    macs = 0
    for name, module in wrapper.named_modules():
        if isinstance(module, nn.Linear):
            tokens = seq if ".encoder." in name else 1  # the pooler and classifier see [CLS]
            macs += module.in_features * module.out_features * tokens
    return macs + _attention_macs(seq)


def _independent_gpt2_macs(wrapper: nn.Module, seq: int = SEQ) -> int:
    """transformers' Conv1D (its weight is in x out) and the LM head see every token."""
    macs = 0
    for module in wrapper.modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            macs += module.weight.numel() * seq
    return macs + _attention_macs(seq)


def _torch_macs(wrapper: nn.Module, batch: int = 1) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        wrapper(*_example(batch))
    return counter.get_total_flops() // 2 // batch


def _inputs(batch: int = 1, seq: int = SEQ) -> dict:
    return {name: (batch, seq) for name in NAMES}


def test_graph_inputs_name_every_input_with_its_symbols_and_type(bert):
    _, model, _ = bert
    assert graph_inputs(model) == [
        ("input_ids", ["batch", "sequence"], "int64"),
        ("attention_mask", ["batch", "sequence"], "int64"),
    ]
    with pytest.raises(SparsebenchError, match="has 2 inputs"):
        graph_input(model)  # the single-input helper still says what it needs


def test_every_value_of_bert_gets_a_static_shape(bert):
    _, model, _ = bert
    graph = skeleton(model)
    shapes = static_shapes(graph, _inputs())
    outputs = [name for node in model.graph.node for name in node.output if name]
    assert all(name in shapes for name in outputs)
    layer_norm = [
        n for n in outputs if n.endswith("embeddings/LayerNorm/LayerNormalization_output_0")
    ]
    assert [shapes[n] for n in layer_norm] == [[1, SEQ, HIDDEN]]  # the value of the report
    assert shapes["logits"] == [1, 3]


def test_bert_macs_equal_the_independent_count_and_torchs(bert):
    wrapper, model, attention = bert
    summary = GraphSummary.from_model(model)
    assert summary.input_names == NAMES
    got = count_onnx_macs(summary, _inputs()).dense
    expected = _independent_bert_macs(wrapper)
    # encoder 2 x 32 x 32,768, pooler and classifier 64 x 67, attention 262,144
    assert expected == 2_363_584
    assert got == pytest.approx(expected, rel=0.01)
    if attention == "eager":  # torch's flop counter leaves CPU SDPA attention out
        assert _torch_macs(wrapper) == pytest.approx(got, rel=0.01)


def test_bert_macs_follow_batch_and_sequence(bert):
    wrapper, model, _ = bert
    summary = GraphSummary.from_model(model)
    one = count_onnx_macs(summary, _inputs(1)).dense
    assert count_onnx_macs(summary, _inputs(2), batch=1).dense == 2 * one  # the whole batch
    assert count_onnx_macs(summary, _inputs(2)).dense == one  # per sample, by default
    assert count_onnx_macs(summary, _inputs(1, 17)).dense == _independent_bert_macs(wrapper, 17)


def test_a_shape_for_the_first_input_binds_the_others_through_their_symbols(bert):
    _, model, _ = bert
    summary = GraphSummary.from_model(model)
    assert bind_inputs(summary.skeleton, (2, 16)) == {
        "input_ids": (2, 16),
        "attention_mask": (2, 16),
    }
    assert count_onnx_macs(summary, (1, SEQ)) == count_onnx_macs(summary, _inputs())
    assert count_onnx_macs(summary, {"input_ids": (1, SEQ)}) == count_onnx_macs(summary, _inputs())


def test_gpt2_macs_count_conv1d_linears_and_attention(gpt2):
    wrapper, model = gpt2
    summary = GraphSummary.from_model(model)
    got = count_onnx_macs(summary, _inputs()).dense
    expected = _independent_gpt2_macs(wrapper)
    # blocks 2 x 32 x 49,152, attention 262,144, LM head 32 x 64,000
    assert expected == 5_455_872
    assert got == pytest.approx(expected, rel=0.01)
    assert _torch_macs(wrapper) == pytest.approx(got, rel=0.01)
    assert count_onnx_macs(summary, _inputs(2), batch=1).dense == 2 * got


def test_input_errors_are_one_line_and_name_the_input(bert):
    _, model, _ = bert
    graph = skeleton(model)
    with pytest.raises(SparsebenchError, match="no input 'token_type_ids'") as info:
        bind_inputs(graph, {"token_type_ids": (1, SEQ)})
    assert "\n" not in str(info.value)
    with pytest.raises(SparsebenchError, match="input 'input_ids' has 2") as info:
        bind_inputs(graph, {"input_ids": (1, 2, SEQ)})
    assert "\n" not in str(info.value)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 8 * 8, 10),
    ).eval()  # fmt: skip


def test_a_single_float_input_cnn_counts_as_before_through_the_tuple_api(tmp_path):
    model, x = _cnn(), torch.zeros(1, 3, 8, 8)
    path = tmp_path / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(  # no constant folding: BatchNorm stays a node of its own
            model, (x,), str(path), dynamo=False, input_names=["input"],
            output_names=["logits"], opset_version=17, do_constant_folding=False,
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )  # fmt: skip
    proto = onnx.load(str(path))
    summary = GraphSummary.from_model(proto)
    assert graph_input(proto).name == summary.input_name == "input"
    assert graph_inputs(proto) == [("input", ["batch", 3, 8, 8], "float")]
    macs = count_onnx_macs(summary, (1, 3, 8, 8))
    assert macs.dense == 8 * 3 * 9 * 64 + 8 * 64 + 512 * 10 == count_macs(model, x).dense
    assert count_onnx_macs(summary, {"input": (4, 3, 8, 8)}) == macs
    old = static_shapes(summary.skeleton, "input", (1, 3, 8, 8))  # the older call
    assert old == static_shapes(summary.skeleton, {"input": (1, 3, 8, 8)})
    assert old == static_shapes(summary.skeleton, (1, 3, 8, 8))


def _model(nodes, inputs, outputs, initializers=(), domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    return helper.make_model(graph, opset_imports=opsets)


def _embedding_graph():
    """input_ids [batch, sequence] -> Gather of a [1000, 64] table -> MatMul [64, 8]."""
    table = numpy_helper.from_array(np.zeros((1000, 64), np.float32), "table")
    weight = numpy_helper.from_array(np.zeros((64, 8), np.float32), "w")
    return _model(
        [helper.make_node("Gather", ["table", "ids"], ["embedded"]),
         helper.make_node("MatMul", ["embedded", "w"], ["y"])],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 8])],
        [table, weight],
    )  # fmt: skip


def test_bounds_refuse_a_huge_binding_of_the_inputs_in_one_line():
    model = _embedding_graph()
    check_graph_bounds(model, {"ids": (1, SEQ)}, "m.onnx")  # an ordinary binding passes
    check_graph_bounds(model, (), "m.onnx")  # dynamic dims read as 1
    with pytest.raises(SparsebenchError, match="value 'embedded' would hold 536,870,912") as info:
        check_graph_bounds(model, {"ids": (1, 2**23)}, "m.onnx")  # 2^23 x 64 floats
    assert "\n" not in str(info.value)
    with pytest.raises(SparsebenchError, match="input 'ids' of shape .* implausibly large"):
        check_graph_bounds(model, (2**15, 2**14), "m.onnx")
    summary = GraphSummary.from_model(model)
    assert count_onnx_macs(summary, {"ids": (1, SEQ)}).dense == SEQ * 64 * 8  # Gather counts 0


def test_bounds_check_every_input_of_a_transformer(bert):
    _, model, _ = bert
    check_graph_bounds(model, _inputs(), "bert.onnx")
    with pytest.raises(SparsebenchError, match="input 'attention_mask' .* implausibly large"):
        check_graph_bounds(model, {"input_ids": (1, SEQ), "attention_mask": (2**15, 2**14)}, "b")


def _contrib_graph():
    """A com.microsoft op ONNX cannot infer, feeding a MatMul."""
    weight = numpy_helper.from_array(np.zeros((64, 8), np.float32), "w")
    return _model(
        [helper.make_node("FastGelu", ["x"], ["g"], domain="com.microsoft"),
         helper.make_node("MatMul", ["g", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SEQ, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight], domains=["com.microsoft"],
    )  # fmt: skip


def test_onnxruntime_symbolic_inference_fills_what_onnx_cannot():
    pytest.importorskip("sympy")
    pytest.importorskip("onnxruntime.tools.symbolic_shape_infer")
    summary = GraphSummary.from_model(_contrib_graph())
    assert count_onnx_macs(summary, (2, SEQ, 64)).dense == SEQ * 64 * 8


def test_folding_resumes_on_the_shapes_onnxruntime_found():
    pytest.importorskip("sympy")
    pytest.importorskip("onnxruntime.tools.symbolic_shape_infer")
    model = _contrib_graph()  # then g [b, 32, 64] -> [b, 32, sqrt(64), sqrt(64)] -> MatMul
    del model.graph.node[1:]
    ints = {"two": 2, "zero": [0], "end": [2], "axis": [0]}
    model.graph.initializer.extend(
        numpy_helper.from_array(np.array(v, np.int64), k) for k, v in ints.items()
    )
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.zeros((8, 4), np.float32), "w"))
    model.graph.node.extend(
        [helper.make_node("Shape", ["g"], ["s"]),
         helper.make_node("Gather", ["s", "two"], ["c"]),
         helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT),
         helper.make_node("Sqrt", ["cf"], ["rf"]),
         helper.make_node("Cast", ["rf"], ["ri"], to=TensorProto.INT64),
         helper.make_node("Unsqueeze", ["ri", "axis"], ["r1"]),
         helper.make_node("Slice", ["s", "zero", "end"], ["head"]),
         helper.make_node("Concat", ["head", "r1", "r1"], ["shape"], axis=0),
         helper.make_node("Reshape", ["g", "shape"], ["r"]),
         helper.make_node("MatMul", ["r", "w"], ["y"])]
    )  # fmt: skip
    shapes = static_shapes(skeleton(model), (2, SEQ, 64))
    assert shapes["g"] == [2, SEQ, 64] and shapes["r"] == [2, SEQ, 8, 8]
    assert count_onnx_macs(GraphSummary.from_model(model), (2, SEQ, 64)).dense == SEQ * 64 * 4


def test_a_matmul_without_a_shape_is_one_line_naming_the_value(monkeypatch):
    monkeypatch.setattr(_onnx_shapes, "_bounded_symbolic", lambda: None)  # as without sympy
    summary = GraphSummary.from_model(_contrib_graph())
    with pytest.raises(SparsebenchError, match="MatMul node .* no static shape for g$") as info:
        count_onnx_macs(summary, (2, SEQ, 64))
    assert "\n" not in str(info.value)


def test_leftover_symbols_are_unified_without_onnxruntime(monkeypatch):
    monkeypatch.setattr(_onnx_shapes, "_bounded_symbolic", lambda: None)
    weight = numpy_helper.from_array(np.zeros((16, 8), np.float32), "w")
    one = numpy_helper.from_array(np.array([1], np.int64), "one")
    last = numpy_helper.from_array(np.array([16], np.int64), "last")
    model = _model(  # a Reshape to [1, k, 16] with k data-dependent, then a broadcast Add
        [helper.make_node("ReduceMax", ["k"], ["kmax"], keepdims=1),
         helper.make_node("Concat", ["one", "kmax", "last"], ["shape"], axis=0),
         helper.make_node("Reshape", ["x", "shape"], ["r"]),
         helper.make_node("Add", ["r", "bias"], ["s"]),
         helper.make_node("MatMul", ["s", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SEQ, 64]),
         helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
         helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1, 1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight, one, last],
    )  # fmt: skip
    shapes = static_shapes(skeleton(model), {"x": (1, SEQ, 64), "k": (1,), "bias": (1, 1, 16)})
    assert shapes["r"] == shapes["s"] == [1, SEQ * 64 // 16, 16]  # the element count is kept
    assert shapes["y"] == [1, SEQ * 4, 8]


def test_onnxruntime_symbolic_inference_never_fills_a_large_constant(monkeypatch):
    pytest.importorskip("sympy")
    pytest.importorskip("onnxruntime.tools.symbolic_shape_infer")
    import tracemalloc

    size = numpy_helper.from_array(np.array([50_000_000], np.int64), "size")
    model = _contrib_graph()
    model.graph.initializer.append(size)
    one = numpy_helper.from_array(np.array([1], np.int64))
    model.graph.node.append(helper.make_node("ConstantOfShape", ["size"], ["c"], value=one))
    tracemalloc.start()
    try:
        shapes = static_shapes(skeleton(model), (2, SEQ, 64))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert shapes["c"] == [50_000_000] and shapes["y"] == [2, SEQ, 8]
    assert peak < 50_000_000  # upstream fills 400 MB of int64 ones here


def test_data_propagation_is_not_run_where_it_could_grow(monkeypatch):
    """ONNX's data propagation keeps every Concat of shapes it computes, unbounded."""
    nodes = [helper.make_node("Shape", ["x"], ["s0"])]
    for i in range(20):  # s20 would hold 2^20 dims in ONNX's data propagation
        nodes.append(helper.make_node("Concat", [f"s{i}", f"s{i}"], [f"s{i + 1}"], axis=0))
    nodes.append(helper.make_node("Reshape", ["x", "s20"], ["r"]))
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch"])],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, None)],
    )
    calls = []
    infer = onnx.shape_inference.infer_shapes

    def recording(model, *args, data_prop=False, **kwargs):
        calls.append(data_prop)
        return infer(model, *args, data_prop=data_prop, **kwargs)

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", recording)
    shapes = static_shapes(skeleton(model), (4,))
    check_graph_bounds(model, (4,), "m.onnx")  # 2^20 dims pass the bounds, inferred safely
    assert shapes["s16"] == [2**16] and shapes["s20"] == [2**20]  # folded up to 2^16, then
    assert calls and not any(calls)  # shape inference alone: no data propagation


def test_folding_never_runs_a_broadcast_or_gather_that_outgrows_its_inputs():
    known = {
        "a": numpy_helper.from_array(np.zeros((32768, 1), np.int64), "a"),
        "b": numpy_helper.from_array(np.zeros((1, 32767), np.int64), "b"),
        "data": numpy_helper.from_array(np.zeros((2, 32767), np.int64), "data"),
        "idx": numpy_helper.from_array(np.zeros(32767, np.int64), "idx"),
    }
    add = helper.make_node("Add", ["a", "b"], ["sum"])
    gather = helper.make_node("Gather", ["data", "idx"], ["picked"])
    small = helper.make_node("Add", ["a", "a"], ["twice"])
    assert not _onnx_shapes._small_result(add, known, {})  # 2^30 elements from 2^16
    assert not _onnx_shapes._small_result(gather, known, {})
    assert _onnx_shapes._small_result(small, known, {})
