"""Files written by ONNX Runtime's own tools, on xla:cpu against onnxruntime.

A tiny BERT (random weights, transformers + torch.onnx) is exported once, then rewritten by
``onnxruntime.transformers.optimizer`` (EmbedLayerNormalization, Attention,
SkipLayerNormalization, BiasGelu or FastGelu) and by ``onnxruntime.quantization.quantize_dynamic``
(DynamicQuantizeLinear + MatMulInteger; on the optimized file also QAttention and
QEmbedLayerNormalization). Quantized files run at the precision they carry.
"""

from __future__ import annotations

import collections
import warnings

import numpy as np
import onnx
import pytest

pytest.importorskip("jax")
pytest.importorskip("onnxruntime")

from ._ort_parity import assert_matches_ort  # noqa: E402

HEADS, HIDDEN = 2, 32


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=100, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=HEADS,
                                     intermediate_size=64, max_position_embeddings=32)
    config._attn_implementation = "eager"  # the attention pattern the optimizer fuses
    torch.manual_seed(0)
    encoder = transformers.BertModel(config).eval()

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state, out.pooler_output

    names = ["input_ids", "attention_mask", "token_type_ids"]
    path = tmp_path_factory.mktemp("bert") / "bert.onnx"
    example = (torch.randint(0, 100, (2, 8)), torch.ones(2, 8, dtype=torch.int64), torch.zeros(2, 8, dtype=torch.int64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrapper().eval(), example, str(path), input_names=names, output_names=["hidden", "pooled"],
                          dynamic_axes={name: {0: "batch", 1: "seq"} for name in names}, opset_version=17, dynamo=False)
    return path


def _feeds(model):
    rng = np.random.default_rng(0)
    mask = np.ones((2, 7), np.int64)
    mask[1, 5:] = 0
    feeds = {"input_ids": rng.integers(0, 100, (2, 7)), "attention_mask": mask,
             "token_type_ids": rng.integers(0, 2, (2, 7))}
    return {i.name: feeds[i.name].astype(np.int64) for i in model.graph.input}


def _ops(model) -> collections.Counter:
    return collections.Counter(n.op_type for n in model.graph.node)


def _optimized(bert, tmp_path, approximate_gelu: bool):
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_gelu_approximation = approximate_gelu
    optimized = optimize_model(str(bert), model_type="bert", num_heads=HEADS, hidden_size=HIDDEN, opt_level=0,
                               optimization_options=options)
    path = tmp_path / "optimized.onnx"
    optimized.save_model_to_file(str(path))
    return path


def test_transformer_optimizer_output(bert, tmp_path):
    # BiasGelu (the exact form) is covered on a hand-built graph in test_contrib_ops.py; each compile here costs seconds
    path = _optimized(bert, tmp_path, approximate_gelu=True)
    model = onnx.load(path)
    ops = _ops(model)
    assert {"Attention", "EmbedLayerNormalization", "SkipLayerNormalization", "FastGelu"} <= set(ops), ops
    assert_matches_ort(model, _feeds(model), atol=1e-4, rtol=1e-4)


def test_quantize_dynamic_output(bert, tmp_path):
    """quantize_dynamic of the optimized file: DynamicQuantizeLinear + MatMulInteger, QAttention, QEmbedLayerNormalization."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = _optimized(bert, tmp_path, False)
    target = tmp_path / "quantized.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    model = onnx.load(target)
    ops = _ops(model)
    assert {"DynamicQuantizeLinear", "MatMulInteger", "QAttention", "QEmbedLayerNormalization"} <= set(ops), ops
    assert_matches_ort(model, _feeds(model), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["cnn", "transformer"])
def test_quantize_static_qoperator_output(tmp_path, name):
    """quantize_static in the QOperator format: QLinearConv/QLinearMatMul and the com.microsoft QGemm,
    QLinearAdd, QLinearMul, QLinearSoftmax, at the precision the file carries."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from portarun import models

    model = models.build(name)
    source, target = tmp_path / "float.onnx", tmp_path / "qop.onnx"
    onnx.save(model.proto, source)
    spec = model.inputs[0]
    shape = [d if isinstance(d, int) else 2 for d in spec.shape]
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.left = 4

        def get_next(self):
            self.left -= 1
            return {spec.name: rng.standard_normal(shape).astype(np.float32)} if self.left >= 0 else None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QOperator,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    quantized = onnx.load(target)
    ops = {(n.domain, n.op_type) for n in quantized.graph.node}
    expected = {("com.microsoft", "QGemm")} if name == "cnn" else \
        {("com.microsoft", "QLinearAdd"), ("com.microsoft", "QLinearMul"), ("com.microsoft", "QLinearSoftmax")}
    assert expected <= ops, ops
    assert_matches_ort(quantized, {spec.name: rng.standard_normal(shape).astype(np.float32)}, atol=1e-5)


def test_quantize_dynamic_of_a_cnn_gives_conv_integer(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from portarun import models

    model = models.build("cnn")
    source, target = tmp_path / "cnn.onnx", tmp_path / "cnn.dyn.onnx"
    onnx.save(model.proto, source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["Conv", "MatMul", "Gemm"])
    quantized = onnx.load(target)
    assert {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"} <= set(_ops(quantized))
    spec = model.inputs[0]
    x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 2 for d in spec.shape])
    assert_matches_ort(quantized, {spec.name: x.astype(np.float32)}, atol=1e-5)


@pytest.mark.parametrize("direction,per_channel", [("forward", False), ("bidirectional", True)])
def test_quantize_dynamic_of_an_lstm_gives_dynamic_quantize_lstm(tmp_path, direction, per_channel):
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(1)
    dirs, inputs, hidden, seq, batch = (2 if direction == "bidirectional" else 1), 6, 8, 5, 3
    weights = [numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
               for name, shape, scale in (("W", (dirs, 4 * hidden, inputs), 0.4), ("R", (dirs, 4 * hidden, hidden), 0.4),
                                          ("B", (dirs, 8 * hidden), 0.1))]
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "lens"], ["Y", "Y_h", "Y_c"], hidden_size=hidden,
                            direction=direction)
    graph = helper.make_graph([node], "lstm", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [seq, batch, inputs]),
                                               helper.make_tensor_value_info("lens", TensorProto.INT32, [batch])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [seq, dirs, batch, hidden]),
                               helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [dirs, batch, hidden]),
                               helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, [dirs, batch, hidden])], weights)
    source, target = tmp_path / "lstm.onnx", tmp_path / "lstm.dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8), source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM"],
                         per_channel=per_channel)
    quantized = onnx.load(target)
    assert "DynamicQuantizeLSTM" in _ops(quantized)
    feeds = {"X": rng.standard_normal((seq, batch, inputs)).astype(np.float32), "lens": np.asarray([5, 3, 4], np.int32)}
    # ORT quantizes the hidden state per chunk of batch rows, one chunk per thread: one thread per row
    assert_matches_ort(quantized, feeds, atol=1e-5, ort_threads=batch)


@pytest.mark.parametrize("symmetric", [True, False])
def test_matmul_nbits_quantizer_output(symmetric):
    """ORT's 4-bit weight quantizer (MatMulNBitsQuantizer, block 32): com.microsoft MatMulNBits."""
    import logging

    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from portarun import models

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    model = models.build("transformer")
    quantizer = MatMulNBitsQuantizer(model.proto, block_size=32, is_symmetric=symmetric, accuracy_level=0)
    quantizer.process()
    quantized = quantizer.model.model
    assert _ops(quantized)["MatMulNBits"] >= 4
    x = np.random.default_rng(0).standard_normal((2, 5, 256)).astype(np.float32)
    assert_matches_ort(quantized, {"x": x}, atol=1e-4, rtol=1e-4)


def test_matmul_nbits_quantizer_with_gather_on_a_decoder():
    """4-bit weights and a 4-bit embedding table (GatherBlockQuantized, uint4 data) on the built-in
    decoder with its KV-cache inputs."""
    import logging

    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    import portarun
    from portarun import models

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.ERROR)
    model = models.build("decoder-tiny")
    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=False, accuracy_level=0,
                                          op_types_to_quantize=("MatMul", "Gather"),
                                          quant_axes=(("MatMul", 0), ("Gather", 1)))
    quantizer = MatMulNBitsQuantizer(model.proto, algo_config=config)
    quantizer.process()
    quantized = quantizer.model.model
    assert {"MatMulNBits", "GatherBlockQuantized"} <= set(_ops(quantized))
    feeds = portarun.random_feeds(model.inputs, seed=0, dims=models.get("decoder-tiny").default_dims)
    assert_matches_ort(quantized, feeds, atol=1e-4, rtol=1e-4)
