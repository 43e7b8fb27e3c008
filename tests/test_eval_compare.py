"""`semrank eval --index --retriever a,b,c+rerank`: several runs compared in one table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from semrank.cli import app
from semrank.errors import InvalidInputError
from semrank.eval._compare import split_retrievers

DOCS = [
    {"id": "d1", "title": "Fleas", "text": "adult fleas live two to three months on a host"},
    {"id": "d2", "title": "France", "text": "paris is the capital of france"},
    {"id": "d3", "title": "Larvae", "text": "flea larvae hatch in days and avoid light"},
    {"id": "d4", "title": "Dogs", "text": "dogs like to play fetch in the park"},
]


@pytest.fixture
def index_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from semrank.store import HOME_ENV, create_index

    home = tmp_path / "home"
    index = create_index("cmp", home=home)  # with embeddings: dense and hybrid work
    index.upsert(DOCS)
    index.close()
    monkeypatch.setenv(HOME_ENV, str(home))
    return tmp_path


def test_split_retrievers_validates():
    assert split_retrievers("bm25, dense,hybrid+rerank") == ["bm25", "dense", "hybrid+rerank"]
    with pytest.raises(InvalidInputError, match="names a retriever twice"):
        split_retrievers("bm25,bm25")


def test_four_runs_in_one_json_object(index_home: Path):
    queries = index_home / "queries.tsv"
    queries.write_text("q1\thow long do adult fleas live\nq2\tcapital city of france\n")
    qrels = index_home / "qrels.txt"
    qrels.write_text("q1 0 d1 2\nq1 0 d3 1\nq2 0 d2 1\n")
    result = CliRunner().invoke(
        app,
        ["eval", "--index", "cmp", "--queries", str(queries), "--qrels", str(qrels), "--json",
         "--retriever", "bm25,dense,hybrid,hybrid+rerank", "--measures", "nDCG@10,RR@10"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert list(payload) == ["bm25", "dense", "hybrid", "hybrid+rerank"]
    for run in payload.values():
        assert set(run) == {"nDCG@10", "RR@10"}
        assert 0.0 <= run["nDCG@10"] <= 1.0
    # Every query's relevant document is found and put first by BM25 on this corpus.
    assert payload["bm25"]["RR@10"] == pytest.approx(1.0)
    table = CliRunner().invoke(
        app,
        ["eval", "--index", "cmp", "--queries", str(queries), "--qrels", str(qrels),
         "--retriever", "bm25,hybrid+rerank"],
    )  # fmt: skip
    assert table.exit_code == 0 and "hybrid+rerank" in table.stdout and "paired" in table.stdout


def test_an_inline_tree_with_commas_is_one_retriever():
    """The list was split at every comma: a valid inline JSON tree was refused as not JSON."""
    tree = json.dumps(
        {"rrf": {"retrievers": [{"standard": {"query": {"match": {"title": "a, b"}}}}, "x"]}}
    )
    assert split_retrievers(f"bm25,{tree}, dense") == ["bm25", tree, "dense"]


def test_an_inline_tree_is_evaluated_beside_bm25(index_home: Path):
    tree = _rrf_tree(rank_constant=60)
    result = _eval_one_query(index_home, "--retriever", f"bm25,{tree}")
    assert list(json.loads(result.stdout)) == ["bm25", tree]


def test_a_model_without_rerank_on_an_index_names_the_flag_that_turns_it_on(index_home: Path):
    queries, qrels = _one_query(index_home)
    args = ["eval", "--index", "cmp", "--queries", str(queries), "--qrels", str(qrels)]
    result = CliRunner().invoke(app, [*args, "--model", "semrank-minilm-l6"])
    assert isinstance(result.exception, InvalidInputError)
    assert "add --rerank" in str(result.exception)


def test_per_query_values_name_every_query_of_every_run(index_home: Path):
    queries = index_home / "queries.tsv"
    queries.write_text("q1\thow long do adult fleas live\nq2\tcapital city of france\n")
    qrels = index_home / "qrels.txt"
    qrels.write_text("q1 0 d1 2\nq1 0 d3 1\nq2 0 d2 1\n")
    out = index_home / "out" / "per_query.tsv"
    result = CliRunner().invoke(
        app,
        ["eval", "--index", "cmp", "--queries", str(queries), "--qrels", str(qrels), "--json",
         "--retriever", "bm25,dense", "--measures", "RR@10", "--per-query", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert rows[0] == ["run", "measure", "query", "value"]
    assert {(r[0], r[2]) for r in rows[1:]} == {
        (run, q) for run in ("bm25", "dense") for q in ("q1", "q2")
    }
    means = json.loads(result.stdout)
    bm25 = [float(r[3]) for r in rows[1:] if r[0] == "bm25"]
    assert sum(bm25) / 2 == pytest.approx(means["bm25"]["RR@10"])


def test_inline_trees_get_short_names_for_files_and_rows(index_home: Path):
    """A tree's text named its run file (too long: the run was lost after the evaluation) and
    its newlines broke the per-query TSV."""
    queries, qrels = _one_query(index_home)
    tree = _rrf_tree(indent=2)
    out = index_home / "runs"
    result = CliRunner().invoke(
        app,
        ["eval", "--index", "cmp", "--queries", str(queries), "--qrels", str(qrels), "--json",
         "--retriever", f"bm25,{tree}", "--run-out", str(out), "--per-query", str(out / "pq.tsv")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["bm25.trec", "pq.tsv", "tree1.trec"]
    rows = (out / "pq.tsv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 4 and all(len(r.split("\t")) == 4 for r in rows)
    assert "tree1 = {" in result.stderr


def test_one_inline_tree_with_rerank_is_re_ranked_by_the_command(index_home: Path):
    result = _eval_one_query(index_home, "--retriever", f"{_rrf_tree()}+rerank")
    assert list(json.loads(result.stdout)) == ["first_stage", "reranked"]


def _one_query(home: Path) -> tuple[Path, Path]:
    queries, qrels = home / "queries.tsv", home / "qrels.txt"
    queries.write_text("q1\thow long do adult fleas live\n")
    qrels.write_text("q1 0 d1 2\n")
    return queries, qrels


def _rrf_tree(*, indent: int | None = None, **options: int) -> str:
    """An inline tree with commas (and, indented, newlines): RRF of text and title BM25."""
    text = {"standard": {"query": {"match": {"text": "{{query}}"}}}}
    title = {"standard": {"query": {"match": {"title": "{{query}}"}}}}
    # eval measures 100 hits; an rrf left without a window returns Elasticsearch's 10
    options = {"rank_window_size": 100, **options}
    return json.dumps({"rrf": {"retrievers": [text, title], **options}}, indent=indent)


def _eval_one_query(home: Path, *options: str) -> Any:
    queries, qrels = _one_query(home)
    args = ["eval", "--index", "cmp", "--queries", str(queries), "--qrels", str(qrels), "--json"]
    result = CliRunner().invoke(app, [*args, *options])
    assert result.exit_code == 0, result.output
    return result


def test_an_inline_trees_short_name_never_takes_a_retriever_files_name(
    index_home: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(index_home)
    (index_home / "tree1").write_text(_rrf_tree(rank_constant=10))  # a retriever file
    out = index_home / "runs"
    _eval_one_query(
        index_home, "--retriever", f"{_rrf_tree()},tree1", "--run-out", str(out),
        "--per-query", str(out / "pq.tsv"),
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["pq.tsv", "tree1.trec", "tree2.trec"]
    rows = (out / "pq.tsv").read_text().splitlines()[1:]
    assert {r.split("\t")[0] for r in rows} == {"tree1", "tree2"} and len(rows) == 8
    table = CliRunner().invoke(
        app, ["eval", "--index", "cmp", "--queries", str(index_home / "queries.tsv"), "--qrels",
              str(index_home / "qrels.txt"), "--retriever", f"bm25,{_rrf_tree(indent=2)}"],
    )  # fmt: skip
    assert table.exit_code == 0 and "tree1" in table.stdout and '"rrf"' not in table.stdout


def test_long_run_names_are_shown_whole_and_like_named_runs_keep_their_files(
    index_home: Path, monkeypatch: pytest.MonkeyPatch
):
    """Off a terminal (80 columns) two retriever files under one long folder were both shown
    as "experiments/2026-12/bm25-t…"; and "a_b/t.json" and "a/b_t.json" wrote one run file,
    the second over the first."""
    monkeypatch.chdir(index_home)
    monkeypatch.setenv("COLUMNS", "80")
    folder = Path("experiments/2026-12/bm25-trees")
    folder.mkdir(parents=True)
    tree = _rrf_tree()
    for name in ("bm25-title-boost-variant-a.json", "bm25-title-boost-variant-b.json"):
        (folder / name).write_text(tree)
    queries, qrels = _one_query(index_home)
    trees = ",".join(str(folder / n) for n in ("bm25-title-boost-variant-a.json",
                                                "bm25-title-boost-variant-b.json"))  # fmt: skip
    args = ["eval", "--index", "cmp", "--queries", str(queries), "--qrels", str(qrels)]
    table = CliRunner().invoke(app, [*args, "--retriever", f"bm25,{trees}"])
    assert table.exit_code == 0, table.output
    header = table.stdout.split("┏")[1].split("┡")[0].splitlines()[1:]
    columns = zip(*(line.split("┃")[1:-1] for line in header), strict=True)
    shown = ["".join(piece.strip() for piece in column) for column in columns]  # folded cells
    assert shown == ["measure", "bm25", *trees.split(",")]
    assert "…" not in table.stdout
    for name in ("a_b/t.json", "a/b_t.json"):
        Path(name).parent.mkdir(exist_ok=True)
        Path(name).write_text(tree)
    out = index_home / "runs"
    both = CliRunner().invoke(
        app, [*args, "--json", "--retriever", "a_b/t.json,a/b_t.json", "--run-out", str(out)]
    )
    assert both.exit_code == 0, both.output
    assert sorted(p.name for p in out.iterdir()) == ["a_b_t.json-2.trec", "a_b_t.json.trec"]
    assert f"wrote {out / 'a_b_t.json-2.trec'} (run a/b_t.json)" in both.stderr
