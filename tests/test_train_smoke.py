"""Train a tiny random BERT for a few steps: the loss falls, checkpoints resume, exports load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from semrank.train import DataSpec, TrainConfig, train  # noqa: E402
from semrank.train._data import load_collection  # noqa: E402
from tiny_models import tiny_train_config  # noqa: E402


def _config(base: Path, data: Path, output: Path, steps: int) -> TrainConfig:
    # 12 candidates per held-out query: its 6 positives and 6 others (to calibrate on)
    return tiny_train_config(base, data, output, max_steps=steps, eval_every=20, val_candidates=12)


def test_pairs_jsonl_is_read_into_a_pool(pairs_file: Path) -> None:
    collection = load_collection(DataSpec.parse(f"{pairs_file},weight=2,limit=10"))
    assert len(collection.groups) == 10
    assert collection.weight == 2.0
    group = collection.groups[0]
    # The file has six rows per query: one group with their positives and negatives.
    assert len(group.positive_ids) == 6 and len(group.negative_ids) == 12
    topic = group.query.split()[-1]
    assert all(collection.passages[i].startswith(topic) for i in group.positive_ids)


@pytest.mark.slow
def test_tiny_training_lowers_loss_resumes_and_exports(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    train(_config(tiny_base, pairs_file, output, steps=40))
    history = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    losses = [row["train_loss"] for row in history if "train_loss" in row]
    assert losses[-1] < losses[0]

    best = train(_config(tiny_base, pairs_file, output, steps=60), resume=True)
    steps = [
        json.loads(line)["step"] for line in (output / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps[-1] == 60 and 40 in steps  # continued from step 40, not from scratch

    record = json.loads((output / "config.json").read_text())
    held_out = set(record["validation_queries"])
    assert len(held_out) == 8 and "tell me about apple" not in held_out  # trained on apple
    assert "tell me about violin" not in held_out
    config = json.loads((best / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(best))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(best))
    inputs = tokenizer(
        ["tell me about apple"] * 2, ["apple the of apple facts", "violin a of violin facts"],
        return_tensors="pt", padding=True,
    )  # fmt: skip
    with torch.no_grad():
        logits = model(**inputs).logits[:, 0]
    assert logits[0] > logits[1]
    _score_through_runtime_if_present(best)
    _scores_are_calibrated(output, best)


def _scores_are_calibrated(output: Path, best: Path) -> None:
    """A ranking loss leaves every logit with one arbitrary offset (real runs: -25 to -56 for
    relevant documents too, so 0..1 scores of 0.0000 and min_score dropping everything): the
    export's calibration makes the mean 0..1 score on the held-out lists their share of
    relevant candidates (a logistic fit's property)."""
    from semrank import Reranker
    from semrank.train._blend import validation_task_of_run

    fitted = json.loads((best / "semrank_training.json").read_text())["calibration"]
    assert fitted["scale"] > 0
    task = validation_task_of_run(output)
    reranker = Reranker(str(best), backend="onnx")
    scores, labels = [], []
    for qid, candidates in task.candidates.items():
        scores.extend(reranker.score(task.queries[qid], [text for _, text in candidates]))
        labels.extend(int(task.qrels[qid].get(doc, 0) > 0) for doc, _ in candidates)
    assert sum(scores) / len(scores) == pytest.approx(sum(labels) / len(labels), abs=0.03)


def _score_through_runtime_if_present(best: Path) -> None:
    try:
        from semrank.models import resolve
        from semrank.runtime import load_scorer
    except ImportError:
        return  # the runtime entry point is not there yet
    scorer = load_scorer(resolve(str(best)))
    scores = scorer.score_pairs(
        [
            ("tell me about apple", "apple the of apple facts"),
            ("tell me about apple", "violin facts"),
        ]
    )
    assert scores.shape == (2,) and scores[0] > scores[1]


@pytest.mark.slow
def test_continuing_from_a_cross_encoder_with_it_in_the_teacher(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    import dataclasses

    first = train(_config(tiny_base, pairs_file, tmp_path / "first", steps=20))
    config = dataclasses.replace(
        _config(tiny_base, pairs_file, tmp_path / "second", steps=20),
        init_from=first,
        teacher_model=first,
        distill_weight=2.0,
    )
    second = train(config)
    history = [
        json.loads(line)
        for line in (tmp_path / "second" / "metrics.jsonl").read_text().splitlines()
    ]
    # Started from the trained model: already better on validation than a fresh head.
    fresh = [
        json.loads(line) for line in (tmp_path / "first" / "metrics.jsonl").read_text().splitlines()
    ]
    assert history[0]["val_ndcg10"] >= fresh[0]["val_ndcg10"]
    saved = json.loads((second / "semrank_training.json").read_text())
    assert saved["config"]["teacher_model"] == str(first)
    # How it was made, wherever the folder goes: absolute paths, the data, the versions.
    assert Path(saved["config"]["output"]).is_absolute() and len(saved["data_digest"]) == 64
    assert saved["versions"]["torch"] and saved["exported_at"]
    _score_through_runtime_if_present(second)
