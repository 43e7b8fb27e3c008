"""`semrank index ...` and `semrank search` through the CLI app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from semrank.cli import app
from semrank.errors import DataFormatError, IndexNotFoundError, InvalidInputError

DOCS = [
    {
        "_id": "eclipse",
        "title": "Eclipse",
        "text": "The moon hides the sun during a solar eclipse.",
    },
    {"_id": "tides", "title": "Tides", "text": "The moon pulls the oceans and makes the tides."},
    {"_id": "paris", "title": "Paris", "text": "Paris is the capital of France."},
]


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture()
def beir(tmp_path: Path) -> Path:
    folder = tmp_path / "beir"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    return folder


def test_index_lifecycle(tmp_path: Path, beir: Path) -> None:
    home = str(tmp_path / "home")
    out = run("index", "create", "mini", "--from", str(beir), "--home", home)
    assert "BEIR corpus" in out and "3 documents" in out
    assert run("index", "list", "--home", home).startswith("mini\t3 documents")
    info = json.loads(run("index", "info", "mini", "--json", "--home", home))
    assert info["documents"] == 3 and info["settings"]["id_field"] == "_id"
    assert info["embedding_dim"] == 384 and info["vector_search"] == "exact"

    extra = tmp_path / "extra.jsonl"
    extra.write_text(
        json.dumps({"_id": "tides", "title": "Tides", "text": "Tides rise twice a day."}) + "\n"
    )
    assert "index 'mini' holds 3" in run("index", "add", "mini", str(extra), "--home", home)
    hits = json.loads(run("search", "mini", "tides twice", "--json", "--home", home))["hits"]
    assert hits[0]["id"] == "tides" and hits[0]["document"]["text"] == "Tides rise twice a day."

    assert "deleted 1 of 2" in run("index", "delete", "mini", "paris", "nope", "--home", home)
    run("index", "drop", "mini", "--yes", "--home", home)
    with pytest.raises(IndexNotFoundError):
        run("index", "info", "mini", "--home", home)


def test_delete_with_a_missing_ids_file_names_it(tmp_path: Path, beir: Path) -> None:
    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    missing = str(tmp_path / "ids.txt")
    with pytest.raises(InvalidInputError, match=r"--ids-file .*ids\.txt: no such file"):
        run("index", "delete", "mini", "--ids-file", missing, "--home", home)
    assert "3 documents" in run("index", "list", "--home", home)


def test_a_create_with_a_bad_corpus_creates_nothing(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    corpus = tmp_path / "docs.jsonl"
    lines = [json.dumps({"id": d["_id"], "text": d["text"]}) for d in DOCS]
    corpus.write_text("\n".join([*lines[:2], "{not json", lines[2]]) + "\n")
    args = ["index", "create", "m", "--from", str(corpus), "--home", home, "--no-dense"]
    # The file is read through before the index is created: a bad line leaves nothing behind.
    with pytest.raises(DataFormatError, match=r"docs\.jsonl:3: "):
        run(*args)
    assert run("index", "list", "--home", home).startswith("no indexes")
    corpus.write_text("\n".join(lines) + "\n")
    assert "index 'm': 3 documents" in run(*args)


def test_search_flags(tmp_path: Path, beir: Path) -> None:
    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home)
    for flags in (["--bm25"], ["--dense"], ["--hybrid"], ["--hybrid", "--rerank", "--window", "3"]):
        out = run(
            "search",
            "mini",
            "when does the moon cover the sun",
            "--json",
            "--top-n",
            "2",
            "--home",
            home,
            *flags,
        )
        hits = json.loads(out)["hits"]
        assert hits and hits[0]["id"] == "eclipse", flags
        assert len(hits) <= 2
    reranked = json.loads(run("search", "mini", "moon", "--rerank", "--json", "--home", home))
    assert all(h["rerank_score"] is not None for h in reranked["hits"])
    table = run("search", "mini", "moon sun", "--rerank", "--home", home)
    assert "1st-stage rank" in table and "eclipse" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--rerank", "--window", "1", "--top-n", "5"), r"--window 1 is below --top-n 5"),
        (("--dense", "--field", "title"), r"--field 'title' .* --dense alone uses neither"),
    ],
)
def test_search_flags_that_would_quietly_change_the_result_are_refused(
    tmp_path: Path, beir: Path, args: tuple[str, ...], message: str
) -> None:
    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    with pytest.raises(InvalidInputError, match=message):
        run("search", "mini", "moon", *args, "--home", home)
    # The same search with consistent flags runs (the window covers --top-n).
    assert "moon" in run("search", "mini", "moon", "--window", "5", "--top-n", "5", "--home", home)


@pytest.mark.parametrize(
    "option", [("--embedding-model", "all-minilm-l6-v2"), ("--embedding-max-length", "64")]
)
def test_embedding_options_with_no_dense_are_refused(
    tmp_path: Path, option: tuple[str, str]
) -> None:
    home = str(tmp_path / "home")
    with pytest.raises(InvalidInputError, match=f"{option[0]} .* with --no-dense"):
        run("index", "create", "mini", "--no-dense", *option, "--home", home)
    assert "mini" not in run("index", "list", "--home", home)
