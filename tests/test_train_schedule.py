"""Learning rates per parameter: the head faster, lower layers slower with layer-wise decay."""

from __future__ import annotations

from pathlib import Path

import pytest

from semrank.train import TrainConfig
from semrank.train._loop import _lr_multiplier


def _config(**changes: float) -> TrainConfig:
    return TrainConfig(base=Path("base"), data=(), output=Path("out"), **changes)


def test_without_decay_the_body_shares_one_rate_and_the_head_is_faster() -> None:
    config = _config(head_lr_multiplier=5.0)
    names = ["bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.output.dense.weight"]
    assert {_lr_multiplier(n, config, 6) for n in names} == {1.0}
    assert _lr_multiplier("classifier.weight", config, 6) == 5.0


def test_layer_decay_slows_each_lower_layer_and_the_embeddings_most() -> None:
    config = _config(layer_lr_decay=0.5)
    top = _lr_multiplier("bert.encoder.layer.5.attention.self.query.weight", config, 6)
    below = _lr_multiplier("bert.encoder.layer.4.attention.self.query.weight", config, 6)
    bottom = _lr_multiplier("bert.encoder.layer.0.intermediate.dense.bias", config, 6)
    embeddings = _lr_multiplier("bert.embeddings.LayerNorm.weight", config, 6)
    assert top == 1.0
    assert below == pytest.approx(0.5)
    assert bottom == pytest.approx(0.5**5)
    assert embeddings == pytest.approx(0.5**6)
    assert _lr_multiplier("bert.pooler.dense.weight", config, 6) == 1.0


def _peak_factor(**changes: float) -> float:
    from semrank.train._loop import RunState, learning_rate_factor

    config = _config(**changes)
    steps = int(config.max_steps or 1000)
    return max(learning_rate_factor(config, RunState(step=step)) for step in range(steps))


def test_short_budgets_reach_their_learning_rate() -> None:
    """The fixed 50-step warmup under a decay from step 0 kept a 20-step run at 12% of --lr."""
    assert _peak_factor(max_steps=20) > 0.9
    assert _peak_factor(max_steps=100) > 0.9


def test_the_measured_recipes_keep_their_schedule() -> None:
    """The shipped model's commands (916 and 962 steps, minute budgets) warm up over 50 steps
    as they did when trained: their reproduction depends on it."""
    from semrank.train._loop import RunState, learning_rate_factor

    for budget in ({"max_steps": 916}, {"max_steps": 962}, {"max_minutes": 45.0}):
        config = _config(**budget)
        assert learning_rate_factor(config, RunState(step=24)) == pytest.approx(0.5, abs=0.03)
        assert learning_rate_factor(config, RunState(step=49)) > 0.95


def test_a_warmup_given_is_kept_whatever_the_budget() -> None:
    from semrank.train._loop import RunState, learning_rate_factor

    config = _config(max_steps=1000, warmup_steps=200)
    assert learning_rate_factor(config, RunState(step=99)) == pytest.approx(0.5 * 0.9109, abs=1e-3)
