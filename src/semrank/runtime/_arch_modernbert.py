"""ModernBERT as an ONNX graph (semantics of transformers' ``modeling_modernbert``).

Pre-norm blocks without biases (per config), rotary position embeddings with a global and a
local theta, every ``global_attn_every_n_layers``-th layer global and the others attending
only within ``|i - j| <= local_attention // 2``, GeGLU MLP, a final norm, and a head
pooling cls/mean -> dense -> act -> norm -> classifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto

from semrank.errors import UnsupportedArchitectureError
from semrank.runtime._arch_bert import Scoped, detect_prefix, require
from semrank.runtime._graph import NEG_LARGE, GraphBuilder
from semrank.runtime._weights import Weights


def layer_types(config: dict[str, Any]) -> list[str]:
    if config.get("layer_types"):
        return [str(t) for t in config["layer_types"]]
    every = int(config.get("global_attn_every_n_layers", 3))
    n = int(config["num_hidden_layers"])
    return ["sliding_attention" if i % every else "full_attention" for i in range(n)]


def rope_theta(config: dict[str, Any], layer_type: str) -> float:
    params = (config.get("rope_parameters") or {}).get(layer_type) or {}
    if params.get("rope_type", "default") != "default":
        raise UnsupportedArchitectureError(
            f"ModernBERT rope_type {params['rope_type']!r} is not supported; only 'default'"
        )
    if "rope_theta" in params:
        return float(params["rope_theta"])
    if layer_type == "full_attention":
        return float(config.get("global_rope_theta", 160_000.0))
    return float(config.get("local_rope_theta", 10_000.0))


def build_modernbert(
    g: GraphBuilder, config: dict[str, Any], weights: Weights, *, head: str
) -> None:
    w = Scoped(weights, detect_prefix(weights, "embeddings.tok_embeddings.weight"))
    eps = float(config.get("norm_eps", 1e-5))
    input_ids = g.add_input("input_ids", ["batch", "seq"])
    attention_mask = g.add_input("attention_mask", ["batch", "seq"])
    hidden = g.op("Gather", [g.weight("emb.tok", w("embeddings.tok_embeddings.weight")), input_ids])
    hidden = g.layer_norm(
        hidden, w("embeddings.norm.weight"), w.maybe("embeddings.norm.bias"), eps, "emb.norm"
    )
    padding = g.padding_mask(attention_mask)
    masks = {
        "full_attention": padding,
        "sliding_attention": g.op("Add", [padding, _window_mask(g, input_ids, config)]),
    }
    heads = int(config["num_attention_heads"])
    head_dim = int(config["hidden_size"]) // heads
    rotary = {
        kind: _rotary_tables(g, input_ids, head_dim, rope_theta(config, kind))
        for kind in set(layer_types(config))
    }
    for i, kind in enumerate(layer_types(config)):
        hidden = _layer(g, config, w, hidden, masks[kind], rotary[kind], i)
    hidden = g.layer_norm(hidden, w("final_norm.weight"), w.maybe("final_norm.bias"), eps, "final")
    if head == "encoder":
        g.add_output(hidden, "last_hidden_state", ["batch", "seq", int(config["hidden_size"])])
        return
    logits = _classification_head(g, config, weights, hidden, attention_mask)
    g.add_output(logits, "logits", ["batch", int(require(weights, "classifier.weight").shape[0])])


def _window_mask(g: GraphBuilder, input_ids: str, config: dict[str, Any]) -> str:
    """Additive [1, 1, S, S] mask: a token sees keys within ``local_attention // 2``."""
    half_window = int(config.get("local_attention", 128)) // 2
    positions = g.op("Range", [g.const(0), g.seq_len(input_ids), g.const(1)])
    rows = g.op("Unsqueeze", [positions, g.const([1])])
    cols = g.op("Unsqueeze", [positions, g.const([0])])
    distance = g.op("Abs", [g.op("Sub", [rows, cols])])
    outside = g.op(
        "Cast", [g.op("Greater", [distance, g.const(half_window)])], to=TensorProto.FLOAT
    )
    additive = g.op("Mul", [outside, g.const(NEG_LARGE, np.float32)])
    return g.op("Unsqueeze", [additive, g.const([0, 1])])


def _rotary_tables(g: GraphBuilder, input_ids: str, head_dim: int, theta: float) -> tuple[str, str]:
    """cos and sin [S, head_dim] for positions 0..S-1, computed in float32 as torch does."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    positions = g.op("Range", [g.const(0), g.seq_len(input_ids), g.const(1)])
    as_float = g.op("Unsqueeze", [g.op("Cast", [positions], to=TensorProto.FLOAT), g.const([1])])
    freqs = g.op("Mul", [as_float, g.const(inv_freq.astype(np.float32)[None, :], np.float32)])
    angles = g.op("Concat", [freqs, freqs], axis=-1)
    return g.op("Cos", [angles]), g.op("Sin", [angles])


def _apply_rotary(g: GraphBuilder, x: str, cos: str, sin: str, head_dim: int) -> str:
    half = head_dim // 2
    x1 = g.op("Slice", [x, g.const([0]), g.const([half]), g.const([-1])])
    x2 = g.op("Slice", [x, g.const([half]), g.const([head_dim]), g.const([-1])])
    rotated = g.op("Concat", [g.op("Neg", [x2]), x1], axis=-1)
    return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rotated, sin])])


def _layer(
    g: GraphBuilder,
    config: dict[str, Any],
    w: Scoped,
    x: str,
    mask: str,
    rotary: tuple[str, str],
    index: int,
) -> str:
    p = f"layers.{index}."
    eps = float(config.get("norm_eps", 1e-5))
    normed = x
    if index > 0:  # layer 0 has no attention norm: the embeddings were just normalised
        normed = g.layer_norm(
            x, w(p + "attn_norm.weight"), w.maybe(p + "attn_norm.bias"), eps, p + "attn_norm"
        )
    x = g.op("Add", [x, _attention(g, config, w, normed, mask, rotary, p)])
    normed = g.layer_norm(
        x, w(p + "mlp_norm.weight"), w.maybe(p + "mlp_norm.bias"), eps, p + "mlp_norm"
    )
    return g.op("Add", [x, _geglu(g, config, w, normed, p)])


def _attention(
    g: GraphBuilder,
    config: dict[str, Any],
    w: Scoped,
    x: str,
    mask: str,
    rotary: tuple[str, str],
    p: str,
) -> str:
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    wqkv, bqkv = w(p + "attn.Wqkv.weight"), w.maybe(p + "attn.Wqkv.bias")
    projected = []
    for part, name in enumerate(("q", "k", "v")):
        rows = slice(part * hidden, (part + 1) * hidden)
        bias = None if bqkv is None else bqkv[rows]
        projected.append(g.split_heads(g.linear(x, wqkv[rows], bias, p + name), heads, head_dim))
    q, k, v = projected
    q = _apply_rotary(g, q, *rotary, head_dim)
    k = _apply_rotary(g, k, *rotary, head_dim)
    context = g.merge_heads(g.attention(q, k, v, mask, head_dim))
    return g.linear(context, w(p + "attn.Wo.weight"), w.maybe(p + "attn.Wo.bias"), p + "attn.Wo")


def _geglu(g: GraphBuilder, config: dict[str, Any], w: Scoped, x: str, p: str) -> str:
    inter = int(config["intermediate_size"])
    wi, bi = w(p + "mlp.Wi.weight"), w.maybe(p + "mlp.Wi.bias")
    value = g.linear(x, wi[:inter], None if bi is None else bi[:inter], p + "mlp.Wi_in")
    gate = g.linear(x, wi[inter:], None if bi is None else bi[inter:], p + "mlp.Wi_gate")
    activated = g.activation(value, str(config.get("hidden_activation", "gelu")))
    return g.linear(
        g.op("Mul", [activated, gate]),
        w(p + "mlp.Wo.weight"),
        w.maybe(p + "mlp.Wo.bias"),
        p + "mlp.Wo",
    )


def _classification_head(
    g: GraphBuilder, config: dict[str, Any], weights: Weights, hidden: str, attention_mask: str
) -> str:
    pooling = config.get("classifier_pooling", "cls")
    if pooling == "cls":
        pooled = g.first_token(hidden)
    elif pooling == "mean":
        mask = g.op(
            "Unsqueeze", [g.op("Cast", [attention_mask], to=TensorProto.FLOAT), g.const([2])]
        )
        summed = g.op("ReduceSum", [g.op("Mul", [hidden, mask]), g.const([1])], keepdims=0)
        pooled = g.op("Div", [summed, g.op("ReduceSum", [mask, g.const([1])], keepdims=0)])
    else:
        raise UnsupportedArchitectureError(f"ModernBERT classifier_pooling {pooling!r} unsupported")
    dense = g.linear(
        pooled, require(weights, "head.dense.weight"), weights.get("head.dense.bias"), "head.dense"
    )
    activated = g.activation(dense, str(config.get("classifier_activation", "gelu")))
    eps = float(config.get("norm_eps", 1e-5))
    normed = g.layer_norm(
        activated,
        require(weights, "head.norm.weight"),
        weights.get("head.norm.bias"),
        eps,
        "head.norm",
    )
    return g.linear(
        normed, require(weights, "classifier.weight"), weights.get("classifier.bias"), "classifier"
    )
