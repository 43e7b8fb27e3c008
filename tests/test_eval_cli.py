"""`semrank eval` end to end on a small fixture written here (values worked out by hand)."""

from __future__ import annotations

import gzip
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from semrank.cli import app
from semrank.errors import DataFormatError, InvalidInputError
from semrank.eval import load_trec_run
from semrank.eval.first_stage import retrieve_candidates

# q1's candidates in rank order: d2 (rel 0), d1 (rel 2), d4 (unjudged), d3 (rel 1); d5 (rel 1)
# is not retrieved. Gain = rel, discount = log2(rank + 1).
NDCG10_Q1 = (2 / math.log2(3) + 1 / math.log2(5)) / (2 + 1 / math.log2(3) + 1 / math.log2(4))
AP_Q1 = (1 / 2 + 2 / 4) / 3
# q2: its only relevant document is ranked first: every measure is 1.
EXPECTED_FIRST_STAGE = {
    "nDCG@10": (NDCG10_Q1 + 1) / 2,
    "RR@10": (1 / 2 + 1) / 2,
    "R@100": (2 / 3 + 1) / 2,
    "AP": (AP_Q1 + 1) / 2,
}


def hit(qid: str, docid: str, rank: int, content: str) -> dict:
    # Equal scores everywhere: the order must come from the given rank.
    return {"qid": qid, "docid": docid, "rank": rank, "score": 1.0, "content": content}


@pytest.fixture
def fixture_files(tmp_path: Path) -> tuple[Path, Path]:
    candidates = [
        {
            "query": "how long do fleas live",
            "hits": [  # deliberately not in rank order
                hit("q1", "d3", 4, "Flea larvae hatch after a few days."),
                hit("q1", "d2", 1, "Paris is the capital of France."),
                hit("q1", "d4", 3, "Dogs like to play fetch."),
                hit("q1", "d1", 2, "Adult fleas live two to three months."),
            ],
        },
        {
            "query": "capital of france",
            "hits": [
                hit("q2", "a", 1, "Paris is the capital of France."),
                hit("q2", "b", 2, "Fleas are small insects."),
            ],
        },
    ]
    cand_path = tmp_path / "candidates.json"
    cand_path.write_text(json.dumps(candidates))
    qrels_path = tmp_path / "qrels.txt"
    qrels_path.write_text("q1 0 d1 2\nq1 0 d2 0\nq1 0 d3 1\nq1 0 d5 1\nq2 0 a 1\n")
    return cand_path, qrels_path


def run_cli(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)


def test_no_rerank_json_matches_the_hand_computation(fixture_files) -> None:
    candidates, qrels = fixture_files
    result = run_cli("eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert list(payload) == ["first_stage"]
    assert list(payload["first_stage"]) == list(EXPECTED_FIRST_STAGE)
    for measure, value in EXPECTED_FIRST_STAGE.items():
        assert payload["first_stage"][measure] == pytest.approx(value), measure


def test_candidates_and_qrels_are_read_from_pipes(fixture_files, tmp_path: Path) -> None:
    """`--candidates <(zcat c.json.gz) --qrels <(cat q.txt)`: "/dev/fd/63: no such file"."""
    from test_eval_loaders import fed_pipe

    candidates, qrels = fixture_files
    piped = run_cli(
        "eval", "--no-rerank", "--json",
        "--candidates", fed_pipe(tmp_path / "c", gzip.compress(candidates.read_bytes())),
        "--qrels", fed_pipe(tmp_path / "q", qrels.read_bytes()),
    )  # fmt: skip
    assert piped.exit_code == 0, piped.output
    from_files = run_cli(
        "eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank", "--json"
    )
    assert json.loads(piped.stdout) == json.loads(from_files.stdout)


def test_measures_option_and_table_output(fixture_files) -> None:
    candidates, qrels = fixture_files
    result = run_cli(
        "eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank",
        "--measures", "RR(rel=2)@10,P@1", "--measures", "nDCG@10",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "RR(rel=2)@10" in result.stdout and "P@1" in result.stdout
    assert f"{EXPECTED_FIRST_STAGE['nDCG@10']:.4f}" in result.stdout
    assert "first_stage" in result.stdout and "reranked" not in result.stdout


def test_run_out_and_report(fixture_files, tmp_path: Path) -> None:
    candidates, qrels = fixture_files
    result = run_cli(
        "eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank", "--json",
        "--run-out", tmp_path / "runs", "--report", tmp_path / "report",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = load_trec_run(tmp_path / "runs" / "first_stage.trec")
    assert [d.doc_id for d in run.rankings["q1"]] == ["d2", "d1", "d4", "d3"]
    # The path on one line, whatever its length (off a terminal it was wrapped at 80 columns).
    assert f"wrote {tmp_path / 'runs' / 'first_stage.trec'}\n" in result.stderr
    assert "| nDCG@10 |" in (tmp_path / "report" / "report.md").read_text()
    json.loads(result.stdout)  # still exactly one JSON document on stdout


def test_run_out_files_reproduce_the_reported_numbers(fixture_files, tmp_path: Path) -> None:
    import ir_measures

    # Every candidate score is 1.0: a run file keeping those ties would be re-sorted by doc id
    # (q1: d4, d3, d2, d1 or d1, d2, d3, d4) by trec_eval and ir-measures.
    candidates, qrels = fixture_files
    result = run_cli(
        "eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank", "--json",
        "--run-out", tmp_path / "runs",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    reported = json.loads(result.stdout)["first_stage"]
    measured = ir_measures.calc_aggregate(
        [ir_measures.parse_measure(m) for m in EXPECTED_FIRST_STAGE],
        ir_measures.read_trec_qrels(str(qrels)),
        ir_measures.read_trec_run(str(tmp_path / "runs" / "first_stage.trec")),
    )
    for measure, value in EXPECTED_FIRST_STAGE.items():
        assert measured[ir_measures.parse_measure(measure)] == pytest.approx(value), measure
        assert reported[measure] == pytest.approx(value), measure


def test_queries_counted_as_zero_or_left_out_are_noted_on_stderr(
    fixture_files, tmp_path: Path
) -> None:
    candidates, qrels = fixture_files
    entries = json.loads(candidates.read_text())
    # q4 is judged but has no candidates; u1..u6 have candidates but no judgments.
    entries.append({"query": "empty", "qid": "q4", "hits": []})
    entries += [{"query": "x", "hits": [hit(f"u{i}", "a", 1, "text")]} for i in range(1, 7)]
    candidates.write_text(json.dumps(entries))
    # q3 is judged and appears nowhere in the candidates.
    qrels.write_text(qrels.read_text() + "q3 0 z 1\nq4 0 a 1\n")
    result = run_cli("eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "note: 2 of 4 judged queries (q3, q4) have no query text or candidates and count as 0; "
        "6 candidate queries (u1, u2, u3, u4, u5, ...) have no judgments and are left out"
    ]
    # Still averaged over the 4 judged queries: RR@10 is 1/2 (q1), 1 (q2), 0, 0.
    assert json.loads(result.stdout)["first_stage"]["RR@10"] == pytest.approx((1 / 2 + 1) / 4)
    # The report says it too (its query count and paired test include them; only stderr did).
    reported = run_cli(
        "eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank",
        "--report", tmp_path / "report",
    )  # fmt: skip
    assert reported.exit_code == 0, reported.output
    text = (tmp_path / "report" / "report.md").read_text()
    assert "**judged queries without candidates**: 2: each counts as 0" in text


def test_every_judged_query_ranked_means_no_note(fixture_files) -> None:
    candidates, qrels = fixture_files
    result = run_cli("eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank", "--json")
    assert result.exit_code == 0 and result.stderr == ""


def test_unusable_output_folder_fails_before_the_evaluation(fixture_files, tmp_path: Path) -> None:
    candidates, qrels = fixture_files
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")  # it passed the check and failed after the work
    for option in ("--run-out", "--report"):
        for folder in (a_file / "out", dangling, dangling / "deeper"):
            result = run_cli(
                "eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank",
                option, folder,
            )  # fmt: skip
            assert isinstance(result.exception, InvalidInputError), result.exception
            assert f"{option} {folder}: cannot create this folder" in str(result.exception)
            assert result.stdout == ""  # nothing was evaluated
    assert "(a link to no folder)" in str(result.exception)


def test_qrels_naming_documents_by_other_ids_are_noted(fixture_files, tmp_path: Path) -> None:
    """Every measure came out 0 with exit 0 and nothing said (qrels ids "docd1" for "d1")."""
    candidates, qrels = fixture_files
    renamed = tmp_path / "renamed.txt"
    renamed.write_text(
        "".join(f"{q} 0 doc{d} {g}\n" for q, _, d, g in (r.split() for r in qrels.open()))
    )
    result = run_cli(
        "eval", "--candidates", candidates, "--qrels", renamed, "--no-rerank", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["first_stage"]["nDCG@10"] == 0.0
    assert (
        "none of the 4 documents judged relevant (doca, docd1, docd3, ...) is among the ranked "
        "documents (a, b, d1, ...): if the qrels name documents by other ids" in result.stderr
    )
    matching = run_cli("eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank")
    assert "none of the" not in matching.stderr


def test_a_refused_input_leaves_no_output_folder_behind(fixture_files, tmp_path: Path) -> None:
    candidates, _ = fixture_files
    missing_qrels = tmp_path / "no-such-qrels.txt"
    for option in ("--run-out", "--report", "--per-query"):
        out = tmp_path / option.strip("-") / "deeper"
        target = out / "per-query.tsv" if option == "--per-query" else out
        result = run_cli(
            "eval", "--candidates", candidates, "--qrels", missing_qrels, "--no-rerank",
            option, target,
        )  # fmt: skip
        assert result.exit_code != 0 and "no-such-qrels" in str(result.exception)
        assert not (tmp_path / option.strip("-")).exists()


def test_argument_errors(fixture_files) -> None:
    candidates, qrels = fixture_files
    both = run_cli("eval", "--candidates", candidates, "--index", "x", "--qrels", qrels)
    assert isinstance(both.exception, InvalidInputError)
    no_queries = run_cli("eval", "--index", "x", "--qrels", qrels)
    assert "--index needs --queries" in str(no_queries.exception)
    model_without_rerank = run_cli(
        "eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank", "--model", "m"
    )
    assert isinstance(model_without_rerank.exception, InvalidInputError)
    bad_measure = run_cli("eval", "--candidates", candidates, "--qrels", qrels, "--measures", "X@1")
    assert "unknown measure 'X@1'" in str(bad_measure.exception)
    unjudged = candidates.parent / "unjudged.tsv"
    unjudged.write_text("q9\tnot in the qrels\n")
    none_judged = run_cli("eval", "--index", "x", "--queries", unjudged, "--qrels", qrels)
    assert "no query id of" in str(none_judged.exception)


def test_entry_point_json_stdout_and_error_exit(fixture_files, tmp_path: Path) -> None:
    candidates, qrels = fixture_files
    command = [sys.executable, "-m", "semrank.cli", "eval", "--candidates", str(candidates)]
    done = subprocess.run(
        [*command, "--qrels", str(qrels), "--no-rerank", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["first_stage"]["RR@10"] == pytest.approx(0.75)
    bad_qrels = tmp_path / "bad_qrels.txt"
    bad_qrels.write_text("q1 0 d1 2\nq1 0 d2 zero\n")
    failed = subprocess.run(
        [*command, "--qrels", str(bad_qrels), "--no-rerank", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert failed.returncode == 2
    assert f"{bad_qrels}:2: relevance must be an integer" in failed.stderr
    assert failed.stdout == ""


# `semrank ...` whose first file written under the folder argv[1] stalls halfway through (as a
# large run on a slow disk would), saying so on stderr: a signal then finds the file cut short.
STALLED_WRITE = """
import sys, time
from pathlib import Path
from semrank.cli import main
folder, opened = Path(sys.argv.pop(1)).resolve(), Path.open
class Stalled:
    def __init__(self, real):
        self.real = real
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.real.close()
    def write(self, text):
        self.writelines([text[: len(text) // 2]])
    def writelines(self, lines):
        self.real.write(lines[0])
        self.real.flush()
        print("half written", file=sys.stderr, flush=True)
        time.sleep(60)
def stalled_open(self, mode="r", *args, **kwargs):
    real = opened(self, mode, *args, **kwargs)
    written = "w" in mode and folder in Path(self).resolve().parents
    return Stalled(real) if written else real
Path.open = stalled_open
sys.argv[0] = "semrank"
main()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM and SIGHUP are POSIX signals")
@pytest.mark.parametrize(
    ("option", "target", "stop"),
    [
        ("--run-out", "runs", "SIGTERM"),
        ("--per-query", "q.tsv", "SIGHUP"),
        ("--report", "r", "SIGINT"),
    ],
)
def test_an_output_file_stopped_halfway_is_not_left_cut_short(
    fixture_files, tmp_path: Path, option: str, target: str, stop: str
) -> None:
    """A SIGTERM (systemd, `timeout`), SIGHUP (a closed terminal) or Ctrl-C while eval wrote a
    run file, the per-query TSV or report.md left it cut short under its final name, where it
    reads as whole (trec_eval takes a run with fewer hits); it is written whole or not at all."""
    import signal

    candidates, qrels = fixture_files
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-c", STALLED_WRITE, str(out), "eval", "--candidates"]
    command += [str(candidates), "--qrels", str(qrels), "--no-rerank", option, str(out / target)]
    evaluating = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert evaluating.stderr is not None
        while (line := evaluating.stderr.readline()) not in ("half written\n", ""):
            pass
        assert line == "half written\n"
        evaluating.send_signal(getattr(signal, stop))
        ended = evaluating.wait(timeout=60)
    finally:
        evaluating.kill()
    assert ended == (130 if stop == "SIGINT" else -getattr(signal, stop))
    assert [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()] == []


# --------------------------------------------------------------------------- --index form


def test_retrieve_candidates_against_the_expected_search_interface() -> None:
    corpus = {"a": "fleas bite", "b": "paris france", "c": "fleas jump"}

    def search(index: str, query: str, *, retriever: str, k: int) -> list[dict]:
        assert (index, retriever) == ("docs", "bm25")
        words = set(query.split())
        scored = sorted(corpus, key=lambda d: -len(words & set(corpus[d].split())))
        return [{"id": d, "score": float(-i), "text": corpus[d]} for i, d in enumerate(scored)][:k]

    lists = retrieve_candidates(
        {"q": "fleas bite"}, index="docs", retriever="bm25", k=2, search=search
    )
    assert [(h.doc_id, h.rank, h.text) for h in lists[0].hits] == [
        ("a", 1, "fleas bite"),
        ("c", 2, "fleas jump"),
    ]

    def broken(index: str, query: str, *, retriever: str, k: int) -> list[dict]:
        return [{"text": "no id"}]

    with pytest.raises(DataFormatError, match="search hit #1 has no id"):
        retrieve_candidates({"q": "x"}, index="docs", retriever="bm25", k=1, search=broken)


def test_index_form_end_to_end_on_a_bm25_index(
    fixture_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from semrank.errors import IndexNotFoundError
    from semrank.store import HOME_ENV, create_index

    home = tmp_path / "home"
    index = create_index("evaldocs", home=home, embedding_model=None)
    index.upsert(
        [
            {"id": "d1", "title": "Fleas", "text": "adult fleas live two to three months"},
            {"id": "d2", "title": "France", "text": "paris is the capital of france"},
            {"id": "d3", "title": "Larvae", "text": "flea larvae hatch in days"},
        ]
    )
    index.close()
    monkeypatch.setenv(HOME_ENV, str(home))
    _, qrels = fixture_files
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\thow long do adult fleas live\n")
    result = run_cli(
        "eval", "--index", "evaldocs", "--queries", queries, "--qrels", qrels, "--json",
        "--run-out", tmp_path / "runs",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert list(payload) == ["first_stage"]  # --index does not re-rank unless --rerank
    run = load_trec_run(tmp_path / "runs" / "first_stage.trec")
    assert run.rankings["q1"][0].doc_id == "d1"  # the only document matching most words
    # q2 is judged but was not asked: it counts as 0 (ir-measures / trec_eval -c), and says so
    assert payload["first_stage"]["RR@10"] == pytest.approx(0.5)
    assert "note (bm25): 1 of 2 judged queries (q2) has no query text or candidates and " in (
        result.stderr
    )
    # --home finds the same index when $SEMRANK_HOME points elsewhere (one option per command).
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "elsewhere"))
    args = ["eval", "--index", "evaldocs", "--queries", queries, "--qrels", qrels, "--json"]
    assert isinstance(run_cli(*args).exception, IndexNotFoundError)
    with_home = run_cli(*args, "--home", home)
    assert with_home.exit_code == 0, with_home.output
    assert json.loads(with_home.stdout) == payload
    # A tree whose knn searches a fixed vector cannot take the queries: said once, without
    # offering to leave the query out (an evaluation cannot).
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps({"knn": {"field": "embedding", "query_vector": [0.1, 0.2]}}))
    refused = run_cli(*args, "--home", home, "--retriever", fixed)
    assert "retriever.knn.query_vector is a fixed vector" in str(refused.exception)
    assert "without a query" not in str(refused.exception)


def test_index_form_unknown_index(fixture_files, tmp_path: Path, monkeypatch) -> None:
    from semrank.errors import IndexNotFoundError
    from semrank.store import HOME_ENV

    monkeypatch.setenv(HOME_ENV, str(tmp_path / "empty_home"))
    _, qrels = fixture_files
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\tfleas\n")
    result = run_cli("eval", "--index", "nope", "--queries", queries, "--qrels", qrels)
    assert isinstance(result.exception, IndexNotFoundError)


# --------------------------------------------------------------------------- with a model


@pytest.mark.slow
def test_rerank_json_has_both_runs_and_follows_the_model_scores(fixture_files) -> None:
    from semrank import Reranker
    from semrank.eval import evaluate, load_candidates, load_qrels, reranked_run

    candidates, qrels = fixture_files
    result = run_cli("eval", "--candidates", candidates, "--qrels", qrels, "--json")
    assert result.exit_code == 0, result.output
    # Off a terminal (nohup, CI) progress is a line per tenth done, not nothing for minutes.
    assert re.search(r"re-ranking with \S+: (\d+)/\1 \(100%\) after \d+ s", result.stderr)
    payload = json.loads(result.stdout)
    assert list(payload) == ["first_stage", "reranked"]
    assert payload["first_stage"]["nDCG@10"] == pytest.approx(EXPECTED_FIRST_STAGE["nDCG@10"])
    # The reranked run is the candidates sorted by the default model's own scores.
    reranker = Reranker()
    lists = load_candidates(candidates)
    scores = {c.query_id: reranker.score(c.query, [h.text for h in c.hits]) for c in lists}
    expected = evaluate(load_qrels(qrels), reranked_run(lists, scores))
    for measure, value in expected.aggregate.items():
        assert payload["reranked"][measure] == pytest.approx(value, abs=1e-6), measure


@pytest.mark.slow
def test_unjudged_candidate_queries_are_not_re_ranked(fixture_files, tmp_path: Path) -> None:
    """They are left out of every measure, and were re-ranked all the same: TREC DL 2019's
    official file of 200 candidate queries, 43 of them judged, costs 4.6 times the scoring."""
    candidates, qrels = fixture_files
    entries = json.loads(candidates.read_text())
    entries += [{"query": "x", "hits": [hit(f"u{i}", "a", 1, "text")]} for i in range(1, 7)]
    candidates.write_text(json.dumps(entries))
    runs = tmp_path / "runs"
    result = run_cli(
        "eval", "--candidates", candidates, "--qrels", qrels, "--json", "--run-out", runs
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(r"re-ranking with \S+: 6/6 \(100%\)", result.stderr)  # q1's 4, q2's 2
    for run in ("first_stage", "reranked"):
        ranked = {line.split()[0] for line in (runs / f"{run}.trec").read_text().splitlines()}
        assert ranked == {"q1", "q2"}, run
    payload = json.loads(result.stdout)
    assert payload["first_stage"]["nDCG@10"] == pytest.approx(EXPECTED_FIRST_STAGE["nDCG@10"])


@pytest.fixture
def deep_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """150 documents that match the query better than the one judged relevant."""
    from semrank.store import HOME_ENV, create_index

    home = tmp_path / "deephome"
    index = create_index("deep", home=home, embedding_model=None)
    decoys = [{"id": f"n{i}", "text": f"fleas fleas fleas jump {i}"} for i in range(150)]
    index.upsert([*decoys, {"id": "rel", "text": "how long an adult flea lives, in a kennel"}])
    # rel shares one word with the query, every decoy both: it ranks last, 151st.
    index.close()
    monkeypatch.setenv(HOME_ENV, str(home))
    queries = tmp_path / "deep-queries.tsv"
    queries.write_text("q1\tfleas jump\n")
    qrels = tmp_path / "deep-qrels.txt"
    qrels.write_text("q1 0 rel 1\n")
    return queries, qrels


def test_recall_at_a_deep_cutoff_retrieves_that_deep(deep_index) -> None:
    """R@1000 was measured over the top 100 hits (the re-ranking depth's floor): 0, silently."""
    queries, qrels = deep_index
    args = ["eval", "--index", "deep", "--queries", queries, "--qrels", qrels]
    result = run_cli(*args, "--measures", "R@100,R@1000", "--json")
    assert result.exit_code == 0, result.output
    recall = json.loads(result.stdout)["first_stage"]
    assert recall["R@100"] == 0.0 and recall["R@1000"] == 1.0


def test_a_cutoff_or_depth_deeper_than_a_search_is_named(deep_index) -> None:
    """It was refused naming a "k" the user never passed."""
    queries, qrels = deep_index
    args = ["eval", "--index", "deep", "--queries", queries, "--qrels", qrels]
    deep = run_cli(*args, "--measures", "R@2000000", "--no-rerank")
    assert "a --measures cutoff @2000000" in str(deep.exception)
    deep = run_cli(*args, "--depth", "2000000", "--no-rerank")
    assert "--depth 2000000 would retrieve" in str(deep.exception)


def test_one_rerank_retriever_is_re_ranked_by_the_command(deep_index, tmp_path: Path) -> None:
    """A lone bm25+rerank was re-ranked inside the search (flags ignored) and labelled
    first_stage; it is `--retriever bm25 --rerank`: both runs, the report, the flags."""
    queries, qrels = deep_index
    args = ["eval", "--index", "deep", "--queries", queries, "--qrels", qrels, "--json"]
    alone = run_cli(
        *args, "--retriever", "bm25+rerank", "--depth", "20", "--report", tmp_path / "r"
    )
    assert alone.exit_code == 0, alone.output
    assert list(json.loads(alone.stdout)) == ["first_stage", "reranked"]
    assert (tmp_path / "r" / "report.md").is_file()
    off = run_cli(*args, "--retriever", "bm25+rerank", "--no-rerank")
    assert "which --no-rerank turns off" in str(off.exception)
    no_model_use = run_cli(*args, "--retriever", "bm25,dense", "--model", "semrank-minilm-l6")
    assert "which no run of --retriever" in str(no_model_use.exception)


def test_judged_queries_without_text_are_named_unjudged_ones_left_out(
    deep_index, tmp_path: Path
) -> None:
    _, qrels = deep_index
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"_id": "q1", "text": "fleas jump"}\n{"_id": "q9", "text": ""}\n')
    args = ["eval", "--index", "deep", "--qrels", qrels, "--json", "--queries"]
    assert run_cli(*args, queries).exit_code == 0  # q9 is not judged: left out, as before
    queries.write_text('{"_id": "q1", "text": " "}\n')
    empty = run_cli(*args, queries)
    assert "judged query 'q1' has no text" in str(empty.exception)
    # Invisible characters only, or a lone surrogate: named before any retrieval (the
    # re-ranker refused them after the earlier queries' work, naming no file or query).
    for text, said in (("\\u200b", "is blank"), ("a \\ud800", "holds a lone surrogate")):
        queries.write_text('{"_id": "q9", "text": "x"}\n{"_id": "q1", "text": "' + text + '"}\n')
        refused = run_cli(*args, queries, "--rerank")
        assert f"q.jsonl: judged query 'q1' {said}" in str(refused.exception), text
        assert "retrieving" not in refused.stderr


def test_a_bad_retriever_name_fails_before_anything_is_retrieved(deep_index) -> None:
    queries, qrels = deep_index
    args = ["eval", "--index", "deep", "--queries", queries, "--qrels", qrels]
    result = run_cli(*args, "--retriever", "bm25+rerank,hybrd")
    assert isinstance(result.exception, InvalidInputError)
    assert "'hybrd' is neither bm25, dense, hybrid nor linear" in str(result.exception)
    assert "re-ranking" not in result.stderr


def test_a_tree_whose_window_is_below_the_hits_measured_is_refused(deep_index) -> None:
    """R@100 and AP were measured over a tree's 20 hits, without a word (the search command
    and the server refuse such a tree)."""
    queries, qrels = deep_index
    args = ["eval", "--index", "deep", "--queries", queries, "--qrels", qrels, "--no-rerank"]
    match = '{"standard": {"query": {"match": {"text": "{{query}}"}}}}'
    tree = '{"rrf": {"retrievers": [' + match + "], " + '"rank_window_size": 20}}'
    narrow = run_cli(*args, "--retriever", tree, "--measures", "R@100")
    assert isinstance(narrow.exception, InvalidInputError)
    assert "rank_window_size 20 is below the 100 hits" in str(narrow.exception)
    assert "`semrank eval` measures 100 hits per query" in str(narrow.exception)
    wide = tree.replace('"rank_window_size": 20', '"rank_window_size": 200')
    assert run_cli(*args, "--retriever", wide, "--measures", "R@100").exit_code == 0


def test_ids_a_run_file_cannot_hold_are_refused_before_re_ranking(
    fixture_files, tmp_path: Path
) -> None:
    """With --run-out, a document id with a space (a file name) was refused only when the run
    files were written, after the re-ranking, and every result went with it."""
    candidates, qrels = fixture_files
    entries = json.loads(candidates.read_text())
    entries[1]["hits"][1]["docid"] = "report 2021.pdf"
    candidates.write_text(json.dumps(entries))
    args = ("eval", "--candidates", candidates, "--qrels", qrels, "--json")
    result = run_cli(*args, "--run-out", tmp_path / "runs")
    assert isinstance(result.exception, InvalidInputError), result.output
    assert "document (query 'q2') id 'report 2021.pdf'" in str(result.exception)
    assert "re-ranking" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "runs").exists()
    entries[1]["hits"][1]["docid"] = "b"
    entries[1]["hits"][0]["score"] = -math.inf  # JSON's -Infinity: nothing can follow it
    candidates.write_text(json.dumps(entries))
    result = run_cli(*args, "--run-out", tmp_path / "runs")
    assert "document 'b' follows a score of -inf" in str(result.exception)
    assert "re-ranking" not in result.stderr
    assert run_cli(*args).exit_code == 0  # without run files, nothing needs them


def test_queries_judged_only_below_zero_are_left_out_and_said(
    fixture_files, tmp_path: Path
) -> None:
    """The note and the report counted such a query as 0 while every mean left it out."""
    candidates, qrels = fixture_files
    qrels.write_text(qrels.read_text() + "q9 0 z -1\n")
    args = ("eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank")
    result = run_cli(*args, "--json", "--measures", "RR@10,NumQ,NumRel")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "note: 1 query of the qrels (q9) is judged only below 0 and is left out (no label of 0 "
        "or above to measure by)"
    ]
    first_stage = json.loads(result.stdout)["first_stage"]
    assert first_stage["RR@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert first_stage["NumQ"] == 2 and first_stage["NumRel"] == 4
    reported = run_cli(*args, "--report", tmp_path / "report")
    assert "without candidates" not in (tmp_path / "report" / "report.md").read_text()
    assert reported.exit_code == 0
    # A ranked query judged only below 0 is named once, not again as a query without judgments.
    qrels.write_text("q1 0 d1 2\nq2 0 a -1\n")
    result = run_cli(*args, "--json")
    assert result.stderr.splitlines() == [
        "note: 1 query of the qrels (q2) is judged only below 0 and is left out (no label of 0 "
        "or above to measure by)"
    ]
    qrels.write_text("q1 0 d1 -2\nq2 0 a -1\nq3 0 z 1\n")
    result = run_cli(*args, "--json")
    assert "every query of" in str(result.exception)
    assert "that the qrels judge is judged only below 0 (q1, q2)" in str(result.exception)


def test_files_that_share_no_query_say_why(fixture_files, tmp_path: Path) -> None:
    candidates, qrels = fixture_files
    padded = tmp_path / "padded.txt"
    padded.write_text("q01 0 d1 1\n")  # q1 in the candidates: not padding, another id
    result = run_cli("eval", "--candidates", candidates, "--qrels", padded, "--no-rerank")
    assert "appears in the qrels (q01); check that the query ids" in str(result.exception)
    entries = json.loads(candidates.read_text())
    for entry in entries:
        for item in entry["hits"]:
            item["qid"] = item["qid"].replace("q", "")  # 1 and 2
    candidates.write_text(json.dumps(entries))
    padded.write_text("001 0 d1 1\n")
    result = run_cli("eval", "--candidates", candidates, "--qrels", padded, "--no-rerank")
    assert f"no query id of {candidates} (1, 2) appears in the qrels (001)" in str(result.exception)
    assert "differ in leading zeros" in str(result.exception)
    header_only = tmp_path / "header.tsv"
    header_only.write_text("query-id\tcorpus-id\tscore\n")
    result = run_cli("eval", "--candidates", candidates, "--qrels", header_only, "--no-rerank")
    assert f"{header_only} holds no judgments; give lines" in str(result.exception)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    result = run_cli("eval", "--candidates", empty, "--qrels", qrels, "--no-rerank")
    assert f"{empty} holds no queries" in str(result.exception)


def test_no_feedback_reaches_the_re_ranker_of_a_retriever_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--no-feedback and --backend reached only the --rerank re-ranker: a
    text_similarity_reranker in a --retriever file kept its feedback without a word."""
    from semrank.store import HOME_ENV

    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    corpus = tmp_path / "moons.jsonl"
    moons = [f"Moon {n} orbits its planet and raises tides on its seas." for n in range(11)]
    texts = [*moons, "Paris is the capital of France.", "The moon hides the sun in an eclipse."]
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    assert run_cli("index", "create", "moons", "--from", corpus, "--no-dense").exit_code == 0
    queries, qrels, tree = tmp_path / "q.tsv", tmp_path / "qrels.txt", tmp_path / "tree.json"
    queries.write_text("q1\tmoon tides\n")
    qrels.write_text("q1 0 12 1\n")
    standard = {"standard": {"query": {"match": {"text": "{{query}}"}}}}
    reranker = {"retriever": standard, "rank_window_size": 100}
    tree.write_text(json.dumps({"text_similarity_reranker": reranker}))
    args = ["eval", "--index", "moons", "--queries", queries, "--qrels", qrels, "--json"]

    def scores(retriever: str, *flags: str) -> dict[str, float]:
        out = tmp_path / f"runs{len(list(tmp_path.glob('runs*')))}"
        result = run_cli(*args, "--retriever", retriever, "--run-out", out, *flags)
        assert result.exit_code == 0, result.output
        [run_file] = [f for f in out.iterdir() if f.name not in ("bm25.trec",)]
        return {hit.doc_id: hit.score for hit in load_trec_run(run_file).rankings["q1"]}

    searched = CliRunner().invoke(
        app, ["search", "moons", "moon tides", "--retriever", str(tree), "--top-n", "13",
              "--no-feedback", "--json"],
    )  # fmt: skip
    assert searched.exit_code == 0, searched.output
    alone = {hit["id"]: hit["score"] for hit in json.loads(searched.stdout)["hits"]}
    assert len(alone) == 12  # every document BM25 finds (Paris shares no word)
    without = scores(str(tree), "--no-feedback")
    assert without == pytest.approx(alone, abs=1e-4)  # as `semrank search --no-feedback`
    with_feedback = scores(str(tree))  # the default: feedback moves the scores
    assert max(abs(with_feedback[i] - without[i]) for i in without) > 1e-3
    # In a comparison too, and a run that re-ranks nothing beside it is no reason to refuse.
    assert scores(f"bm25,{tree}", "--no-feedback") == pytest.approx(without, abs=1e-6)
    for retriever, said in (
        ("bm25", "this evaluation re-ranks nothing; with --index, re-ranking is off"),
        ("bm25,dense", "no run of --retriever 'bm25,dense' re-ranks"),
    ):
        refused = run_cli(*args, "--retriever", retriever, "--no-feedback")
        assert isinstance(refused.exception, InvalidInputError), retriever
        assert (
            f"--no-feedback switches off the re-ranker's pseudo-relevance feedback, and {said}"
            in (str(refused.exception))
        )


def test_a_model_that_does_not_resolve_is_named_before_the_retrieval(deep_index) -> None:
    """`eval --model BAD --index` retrieved for every query and only then named the model."""
    queries, qrels = deep_index
    args = ["eval", "--index", "deep", "--queries", queries, "--qrels", qrels, "--rerank"]
    result = run_cli(*args, "--model", "/no/such/model/folder")
    assert result.exit_code != 0 and "/no/such/model/folder" in str(result.exception)
    assert "retrieving" not in result.stderr


def test_a_backend_this_machine_cannot_run_is_named_before_anything_is_retrieved(
    deep_index,
) -> None:
    """--backend bogus was found only after every query had been retrieved."""
    queries, qrels = deep_index
    args = ["eval", "--index", "deep", "--queries", queries, "--qrels", qrels, "--rerank"]
    for backend, message in (("bogus", "unknown backend 'bogus'"), ("torch-fp16", "CUDA")):
        result = run_cli(*args, "--backend", backend)
        assert result.exit_code != 0 and message in str(result.exception), backend
        assert "retrieving" not in result.stderr, backend


def test_report_and_run_out_take_folders_and_refuse_blanks_and_file_names(
    fixture_files, tmp_path: Path
) -> None:
    """`--report out/report.md` made a folder report.md; a blank flag wrote into the current
    folder; a report without re-ranking had no plots and said nothing."""
    candidates, qrels = fixture_files
    args = ["eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank"]
    for flag, value in (("--report", "report.md"), ("--run-out", "run.trec")):
        named = run_cli(*args, flag, tmp_path / "out" / value)
        assert isinstance(named.exception, InvalidInputError), flag
        assert f"looks like a file name, and {flag} takes a folder" in str(named.exception)
        assert f"give the folder ({tmp_path / 'out'})" in str(named.exception)
    assert not (tmp_path / "out").exists()
    for flag in ("--report", "--run-out", "--per-query"):
        blank = run_cli(*args, flag, " ")
        assert blank.exit_code == 2 and "is blank; give a path" in blank.output, flag
    plain = run_cli(*args, "--report", tmp_path / "rep")
    assert plain.exit_code == 0, plain.output
    assert "note: the report has no plots: they show what re-ranking changed" in plain.stderr


def test_output_flags_expand_a_tilde_as_home_does(
    fixture_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quoted (or in a unit file), "~/runs" reached no shell: a folder named "~" was made in
    the current folder, and the home folder got nothing."""
    candidates, qrels = fixture_files
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    result = run_cli(
        "eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank",
        "--run-out", "~/runs", "--per-query", "~/values.tsv", "--report", "~/report",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not (work / "~").exists()
    assert (home / "runs" / "first_stage.trec").is_file()
    assert "first_stage\tnDCG@10\tq1\t" in (home / "values.tsv").read_text()
    assert "| nDCG@10 |" in (home / "report" / "report.md").read_text()


def test_candidates_read_no_index_so_index_flags_are_refused_and_the_store_not_read(
    fixture_files, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    candidates, qrels = fixture_files
    args = ["eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank", "--json"]
    monkeypatch.setenv("SEMRANK_STORE", "not-a-store")  # no index is used: not a failure
    assert run_cli(*args).exit_code == 0
    for flag, value in (("--home", str(tmp_path)), ("--store", "postgresql://u:pw@h/db")):
        result = run_cli(*args, flag, value)
        assert isinstance(result.exception, InvalidInputError), flag
        message = str(result.exception)
        assert f"{flag} says where --index lives, and --candidates reads no index" in message
        assert "pw" not in message


def test_measure_parameters_that_are_bare_words_name_their_quoting(fixture_files) -> None:
    """The error was "malformed node or string on line 1: <ast.Name object at 0x7f...>"."""
    candidates, qrels = fixture_files
    args = ["eval", "--candidates", candidates, "--qrels", qrels, "--no-rerank"]
    result = run_cli(*args, "--measures", "nDCG(dcg=exp-log2)@10")
    assert isinstance(result.exception, InvalidInputError)  # before gdeval's own checks
    assert str(result.exception) == (
        "measure 'nDCG(dcg=exp-log2)@10': dcg=exp-log2 is not a number or quoted text; quote "
        "text, as in dcg='exp-log2'"
    )
    assert run_cli(*args, "--measures", "RR(rel=2)@10").exit_code == 0


def test_a_one_query_table_says_query(fixture_files) -> None:
    candidates, qrels = fixture_files
    one = qrels.with_name("one.txt")
    one.write_text("q1 0 d1 2\n")
    result = run_cli("eval", "--candidates", candidates, "--qrels", one, "--no-rerank")
    assert result.exit_code == 0, result.output
    assert "1 judged query" in [line.strip() for line in result.stdout.splitlines()]
