"""Length-sorted batching, written once for every backend.

Inputs are sorted by token length so each batch pads little; a batch holds at most
``max_batch_size`` inputs and ``token_budget`` padded tokens, is padded only to its own
longest input, and results are put back in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

import numpy as np

from semrank.errors import ModelLoadError
from semrank.runtime.base import BatchingConfig
from semrank.runtime.tokenizer import EncodedInput

BatchArrays = dict[str, np.ndarray]
# What every batch holds (pad_batch); a graph may read any of them.
FED_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def refuse_unfed_inputs(graph: Path, inputs: Iterable[str]) -> None:
    """A graph a folder ships (onnx/model.onnx) that reads an input no batch holds
    (position_ids, past_key_values): refused at load, not a KeyError at the first score."""
    unfed = [name for name in inputs if name not in FED_INPUTS]
    if unfed:
        raise ModelLoadError(
            f"{graph} takes inputs {', '.join(unfed)}, which semrank does not feed (only "
            f"{', '.join(FED_INPUTS)}); give a graph exported with those inputs alone, or the "
            "model's weights (model.safetensors), from which semrank builds its own"
        )


# An output's names, and its dimensions (None where symbolic, as batch and sequence are); the
# dimensions are None where not even the rank is known.
GraphOutput = tuple[Collection[str], tuple[int | None, ...] | None]
# What each model kind reads, with its rank: (batch, labels) or (batch, sequence, hidden).
OUTPUT_RANKS = {"logits": 2, "last_hidden_state": 3}
_EXPORT_TASKS = {"logits": "text-classification", "last_hidden_state": "feature-extraction"}


def graph_output(graph: Path, outputs: Sequence[GraphOutput], wanted: str) -> int:
    """Which of ``graph``'s outputs holds ``wanted``: the one so named, else the first (a graph
    exported under other names). A graph exported for the other model kind, or a cross-encoder's
    with more than two logits, is refused here at load, naming the file; a label count only
    known when run is left to the check on the first scores (``logits_to_raw``)."""
    index = next((i for i, (names, _) in enumerate(outputs) if wanted in names), 0)
    names, shape = outputs[index]
    if shape is None:
        return index
    if len(shape) != OUTPUT_RANKS[wanted]:
        raise ModelLoadError(
            f"{graph} gives {'/'.join(sorted(names))} of {len(shape)} dimensions, where "
            f"{wanted!r} of {OUTPUT_RANKS[wanted]} is read: it is exported for the other model "
            f"kind. Export it with --task {_EXPORT_TASKS[wanted]} (Optimum), or give the "
            "model's weights (model.safetensors), from which semrank builds its own"
        )
    labels = shape[1] if wanted == "logits" else None
    if labels is not None and labels not in (1, 2):
        raise ModelLoadError(
            f"{graph} gives {labels} logits per pair; a relevance score reads one (or two: not "
            "relevant, relevant). Give a re-ranker's graph, or the model's weights "
            "(model.safetensors)"
        )
    return index


def plan_batches(lengths: Sequence[int], config: BatchingConfig) -> list[list[int]]:
    """Indices of each batch, longest inputs first; every batch has at least one input."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # Sorted longest first, so the batch's padded length is that of its first input.
        width = lengths[current[0]] if current else lengths[index]
        if current and (
            len(current) >= config.max_batch_size
            or (len(current) + 1) * width > config.token_budget
        ):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def padded_width(longest: int, multiple: int = 1, max_width: int | None = None) -> int:
    """``longest`` rounded up to ``multiple``, but never beyond ``max_width``."""
    width = -(-longest // multiple) * multiple
    return max(longest, min(width, max_width)) if max_width else width


def pad_batch(
    items: Sequence[EncodedInput], pad_id: int, *, multiple: int = 1, max_width: int | None = None
) -> BatchArrays:
    """int64 arrays ``input_ids``, ``attention_mask``, ``token_type_ids`` padded on the right."""
    width = padded_width(max(len(item) for item in items), multiple, max_width)
    ids = np.full((len(items), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(items), width), dtype=np.int64)
    types = np.zeros((len(items), width), dtype=np.int64)
    for row, item in enumerate(items):
        n = len(item)
        ids[row, :n] = item.ids
        mask[row, :n] = item.attention_mask
        types[row, :n] = item.type_ids
    return dict(zip(FED_INPUTS, (ids, mask, types), strict=True))


def run_batched(
    items: Sequence[EncodedInput],
    run: Callable[[BatchArrays], np.ndarray],
    config: BatchingConfig,
    pad_id: int,
    max_width: int | None = None,
) -> np.ndarray:
    """Call ``run`` on padded batches; its rows come back in the order of ``items``."""
    if not items:
        raise ValueError("run_batched needs at least one input")
    result: np.ndarray | None = None
    for batch in plan_batches([len(item) for item in items], config):
        arrays = pad_batch(
            [items[i] for i in batch], pad_id, multiple=config.length_multiple, max_width=max_width
        )
        out = np.asarray(run(arrays), dtype=np.float32)
        if result is None:
            result = np.empty((len(items), *out.shape[1:]), dtype=np.float32)
        result[batch] = out
    assert result is not None
    return result
