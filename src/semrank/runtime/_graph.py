"""A thin builder over ``onnx.helper``: named nodes, initializers and common transformer blocks.

The exporters describe a model as calls on this builder; every op is a standard ONNX op
(opset 17), so the graph runs on any ONNX Runtime build without custom kernels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from semrank.errors import UnsupportedArchitectureError

OPSET = 17


class GraphBuilder:
    """Collects nodes and weights; ``op`` returns the name of the (first) output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._counter = 0
        self._constants: dict[tuple[str, bytes, tuple[int, ...]], str] = {}

    def fresh(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}_{self._counter}"

    def op(self, op_type: str, inputs: Sequence[str], n_out: int = 1, **attrs: Any) -> str:
        outs = [self.fresh(op_type) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0]

    def weight(self, name: str, array: np.ndarray) -> str:
        """Add a float32 initializer (weights are always exported in fp32)."""
        tensor = numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)
        self.initializers.append(tensor)
        return name

    def const(self, value: object, dtype: type = np.int64) -> str:
        """A small constant, deduplicated by value."""
        array: np.ndarray = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.tobytes(), array.shape)
        if key not in self._constants:
            name = self.fresh("const")
            self.initializers.append(numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]

    def add_input(self, name: str, dims: Sequence[str | int]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.INT64, list(dims)))
        return name

    def add_output(self, source: str, name: str, dims: Sequence[str | int]) -> None:
        self.nodes.append(helper.make_node("Identity", [source], [name]))
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims)))

    def model(self, graph_name: str, producer_version: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, graph_name, self.inputs, self.outputs, self.initializers
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="semrank",
            producer_version=producer_version,
        )
        model.ir_version = 8  # widely supported by ONNX Runtime releases
        return model

    # --- blocks -------------------------------------------------------------------------

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray | None, name: str) -> str:
        """``x @ weight.T + bias`` with a torch-layout weight ``[out, in]``."""
        out = self.op("MatMul", [x, self.weight(f"{name}.weight_t", weight.T)])
        if bias is not None:
            out = self.op("Add", [out, self.weight(f"{name}.bias", bias)])
        return out

    def layer_norm(
        self, x: str, weight: np.ndarray, bias: np.ndarray | None, eps: float, name: str
    ) -> str:
        if bias is None:
            bias = np.zeros_like(weight)
        w = self.weight(f"{name}.weight", weight)
        b = self.weight(f"{name}.bias", bias)
        return self.op("LayerNormalization", [x, w, b], axis=-1, epsilon=float(eps))

    def activation(self, x: str, kind: str) -> str:
        kind = kind.lower()
        if kind == "gelu":  # exact erf form, as torch.nn.functional.gelu
            inner = self.op(
                "Erf", [self.op("Mul", [x, self.const(1.0 / math.sqrt(2.0), np.float32)])]
            )
            one_plus = self.op("Add", [inner, self.const(1.0, np.float32)])
            return self.op("Mul", [self.op("Mul", [x, one_plus]), self.const(0.5, np.float32)])
        if kind in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
            return self._gelu_tanh(x)
        if kind == "relu":
            return self.op("Relu", [x])
        if kind in ("silu", "swish"):
            return self.op("Mul", [x, self.op("Sigmoid", [x])])
        if kind == "tanh":
            return self.op("Tanh", [x])
        raise UnsupportedArchitectureError(
            f"unsupported activation {kind!r} in config.json; supported: gelu, gelu_new, "
            "gelu_pytorch_tanh, gelu_fast, relu, silu, swish, tanh"
        )

    def _gelu_tanh(self, x: str) -> str:
        cube = self.op("Mul", [self.op("Mul", [x, x]), x])
        inner = self.op("Add", [x, self.op("Mul", [cube, self.const(0.044715, np.float32)])])
        scaled = self.op("Mul", [inner, self.const(math.sqrt(2.0 / math.pi), np.float32)])
        one_plus = self.op("Add", [self.op("Tanh", [scaled]), self.const(1.0, np.float32)])
        return self.op("Mul", [self.op("Mul", [x, one_plus]), self.const(0.5, np.float32)])

    def split_heads(self, x: str, num_heads: int, head_dim: int) -> str:
        """[B, S, H] -> [B, heads, S, head_dim]."""
        shaped = self.op("Reshape", [x, self.const([0, 0, num_heads, head_dim])])
        return self.op("Transpose", [shaped], perm=[0, 2, 1, 3])

    def merge_heads(self, x: str) -> str:
        """[B, heads, S, head_dim] -> [B, S, H]."""
        moved = self.op("Transpose", [x], perm=[0, 2, 1, 3])
        return self.op("Reshape", [moved, self.const([0, 0, -1])])

    def attention(self, q: str, k: str, v: str, additive_mask: str, head_dim: int) -> str:
        """Scaled dot-product attention on split heads; the mask broadcasts onto the scores."""
        k_t = self.op("Transpose", [k], perm=[0, 1, 3, 2])
        scores = self.op("MatMul", [q, k_t])
        scores = self.op("Mul", [scores, self.const(1.0 / math.sqrt(head_dim), np.float32)])
        scores = self.op("Add", [scores, additive_mask])
        probs = self.op("Softmax", [scores], axis=-1)
        return self.op("MatMul", [probs, v])

    def padding_mask(self, attention_mask: str) -> str:
        """int64 [B, S] (1 = token) -> additive float [B, 1, 1, S] (0 or a large negative)."""
        as_float = self.op("Cast", [attention_mask], to=TensorProto.FLOAT)
        inverted = self.op("Sub", [self.const(1.0, np.float32), as_float])
        additive = self.op("Mul", [inverted, self.const(NEG_LARGE, np.float32)])
        return self.op("Unsqueeze", [additive, self.const([1, 2])])

    def seq_len(self, ids: str) -> str:
        """Scalar int64 sequence length of a [B, S] tensor."""
        shape = self.op("Shape", [ids])
        return self.op("Gather", [shape, self.const(1)], axis=0)

    def first_token(self, x: str) -> str:
        """[B, S, H] -> [B, H] (the CLS / <s> position)."""
        return self.op("Gather", [x, self.const(0)], axis=1)


# Large but finite: a fully masked row (never produced by real inputs) stays NaN-free.
NEG_LARGE = -1.0e9
