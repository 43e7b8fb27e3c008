"""The segment-gated cross-encoder (``SemrankGatedBertForSequenceClassification``) as an ONNX graph.

Same arithmetic as ``semrank.runtime.torch_gated``: positions restart where the passage
segment (token type 1) starts, token type embedding 0 everywhere, per layer an additive
``gate[head]`` on the attention logits between the two segments, then the scaled cosine of the
segments' mean-pooled states. The tokenizer saved with the model lays pairs out as
``[CLS] query [SEP] [CLS] passage [SEP]``; the graph only needs the token types to find them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto

from semrank.errors import ModelLoadError
from semrank.runtime._arch_bert import Scoped, _embeddings, _layer, detect_prefix, require
from semrank.runtime._graph import GraphBuilder
from semrank.runtime._weights import Weights

_COSINE_EPS = 1e-8  # torch.nn.functional.cosine_similarity's default


def build_gated_bert(g: GraphBuilder, config: dict[str, Any], weights: Weights) -> None:
    w = Scoped(weights, detect_prefix(weights, "embeddings.word_embeddings.weight"))
    g.add_input("input_ids", ["batch", "seq"])
    attention_mask = g.add_input("attention_mask", ["batch", "seq"])
    segment = g.add_input("token_type_ids", ["batch", "seq"])
    first = g.op("Mul", [g.op("Sub", [g.const(1), segment]), attention_mask])  # query side
    second = g.op("Mul", [segment, attention_mask])  # passage side
    # Token types only mark the segments here: every token gets the type-0 embedding.
    positions = _segment_positions(g, segment, first, second)
    hidden = _embeddings(g, config, w, "input_ids", None, roberta=False, position_ids=positions)
    padding = g.padding_mask(attention_mask)
    cross = _cross_segment(g, segment)
    gates = require(weights, "cross_gates")
    heads = int(config["num_attention_heads"])
    if gates.shape != (int(config["num_hidden_layers"]), heads):
        raise ModelLoadError(f"cross_gates has shape {gates.shape}; the config disagrees")
    for i in range(gates.shape[0]):
        gate = g.weight(f"gate.{i}", gates[i].reshape(1, heads, 1, 1))
        mask = g.op("Add", [padding, g.op("Mul", [cross, gate])])
        hidden = _layer(g, config, w, hidden, mask, f"encoder.layer.{i}.")
    cosine = _cosine(g, _mean_pool(g, hidden, first), _mean_pool(g, hidden, second))
    scale = g.weight("head.scale", require(weights, "classifier.scale").reshape(1))
    bias = g.weight("head.bias", require(weights, "classifier.bias").reshape(1))
    logits = g.op("Add", [g.op("Mul", [cosine, scale]), bias])
    g.add_output(g.op("Unsqueeze", [logits, g.const([1])]), "logits", ["batch", 1])


def _segment_positions(g: GraphBuilder, segment: str, first: str, second: str) -> str:
    in_first = g.op("Sub", [g.op("CumSum", [first, g.const(1)]), g.const(1)])
    in_second = g.op("Sub", [g.op("CumSum", [second, g.const(1)]), g.const(1)])
    is_second = g.op("Equal", [segment, g.const(1)])
    positions = g.op("Where", [is_second, in_second, in_first])
    return g.op("Max", [positions, g.const(0)])


def _cross_segment(g: GraphBuilder, segment: str) -> str:
    """float [B, 1, S, S]: 1 where query and key tokens are in different segments."""
    rows = g.op("Unsqueeze", [segment, g.const([2])])
    cols = g.op("Unsqueeze", [segment, g.const([1])])
    differ = g.op("Not", [g.op("Equal", [rows, cols])])
    as_float = g.op("Cast", [differ], to=TensorProto.FLOAT)
    return g.op("Unsqueeze", [as_float, g.const([1])])


def _mean_pool(g: GraphBuilder, hidden: str, tokens: str) -> str:
    weights = g.op("Unsqueeze", [g.op("Cast", [tokens], to=TensorProto.FLOAT), g.const([2])])
    summed = g.op("ReduceSum", [g.op("Mul", [hidden, weights]), g.const([1])], keepdims=0)
    count = g.op("ReduceSum", [weights, g.const([1])], keepdims=0)
    return g.op("Div", [summed, g.op("Max", [count, g.const(1.0, np.float32)])])


def _cosine(g: GraphBuilder, a: str, b: str) -> str:
    def norm(x: str) -> str:
        return g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [x, x]), g.const([1])], keepdims=0)])

    dot = g.op("ReduceSum", [g.op("Mul", [a, b]), g.const([1])], keepdims=0)
    denominator = g.op("Max", [g.op("Mul", [norm(a), norm(b)]), g.const(_COSINE_EPS, np.float32)])
    return g.op("Div", [dot, denominator])
