"""`semrank train` rejects bad invocations before loading any model."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from semrank.errors import DataFormatError, InvalidInputError
from semrank.train import DataSpec, load_collection
from semrank.train._blend import _spec_of
from semrank.train.commands import register


@pytest.fixture
def app() -> typer.Typer:
    application = typer.Typer()
    register(application)

    @application.callback()
    def _root() -> None:  # a callback keeps "train" a named sub-command
        pass

    return application


def test_data_spec_parses_options() -> None:
    spec = DataSpec.parse("some/dir,weight=2.5,limit=10,name=x")
    assert (spec.path, spec.weight, spec.limit, spec.name) == (Path("some/dir"), 2.5, 10, "x")


def test_data_spec_rejects_unknown_option() -> None:
    with pytest.raises(DataFormatError, match="colour"):
        DataSpec.parse("dir,colour=red")


def test_train_needs_a_budget(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--output", str(tmp_path)])
    assert isinstance(result.exception, InvalidInputError)
    assert "--max-steps" in str(result.exception)


@pytest.mark.parametrize(
    ("option", "value"), [("--max-steps", "0"), ("--max-minutes", "-1"), ("--negatives", "0")]
)
def test_train_rejects_a_budget_or_count_that_is_not_positive(
    app: typer.Typer, tmp_path: Path, option: str, value: str
) -> None:
    budget = ["--max-minutes", "1"] if option == "--max-steps" else ["--max-steps", "1"]
    args = ["train", "--data", str(tmp_path), "--output", str(tmp_path / "run"), *budget]
    result = CliRunner().invoke(app, [*args, option, value])
    assert isinstance(result.exception, InvalidInputError), result.exception
    assert f"({option}): must be a positive number" in str(result.exception)


def test_train_names_a_missing_data_path(app: typer.Typer, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    args = ["train", "--data", str(missing), "--output", str(tmp_path), "--max-steps", "1"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, InvalidInputError)
    assert str(missing) in str(result.exception)


def test_train_names_a_bad_teacher_encoder(app: typer.Typer, tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"query": "q", "positive": "p"}\n')
    missing = tmp_path / "no-model"
    args = ["train", "--data", str(data), "--output", str(tmp_path / "run"), "--max-steps", "1"]
    result = CliRunner().invoke(app, [*args, "--teacher-encoder", f"{missing}:2"])
    assert isinstance(result.exception, InvalidInputError)
    assert str(missing) in str(result.exception) and "config.json" in str(result.exception)


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_corpus_passages_join_the_pool_after_the_judged_ones(tmp_path: Path) -> None:
    pairs = _write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"query": "q1", "positive": "p1", "negatives": ["n1"]}, {"query": "q2", "positive": "p2"}],
    )
    corpus = _write_jsonl(
        tmp_path / "corpus.jsonl",
        [{"text": "c1"}, {"text": "p1"}, {"title": "T", "text": "c2"}, {"text": "c1"}],
    )
    plain = load_collection(DataSpec.parse(str(pairs)))
    spec = DataSpec.parse(f"{pairs},corpus={corpus}")
    assert spec.corpus == corpus
    collection = load_collection(spec)
    # The judged passages keep their indices; the corpus adds only texts not yet in the pool.
    assert collection.passages[: len(plain.passages)] == plain.passages
    assert collection.passages[len(plain.passages) :] == ["c1", "T. c2"]
    assert [g.positive_ids for g in collection.groups] == [g.positive_ids for g in plain.groups]


def test_corpus_rows_without_text_are_named(tmp_path: Path) -> None:
    pairs = _write_jsonl(tmp_path / "pairs.jsonl", [{"query": "q", "positive": "p"}])
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", [{"text": "ok"}, {"body": "no text"}])
    with pytest.raises(DataFormatError, match=r"row 2 needs a non-empty 'text'"):
        load_collection(DataSpec.parse(f"{pairs},corpus={corpus}"))
    with pytest.raises(DataFormatError, match=r"missing\.jsonl"):
        load_collection(DataSpec.parse(f"{pairs},corpus={tmp_path / 'missing.jsonl'}"))


def test_saved_data_spec_with_corpus_is_rebuilt(tmp_path: Path) -> None:
    spec = DataSpec.parse(f"{tmp_path / 'pairs.jsonl'},weight=2,corpus={tmp_path / 'c.jsonl'}")
    saved = json.loads(json.dumps(asdict(spec), default=str))
    assert _spec_of(saved) == spec
    assert _spec_of({**saved, "corpus": None}).corpus is None
