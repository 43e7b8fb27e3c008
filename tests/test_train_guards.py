"""What `semrank train` refuses so that a run never loses earlier work or trains on nothing:
resuming with other settings or without a checkpoint, data too small for its lists or for a
validation split, report files that do not read, numbers that would poison the loss."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from semrank.errors import DataFormatError, InvalidInputError
from semrank.train import DataSpec, TrainConfig, train
from tiny_models import tiny_train_config


def _config(base: Path, data: Path, output: Path, **overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = {"max_steps": 2, "eval_every": 2, **overrides}
    return tiny_train_config(base, data, output, **settings)  # type: ignore[no-any-return]


def _digest(folder: Path) -> str:
    return hashlib.md5((folder / "model.safetensors").read_bytes()).hexdigest()


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.slow
def test_resume_keeps_the_runs_settings_and_never_restarts_over_its_best(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    best = train(_config(tiny_base, pairs_file, output))
    record = (output / "config.json").read_text()
    before = _digest(best)
    changed = _config(tiny_base, pairs_file, output, max_steps=4, architecture="gated")
    with pytest.raises(InvalidInputError, match=r"architecture: 'cross' -> 'gated'"):
        train(changed, resume=True)
    assert (output / "config.json").read_text() == record  # the record still matches
    # A longer budget is what resuming is for.
    train(_config(tiny_base, pairs_file, output, max_steps=4), resume=True)
    (output / "checkpoint.pt").unlink()
    kept = _digest(best)
    with pytest.raises(InvalidInputError, match=r"no checkpoint\.pt to continue from"):
        train(_config(tiny_base, pairs_file, output, max_steps=6), resume=True)
    assert _digest(best) == kept  # best/ was not replaced by a run from step 0
    assert before  # (the first run's best model was written)


def test_one_query_is_too_few_to_hold_out_validation(tiny_base: Path, tmp_path: Path) -> None:
    data = _write_jsonl(
        tmp_path / "one.jsonl",
        [{"query": "a", "positive": "alpha text", "negatives": ["b1", "b2", "b3", "b4"]}],
    )
    output = tmp_path / "run"
    with pytest.raises(InvalidInputError, match=r"1 training query is too few .*--val-queries 0"):
        train(_config(tiny_base, data, output))
    assert not (output / "config.json").exists()  # nothing recorded for a refused run


def test_a_pool_too_small_for_the_lists_is_refused(tiny_base: Path, tmp_path: Path) -> None:
    # Four queries with one passage between them: every list would be that passage alone.
    rows = [{"query": f"query {i}", "positive": "same passage"} for i in range(4)]
    data = _write_jsonl(tmp_path / "same.jsonl", rows)
    with pytest.raises(InvalidInputError, match=r"has 0 passages besides its positives, fewer "
                       r"than --negatives 3"):  # fmt: skip
        train(_config(tiny_base, data, tmp_path / "run", val_queries=0))


def test_report_files_are_read_before_training_with_the_eval_loaders(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    missing = _config(
        tiny_base,
        pairs_file,
        tmp_path / "a",
        report_tasks=(("dl", tmp_path / "no.json", tmp_path / "q.txt"),),
    )
    with pytest.raises(DataFormatError, match=r"no\.json"):
        train(missing)
    assert not (tmp_path / "a" / "cache").exists()  # refused before any data was mined
    run = tmp_path / "run.json"
    hits = [{"qid": "q1", "docid": "d1", "rank": 1, "score": 1.0, "content": "comet facts"}]
    run.write_text(json.dumps([{"query": "comet", "hits": hits}]))
    beir_qrels = tmp_path / "qrels.tsv"
    beir_qrels.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    from semrank.train._evaluate import load_trec_rerank_task

    task = load_trec_rerank_task(run, beir_qrels, name="dl")  # BEIR qrels read, not ignored
    assert task.qrels == {"q1": {"d1": 1}} and task.candidates == {"q1": [("d1", "comet facts")]}
    other = tmp_path / "other.tsv"
    other.write_text("q9\td1\t1\n")
    with pytest.raises(DataFormatError, match=r"no query of .*run\.json is judged"):
        load_trec_rerank_task(run, other, name="dl")


def test_beir_training_qrels_with_a_bad_line_are_named(tmp_path: Path) -> None:
    from semrank.train import load_collection

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    _write_jsonl(beir / "corpus.jsonl", [{"_id": "d1", "text": "body"}])
    _write_jsonl(beir / "queries.jsonl", [{"_id": "q1", "text": "query"}])
    (beir / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq7\td4\t1.0\n"
    )
    with pytest.raises(DataFormatError, match=r"train\.tsv:3"):
        load_collection(DataSpec(path=beir))


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ({"threads": -1}, r"threads=-1 \(--threads\)"),
        ({"distill_weight": float("nan")}, r"distill_weight=nan \(--distill-weight\)"),
        ({"label_weight": -0.5}, r"label_weight=-0.5"),
        ({"layer_lr_decay": -1.0}, r"layer_lr_decay=-1.0 \(--layer-lr-decay\)"),
        ({"eval_every": -1}, r"eval_every=-1 \(--eval-every\)"),
        ({"val_queries": -3}, r"val_queries=-3"),
        ({"teacher_model_weight": float("inf")}, r"teacher_model_weight=inf"),
    ],
)
def test_numbers_that_would_poison_or_flip_training_are_refused(
    tmp_path: Path, option: dict[str, Any], named: str
) -> None:
    data = (DataSpec(path=tmp_path / "pairs.jsonl", name="mine"),)
    with pytest.raises(InvalidInputError, match=named):
        TrainConfig(base=tmp_path, data=data, output=tmp_path / "run", max_steps=1, **option)


@pytest.mark.slow
def test_a_diverging_run_stops_and_keeps_what_it_saved(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    config = dataclasses.replace(_config(tiny_base, pairs_file, output, max_steps=30), lr=1e30)
    with pytest.raises(InvalidInputError, match=r"the loss became (nan|inf) at step \d+"):
        train(config)
    assert not (output / "last").exists()  # no export of the diverged weights
