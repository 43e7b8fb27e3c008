"""semrank's segment-gated cross-encoder: it starts as the bi-encoder it is built from, it
really reads the pair jointly once its gates open, and it trains and exports like any model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from semrank.errors import InvalidInputError  # noqa: E402
from semrank.runtime.torch_gated import from_bi_encoder, use_pair_template  # noqa: E402
from semrank.train import TrainConfig, train  # noqa: E402
from tiny_models import tiny_train_config  # noqa: E402

PAIRS = [  # apple and violin are trained on (the fixture's validation holds out other topics)
    ("tell me about apple", "apple the of apple facts"),
    ("tell me about apple", "violin a of very old violin facts"),
    ("about maple", "maple and cactus from the desert"),
    ("tell me about the old walrus facts", "walrus"),
]


def bi_encoder_scores(base: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    """Reference: each text encoded alone, mean-pooled, 20 x cosine (sentence-transformers)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base))
    model = transformers.BertModel.from_pretrained(str(base)).eval()

    def embed(text: str) -> torch.Tensor:
        with torch.no_grad():
            return model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0].mean(0)

    cosines = [torch.cosine_similarity(embed(q), embed(d), dim=0).item() for q, d in pairs]
    return 20.0 * np.asarray(cosines, dtype=np.float32)


def gated_scores(model: Any, tokenizer: Any, pairs: list[tuple[str, str]]) -> np.ndarray:
    inputs = tokenizer(
        [q for q, _ in pairs], [d for _, d in pairs], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        return model(**inputs).logits[:, 0].numpy()


def test_closed_gates_score_exactly_as_the_bi_encoder(tiny_base: Path) -> None:
    model = from_bi_encoder(str(tiny_base), gate_init=-1e4).eval()
    tokenizer = use_pair_template(transformers.AutoTokenizer.from_pretrained(str(tiny_base)))
    reference = bi_encoder_scores(tiny_base, PAIRS)
    assert reference.std() > 0.1  # a model that cannot tell the pairs apart proves nothing
    np.testing.assert_allclose(gated_scores(model, tokenizer, PAIRS), reference, atol=1e-4)


def test_open_gates_read_the_pair_jointly(tiny_base: Path) -> None:
    tokenizer = use_pair_template(transformers.AutoTokenizer.from_pretrained(str(tiny_base)))
    closed = gated_scores(from_bi_encoder(str(tiny_base), gate_init=-1e4).eval(), tokenizer, PAIRS)
    opened = gated_scores(from_bi_encoder(str(tiny_base), gate_init=0.0).eval(), tokenizer, PAIRS)
    assert np.abs(opened - closed).max() > 0.05


def test_pair_template_repeats_cls_and_types_the_passage(tiny_base: Path) -> None:
    tokenizer = use_pair_template(transformers.AutoTokenizer.from_pretrained(str(tiny_base)))
    encoded = tokenizer("about comet", "comet facts")
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens == ["[CLS]", "about", "comet", "[SEP]", "[CLS]", "comet", "facts", "[SEP]"]
    assert encoded["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1, 1]


def _config(base: Path, data: Path, output: Path) -> TrainConfig:
    return tiny_train_config(
        base, data, output, architecture="gated", max_steps=30, eval_every=10, export_onnx=True
    )


@pytest.mark.slow
def test_gated_training_lowers_loss_opens_gates_and_exports(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    from semrank.models import resolve
    from semrank.runtime import load_scorer

    output = tmp_path / "run"
    best = train(_config(tiny_base, pairs_file, output))
    history = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    losses = [row["train_loss"] for row in history if "train_loss" in row]
    assert losses[-1] < losses[0]
    config = json.loads((best / "config.json").read_text())
    assert config["architectures"] == ["SemrankGatedBertForSequenceClassification"]
    trained = transformers.AutoModelForSequenceClassification.from_pretrained(str(best))
    assert float(trained.cross_gates.detach().mean()) != pytest.approx(-4.0, abs=1e-3)
    assert (best / "model.onnx").is_file()
    scores = load_scorer(resolve(str(best))).score_pairs(PAIRS[:2])
    assert scores.shape == (2,) and scores[0] > scores[1]


def test_a_saved_gated_model_is_taken_by_init_from_and_teacher_model(
    tiny_base: Path, tmp_path: Path
) -> None:
    """Its config.json has no num_labels, whose default (2) refused it as a 2-label model."""
    from semrank.train._model import export_model
    from semrank.train.commands import _cross_encoder_options

    tokenizer = use_pair_template(transformers.AutoTokenizer.from_pretrained(str(tiny_base)))
    saved = export_model(
        from_bi_encoder(str(tiny_base), gate_init=-4.0), tokenizer, tmp_path / "g", metadata={}
    )
    options = _cross_encoder_options(str(saved), str(saved))
    assert Path(options["init_from"]) == saved and Path(options["teacher_model"]) == saved


def test_unknown_architecture_is_named(tiny_base: Path, pairs_file: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="architecture='cros'"):
        dataclasses.replace(_config(tiny_base, pairs_file, tmp_path), architecture="cros")


def test_bi_architecture_is_the_bi_encoder_with_frozen_shut_gates(tiny_base: Path) -> None:
    from semrank.train._model import build_cross_encoder

    model, tokenizer = build_cross_encoder(tiny_base, architecture="bi")
    assert not model.cross_gates.requires_grad
    reference = bi_encoder_scores(tiny_base, PAIRS)
    np.testing.assert_allclose(gated_scores(model.eval(), tokenizer, PAIRS), reference, atol=1e-4)


def test_exported_bi_encoder_scores_as_the_student(tiny_base: Path, tmp_path: Path) -> None:
    from semrank.models import resolve
    from semrank.runtime import load_scorer
    from semrank.train._model import build_cross_encoder, export_bi_encoder

    model, _ = build_cross_encoder(tiny_base, architecture="bi")
    with torch.no_grad():  # move the weights off the base's, so the export must carry them
        model.bert.encoder.layer[0].output.dense.weight.mul_(1.5)
    target = export_bi_encoder(
        model, tmp_path / "bi", base=tiny_base, max_seq_length=64, metadata={"step": 3}
    )
    resolved = resolve(str(target))
    assert resolved.kind == "bi-encoder"
    student = (bi_encoder_scores(target, PAIRS) / 20.0).astype(np.float32)
    assert np.abs(student - bi_encoder_scores(tiny_base, PAIRS) / 20.0).max() > 1e-3
    np.testing.assert_allclose(load_scorer(resolved).score_pairs(PAIRS), student, atol=1e-4)


@pytest.mark.slow
def test_bi_training_lowers_loss_and_exports_a_bi_encoder(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    from semrank.models import resolve
    from semrank.runtime import load_scorer

    output = tmp_path / "run"
    config = dataclasses.replace(_config(tiny_base, pairs_file, output), architecture="bi")
    best = train(config)
    history = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    losses = [row["train_loss"] for row in history if "train_loss" in row]
    assert losses[-1] < losses[0]
    assert (best / "modules.json").is_file() and not (best / "model.onnx").exists()
    scores = load_scorer(resolve(str(best))).score_pairs(PAIRS[:2])
    assert scores.shape == (2,) and scores[0] > scores[1]
    assert np.abs(scores - bi_encoder_scores(tiny_base, PAIRS[:2]) / 20.0).max() > 1e-3
