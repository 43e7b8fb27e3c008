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
