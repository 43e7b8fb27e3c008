"""BERT and (XLM-)RoBERTa encoders as ONNX graphs.

Both share the post-LayerNorm transformer block; they differ in embeddings (RoBERTa position
ids start at ``padding_idx + 1`` and count only non-pad tokens, and it has no token types)
and in the classification head (BERT: pooler dense+tanh then classifier; RoBERTa:
dense+tanh+out_proj on ``<s>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import TensorProto

from semrank.errors import ModelLoadError, UnsupportedArchitectureError
from semrank.runtime._graph import GraphBuilder
from semrank.runtime._weights import Weights


@dataclass(frozen=True)
class Scoped:
    """Weights under a detected prefix ("bert.", "roberta.", "" for sentence-transformers)."""

    weights: Weights
    prefix: str

    def __call__(self, name: str) -> np.ndarray:
        return require(self.weights, self.prefix + name)

    def maybe(self, name: str) -> np.ndarray | None:
        return self.weights.get(self.prefix + name)


def require(weights: Weights, name: str) -> np.ndarray:
    if name not in weights:
        raise ModelLoadError(
            f"checkpoint is missing weight {name!r}; is it the right architecture?"
        )
    return weights[name]


def detect_prefix(weights: Weights, anchor: str) -> str:
    for key in weights:
        if key.endswith(anchor):
            return key[: -len(anchor)]
    raise ModelLoadError(f"checkpoint has no weight ending in {anchor!r}")


def build_bert_like(
    g: GraphBuilder, config: dict[str, Any], weights: Weights, *, roberta: bool, head: str
) -> None:
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedArchitectureError(
            f"unsupported position_embedding_type {config['position_embedding_type']!r}; "
            "only 'absolute' is exported"
        )
    w = Scoped(weights, detect_prefix(weights, "embeddings.word_embeddings.weight"))
    input_ids = g.add_input("input_ids", ["batch", "seq"])
    attention_mask = g.add_input("attention_mask", ["batch", "seq"])
    token_types = None if roberta else g.add_input("token_type_ids", ["batch", "seq"])
    hidden = _embeddings(g, config, w, input_ids, token_types, roberta=roberta)
    mask = g.padding_mask(attention_mask)
    for i in range(int(config["num_hidden_layers"])):
        hidden = _layer(g, config, w, hidden, mask, f"encoder.layer.{i}.")
    if head == "encoder":
        g.add_output(hidden, "last_hidden_state", ["batch", "seq", int(config["hidden_size"])])
        return
    logits = _roberta_head(g, weights, hidden) if roberta else _bert_head(g, weights, w, hidden)
    out_proj = "classifier.out_proj.weight" if roberta else "classifier.weight"
    g.add_output(logits, "logits", ["batch", int(require(weights, out_proj).shape[0])])


def _embeddings(
    g: GraphBuilder,
    config: dict[str, Any],
    w: Scoped,
    input_ids: str,
    token_types: str | None,
    *,
    roberta: bool,
    position_ids: str | None = None,
) -> str:
    """Word + position (+ token type) embeddings, LayerNorm. ``position_ids`` overrides the
    default 0..seq-1 (the gated model restarts them in its second segment)."""
    words = g.op(
        "Gather", [g.weight("emb.word", w("embeddings.word_embeddings.weight")), input_ids]
    )
    positions = g.weight("emb.position", w("embeddings.position_embeddings.weight"))
    if roberta:
        pos_ids = _roberta_position_ids(g, input_ids, int(config.get("pad_token_id", 1)))
        hidden = g.op("Add", [words, g.op("Gather", [positions, pos_ids])])
    else:
        pos_ids = position_ids or g.op("Range", [g.const(0), g.seq_len(input_ids), g.const(1)])
        hidden = g.op("Add", [words, g.op("Gather", [positions, pos_ids])])
    type_table = w.maybe("embeddings.token_type_embeddings.weight")
    if token_types is not None and type_table is not None:
        types = g.op("Gather", [g.weight("emb.token_type", type_table), token_types])
        hidden = g.op("Add", [hidden, types])
    elif type_table is not None:  # RoBERTa: all token types are 0
        hidden = g.op("Add", [hidden, g.weight("emb.token_type0", type_table[0])])
    eps = float(config.get("layer_norm_eps", 1e-12))
    return g.layer_norm(
        hidden, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"), eps, "emb.ln"
    )


def _roberta_position_ids(g: GraphBuilder, input_ids: str, pad: int) -> str:
    not_pad = g.op("Not", [g.op("Equal", [input_ids, g.const(pad)])])
    as_int = g.op("Cast", [not_pad], to=TensorProto.INT64)
    counted = g.op("Mul", [g.op("CumSum", [as_int, g.const(1)]), as_int])
    return g.op("Add", [counted, g.const(pad)])


def _layer(g: GraphBuilder, config: dict[str, Any], w: Scoped, x: str, mask: str, p: str) -> str:
    heads = int(config["num_attention_heads"])
    head_dim = int(config["hidden_size"]) // heads
    eps = float(config.get("layer_norm_eps", 1e-12))
    a = p + "attention."

    def proj(name: str, inp: str) -> str:
        return g.linear(inp, w(name + ".weight"), w(name + ".bias"), name)

    q = g.split_heads(proj(a + "self.query", x), heads, head_dim)
    k = g.split_heads(proj(a + "self.key", x), heads, head_dim)
    v = g.split_heads(proj(a + "self.value", x), heads, head_dim)
    context = g.merge_heads(g.attention(q, k, v, mask, head_dim))
    attn_out = g.op("Add", [proj(a + "output.dense", context), x])
    ln1 = a + "output.LayerNorm"
    x = g.layer_norm(attn_out, w(ln1 + ".weight"), w(ln1 + ".bias"), eps, ln1)
    inter = g.activation(proj(p + "intermediate.dense", x), str(config.get("hidden_act", "gelu")))
    out = g.op("Add", [proj(p + "output.dense", inter), x])
    ln2 = p + "output.LayerNorm"
    return g.layer_norm(out, w(ln2 + ".weight"), w(ln2 + ".bias"), eps, ln2)


def _bert_head(g: GraphBuilder, weights: Weights, w: Scoped, hidden: str) -> str:
    pooled = g.linear(
        g.first_token(hidden), w("pooler.dense.weight"), w("pooler.dense.bias"), "pooler"
    )
    pooled = g.op("Tanh", [pooled])
    return g.linear(
        pooled, require(weights, "classifier.weight"), require(weights, "classifier.bias"), "cls"
    )


def _roberta_head(g: GraphBuilder, weights: Weights, hidden: str) -> str:
    dense = g.linear(
        g.first_token(hidden),
        require(weights, "classifier.dense.weight"),
        require(weights, "classifier.dense.bias"),
        "cls.dense",
    )
    return g.linear(
        g.op("Tanh", [dense]),
        require(weights, "classifier.out_proj.weight"),
        require(weights, "classifier.out_proj.bias"),
        "cls.out",
    )
