"""`semrank train` rejects bad invocations before loading any model."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from semrank.errors import DataFormatError, InvalidInputError
from semrank.train import DataSpec
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
