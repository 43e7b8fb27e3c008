"""`semrank index ...` and `semrank search` through the CLI app."""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from pathlib import Path
from typing import Any

import pytest
from tests.serving import stdin_closed
from typer.testing import CliRunner

from semrank.cli import app
from semrank.errors import (
    BackendUnavailableError,
    DataFormatError,
    IndexNotFoundError,
    InvalidInputError,
    StorageError,
)

DOCS = [
    {
        "_id": "eclipse",
        "title": "Eclipse",
        "text": "The moon hides the sun during a solar eclipse.",
    },
    {"_id": "tides", "title": "Tides", "text": "The moon pulls the oceans and makes the tides."},
    {"_id": "paris", "title": "Paris", "text": "Paris is the capital of France."},
]


def run(*args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(app, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def run_killed_before_its_ingest_ends(
    monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str | None = None
) -> None:
    """``run``, as a process that ends before its ingest does (its mark is left)."""
    from semrank.store._local import LocalStore

    with monkeypatch.context() as killed:
        killed.setattr(LocalStore, "end_ingest", lambda self, source: None)
        run(*args, stdin=stdin)


def incomplete_note(home: str | Path) -> str | None:
    """What `index list` says of the home's one index's unfinished ingest (None: none)."""
    [listed] = json.loads(run("index", "list", "--json", "--home", str(home)))
    return listed["incomplete"]  # type: ignore[no-any-return]


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


def test_ids_file_is_read_from_stdin_or_a_pipe(tmp_path: Path, beir: Path) -> None:
    """`jq -r '.hits[].id' | semrank index delete NAME --ids-file -` (or /dev/stdin, or
    `--ids-file <(jq ...)`) was refused: "-: no such file", "/dev/fd/63: not a file"."""
    # fed_pipe's writer is a daemon thread: a pipe refused unread fails this test, where a
    # writer waiting for a reader kept pytest from ever exiting.
    from test_eval_loaders import fed_pipe

    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    first, second = (doc["_id"] for doc in DOCS[:2])
    out = run("index", "delete", "mini", "--ids-file", "-", "--home", home, stdin=f"{first}\r\n")
    assert out == "deleted 1 of 1 ids; index 'mini' holds 2\n"
    pipe = fed_pipe(tmp_path / "ids.fifo", f"{second}\n".encode())
    out = run("index", "delete", "mini", "--ids-file", str(pipe), "--home", home)
    assert out == "deleted 1 of 1 ids; index 'mini' holds 1\n"


def test_delete_filter_flag_deletes_the_passing_documents_after_a_dry_run(tmp_path: Path) -> None:
    """`index delete NAME --filter JSON` deletes what the filter passes (a tenant); --dry-run
    says how many and which, deleting none."""
    home = str(tmp_path / "home")
    corpus = tmp_path / "docs.jsonl"
    docs = [{"id": f"d{n:02d}", "text": f"words {n}", "tenant": f"t{n % 3}"} for n in range(30)]
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    run("index", "create", "t", "--from", str(corpus), "--no-dense", "--home", home)
    tenant = json.dumps({"term": {"tenant": "t1"}})
    doomed = [d["id"] for d in docs if d["tenant"] == "t1"]
    out = run("index", "delete", "t", "--filter", tenant, "--dry-run", "--home", home)
    shown = ", ".join(repr(i) for i in doomed)
    assert out == (
        f"dry run: would delete 10 documents passing --filter from index 't' (of 30): {shown}; "
        "nothing deleted\n"
    )
    out = run("index", "delete", "t", "d00", "d01", "nope", "--dry-run", "--home", home)
    assert "would delete 2 documents of the 3 ids given" in out and "(of 30)" in out
    # An id given twice is deleted once: it was counted (and listed) twice.
    out = run("index", "delete", "t", "d00", "d00", "--dry-run", "--home", home)
    assert "would delete 1 document of the 2 ids given from index 't' (of 30): 'd00';" in out
    out = run("index", "delete", "t", "--filter", tenant, "--home", home)
    assert out == "deleted 10 documents passing --filter; index 't' holds 20\n"
    from semrank.store import open_index

    with open_index("t", home=home) as index:
        assert sorted(d.id for d in index.iter_documents()) == sorted(
            d["id"] for d in docs if d["id"] not in doomed
        )
        assert not set(doomed) & set(index.search_bm25("words", k=30).ids.tolist())


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--filter", '{"match_all": {}}'], '--filter {"match_all": {}} passes every document'),
        (["--filter", "[]"], "--filter [] passes every document"),
        (["--filter", '{"term": '], "--filter is not valid JSON"),
        (["--filter", '{"match": {"text": "x"}}'], "--filter: 'match' is not a supported filter"),
        (["d00", "--filter", '{"term": {"tenant": "t1"}}'], "by --filter, not both"),
        ([], "name the ids to delete (arguments, --ids-file or --filter)"),
    ],
)
def test_a_refused_delete_filter_deletes_nothing(
    tmp_path: Path, args: list[str], said: str
) -> None:
    home = str(tmp_path / "home")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": f"d{n:02d}", "text": "w"}) + "\n" for n in range(3))
    )
    run("index", "create", "t", "--from", str(corpus), "--no-dense", "--home", home)
    result = CliRunner().invoke(app, ["index", "delete", "t", *args, "--home", home])
    assert isinstance(result.exception, InvalidInputError), result.output
    assert said in str(result.exception)
    assert run("index", "list", "--home", home).startswith("t\t3 documents")


def test_ids_file_ids_are_matched_exactly_spaces_included(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    corpus = tmp_path / "docs.jsonl"
    ids = [" spaced ", "plain", "bom", "tab\t"]
    corpus.write_text("".join(json.dumps({"id": i, "text": "words"}) + "\n" for i in ids))
    run("index", "create", "ids", "--from", str(corpus), "--home", home, "--no-dense")
    listed = tmp_path / "ids.txt"
    # A byte-order mark and CRLF line ends are not part of the ids; blank lines hold none.
    # A mark on a later line too (files joined with cat, one saved on Windows).
    listed.write_bytes("\ufeffbom\r\n spaced \r\n\n   \n\ufefftab\t\nplain \n".encode())
    args = ["index", "delete", "ids", "--ids-file", str(listed), "--home", home]
    result = CliRunner().invoke(app, args)
    assert result.stdout == "deleted 3 of 4 ids; index 'ids' holds 1\n"
    assert "ids are matched exactly, so the spaces" in result.stderr  # "plain " is not "plain"


def test_a_boolean_id_is_refused_and_numbers_are_text(tmp_path: Path) -> None:
    from semrank.store import create_index

    home = str(tmp_path / "home")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"id": 7, "text": "a"}\n{"id": true, "text": "b"}\n')
    with pytest.raises(
        DataFormatError, match=r'record 2: its id \(\'id\'\) is the boolean true.*"true"'
    ):
        run("index", "create", "b", "--from", str(corpus), "--home", home, "--no-dense")
    with create_index("b", home=home, embedding_model=None) as index:
        index.upsert(
            [{"id": 7, "text": "a"}, {"id": 7.5, "text": "b"}, {"id": "True", "text": "c"}]
        )
        with pytest.raises(DataFormatError, match="is the boolean false"):
            index.upsert([{"id": False, "text": "d"}])
        for call in (index.delete, index.get):
            with pytest.raises(InvalidInputError, match=r"id True is a boolean.*pass 'true'"):
                call([True])
        assert index.get([7, "7.5", "True"]) == [{"text": "a"}, {"text": "b"}, {"text": "c"}]


def test_a_whole_float_id_as_pandas_writes_it_is_refused_with_the_fix(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"id": 7, "text": "a"}\n{"id": 1.0, "text": "b"}\n')
    with pytest.raises(
        DataFormatError, match=r"record 2: its id \('id'\) is the float 1\.0, not the id 1: pandas"
    ):
        run("index", "create", "f", "--from", str(corpus), "--home", home, "--no-dense")


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


def test_search_highlight_prints_fragments(
    tmp_path: Path, beir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--highlight FIELD: each hit's fragments (stemmed words marked) in --json's hits and in
    the table's text column; a _search body's highlight object sets the options."""
    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    out = run("search", "mini", "moons hiding", "--highlight", "text", "--json", "--home", home)
    hits = {hit["id"]: hit["highlight"] for hit in json.loads(out)["hits"]}
    assert hits["eclipse"] == {
        "text": ["The <em>moon</em> <em>hides</em> the sun during a solar eclipse."]
    }
    assert hits["tides"] == {"text": ["The <em>moon</em> pulls the oceans and makes the tides."]}
    monkeypatch.setenv("COLUMNS", "200")  # the table's text column unfolded
    table = run("search", "mini", "moons hiding", "--highlight", "text", "--home", home)
    assert "text: The <em>moon</em> <em>hides</em> the sun" in table
    body = {
        "query": {"match": {"text": "tides"}},
        "highlight": {"fields": {"text": {"pre_tags": ["["], "post_tags": ["]"]}}},
    }
    own = run("search", "mini", "--retriever", json.dumps(body), "--json", "--home", home)
    assert json.loads(own)["hits"][0]["highlight"] == {
        "text": ["The moon pulls the oceans and makes the [tides]."]
    }
    with pytest.raises(InvalidInputError, match="--highlight and the search body's highlight"):
        run("search", "mini", "--retriever", json.dumps(body), "--highlight", "text",
            "--home", home)  # fmt: skip
    semantic = {**body, "highlight": {"fields": {"text": {"type": "semantic"}}}}
    with pytest.raises(InvalidInputError, match="re-ranks nothing"):
        run("search", "mini", "--retriever", json.dumps(semantic), "--home", home)


def test_search_of_several_indexes_names_each_hits_index(
    tmp_path: Path, beir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`semrank search a,b` (or a pattern) searches both; one id in each is two hits, and the
    table gains an index column."""
    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    moons = tmp_path / "moons.jsonl"
    moons.write_text(json.dumps({"_id": "tides", "text": "The moon, the moon, the moon."}) + "\n")
    run("index", "create", "moons", "--from", str(moons), "--home", home, "--no-dense")
    for target in ("mini,moons", "m*", "_all"):
        out = run("search", target, "moon", "--json", "--home", home)
        hits = [(hit["index"], hit["id"]) for hit in json.loads(out)["hits"]]
        # Each index scores by its own BM25 statistics: no order is asserted across them.
        assert sorted(hits) == [("mini", "eclipse"), ("mini", "tides"), ("moons", "tides")]
    monkeypatch.setenv("COLUMNS", "200")
    table = run("search", "mini,moons", "moon", "--home", home)
    assert "index" in table.splitlines()[2] and "moons" in table
    assert "index" not in run("search", "mini", "moon", "--home", home).splitlines()[2]
    with pytest.raises(IndexNotFoundError, match="'nosuch'"):
        run("search", "mini,nosuch", "moon", "--home", home)


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
    consistent = ("--rerank", "--window", "5", "--top-n", "5", "--json", "--home", home)
    hits = json.loads(run("search", "mini", "moon", *consistent))["hits"]
    assert {hit["id"] for hit in hits} == {"eclipse", "tides"}  # the two that mention the moon
    assert all(hit["rerank_score"] is not None for hit in hits)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--window", "50"), r"--window 50 with --retriever: .* set 'rank_window_size'"),
        (("--field", "title"), r"--field 'title' with --retriever: .* set 'field'"),
        (("--min-score", "0.5"), r"--min-score 0.5 with --retriever: .* set 'min_score'"),
        (("--model", "x"), r"--model 'x' with --retriever: .* set 'inference_id'"),
        (("--rerank",), r"--retriever replaces --bm25/--dense/--hybrid/--rerank"),
        (("--top-n", "3"), r"rank_window_size 2 is below the 3 hits asked for \(--top-n\)"),
    ],
)
def test_flags_a_retriever_file_would_ignore_are_refused(
    tmp_path: Path, beir: Path, args: tuple[str, ...], message: str
) -> None:
    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    tree = tmp_path / "tree.json"
    standard = {"standard": {"query": {"match": {"text": "{{query}}"}}}}
    reranker = {"retriever": standard, "field": "text", "rank_window_size": 2}
    tree.write_text(json.dumps({"text_similarity_reranker": reranker}))
    with pytest.raises(InvalidInputError, match=message):
        run("search", "mini", "moon", "--retriever", str(tree), *args, "--home", home)
    hits = run("search", "mini", "moon", "--retriever", str(tree), "--top-n", "2", "--json",
               "--home", home)  # fmt: skip
    assert [hit["rerank_score"] is not None for hit in json.loads(hits)["hits"]] == [True, True]
    # Without --top-n the window's hits, as Elasticsearch answers a body without a size (it
    # was refused as below the 10 hits of a --top-n nobody gave).
    unasked = run("search", "mini", "moon", "--retriever", str(tree), "--json", "--home", home)
    assert json.loads(unasked)["hits"] == json.loads(hits)["hits"]


def test_retriever_takes_the_shorthands_and_inline_json_too(tmp_path: Path, beir: Path) -> None:
    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    flags = ("--top-n", "2", "--json", "--home", home)
    by_flags = json.loads(run("search", "mini", "moon", "--rerank", *flags))["hits"]
    by_shorthand = json.loads(run("search", "mini", "moon", "--retriever", "bm25+rerank", *flags))
    assert by_shorthand["hits"] == by_flags  # as eval --retriever and the HTTP search read it
    inline = json.dumps({"standard": {"query": {"match": {"text": "{{query}}"}}}})
    plain = json.loads(run("search", "mini", "moon", "--retriever", inline, *flags))["hits"]
    assert [hit["id"] for hit in plain] == [
        hit["id"] for hit in json.loads(run("search", "mini", "moon", *flags))["hits"]
    ]
    # A shorthand takes the flags its stages would: the window re-ranked, the threshold.
    windowed = run("search", "mini", "moon", "--retriever", "bm25+rerank", "--window", "3", *flags)
    assert (
        json.loads(windowed)["hits"]
        == json.loads(run("search", "mini", "moon", "--rerank", "--window", "3", *flags))["hits"]
    )
    with pytest.raises(InvalidInputError, match="replaces --bm25/--dense/--hybrid/--rerank"):
        run("search", "mini", "moon", "--retriever", "hybrid", "--dense", "--home", home)
    with pytest.raises(InvalidInputError, match=r"'BM25': no such file, and not a shorthand"):
        run("search", "mini", "moon", "--retriever", "BM25", "--home", home)
    # A classic _search body runs as the retriever tree that is the same search, as over HTTP.
    classic = json.dumps({"query": {"match": {"text": "{{query}}"}}})
    found = json.loads(run("search", "mini", "moon", "--retriever", classic, *flags))["hits"]
    assert found and found == plain
    # A fixed knn vector the query would not replace (every query got the same knn hits).
    fixed = json.dumps({"knn": {"field": "embedding", "query_vector": [0.1, 0.2]}})
    with pytest.raises(InvalidInputError, match=r"^retriever\.knn\.query_vector is a fixed"):
        run("search", "mini", "moon", "--retriever", fixed, "--home", home)


def test_retriever_json_is_read_from_a_pipe_or_stdin(tmp_path: Path, beir: Path) -> None:
    """`--retriever <(jq .retriever body.json)` was "no such file, and not a shorthand"; - now
    reads the JSON from stdin."""
    from test_eval_loaders import fed_pipe

    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    tree = json.dumps({"standard": {"query": {"match": {"text": "{{query}}"}}}})
    flags = ("--top-n", "2", "--json", "--home", home)
    inline = json.loads(run("search", "mini", "moon", "--retriever", tree, *flags))
    pipe = fed_pipe(tmp_path / "tree", ("\ufeff" + tree).encode())
    assert json.loads(run("search", "mini", "moon", "--retriever", str(pipe), *flags)) == inline
    piped = run("search", "mini", "moon", "--retriever", "-", *flags, stdin=tree)
    assert json.loads(piped) == inline
    with pytest.raises(InvalidInputError, match=r"--retriever -?: expected retriever JSON"):
        run("search", "mini", "moon", "--retriever", "-", *flags, stdin="bm25\n")


def test_a_corpus_from_a_pipe_is_told_to_come_with_format(tmp_path: Path) -> None:
    """`index create NAME --from <(cmd)` said "cannot tell the format from the name" with
    file names as the only fix, and adding --format said the pipe's name tells the format."""
    pipe = tmp_path / "docs"
    os.mkfifo(pipe)  # never opened: the format is asked for before any read
    home = str(tmp_path / "home")
    with pytest.raises(DataFormatError, match=r"is a pipe, .* --from - --format jsonl"):
        run("index", "create", "p", "--from", str(pipe), "--home", home)
    with pytest.raises(InvalidInputError, match=r"is a pipe; pipe the documents to stdin"):
        run("index", "create", "p", "--from", str(pipe), "--format", "jsonl", "--home", home)


def test_a_named_pipe_with_a_corpus_name_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """`index create NAME --from docs.jsonl`, docs.jsonl a named pipe (mkfifo), hung: a corpus
    is read more than once (first records sniffed, then read through), and a read waited for
    a writer for good. Run as a process, so that a hang fails by its timeout."""
    import subprocess
    import sys

    pipe = tmp_path / "docs.jsonl"
    os.mkfifo(pipe)  # never opened for writing: refused before any read, or it waits
    home = str(tmp_path / "home")
    command = [sys.executable, "-m", "semrank", "index", "create", "p", "--from", str(pipe)]
    done = subprocess.run(
        [*command, "--home", home], capture_output=True, text=True, stdin=subprocess.DEVNULL,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "is a pipe, which a corpus cannot be read from" in done.stderr
    assert "--from - --format jsonl" in done.stderr
    run("index", "create", "p", "--home", home)
    with pytest.raises(DataFormatError, match=r"is a pipe, .*`index add NAME - --format"):
        run("index", "add", "p", str(pipe), "--home", home)


def test_a_retriever_file_named_like_a_shorthand_is_read_as_the_file(
    tmp_path: Path, beir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    monkeypatch.chdir(tmp_path)
    fixed = {"standard": {"query": {"match": {"text": "tides"}}}}  # a literal, no placeholder
    (tmp_path / "hybrid").write_text(json.dumps(fixed))
    hits = json.loads(run("search", "mini", "--retriever", "hybrid", "--json", "--home", home))
    assert [hit["id"] for hit in hits["hits"]] == ["tides"]


def test_window_without_rerank_is_refused(tmp_path: Path, beir: Path) -> None:
    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    with pytest.raises(InvalidInputError, match="--window sets how many hits --rerank reads"):
        run("search", "mini", "moon", "--window", "5", "--home", home)


def test_a_reranker_without_query_text_names_inference_text(tmp_path: Path, beir: Path) -> None:
    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    tree = tmp_path / "tree.json"
    standard = {"standard": {"query": {"match": {"text": "moon"}}}}
    tree.write_text(json.dumps({"text_similarity_reranker": {"retriever": standard}}))
    with pytest.raises(InvalidInputError, match="text_similarity_reranker's inference_text"):
        run("search", "mini", "--retriever", str(tree), "--home", home)


def test_add_without_ids_would_replace_documents_and_is_refused(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    first, more = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("title,text\nBats,Bats fly at night\nPython,Python code\n")
    more.write_text("title,text\nZebra,Zebra stripes\n")
    run("index", "create", "rn", "--from", str(first), "--home", home, "--no-dense")
    with pytest.raises(InvalidInputError, match=r"b\.csv has no id field .* replace the documents"):
        run("index", "add", "rn", str(more), "--home", home)
    hits = json.loads(run("search", "rn", "bats", "--json", "--home", home))["hits"]
    assert [hit["document"]["title"] for hit in hits] == ["Bats"]


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    for suffix, content in (
        ("csv", "id,text\nDOC-77,Bats fly at night\nDOC-78,Cats sleep\n"),
        ("jsonl", '{"id": "DOC-77", "text": "Bats fly at night"}\n'),
        ("json", '[{"id": "DOC-77", "text": "Bats fly at night"}]'),
    ):
        corpus = tmp_path / f"bom.{suffix}"
        corpus.write_bytes(b"\xef\xbb\xbf" + content.encode())
        out = run("index", "create", suffix, "--from", str(corpus), "--home", home, "--no-dense")
        assert "id field id, text fields text" in out, out
        hits = json.loads(run("search", suffix, "bats", "--json", "--home", home))["hits"]
        assert hits[0]["id"] == "DOC-77" and hits[0]["document"] == {"text": "Bats fly at night"}


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            # (a string "body" would now be found as a text field of its own)
            [{"_id": "a1", "text": "alpha"}, {"_id": "a2", "body": 42}],
            r"record 2 \(id 'a2'\) has none of the index's text fields text \(it has: body\)",
        ),
        (
            [{"_id": "d", "text": "first"}, {"_id": "d", "text": "second"}],
            r"record 2 repeats the id 'd' of record 1",
        ),
        ([{"_id": "", "text": "alpha"}], r"record 1: its id \('_id'\) is ''; give it an id"),
    ],
)
def test_records_an_index_would_lose_fail_before_it_is_created(
    tmp_path: Path, records: list[dict[str, str]], message: str
) -> None:
    home = str(tmp_path / "home")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(record) + "\n" for record in records))
    with pytest.raises(DataFormatError, match=message):
        run("index", "create", "k", "--from", str(corpus), "--home", home, "--no-dense")
    assert run("index", "list", "--home", home).startswith("no indexes")


def test_the_id_field_cannot_be_a_text_field(tmp_path: Path, beir: Path) -> None:
    home = str(tmp_path / "home")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(json.dumps({"_id": "a1", "text": "alpha"}) + "\n")
    with pytest.raises(InvalidInputError, match="text field '_id' is the id field"):
        run("index", "create", "k", "--from", str(corpus), "--fields", "_id", "--home", home)


@pytest.mark.parametrize(
    "option",
    [
        ("--embedding-model", "all-minilm-l6-v2"),
        ("--embedding-max-length", "64"),
        ("--ann-threshold", "5"),  # was accepted, and the index kept 20000
    ],
)
def test_embedding_options_with_no_dense_are_refused(
    tmp_path: Path, option: tuple[str, str]
) -> None:
    home = str(tmp_path / "home")
    with pytest.raises(InvalidInputError, match=f"{option[0]} .* with --no-dense"):
        run("index", "create", "mini", "--no-dense", *option, "--home", home)
    assert "mini" not in run("index", "list", "--home", home)


def test_rerank_reads_all_the_hits_asked_for_beyond_the_default_window(
    tmp_path: Path, beir: Path
) -> None:
    from semrank.pipeline import DEFAULT_RERANK_WINDOW

    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    top = str(DEFAULT_RERANK_WINDOW + 1)  # more than the default window: no --window given
    hits = json.loads(run("search", "mini", "moon", "--rerank", "--top-n", top, "--json",
                          "--home", home))["hits"]  # fmt: skip
    assert hits and all(hit["rerank_score"] is not None for hit in hits)


def test_bad_bytes_after_a_byte_order_mark_are_located_in_the_file(tmp_path: Path) -> None:
    corpus = tmp_path / "bom.csv"
    corpus.write_bytes(b"\xef\xbb\xbfid,te\xffxt\n1,a\n")
    with pytest.raises(
        InvalidInputError, match=r"bom\.csv:1: not valid UTF-8 \(byte 0xff at byte 9"
    ):
        run("index", "create", "b", "--from", str(corpus), "--home", str(tmp_path / "h"))
    whole = tmp_path / "bom.json"
    whole.write_bytes(b'\xef\xbb\xbf[{"id": "a", "text": "x\xff"}]')
    with pytest.raises(InvalidInputError, match=r"not valid UTF-8 \(byte 0xff at byte 27"):
        run("index", "create", "c", "--from", str(whole), "--home", str(tmp_path / "h"))


def test_null_text_fields_are_named_as_null(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    rows = [{"_id": "a", "title": "A", "text": "alpha"}, {"_id": "b", "title": None, "text": None}]
    corpus.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataFormatError, match=r"record 2 \(id 'b'\) .* \(title, text null\)"):
        run("index", "create", "k", "--from", str(corpus), "--home", str(tmp_path / "h"))


def test_a_file_refused_before_any_write_leaves_no_interrupted_mark(tmp_path: Path) -> None:
    """The mark went on before the file was checked: a file refused for a repeated id left
    "interrupted ingest; run index add of that file" advice that could only fail again."""
    home = str(tmp_path / "h")
    good = tmp_path / "good.jsonl"
    good.write_text('{"_id": "a", "text": "alpha"}\n')
    run("index", "create", "m", "--from", str(good), "--home", home, "--no-dense")
    twice = tmp_path / "twice.jsonl"
    twice.write_text('{"_id": "b", "text": "beta"}\n{"_id": "b", "text": "gamma"}\n')
    with pytest.raises(DataFormatError, match="repeats the id"):
        run("index", "add", "m", str(twice), "--home", home)
    assert "interrupted" not in run("index", "info", "m", "--home", home)
    assert "incomplete" not in run("index", "list", "--home", home)


def test_an_embedding_model_folder_is_kept_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative --embedding-model folder was stored as typed: from another directory (a
    server's) dense search and writes could not find it, or took a hub model of that name."""
    import shutil

    from semrank.models import resolve_embedding_model
    from semrank.store import open_index

    models = tmp_path / "work" / "models"
    shutil.copytree(resolve_embedding_model(None).path, models / "mine")
    corpus = tmp_path / "work" / "docs.jsonl"
    corpus.write_text('{"_id": "a", "text": "fleas bite"}\n')
    monkeypatch.chdir(tmp_path / "work")
    home = str(tmp_path / "h")
    run("index", "create", "r", "--from", "docs.jsonl", "--home", home,
        "--embedding-model", "models/mine")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    index = open_index("r", home=home)
    assert index.settings.embedding_model == str((models / "mine").resolve())
    assert index.search_vector(index.embed_queries(["fleas"])[0], k=1).ids.tolist() == ["a"]
    from semrank.pipeline import search

    builder = {"text_embedding": {"model_id": "work/models/mine", "model_text": "fleas"}}
    knn = {"knn": {"query_vector_builder": builder, "k": 1}}
    assert search(index, retriever=knn, k=1).ids == ["a"]  # the folder named relatively


def test_home_on_the_command_line_wins_over_semrank_store_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With $SEMRANK_STORE exported (for a server), `index drop NAME --home DIR --yes` went to
    the PostgreSQL database and would have dropped its index of that name."""
    home = str(tmp_path / "h")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"_id": "a", "text": "alpha"}\n')
    monkeypatch.setenv("SEMRANK_STORE", "postgresql://nobody@127.0.0.1:9/none")
    run("index", "create", "local1", "--from", str(corpus), "--home", home, "--no-dense")
    assert "local1" in run("index", "list", "--home", home)
    run("index", "drop", "local1", "--home", home, "--yes")
    assert "local1" not in run("index", "list", "--home", home)
    with pytest.raises(InvalidInputError, match="give one"):
        run("index", "list", "--home", home, "--store", "postgresql://x@127.0.0.1:9/y")
    # A bad value is named as the variable's (the user typed no --store); --home still wins.
    monkeypatch.setenv("SEMRANK_STORE", "bogus")
    with pytest.raises(InvalidInputError, match=r"^\$SEMRANK_STORE is 'bogus': use 'local'"):
        run("index", "list")
    assert "local1" not in run("index", "list", "--home", home)


@pytest.mark.parametrize("fields", ["body,titel", "body,meta.author"])
def test_a_named_field_no_record_has_is_refused_before_the_index_exists(
    tmp_path: Path, fields: str
) -> None:
    """A typo or a dotted path in --fields made an index that never found that field's text."""
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(
        '{"_id": "a", "title": "beta", "body": "alpha", "meta": {"author": "zelda"}}\n'
    )
    home = str(tmp_path / "h")
    named = r"no record of .* has it \(of the fields named, these hold text"
    with pytest.raises(InvalidInputError, match=named):
        run("index", "create", "f", "--from", str(corpus), "--fields", fields, "--home", home)
    assert "f" not in run("index", "list", "--home", home).split()


def test_search_reranks_with_the_backend_asked_for(tmp_path: Path, beir: Path) -> None:
    """`semrank rerank` took --backend; `semrank search` loaded its re-ranker by name only."""
    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    args = ["search", "mini", "moon", "--rerank", "--json", "--home", home]
    default = json.loads(run(*args))["hits"]
    onnx = json.loads(run(*args, "--backend", "onnx"))["hits"]
    assert [h["id"] for h in onnx] == [h["id"] for h in default]
    assert [h["rerank_score"] for h in onnx] == pytest.approx(
        [h["rerank_score"] for h in default], abs=0.02
    )
    standard = {"standard": {"query": {"match": {"text": "{{query}}"}}}}
    tree = json.dumps({"text_similarity_reranker": {"retriever": standard}})
    with pytest.raises(BackendUnavailableError, match="unknown backend 'no-such-backend'"):
        run("search", "mini", "moon", "--retriever", tree, "--backend", "no-such-backend",
            "--home", home)  # fmt: skip


def test_search_no_feedback_scores_each_hit_on_its_own(tmp_path: Path) -> None:
    """`semrank search` had no --no-feedback: the default model's pseudo-relevance feedback
    (lists of 10 and more) could not be switched off, as `rerank`, `eval` and `serve` can."""
    home = str(tmp_path / "home")
    corpus = tmp_path / "moons.jsonl"
    moons = [f"Moon {n} orbits its planet and raises tides on its seas." for n in range(11)]
    texts = [*moons, "Paris is the capital of France.", "The moon hides the sun in an eclipse."]
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    run("index", "create", "moons", "--from", str(corpus), "--home", home, "--no-dense")

    def scores(*flags: str) -> dict[str, float]:
        args = ["search", "moons", "moon tides", "--rerank", "--top-n", "10", "--json"]
        hits = json.loads(run(*args, *flags, "--home", home))["hits"]
        return {hit["id"]: hit["rerank_score"] for hit in hits}

    plain = scores("--no-feedback", "--window", "10")
    # Each hit's score is its own: the same whether 10 or 13 hits are re-ranked together.
    wider = scores("--no-feedback", "--window", "13")
    both = plain.keys() & wider.keys()
    assert len(both) >= 9
    assert {i: plain[i] for i in both} == pytest.approx({i: wider[i] for i in both}, abs=1e-5)
    with_feedback = scores("--window", "13")  # the default: feedback moves the scores
    assert max(abs(with_feedback[id_] - wider[id_]) for id_ in wider.keys() & with_feedback) > 1e-3
    with pytest.raises(InvalidInputError, match=r"--no-feedback switches off .* re-ranks nothing"):
        run("search", "moons", "moon", "--no-feedback", "--home", home)


def test_answering_no_to_drop_keeps_the_index_and_exits_0(tmp_path: Path, beir: Path) -> None:
    from typer.testing import CliRunner

    from semrank.cli import app

    home = str(tmp_path / "home")
    run("index", "create", "keep", "--from", str(beir), "--home", home, "--no-dense")
    answered = CliRunner().invoke(app, ["index", "drop", "keep", "--home", home], input="n\n")
    assert answered.exit_code == 0 and "not dropped" in answered.output  # 1 is "a bug"
    assert "keep" in run("index", "list", "--home", home)


def test_drop_without_an_answer_names_yes_and_an_unknown_index_is_not_asked_about(
    tmp_path: Path, beir: Path
) -> None:
    """With stdin closed (a script), drop said "Aborted!" with exit status 1 (a bug); an index
    that does not exist was asked about before it was found missing."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from semrank.cli import app
    from semrank.errors import IndexNotFoundError, InvalidInputError

    home = str(tmp_path / "home")
    run("index", "create", "keep", "--from", str(beir), "--home", home, "--no-dense")
    closed = CliRunner().invoke(app, ["index", "drop", "keep", "--home", home], input="")
    assert isinstance(closed.exception, InvalidInputError) and "pass --yes" in str(closed.exception)
    assert "keep" in run("index", "list", "--home", home)
    # Started with stdin closed (`<&-`): input() raised RuntimeError, a traceback, exit 1.
    command = [sys.executable, "-m", "semrank", "index", "drop", "keep", "--home", home]
    shut = subprocess.run(stdin_closed(command), capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert shut.returncode == 2 and "Traceback" not in shut.stderr, shut.stderr
    assert "no answer to the confirmation (stdin is closed); pass --yes" in shut.stderr
    assert "keep" in run("index", "list", "--home", home)
    missing = CliRunner().invoke(app, ["index", "drop", "nosuch", "--home", home], input="")
    assert isinstance(missing.exception, IndexNotFoundError)
    assert "drop index" not in missing.output  # not asked


def test_dropping_a_linked_index_removes_the_link_and_says_its_files_are_kept(
    tmp_path: Path, beir: Path
) -> None:
    """An index moved to another disk and linked back: drop said "dropped", left the link
    under a hidden name for good (rmtree refuses links) and every file of the index with it."""
    disk, home = tmp_path / "disk", tmp_path / "home"
    run("index", "create", "moved", "--from", str(beir), "--home", str(disk), "--no-dense")
    home.mkdir()
    (home / "moved").symlink_to(disk / "moved", target_is_directory=True)
    assert "moved\t3 documents" in run("index", "list", "--home", str(home))
    out = run("index", "drop", "moved", "--yes", "--home", str(home))
    assert f"removed {home / 'moved'}, a link; the index's files at {disk / 'moved'} are kept" in (
        " ".join(out.split())
    )
    assert list(home.iterdir()) == []  # no hidden link left behind
    assert (disk / "moved" / "documents.sqlite").is_file()  # not emptied through the link
    # One left by an earlier drop is removed by the next command, its folder kept whole too.
    leftover = home / f".moved.{'0' * 32}.trash"
    leftover.symlink_to(disk / "moved", target_is_directory=True)
    assert run("index", "list", "--home", str(home)).startswith("no indexes in")
    assert not os.path.lexists(leftover)
    assert "moved\t3 documents" in run("index", "list", "--home", str(disk))


def test_a_create_stopped_by_a_full_disk_says_to_free_space_not_to_fix_the_input(
    tmp_path: Path,
) -> None:
    """The disk filled mid-ingest and the note said "fix the input", which was not at fault. The
    disk is filled here by a file-size limit, as a full one stops SQLite's writes."""
    import subprocess
    import sys

    corpus = tmp_path / "big.jsonl"
    words = " ".join(f"word{n}" for n in range(60))
    corpus.write_text(
        "".join(json.dumps({"id": str(n), "text": words}) + "\n" for n in range(4000))
    )
    home = tmp_path / "home"
    script = (
        "import resource, signal, sys\n"
        "from semrank.cli import main\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))\n"
        "sys.argv = ['semrank', *sys.argv[1:]]\n"
        "main()\n"
    )
    args = ["index", "create", "full", "--no-dense", "--batch-size", "100", "--home", str(home)]
    done = subprocess.run(
        [sys.executable, "-c", script, *args, "--from", str(corpus)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr[-2000:]  # the machine's, not the input's
    message = " ".join(done.stderr.split())
    assert "check that this user may write there and that the disk has space" in message
    assert "free space (or fix what the error names), then `semrank index add full" in message
    assert "fix the input" not in message


def test_add_says_which_text_it_keeps_but_does_not_search(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from semrank.cli import app

    home = str(tmp_path / "home")
    run("index", "create", "notes", "--home", home, "--no-dense")  # text fields: title, text
    notes = tmp_path / "notes.csv"
    notes.write_text("id,title,body\n1,Commas,a comma separates words\n")
    added = CliRunner().invoke(app, ["index", "add", "notes", str(notes), "--home", home])
    assert added.exit_code == 0, added.output
    assert "hold text in body, which index 'notes' keeps but does not search" in added.stderr
    again = CliRunner().invoke(app, ["index", "add", "notes", str(notes), "--home", home])
    assert again.exit_code == 0 and "warning" not in again.stderr  # said once, not every add
    piped = CliRunner().invoke(
        app,
        ["index", "add", "notes", "-", "--format", "csv", "--home", home],
        input="id,title,abstract\n2,Dots,a dot ends a sentence\n",
    )
    assert piped.exit_code == 0, piped.output
    assert "warning: stdin's records hold text in abstract, which index" in piped.stderr


def test_create_from_records_without_ids_warns_and_a_new_index_is_marked_before_its_model(
    tmp_path: Path,
) -> None:
    """Killed while its embedding model loaded, a new index was left empty and unmarked; here
    the model fails to load at that point instead, with the same effect."""
    from typer.testing import CliRunner

    from semrank.cli import app

    home = str(tmp_path / "home")
    lines = tmp_path / "lines.jsonl"
    lines.write_text('{"text": "fleas bite"}\n{"text": "dogs bark"}\n')
    made = CliRunner().invoke(
        app, ["index", "create", "noids", "--from", str(lines), "--home", home, "--no-dense"]
    )
    assert made.exit_code == 0 and "has no id field" in made.stderr
    from tiny_models import write_tiny_model

    broken = write_tiny_model(tmp_path / "broken-model", "bert", "encoder")
    (broken / "model.safetensors").write_bytes(b"not weights")  # found, then fails to load
    failed = CliRunner().invoke(
        app,
        ["index", "create", "marked", "--from", str(lines), "--home", home,
         "--embedding-model", str(broken)],
    )  # fmt: skip
    assert failed.exception is not None
    assert "incomplete" in run("index", "list", "--home", home)


def test_a_failed_create_names_the_commands_that_go_on_with_its_home(tmp_path: Path) -> None:
    """The hint left out --home / --store: run as printed, `index add` wrote into another
    store's index of that name (the local default instead of PostgreSQL)."""
    from semrank.errors import SemrankError
    from tiny_models import write_tiny_model

    home = tmp_path / "my home"
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"id": "a", "text": "fleas"}\n')
    broken = write_tiny_model(tmp_path / "broken-model", "bert", "encoder")
    (broken / "model.safetensors").write_bytes(b"not weights")  # fails once the index exists
    with pytest.raises(SemrankError) as refused:
        run("index", "create", "half", "--from", str(docs), "--home", str(home),
            "--embedding-model", str(broken))  # fmt: skip
    message = str(refused.value)
    assert "was created" in message
    assert f"`semrank index add half {docs} --home '{home}'`" in message
    assert f"`semrank index drop half --home '{home}'`" in message
    from semrank.store._dsn import redact_dsn
    from semrank.store.commands import _where_flags

    dsn = "postgresql://app:secret@db:5432/search"
    assert _where_flags(None, dsn) == f" --store '{redact_dsn(dsn)}'"  # quoted: '***'"
    assert "secret" not in _where_flags(None, dsn)
    assert _where_flags(home, None) == f" --home '{home}'" and _where_flags(None, None) == ""


def test_the_search_table_shows_the_text_fields_first() -> None:
    """PostgreSQL's jsonb returns fields shortest key first: the table showed a tagline and the
    genres before the overview."""
    from semrank.store.commands import _snippet

    stored = {"title": "Batman", "genres": "Action", "overview": "A vigilante fights crime."}
    assert _snippet(stored, text_fields=("overview", "title")).startswith(
        "A vigilante fights crime. | Batman | Action"
    )
    assert _snippet(stored).startswith("Batman | Action")  # written order, as embedded


def test_add_counts_what_it_wrote_and_what_it_skipped(tmp_path: Path, beir: Path) -> None:
    """Adding a file again printed "upserted N documents" though nothing was written."""
    home = str(tmp_path / "home")
    run("index", "create", "again", "--from", str(beir), "--home", home, "--no-dense")
    again = run("index", "add", "again", str(beir), "--home", home)
    assert f"upserted 0 documents ({len(DOCS)} already stored as given, skipped)" in again
    changed = tmp_path / "one.jsonl"
    changed.write_text(json.dumps({"_id": DOCS[0]["_id"], "title": "new", "text": "new"}) + "\n")
    assert "upserted 1 document;" in run("index", "add", "again", str(changed), "--home", home)


def test_add_reads_stdin_in_the_format_given(tmp_path: Path, beir: Path) -> None:
    """`index add NAME -` read a file called "-" ("corpus - does not exist"): a stream has no
    name to tell its format by, so --format says it, and a file keeps its name's."""
    home = str(tmp_path / "home")
    run("index", "create", "piped", "--from", str(beir), "--home", home, "--no-dense")
    jsonl = json.dumps({"_id": "bats", "title": "Bats", "text": "Bats fly at night."}) + "\n"
    added = run("index", "add", "piped", "-", "--format", "jsonl", "--home", home, stdin=jsonl)
    assert "upserted 1 document;" in added and "holds 4" in added
    csv_rows = "_id,title,text\nowls,Owls,Owls hunt at night.\n"
    run("index", "add", "piped", "-", "--format", "CSV", "--home", home, stdin=csv_rows)
    hits = json.loads(run("search", "piped", "night", "--json", "--home", home))["hits"]
    texts = {hit["id"]: hit["document"]["text"] for hit in hits}
    assert texts == {"bats": "Bats fly at night.", "owls": "Owls hunt at night."}

    def add(*flags: str, stdin: str = jsonl) -> None:
        run("index", "add", "piped", *flags, "--home", home, stdin=stdin)

    with pytest.raises(InvalidInputError, match=r"no name to tell .* --format \(jsonl, json,"):
        add("-")
    with pytest.raises(InvalidInputError, match=r"--format 'xml' .* one of: jsonl, json, csv"):
        add("-", "--format", "xml")
    with pytest.raises(DataFormatError, match=r"^stdin:2: not valid JSON"):
        add("-", "--format", "jsonl", stdin=jsonl + "{not json\n")
    with pytest.raises(InvalidInputError, match=r"--format 'csv' says what stdin .* is a file"):
        add(str(beir), "--format", "csv")
    assert json.loads(run("index", "info", "piped", "--json", "--home", home))["documents"] == 5


def test_stdin_closed_or_no_room_for_its_copy_is_said_and_a_sigterm_removes_the_copy(
    tmp_path: Path, beir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed stdin was a traceback (sys.stdin None); a small TMPDIR said only "the disk is
    full"; a SIGTERM while stdin was read left the whole copy in TMPDIR."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    home = str(tmp_path / "home")
    run("index", "create", "piped", "--from", str(beir), "--home", home, "--no-dense")
    command = [sys.executable, "-m", "semrank.cli", "index", "add", "piped", "-", "--format"]
    command += ["jsonl", "--home", home]
    closed = subprocess.run(stdin_closed(command), capture_output=True, text=True)
    assert closed.returncode == 2 and "stdin is closed; pipe them in" in closed.stderr
    spool = tmp_path / "tmp"
    spool.mkdir()
    env = {**os.environ, "TMPDIR": str(spool)}
    reading = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert reading.stdin is not None
        reading.stdin.write(b'{"_id": "bats", "text": "Bats fly."}\n')  # and more to come
        reading.stdin.flush()
        deadline = time.monotonic() + 60
        while not any(spool.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(spool.iterdir())  # the copy is being written
        reading.send_signal(signal.SIGTERM)
        assert reading.wait(timeout=60) == -signal.SIGTERM
    finally:
        reading.kill()
    assert not any(spool.iterdir())

    def no_room(source: Any, target: Any) -> None:  # the OS's answer on a full tmpfs
        raise OSError(28, "No space left on device")

    monkeypatch.setenv("TMPDIR", str(spool))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    monkeypatch.setattr(shutil, "copyfileobj", no_room)
    with pytest.raises(StorageError, match=r"copied to .*tmp.* \(No space left on device\); set "
                       r"TMPDIR to a folder with room"):  # fmt: skip
        run("index", "add", "piped", "-", "--format", "jsonl", "--home", home, stdin="{}\n")


def test_copies_of_stdin_left_by_killed_processes_are_removed_by_the_next(
    tmp_path: Path, beir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGKILL (the OOM killer, docker kill) left the whole corpus in TMPDIR, forever."""
    import os

    from semrank._process import process_start_time

    home = str(tmp_path / "home")
    run("index", "create", "piped", "--from", str(beir), "--home", home, "--no-dense")
    spool = tmp_path / "tmp"
    monkeypatch.setenv("TMPDIR", str(spool))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    space, pid = os.stat("/proc/self/ns/pid").st_ino, os.getpid()
    killed = spool / f"semrank-stdin-{space}.999999999.12345-abcd"  # no such process
    reused = spool / f"semrank-stdin-{space}.{pid}.1-abcd"  # its id, another start time
    running = spool / f"semrank-stdin-{space}.{pid}.{process_start_time(pid)}-abcd"
    # A container's, sharing this TMPDIR: its pid 1 is not this namespace's pid 1.
    elsewhere = spool / f"semrank-stdin-{space + 1}.1.12345-abcd"
    for folder in (killed, reused, running, elsewhere):
        folder.mkdir(parents=True)
        (folder / "stdin.jsonl").write_text("{}\n")
    jsonl = json.dumps({"_id": "bats", "text": "Bats fly at night."}) + "\n"
    run("index", "add", "piped", "-", "--format", "jsonl", "--home", home, stdin=jsonl)
    assert sorted(spool.iterdir()) == sorted([running, elsewhere])


def test_an_interrupted_ingest_from_stdin_says_to_pipe_it_again(
    tmp_path: Path, beir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark named the ingest's temporary copy of stdin, gone once the command ended."""
    home = str(tmp_path / "home")
    run("index", "create", "piped", "--from", str(beir), "--home", home, "--no-dense")
    jsonl = json.dumps({"_id": "bats", "title": "Bats", "text": "Bats fly at night."}) + "\n"
    add = ["index", "add", "piped", "-", "--format", "jsonl", "--home", home]
    run_killed_before_its_ingest_ends(monkeypatch, *add, stdin=jsonl)
    note = incomplete_note(home)
    assert note is not None
    assert note.startswith("it holds 4 documents, but the ingest of - (started ")
    assert "pipe the same documents into `semrank index add piped - --format FORMAT --home" in note
    run("index", "add", "piped", "-", "--format", "jsonl", "--home", home, stdin=jsonl)
    assert incomplete_note(home) is None


def test_other_documents_piped_in_leave_an_interrupted_ingest_from_stdin_marked(
    tmp_path: Path, beir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ingest from stdin was marked "-": the next one, of other documents, took over an
    interrupted one's mark and cleared it, so the index read as complete with documents
    missing (and two at once cleared each other's running mark)."""
    home = str(tmp_path / "home")
    run("index", "create", "piped", "--from", str(beir), "--home", home, "--no-dense")
    bats = json.dumps({"_id": "bats", "title": "Bats", "text": "Bats fly at night."}) + "\n"
    owls = json.dumps({"_id": "owls", "title": "Owls", "text": "Owls hunt at night."}) + "\n"
    add = ["index", "add", "piped", "-", "--format", "jsonl", "--home", home]
    run_killed_before_its_ingest_ends(monkeypatch, *add, stdin=bats)
    other = CliRunner().invoke(app, add, input=owls)
    assert other.exit_code == 0, other.output
    assert "indexing stdin:" in other.stderr and "stdin.jsonl" not in other.stderr  # not its copy
    note = incomplete_note(home)
    assert note is not None
    assert note.startswith("it holds 5 documents, but the ingest of - (started ")
    assert "pipe the same documents into `semrank index add piped - --format FORMAT --home" in note
    assert f"incomplete: {note}" in run("index", "info", "piped", "--home", home)
    run(*add, stdin=bats)  # the same documents again finish it
    assert incomplete_note(home) is None


def test_a_stdin_ingest_marked_plain_dash_still_reads_and_piping_in_finishes_it(
    tmp_path: Path, beir: Path
) -> None:
    """Before stdin ingests were told apart, each was marked "-" alone."""
    from semrank.store import open_index
    from semrank.store._base import STDIN_SOURCE

    home = tmp_path / "home"
    run("index", "create", "piped", "--from", str(beir), "--home", str(home), "--no-dense")
    with open_index("piped", home=home) as index:
        index.begin_ingest(Path(STDIN_SOURCE), id_field="_id")  # and never ended
    note = incomplete_note(home)
    assert note is not None
    assert note.startswith("it holds 3 documents, but the ingest of - (started ")
    assert "pipe the same documents into `semrank index add piped -" in note
    bats = json.dumps({"_id": "bats", "title": "Bats", "text": "Bats fly at night."}) + "\n"
    run("index", "add", "piped", "-", "--format", "jsonl", "--home", str(home), stdin=bats)
    assert incomplete_note(home) is None


def test_create_reads_stdin_in_the_format_given(tmp_path: Path) -> None:
    """`index create NAME --from -` read a file called "-" ("corpus - does not exist"), where
    `index add NAME -` reads stdin: it takes --format as add does, and says "stdin"."""
    home = str(tmp_path / "home")
    jsonl = "".join(json.dumps(d) + "\n" for d in DOCS)

    def create(name: str, *flags: str, stdin: str = jsonl) -> str:
        return run("index", "create", name, *flags, "--home", home, "--no-dense", stdin=stdin)

    created = create("piped", "--from", "-", "--format", "jsonl")
    assert (
        "jsonl file: id field _id, text fields title, text" in created and "3 documents" in created
    )
    create("rows", "--from", "-", "--format", "csv", stdin="id,text\nowls,Owls hunt at night.\n")
    hits = json.loads(run("search", "rows", "night", "--json", "--home", home))["hits"]
    assert [(hit["id"], hit["document"]["text"]) for hit in hits] == [
        ("owls", "Owls hunt at night.")
    ]
    with pytest.raises(InvalidInputError, match=r"no name to tell .* --format \(jsonl, json,"):
        create("refused", "--from", "-")
    with pytest.raises(InvalidInputError, match=r"--format 'jsonl' says what stdin \(--from -\)"):
        create("refused", "--format", "jsonl")
    with pytest.raises(DataFormatError, match=r"^stdin:2: not valid JSON"):
        create(
            "refused",
            "--from",
            "-",
            "--format",
            "jsonl",
            stdin=jsonl.splitlines()[0] + "\n{not json\n",
        )
    with pytest.raises(InvalidInputError, match=r"--fields body: no record of stdin has it"):
        create("refused", "--from", "-", "--format", "jsonl", "--fields", "text,body")
    listed = [row["name"] for row in json.loads(run("index", "list", "--json", "--home", home))]
    assert listed == ["piped", "rows"]  # refused before anything was created


def test_an_interrupted_create_from_stdin_says_to_pipe_it_into_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create from stdin marked, and named in its errors, the temporary copy of stdin that
    was gone once the command ended."""
    from semrank.store._local import LocalStore

    home = str(tmp_path / "home")
    jsonl = "".join(json.dumps(d) + "\n" for d in DOCS)
    create = ["index", "create", "piped", "--from", "-", "--format", "jsonl", "--no-dense"]
    run_killed_before_its_ingest_ends(monkeypatch, *create, "--home", home, stdin=jsonl)
    note = incomplete_note(home)
    assert note is not None
    assert note.startswith("it holds 3 documents, but the ingest of - (started ")
    assert "pipe the same documents into `semrank index add piped - --format FORMAT --home" in note
    run("index", "add", "piped", "-", "--format", "jsonl", "--home", home, stdin=jsonl)
    assert incomplete_note(home) is None

    upsert = LocalStore.upsert_counted

    def failing(self: LocalStore, corpus: Any, **options: Any) -> Any:
        upsert(self, list(corpus)[:1], **options)  # a batch went in, then the input was bad
        raise DataFormatError(f"{corpus.path}:2: not valid JSON")

    monkeypatch.setattr(LocalStore, "upsert_counted", failing)
    with pytest.raises(DataFormatError) as failed:
        run("index", "create", "half", "--from", "-", "--format", "jsonl", "--no-dense",
            "--home", home, stdin=jsonl)  # fmt: skip
    message = str(failed.value)
    assert message.startswith("stdin:2: not valid JSON\nindex 'half' was created and keeps")
    assert "piping the same documents into `semrank index add half - --format jsonl --home" in (
        message
    )
    assert "semrank-stdin-" not in message


def test_a_search_body_size_is_the_number_of_hits_unless_top_n_says(tmp_path: Path) -> None:
    """A _search body asking for 12 hits got 10, the default --top-n, without a word."""
    home = str(tmp_path / "home")
    corpus = tmp_path / "many.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": f"fleas {i}"}) + "\n"
                              for i in range(15)))  # fmt: skip
    run("index", "create", "many", "--from", str(corpus), "--home", home, "--no-dense")
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"retriever": {"standard": {"query": {"match": {"text": "fleas"}}}},
                                "size": 12}))  # fmt: skip
    hits = json.loads(run("search", "many", "--retriever", str(body), "--home", home, "--json"))
    assert len(hits["hits"]) == 12
    fewer = run(
        "search", "many", "--retriever", str(body), "--top-n", "5", "--home", home, "--json"
    )
    assert len(json.loads(fewer)["hits"]) == 5
    plain = run("search", "many", "fleas", "--home", home, "--json")
    assert len(json.loads(plain)["hits"]) == 10


def test_ingest_progress_goes_to_stderr_as_lines_off_a_terminal(tmp_path: Path) -> None:
    """Off a terminal (cron, CI) the progress bar wrote nothing until each step ended, and
    wrote it to stdout, among the results."""
    import subprocess
    import sys

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    done = subprocess.run(
        [sys.executable, "-m", "semrank.cli", "index", "create", "p", "--from", str(corpus),
         "--home", str(tmp_path / "home"), "--no-dense"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The pass that checks the whole file first is a step of its own (16 s for 123 MB).
    assert done.stderr.index("checking docs.jsonl ...") < done.stderr.index("indexing docs")
    assert f"indexing docs.jsonl: {len(DOCS)}/{len(DOCS)} (100%) after" in done.stderr
    assert "building BM25 / vector indexes ..." in done.stderr
    assert "indexing" not in done.stdout and "\x1b" not in done.stdout + done.stderr


def test_progress_lines_give_the_share_done_not_the_tenth_passed() -> None:
    """A line said the tenth just crossed: "indexing corpus.jsonl.gz: 768/5183 (10%)" (14.8%
    done) and "retrieving: 2/3 (60%)", so the count and the percentage disagreed."""
    import io

    from rich.console import Console

    from semrank._progress import progress

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with progress(console, "indexing c.jsonl", 5183) as advance:
        for count in (768, 4000, 415):
            advance(count)
    with progress(console, "retrieving", 3) as advance:
        for _ in range(3):
            advance(1)
    lines = [line.rsplit(" after ", 1)[0] for line in out.getvalue().splitlines()]
    assert lines == [
        "indexing c.jsonl: 768/5183 (14%)",
        "indexing c.jsonl: 4768/5183 (91%)",
        "indexing c.jsonl: 5183/5183 (100%)",
        "retrieving: 1/3 (33%)",
        "retrieving: 2/3 (66%)",
        "retrieving: 3/3 (100%)",
    ]


def test_search_takes_a_bodys_source_flag(tmp_path: Path) -> None:
    """`search --retriever` refused "_source": false, which Elasticsearch and semrank's HTTP
    _search take, saying a field filter is not supported; false leaves the documents out."""
    home = tmp_path / "home"
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    run("index", "create", "t", "--from", str(corpus), "--no-dense", "--home", str(home))
    tree = {"standard": {"query": {"match": {"text": "moon"}}}}
    found = {}
    for source in (False, True):
        body = json.dumps({"retriever": tree, "_source": source})
        out = run("search", "t", "--retriever", body, "--json", "--home", str(home))
        found[source] = json.loads(out)["hits"]
    assert [h["id"] for h in found[False]] == [h["id"] for h in found[True]] != []
    assert all(h["document"] is None for h in found[False])
    assert all(h["document"] for h in found[True])


def test_inline_trees_of_any_length_and_homes_that_are_files_or_blank(tmp_path: Path) -> None:
    """An inline --retriever JSON past 255 bytes was probed as a file name (exit 3, "[Errno
    36]"); a --home that is a file listed "no indexes"; SEMRANK_HOME="   " made a folder of
    that name; a folder given as --ids-file was "no such file"."""
    from semrank.errors import InvalidInputError

    home = tmp_path / "home"
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    run("index", "create", "t", "--from", str(corpus), "--no-dense", "--home", str(home))
    match = '{"standard": {"query": {"match": {"text": "{{query}}"}}}}'
    tree = '{"rrf": {"retrievers": [' + ", ".join([match] * 4) + '], "rank_constant": 60}}'
    assert len(tree) > 255
    assert "cats" in run("search", "t", "cats", "--retriever", tree, "--home", str(home)).lower()
    result = CliRunner().invoke(app, ["index", "list", "--home", str(corpus)])
    assert isinstance(result.exception, InvalidInputError)
    assert f"index home {corpus} (given (--home; semrank serve: --index-home)) is a file" in str(
        result.exception
    )
    result = CliRunner().invoke(app, ["index", "list"], env={"SEMRANK_HOME": str(corpus)})
    assert f"index home {corpus} (SEMRANK_HOME) is a file" in str(result.exception)
    result = CliRunner().invoke(app, ["index", "list"], env={"SEMRANK_HOME": "   "})
    assert isinstance(result.exception, InvalidInputError)
    assert "$SEMRANK_HOME is blank" in str(result.exception)
    args = ["index", "delete", "t", "--ids-file", str(tmp_path), "--home", str(home)]
    result = CliRunner().invoke(app, args)
    assert f"--ids-file {tmp_path}: a folder, not a file;" in str(result.exception)


def test_a_home_the_machine_cannot_make_is_its_error_and_one_under_a_file_the_commands(
    tmp_path: Path, read_only_folder: Path
) -> None:
    """A read-only file system was "invalid input" (exit 2, HTTP 422) naming only --home; it is
    the machine's (exit 3, 503), and a --home under a file stays the command's input (2)."""
    from semrank.errors import StorageError, exit_code_for

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    create = ["index", "create", "t", "--from", str(corpus), "--no-dense", "--home"]
    home = read_only_folder / "home"
    result = CliRunner().invoke(app, [*create, str(home)])
    assert isinstance(result.exception, StorageError), result.output
    assert exit_code_for(result.exception) == 3
    assert str(result.exception) == (
        f"index home {home} cannot be created or written (Read-only file system); give a "
        "writable folder with --home (semrank serve: --index-home) or $SEMRANK_HOME"
    )
    under_a_file = corpus / "home"
    result = CliRunner().invoke(app, [*create, str(under_a_file)])
    assert isinstance(result.exception, InvalidInputError), result.output
    assert exit_code_for(result.exception) == 2
    assert f"index home {under_a_file} is a file (or lies under one)" in str(result.exception)


@pytest.mark.parametrize("fields", ["", ",,", " , "])
def test_blank_fields_and_homes_are_refused(tmp_path: Path, fields: str) -> None:
    """--fields "$FIELDS" unset indexed every string field; `demo --home ""` built in the
    current folder, and SEMRANK_HOME="  " made a folder named two spaces there."""
    from semrank.errors import InvalidInputError

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"_id": "a", "text": "alpha", "secret": "beta"}\n')
    args = ["index", "create", "t", "--from", str(corpus), "--no-dense", "--fields", fields]
    result = CliRunner().invoke(app, [*args, "--home", str(tmp_path / "h")])
    assert isinstance(result.exception, InvalidInputError), result.output
    assert f"--fields is blank ({fields!r})" in str(result.exception)
    assert not (tmp_path / "h" / "t").exists()
    blank_home = CliRunner().invoke(app, ["demo", "--home", fields.replace(",", "")])
    assert blank_home.exit_code == 2 and "is blank" in blank_home.output
    blank_env = CliRunner().invoke(app, ["demo"], env={"SEMRANK_HOME": "  "})
    assert "$SEMRANK_HOME is blank" in str(blank_env.exception)


def test_search_tables_show_long_ids_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Two URL ids were both shown as "https://exam…" (off a terminal tables are 80 wide)."""
    monkeypatch.setenv("COLUMNS", "80")
    home = str(tmp_path / "home")
    base = "https://example.org/articles/2026/12/07/flea-life-cycle-part-"
    corpus = tmp_path / "long.jsonl"
    corpus.write_text("".join(
        json.dumps({"id": f"{base}{i}", "text": f"fleas part {i}"}) + "\n" for i in (1, 2)
    ))  # fmt: skip
    run("index", "create", "long", "--from", str(corpus), "--home", home, "--no-dense")
    table = run("search", "long", "fleas", "--home", home)
    body = table.split("┡")[1].splitlines()[1:]
    cells = [line.split("│")[3].strip() for line in body if line.startswith("│")]
    assert "".join(cells) == f"{base}1{base}2" or "".join(cells) == f"{base}2{base}1"


def test_backend_without_a_re_ranker_is_refused(tmp_path: Path, beir: Path) -> None:
    """--backend bogus was accepted, and ignored, by a search that re-ranks nothing."""
    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home, "--no-dense")
    with pytest.raises(InvalidInputError, match="--backend 'onnx' sets how the re-ranking models"):
        run("search", "mini", "moon", "--backend", "onnx", "--home", home)
    with pytest.raises(InvalidInputError, match=r"^--top-n 1000001 must be at most 1,000,000$"):
        run("search", "mini", "moon", "--top-n", "1000001", "--home", home)  # it named "k"
    with pytest.raises(BackendUnavailableError, match="unknown backend 'bogus'"):
        run("search", "mini", "moon", "--backend", "bogus", "--rerank", "--home", home)


def test_a_dense_query_the_embedding_model_cannot_read_is_warned_of(
    tmp_path: Path, beir: Path
) -> None:
    """Only the re-ranker warned of a query in a script its model never saw; a dense search
    answered unrelated documents with confident scores and said nothing."""
    home = str(tmp_path / "home")
    run("index", "create", "mini", "--from", str(beir), "--home", home)
    for flag in ("--dense", "--hybrid"):
        args = [flag, "--json", "--home", home]
        chinese = CliRunner().invoke(app, ["search", "mini", "跳蚤是什么东西", *args])
        (said,) = json.loads(chinese.stdout)["warnings"]
        assert "tokens as unknown: it does not know this language" in said, said
        assert "dense (knn)" in said and f"warning: {said}" in chinese.stderr
        english = CliRunner().invoke(app, ["search", "mini", "moon", *args])
        assert "warnings" not in json.loads(english.stdout)
    # A model folder is named by its name: an HTTP client was shown the server's path.
    import shutil

    from semrank.models import resolve_embedding_model

    folder = shutil.copytree(resolve_embedding_model().path, tmp_path / "secret" / "minilm")
    run("index", "create", "own", "--from", str(beir), "--home", home,
        "--embedding-model", str(folder))  # fmt: skip
    own = CliRunner().invoke(app, ["search", "own", "跳蚤", "--dense", "--json", "--home", home])
    (said,) = json.loads(own.stdout)["warnings"]
    assert said.startswith("embedding model 'minilm' reads") and "secret" not in said


def test_stdin_with_no_writable_temporary_folder_says_what_to_set(
    tmp_path: Path, beir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a container with a read-only root (no writable $TMPDIR, /tmp or /var/tmp) an ingest
    from stdin ended on Python's bare "[Errno 2] No usable temporary directory found in
    [...]": naming the folder for the message asked tempfile again, which raised again."""
    home = str(tmp_path / "home")
    run("index", "create", "piped", "--from", str(beir), "--home", home, "--no-dense")
    a_file = tmp_path / "afile"
    a_file.write_text("not a folder")
    # Every folder tempfile would try is unusable, as under a read-only root.
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: [str(a_file / "tmp")])
    with pytest.raises(StorageError) as refused:
        run("index", "add", "piped", "-", "--format", "jsonl", "--home", home, stdin="{}\n")
    assert str(refused.value).startswith("the documents piped in are copied to a temporary ")
    assert "No usable temporary directory found in" in str(refused.value)
    assert "set TMPDIR to a folder with room for them" in str(refused.value)


EXPORTED = [  # what an index may hold: Unicode, big and float numbers, nesting, empty values
    {"id": "b", "title": "Café ☕ naïve", "text": "日本語 😀 fleas", "n": 12345678901234567890},
    {"id": "7", "title": "", "text": 'a "quoted"\nline \\ break', "score": 0.1, "ok": True},
    {"id": "a", "title": "Nested", "text": "cats", "meta": {"tags": ["x", None, 2.5, {}]}},
    {"id": " spaced ", "title": None, "text": "dogs", "list": [], "obj": {}},
]


def test_index_export_writes_every_document_as_stored_and_create_reads_it_back(
    tmp_path: Path,
) -> None:
    """There was no way to get an index's documents out (`semrank index export`): an index
    filled by `index add` or over HTTP could not be moved to PostgreSQL or backed up as JSONL."""
    home, again = str(tmp_path / "home"), str(tmp_path / "again")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in EXPORTED))
    run("index", "create", "src", "--from", str(corpus), "--home", home, "--no-dense")
    run("index", "add", "src", "-", "--format", "jsonl", "--home", home,
        stdin=json.dumps({"id": "a", "title": "Café", "text": "cats again"}) + "\n")  # fmt: skip
    exported = CliRunner().invoke(app, ["index", "export", "src", "--home", home])
    assert exported.exit_code == 0, exported.output
    lines = exported.stdout.splitlines()
    # In the order first written (an upsert keeps a document's place), the fields as stored.
    expected = [*EXPORTED[:2], {"id": "a", "title": "Café", "text": "cats again"}, EXPORTED[3]]
    assert [json.loads(line) for line in lines] == expected
    assert "日本語" in exported.stdout and "12345678901234567890" in exported.stdout
    # The command printed on stderr creates the same index from the export.
    command = shlex.split(exported.stderr.splitlines()[0].split(": ", 1)[1])
    assert command[:3] == ["semrank", "index", "create"] and "--no-dense" in command
    run(*command[1:], "--home", again, stdin=exported.stdout)
    assert run("index", "export", "src", "--home", again).startswith(exported.stdout)
    bm25 = ("search", "src", "fleas cats", "--json")
    assert json.loads(run(*bm25, "--home", again)) == json.loads(run(*bm25, "--home", home))
    # To a file, which appears whole (a folder or a missing one is refused before any read).
    out = tmp_path / "out.jsonl"
    run("index", "export", "src", "--home", home, "--output", str(out))
    assert out.read_text("utf-8") == exported.stdout
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".partial")]
    for bad in (tmp_path, tmp_path / "nope" / "x.jsonl"):
        with pytest.raises(InvalidInputError, match=f"--output {bad}"):
            run("index", "export", "src", "--home", home, "--output", str(bad))
    with pytest.raises(IndexNotFoundError, match=r"indexes there: src"):
        run("index", "export", "srcc", "--home", home)


def test_index_export_filter_writes_only_the_documents_passing_it(tmp_path: Path) -> None:
    """`index export NAME --filter JSON` (a tenant's documents, for a data-portability request
    or a move to another index): only the passing documents, as a whole export writes them;
    a bad filter is refused before any file is written."""
    home = str(tmp_path / "home")
    corpus = tmp_path / "docs.jsonl"
    docs = [
        {"id": f"d{n:02d}", "text": f"words {n}", "tenant": f"t{n % 3}", "year": 2000 + n}
        for n in range(30)
    ]
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    run("index", "create", "t", "--from", str(corpus), "--no-dense", "--home", home)
    tenant = json.dumps(
        {"bool": {"filter": [{"term": {"tenant": "t1"}}, {"range": {"year": {"gte": 2010}}}]}}
    )
    wanted = [d for d in docs if d["tenant"] == "t1" and d["year"] >= 2010]
    exported = CliRunner().invoke(
        app, ["index", "export", "t", "--filter", tenant, "--batch-size", "4", "--home", home]
    )
    assert exported.exit_code == 0, exported.output
    assert [json.loads(line) for line in exported.stdout.splitlines()] == wanted
    assert exported.stderr.startswith("exported 7 documents passing --filter of index 't';")
    out = tmp_path / "tenant.jsonl"
    run("index", "export", "t", "--filter", tenant, "--home", home, "-o", str(out))
    assert out.read_text("utf-8") == exported.stdout
    refusals = [
        ('{"term": ', "--filter is not valid JSON"),
        ('{"match": {"text": "x"}}', "--filter: 'match' is not a supported filter"),
    ]
    for bad, said in refusals:
        refused = tmp_path / "refused.jsonl"
        with pytest.raises(InvalidInputError, match=said):
            run("index", "export", "t", "--filter", bad, "--home", home, "-o", str(refused))
        assert not refused.exists()


# `semrank index export ...` whose read of the index stalls once every document is read (as a
# large index on a slow disk would), saying so on stderr: a signal then finds the export halfway.
STALLED_EXPORT = """
import sys, time
from semrank.cli import main
from semrank.store._local import LocalStore
pages = LocalStore.iter_documents
def stalled(self, **kwargs):
    yield from pages(self, **kwargs)
    print("every document read", file=sys.stderr, flush=True)
    time.sleep(120)
LocalStore.iter_documents = stalled
sys.argv[0] = "semrank"
main()
"""


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM and SIGHUP are POSIX signals")
def test_index_export_stopped_by_sigterm_or_sighup_leaves_no_partial_file(tmp_path: Path) -> None:
    """A SIGTERM (systemd, `timeout`) or SIGHUP (a closed terminal) during `index export -o`
    ended the process without its cleanup: a hidden .PID.partial file as large as the export
    was left beside the output for good. It is removed, and the process ends as the signal."""
    import signal
    import subprocess
    import sys

    home = tmp_path / "home"
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    run("index", "create", "src", "--from", str(corpus), "--home", str(home), "--no-dense")
    out = tmp_path / "out" / "docs.jsonl"
    out.parent.mkdir()
    command = [sys.executable, "-c", STALLED_EXPORT, "index", "export", "src", "--home"]
    command += [str(home), "-o", str(out), "--batch-size", "1"]
    for stop in (signal.SIGTERM, signal.SIGHUP):
        exporting = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        try:
            assert exporting.stderr is not None
            assert exporting.stderr.readline() == "every document read\n"
            [partial] = out.parent.iterdir()  # written, not yet renamed into place
            assert partial.name == f".docs.jsonl.{exporting.pid}.partial"
            exporting.send_signal(stop)
            assert exporting.wait(timeout=60) == -stop
        finally:
            exporting.kill()
        assert not list(out.parent.iterdir())


def test_index_export_ends_quietly_on_a_closed_pipe_and_says_what_it_cannot_carry(
    tmp_path: Path,
) -> None:
    """`semrank index export NAME | head` ends with 141 and no traceback, as `search` does;
    BM25 settings no `index create` flag sets are warned of; a document the library stored
    with a field named as the index's id field is named, not written as a line whose id the
    reader would take from the wrong key."""
    import subprocess
    import sys

    from semrank.retrieve import BM25Params
    from semrank.retrieve._bm25 import ANALYSIS_VERSIONS
    from semrank.store import Document, create_index, open_index

    home = tmp_path / "home"
    earlier = BM25Params(analysis=ANALYSIS_VERSIONS[0])  # as an index an older semrank made
    with create_index("many", home=home, embedding_model=None, bm25=earlier) as index:
        index.upsert([{"id": f"d{i}", "text": f"word{i} " * 20} for i in range(3000)])
    command = [sys.executable, "-m", "semrank.cli", "index", "export", "many", "--home", str(home)]
    closed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert closed.stdout is not None and closed.stderr is not None
    assert closed.stdout.readline().startswith(b'{"id": "d0"')
    closed.stdout.close()
    assert closed.wait(timeout=120) == 141
    assert b"Traceback" not in closed.stderr.read()
    exported = CliRunner().invoke(app, ["index", "export", "many", "--home", str(home)])
    assert exported.exit_code == 0 and len(exported.stdout.splitlines()) == 3000
    warning = f"warning: index 'many''s BM25 analysis {ANALYSIS_VERSIONS[0]} differ"
    assert warning in exported.stderr
    with open_index("many", home=home) as index:
        index.upsert([Document("clash", {"id": "other", "text": "an id field inside"})])
    with pytest.raises(DataFormatError, match=r"document 'clash' holds a field 'id' beside"):
        run("index", "export", "many", "--home", str(home), "--output", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()  # no file that reads as a whole export
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".partial")]


def test_search_filter_flag_keeps_only_passing_documents(tmp_path: Path) -> None:
    """`search --filter JSON` restricts every first stage (and the re-ranked window) to the
    documents passing it; bad JSON or a bad clause is refused naming --filter."""
    home = tmp_path / "home"
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(dict(d, sky="moon" in d["text"])) + "\n" for d in DOCS))
    run("index", "create", "t", "--from", str(corpus), "--no-dense", "--home", str(home))
    args = ("search", "t", "the moon and paris", "--json", "--home", str(home))
    everything = [h["id"] for h in json.loads(run(*args))["hits"]]
    assert set(everything) == {"eclipse", "tides", "paris"}
    for flt, passing in (
        ({"term": {"sky": True}}, {"eclipse", "tides"}),
        ([{"term": {"sky": True}}, {"ids": {"values": ["tides"]}}], {"tides"}),
    ):
        filtered = json.loads(run(*args, "--filter", json.dumps(flt)))["hits"]
        assert [h["id"] for h in filtered] == [i for i in everything if i in passing]
    bm25_json = json.dumps({"standard": {"query": {"match": {"text": "{{query}}"}}}})
    tree_out = run(*args, "--retriever", bm25_json, "--filter", '{"term": {"sky": false}}')
    assert [h["id"] for h in json.loads(tree_out)["hits"]] == ["paris"]
    for bad, said in (
        ('{"term": ', "--filter is not valid JSON"),
        ('{"prefix": {"a": "b"}}', "--filter: 'prefix' is not a supported filter"),
    ):
        result = CliRunner().invoke(app, [*args, "--filter", bad])
        assert isinstance(result.exception, InvalidInputError), result.output
        assert said in str(result.exception)


def test_search_offset_pages_as_the_library_and_a_bodys_from(tmp_path: Path) -> None:
    """`search --offset 10 --top-n 10` (a search UI's page 2; there was no way to ask) is hits
    11-20 of the search for 20, ranked 11 to 20; a _search body's from pages the same way."""
    home = str(tmp_path / "home")
    corpus = tmp_path / "many.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": "fleas " * (i % 7 + 1) + "x" * i})
                              + "\n" for i in range(25)))  # fmt: skip
    run("index", "create", "many", "--from", str(corpus), "--home", home, "--no-dense")
    args = ("search", "many", "fleas", "--home", home, "--json")
    top20 = json.loads(run(*args, "--top-n", "20"))["hits"]
    page2 = json.loads(run(*args, "--top-n", "10", "--offset", "10"))["hits"]
    assert [h["rank"] for h in page2] == list(range(11, 21))
    assert [{**h, "rank": 0} for h in page2] == [{**h, "rank": 0} for h in top20[10:]]
    tree = {"standard": {"query": {"match": {"text": "fleas"}}}}
    body = json.dumps({"retriever": tree, "size": 10, "from": 10})
    from_body = json.loads(run(*args, "--retriever", body))["hits"]
    assert from_body == page2
    # --offset beside a body giving a size and no from: that page (it was empty).
    sized = json.dumps({"retriever": tree, "size": 10})
    assert json.loads(run(*args, "--retriever", sized, "--offset", "10"))["hits"] == page2
    last = json.loads(run(*args, "--offset", "20"))["hits"]
    assert [h["rank"] for h in last] == list(range(21, 26))  # the 5 left
    for flags, said in (
        (("--offset", "9995"), "--offset + --top-n (9,995 + 10 = 10,005) is above 10,000"),
        (("--retriever", body, "--offset", "5"), "--offset 5 and the search body's from 10"),
    ):
        result = CliRunner().invoke(app, [*args, *flags])
        assert isinstance(result.exception, InvalidInputError), result.output
        assert said in str(result.exception)


def test_index_alias_moves_searches_to_the_new_index_and_list_shows_it(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    for name, docs in (("v1", DOCS[:1]), ("v2", DOCS[1:2])):
        corpus = tmp_path / f"{name}.jsonl"
        corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
        run("index", "create", name, "--from", str(corpus), "--home", home, "--no-dense")
    assert "alias 'live' -> index 'v1'" in run("index", "alias", "live", "v1", "--home", home)
    first = json.loads(run("search", "live", "moon", "--bm25", "--json", "--home", home))
    said = run("index", "alias", "live", "v2", "--home", home)  # moved in one step
    then = json.loads(run("search", "live", "moon", "--bm25", "--json", "--home", home))
    assert "(was 'v1')" in said
    assert [h["id"] for h in first["hits"]] == ["eclipse"]
    assert [h["id"] for h in then["hits"]] == ["tides"]
    listed = json.loads(run("index", "list", "--json", "--home", home))
    assert [(row["name"], row["aliases"]) for row in listed] == [("v1", []), ("v2", ["live"])]
    assert "aliases: live" in run("index", "list", "--home", home)
    # A write through the alias names the index it wrote to.
    added = run("index", "add", "live", str(tmp_path / "v1.jsonl"), "--home", home)
    assert "index 'v2' (alias 'live') holds 2" in added, added
    deleted = run("index", "delete", "live", "eclipse", "--home", home)
    assert "index 'v2' (alias 'live') holds 1" in deleted, deleted
    with pytest.raises(InvalidInputError, match="'live' is an alias of index 'v2'"):
        run("index", "drop", "live", "--yes", "--home", home)
    with pytest.raises(InvalidInputError, match="or --remove"):
        run("index", "alias", "live", "--home", home)
    run("index", "alias", "live", "--remove", "--home", home)
    with pytest.raises(IndexNotFoundError, match="alias 'live' not found"):
        run("index", "alias", "live", "--remove", "--home", home)


def test_search_aggs_prints_facets_over_every_matching_document(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    corpus = tmp_path / "docs.jsonl"
    docs = [
        {"id": "a", "text": "moon", "source": "wiki", "year": 2023},
        {"id": "b", "text": "moon", "source": "docs", "year": 2024},
        {"id": "c", "text": "moon", "source": "wiki", "year": 2024},
        {"id": "d", "text": "sun", "source": "blog", "year": 2020},
    ]
    corpus.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    run("index", "create", "t", "--from", str(corpus), "--no-dense", "--home", home)
    aggs = '{"sources": {"terms": {"field": "source"}}, "first": {"min": {"field": "year"}}}'
    args = ["search", "t", "moon", "--top-n", "1", "--aggs", aggs, "--home", home]
    answer = json.loads(run(*args, "--json"))
    assert len(answer["hits"]) == 1
    assert answer["aggregations"]["sources"]["buckets"] == [
        {"key": "wiki", "doc_count": 2},
        {"key": "docs", "doc_count": 1},
    ]
    assert answer["aggregations"]["first"] == {"value": 2023.0}
    assert answer["matched"] == 3  # the documents counted, as the table says
    table = run(*args)
    assert "aggregations over 3 matching documents:\n  sources: wiki (2), docs (1)\n" in table
    assert "  first: 2023\n" in table
    refused = CliRunner().invoke(app, ["search", "t", "moon", "--aggs", "{", "--home", home])
    assert isinstance(refused.exception, InvalidInputError)
    assert str(refused.exception).startswith("--aggs is not valid JSON")


def test_search_aggs_table_prints_stats_and_keyed_histograms(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    corpus = tmp_path / "docs.jsonl"
    docs = [{"id": "a", "text": "moon", "year": 2023}, {"id": "b", "text": "moon", "year": 2024}]
    corpus.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    run("index", "create", "t", "--from", str(corpus), "--no-dense", "--home", home)
    aggs = {
        "years": {"stats": {"field": "year"}},
        "none": {"stats": {"field": "absent"}},
        "by_year": {"histogram": {"field": "year", "interval": 1, "keyed": True}},
    }
    table = run("search", "t", "moon", "--aggs", json.dumps(aggs), "--home", home)
    assert "  years: count 2, min 2023, max 2024, avg 2023.5, sum 4047\n" in table
    assert "  none: count 0, min -, max -, avg -, sum 0\n" in table
    assert "  by_year: 2023.0 (1), 2024.0 (1)\n" in table
