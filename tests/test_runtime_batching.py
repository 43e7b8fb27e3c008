"""Length-sorted batching: limits, order, and scores that do not depend on the batch."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.runtime import BatchingConfig, load_scorer
from semrank.runtime._batching import pad_batch, plan_batches, run_batched
from semrank.runtime.tokenizer import EncodedInput
from tiny_models import random_pairs, tiny_spec


def test_plan_batches_respects_limits_and_covers_every_input() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 300) for _ in range(500)]
    config = BatchingConfig(max_batch_size=16, token_budget=2048)
    batches = plan_batches(lengths, config)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= config.max_batch_size
        assert len(batch) * max(lengths[i] for i in batch) <= config.token_budget
    # Sorted: no batch contains an input longer than any of an earlier batch.
    widths = [max(lengths[i] for i in batch) for batch in batches]
    assert widths == sorted(widths, reverse=True)


def test_an_input_longer_than_the_budget_gets_its_own_batch() -> None:
    batches = plan_batches([10, 5000, 10], BatchingConfig(max_batch_size=8, token_budget=100))
    assert [1] in batches
    assert sorted(i for b in batches for i in b) == [0, 1, 2]


def test_pad_batch_pads_to_the_longest_input_only() -> None:
    items = [EncodedInput([5, 6, 7], [0, 0, 1], [1, 1, 1]), EncodedInput([5], [0], [1])]
    arrays = pad_batch(items, pad_id=9)
    assert arrays["input_ids"].tolist() == [[5, 6, 7], [5, 9, 9]]
    assert arrays["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert arrays["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert all(a.dtype == np.int64 for a in arrays.values())


def test_run_batched_returns_rows_in_input_order() -> None:
    items = [EncodedInput([1] * n, [0] * n, [1] * n) for n in (3, 9, 1, 5, 9, 2)]
    seen_widths = []

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        seen_widths.append(batch["input_ids"].shape[1])
        return batch["attention_mask"].sum(axis=1).astype(np.float32)  # the true length

    out = run_batched(items, run, BatchingConfig(max_batch_size=2), pad_id=0)
    assert out.tolist() == [3, 9, 1, 5, 9, 2]
    assert seen_widths == [9, 5, 2]


def _scorer(model_dir: Path, batching: BatchingConfig | None = None):
    model = tiny_spec(model_dir)
    return load_scorer(model, batching=batching)


@pytest.mark.parametrize("family", ["bert", "roberta", "modernbert"])
def test_scores_do_not_depend_on_batching_or_neighbours(tiny_model, family: str) -> None:
    model_dir = tiny_model(family, max_length=64)
    pairs = random_pairs(40, seed=21)
    baseline = _scorer(model_dir, BatchingConfig(max_batch_size=1)).score_pairs(pairs)
    for config in (BatchingConfig(), BatchingConfig(max_batch_size=7, token_budget=300)):
        np.testing.assert_allclose(
            _scorer(model_dir, config).score_pairs(pairs), baseline, atol=1e-5, rtol=0
        )
    # The same pairs among other documents, shuffled, score the same.
    others = random_pairs(25, seed=99)
    mixed = pairs + others
    order = list(range(len(mixed)))
    random.Random(1).shuffle(order)
    shuffled = _scorer(model_dir).score_pairs([mixed[i] for i in order])
    back = np.empty_like(shuffled)
    back[order] = shuffled
    np.testing.assert_allclose(back[: len(pairs)], baseline, atol=1e-5, rtol=0)
    assert baseline.std() > 1e-3


def test_bad_batching_config_is_a_semrank_error():
    with pytest.raises(
        InvalidInputError, match="BatchingConfig max_batch_size must be an integer >= 1"
    ):
        BatchingConfig(max_batch_size=0)
