"""Collection loaders: BEIR, TREC (qrels, runs, topics), candidate lists; fixtures written here."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from semrank.errors import DataFormatError
from semrank.eval import (
    Run,
    ScoredDoc,
    candidates_to_run,
    load_beir,
    load_beir_corpus,
    load_beir_qrels,
    load_candidates,
    load_qrels,
    load_queries,
    load_trec_qrels,
    load_trec_run,
    load_trec_topics,
    write_trec_run,
)


def write(path: Path, text: str, *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def fed_pipe(path: Path, data: bytes) -> Path:
    """A named pipe at ``path`` that a thread writes ``data`` into once a reader opens it (as
    `<(cmd)` does: read twice, the second read finds nothing)."""
    import os
    import threading

    os.mkfifo(path)

    def feed() -> None:
        with open(path, "wb") as writer:
            writer.write(data)

    threading.Thread(target=feed, daemon=True).start()
    return path


def jsonl(*records: object) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


# --------------------------------------------------------------------------- BEIR


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    write(
        tmp_path / "corpus.jsonl.gz",
        jsonl(
            {"_id": "d1", "title": "Fleas", "text": "Fleas are insects."},
            {"_id": "d2", "text": "Paris is in France."},
            {"_id": 7, "title": None, "text": "An integer id."},
        ),
        gz=True,
    )
    write(
        tmp_path / "queries.jsonl",
        jsonl({"_id": "q1", "text": "what is a flea"}, {"_id": "q2", "text": "unjudged query"}),
    )
    write(tmp_path / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\n")
    return tmp_path


def test_beir_folder_loads_corpus_queries_and_qrels(beir_dir: Path) -> None:
    collection = load_beir(beir_dir)
    assert set(collection.corpus) == {"d1", "d2", "7"}
    assert collection.corpus["d1"].title == "Fleas"
    assert collection.corpus["d2"].title == ""
    assert collection.corpus["7"].text == "An integer id."
    # Like BEIR's own loader: only the queries judged in the split.
    assert collection.queries == {"q1": "what is a flea"}
    assert collection.qrels == {"q1": {"d1": 1, "d2": 0}}


def test_beir_missing_split_names_the_file(beir_dir: Path) -> None:
    with pytest.raises(DataFormatError, match=r"dev\.tsv: no such file"):
        load_beir(beir_dir, split="dev")


def test_beir_corpus_bad_json_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "corpus.jsonl", '{"_id": "a", "text": "ok"}\n{"_id": "b", "text": \n')
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl:2: not valid JSON"):
        load_beir_corpus(path)


def test_beir_corpus_missing_text_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "corpus.jsonl", jsonl({"_id": "a", "text": "ok"}, {"_id": "b"}))
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl:2: no field 'text'"):
        load_beir_corpus(path)


def test_beir_ids_follow_the_corpus_readers_rule_and_a_pandas_float_id_is_named(
    tmp_path: Path,
) -> None:
    from semrank.eval.loaders import load_beir_queries

    good = write(
        tmp_path / "queries.jsonl", jsonl({"_id": 7, "text": "a"}, {"_id": 7.5, "text": "b"})
    )
    assert load_beir_queries(good) == {"7": "a", "7.5": "b"}
    # pandas writes an integer id column holding a missing value as 1.0: "1.0" is not qrels' "1".
    floats = write(
        tmp_path / "floats.jsonl", jsonl({"_id": "d0", "text": "a"}, {"_id": 1.0, "text": "b"})
    )
    for load in (load_beir_queries, load_beir_corpus):
        with pytest.raises(
            DataFormatError,
            match=r"floats\.jsonl:2: field '_id' is the float 1\.0, not the id 1: pandas .*NaN.*"
            r"astype\('int64'\)",
        ):
            load(floats)
    # A query or text that is a number (a year) is its text, as it always was read.
    year = write(tmp_path / "year.jsonl", jsonl({"_id": "d0", "title": 1984, "text": 1984}))
    assert load_beir_queries(year) == {"d0": "1984"}
    assert load_beir_corpus(year)["d0"].title == "1984"
    zero = write(tmp_path / "zero.jsonl", jsonl({"_id": "d0", "title": 0, "text": 0}))
    assert load_beir_corpus(zero)["d0"].title == "0"
    text = write(tmp_path / "text.jsonl", jsonl({"_id": "d0", "text": [7]}))
    with pytest.raises(DataFormatError, match=r"text\.jsonl:1: field 'text' is \[7\] \(list\); it"):
        load_beir_corpus(text)


def test_tsv_written_with_pandas_index_is_refused_with_the_fix(tmp_path: Path) -> None:
    # What DataFrame.to_csv(path, sep="\t") writes: the index as an unnamed first column.
    qrels = write(
        tmp_path / "qrels.tsv", "\tquery-id\tcorpus-id\tscore\n0\tq1\td1\t1\n1\tq2\td2\t0\n"
    )
    hint = r"pandas' index column: write with index=False"
    with pytest.raises(
        DataFormatError, match=rf"qrels\.tsv:2: expected 3 columns .* got 4 .*{hint}"
    ):
        load_qrels(qrels)
    queries = write(tmp_path / "queries.tsv", "\tqid\ttext\n0\tq1\tfleas\n1\tq2\tdogs\n")
    with pytest.raises(
        DataFormatError, match=rf"queries\.tsv:1: expected 'query-id<TAB>query text' .*{hint}"
    ):
        load_queries(queries)
    # A first column that does not count the rows from 0 is no index: no hint.
    other = write(tmp_path / "other.tsv", "\tquery-id\tcorpus-id\tscore\n3\tq1\td1\t1\n")
    with pytest.raises(DataFormatError, match=r"got 4$"):
        load_qrels(other)


def test_beir_qrels_bad_score_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\thigh\n")
    with pytest.raises(DataFormatError, match=r"test\.tsv:3: score must be an integer, got 'high'"):
        load_beir_qrels(path)


# --------------------------------------------------------------------------- TREC qrels and runs


def test_trec_qrels_graded(tmp_path: Path) -> None:
    path = write(tmp_path / "qrels.txt", "1 0 d1 3\n1 0 d2 0\n\n2 Q0 d9 1\n")
    assert load_trec_qrels(path) == {"1": {"d1": 3, "d2": 0}, "2": {"d9": 1}}


def test_trec_qrels_wrong_column_count_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "qrels.txt", "1 0 d1 3\n1 0 d2 0\n1 d3 1\n")
    with pytest.raises(DataFormatError, match=r"qrels\.txt:3: expected 4 columns"):
        load_trec_qrels(path)


def test_trec_run_is_ordered_as_trec_eval_orders_it(tmp_path: Path) -> None:
    path = write(
        tmp_path / "run.trec",
        "q1 Q0 low 1 0.5 bm25\nq1 Q0 high 2 2.0 bm25\nq1 Q0 tie_b 4 1.0 bm25\n"
        "q1 Q0 tie_a 3 1.0 bm25\nq2 Q0 only 1 -3 bm25\n",
    )
    run = load_trec_run(path)
    assert run.name == "bm25"
    # Ties: document ids in descending order, whatever the rank column says (trec_eval).
    assert [d.doc_id for d in run.rankings["q1"]] == ["high", "tie_b", "tie_a", "low"]
    assert run.rankings["q2"] == [ScoredDoc(doc_id="only", score=-3.0)]


def test_trec_run_errors_name_the_line(tmp_path: Path) -> None:
    short = write(tmp_path / "short.trec", "q1 Q0 a 1 0.5 t\nq1 Q0 b 2 0.4\n")
    with pytest.raises(DataFormatError, match=r"short\.trec:2: expected 6 columns"):
        load_trec_run(short)
    bad_score = write(tmp_path / "score.trec", "q1 Q0 a 1 high t\n")
    with pytest.raises(DataFormatError, match=r"score\.trec:1: score must be a number"):
        load_trec_run(bad_score)
    # NaN sorted nowhere: the 0.9 hit was ranked below the 0.1 one, the query's metrics wrong.
    nan_score = write(tmp_path / "nan.trec", "q1 Q0 a 1 0.9 t\nq1 Q0 b 2 NaN t\nq1 Q0 c 3 0.1 t\n")
    with pytest.raises(DataFormatError, match=r"nan\.trec:2: score must be a number, got 'NaN'"):
        load_trec_run(nan_score)
    infinite = write(tmp_path / "inf.trec", "q1 Q0 a 1 0.9 t\nq1 Q0 b 2 -inf t\nq1 Q0 c 3 inf t\n")
    assert [d.doc_id for d in load_trec_run(infinite).rankings["q1"]] == ["c", "a", "b"]
    duplicate = write(tmp_path / "dup.trec", "q1 Q0 a 1 0.5 t\nq1 Q0 a 2 0.4 t\n")
    with pytest.raises(DataFormatError, match=r"dup\.trec:2: document 'a' listed twice"):
        load_trec_run(duplicate)


def test_written_run_reads_back_in_the_same_order(tmp_path: Path) -> None:
    run = Run(
        name="my run",
        rankings={
            "q1": [ScoredDoc(doc_id="b", score=3.5), ScoredDoc(doc_id="a", score=-1.25)],
            "q2": [ScoredDoc(doc_id="c", score=0.1)],
        },
    )
    path = write_trec_run(run, tmp_path / "out" / "run.trec")
    assert path.read_text().splitlines()[0] == "q1 Q0 b 1 3.5 my_run"
    assert load_trec_run(path).rankings == run.rankings


# --------------------------------------------------------------------------- TREC topics


def test_sgml_topics_classic_unclosed_tags(tmp_path: Path) -> None:
    path = write(
        tmp_path / "topics.301",
        "<top>\n<num> Number: 301\n<title> Topic: International Organized Crime\n\n"
        "<desc> Description:\nIdentify organizations that participate.\n</top>\n\n"
        "<top>\n<num> Number: 302\n<title> Poliomyelitis and Post-Polio\n"
        "<desc> Description:\nIs the disease under control?\n</top>\n",
    )
    assert load_trec_topics(path) == {
        "301": "International Organized Crime",
        "302": "Poliomyelitis and Post-Polio",
    }
    assert load_trec_topics(path, topic_field="desc")["302"] == "Is the disease under control?"


def test_sgml_topics_closed_tags(tmp_path: Path) -> None:
    path = write(
        tmp_path / "q.trec",
        "<top>\n<num>1</num><title>\nMEASUREMENT OF DIELECTRIC\nCONSTANT\n</title>\n</top>\n",
    )
    assert load_trec_topics(path) == {"1": "MEASUREMENT OF DIELECTRIC CONSTANT"}


def test_sgml_topic_without_num_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "q.trec",
        "<top>\n<num>1</num><title>a</title>\n</top>\n<top>\n<title>no number</title>\n</top>\n",
    )
    with pytest.raises(DataFormatError, match=r"q\.trec:4: topic without a <num> tag"):
        load_trec_topics(path)


def test_tsv_topics_and_bad_line(tmp_path: Path) -> None:
    good = write(tmp_path / "queries.tsv", "19335\tanthropological definition of environment\n")
    assert load_trec_topics(good) == {"19335": "anthropological definition of environment"}
    bad = write(tmp_path / "bad.tsv", "1\tfirst\n2 no tab here\n")
    with pytest.raises(DataFormatError, match=r"bad\.tsv:2: expected 'query-id<TAB>query text'"):
        load_trec_topics(bad)


def test_format_detection_for_queries_and_qrels(tmp_path: Path, beir_dir: Path) -> None:
    assert load_queries(beir_dir / "queries.jsonl")["q2"] == "unjudged query"
    assert load_queries(write(tmp_path / "t.tsv", "7\tseven\n")) == {"7": "seven"}
    assert load_qrels(beir_dir / "qrels" / "test.tsv") == {"q1": {"d1": 1, "d2": 0}}
    assert load_qrels(write(tmp_path / "q.txt", "7 0 d 2\n")) == {"7": {"d": 2}}


def test_empty_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="file is empty"):
        load_qrels(write(tmp_path / "empty.txt", "\n\n"))
    with pytest.raises(DataFormatError, match="no such file"):
        load_qrels(tmp_path / "absent.txt")


# --------------------------------------------------------------------------- candidate lists


def hit(qid: object, docid: str, rank: int, score: float, content: str = "text") -> dict:
    return {"qid": qid, "docid": docid, "rank": rank, "score": score, "content": content}


def test_candidates_ordered_by_rank_gzip(tmp_path: Path) -> None:
    data = [
        {"query": "q one", "hits": [hit(11, "b", 2, 5.0, "B"), hit(11, "a", 1, 5.0, "A")]},
        {"query": "q two", "hits": [hit(12, "c", 1, 1.0)]},
        {"query": "nothing found", "hits": []},
    ]
    path = write(tmp_path / "cands.json.gz", json.dumps(data), gz=True)
    lists = load_candidates(path)
    assert [c.query_id for c in lists] == ["11", "12"]  # no hits, no id: ranks nothing
    assert [(h.doc_id, h.rank, h.text) for h in lists[0].hits] == [("a", 1, "A"), ("b", 2, "B")]
    run = candidates_to_run(lists)
    assert run.name == "first_stage"
    assert [d.doc_id for d in run.rankings["11"]] == ["a", "b"]


def test_candidates_bad_json_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.json", '[\n  {"query": "x",\n   "hits": [}\n]\n')
    with pytest.raises(DataFormatError, match=r"c\.json:3: not valid JSON"):
        load_candidates(path)


def test_candidates_structure_errors_name_query_and_hit(tmp_path: Path) -> None:
    missing = [{"query": "x", "hits": [hit(1, "a", 1, 1.0), {"qid": 1, "rank": 2, "score": 0.5}]}]
    path = write(tmp_path / "c.json", json.dumps(missing))
    with pytest.raises(DataFormatError, match=r"query #0 hit #1: missing docid, content"):
        load_candidates(path)
    mixed = [{"query": "x", "hits": [hit(1, "a", 1, 1.0), hit(2, "b", 2, 0.5)]}]
    with pytest.raises(DataFormatError, match=r"query #0: hits carry different qids"):
        load_candidates(write(tmp_path / "m.json", json.dumps(mixed)))
    not_list = {"query": "x", "hits": []}
    with pytest.raises(DataFormatError, match="expected a JSON list"):
        load_candidates(write(tmp_path / "o.json", json.dumps(not_list)))


def test_written_run_keeps_the_list_order_for_tools_that_sort_by_score(tmp_path: Path) -> None:
    import ir_measures

    # q1 all tied: trec_eval-style tools break ties by doc id (z, m, a or a, m, z), which puts
    # the one relevant document, m, at rank 2. q2's scores rise against the list order.
    tied = [ScoredDoc(doc_id=d, score=2.0) for d in ("m", "z", "a")]
    rising = [ScoredDoc(doc_id="y", score=1.0), ScoredDoc(doc_id="x", score=5.0)]
    path = write_trec_run(Run(name="bm25", rankings={"q1": tied, "q2": rising}), tmp_path / "r")
    rows = [line.split() for line in path.read_text().splitlines()]
    assert [(q, d) for q, _q0, d, *_ in rows] == [
        ("q1", "m"), ("q1", "z"), ("q1", "a"), ("q2", "y"), ("q2", "x")
    ]  # fmt: skip
    scores = [float(row[4]) for row in rows]
    assert (scores[0], scores[3]) == (2.0, 1.0)  # scores already in order are kept exactly
    assert scores[1] == pytest.approx(2.0) and scores[2] == pytest.approx(2.0)  # ties nudged
    assert scores[0] > scores[1] > scores[2] and scores[3] > scores[4]
    # Sorted by score by pytrec_eval (32-bit scores) itself: m and y stay at rank 1.
    qrels = {"q1": {"m": 1}, "q2": {"y": 1}}
    measured = ir_measures.calc_aggregate(
        [ir_measures.nDCG @ 10, ir_measures.RR], qrels, ir_measures.read_trec_run(str(path))
    )
    assert measured == {ir_measures.nDCG @ 10: 1.0, ir_measures.RR: 1.0}
    assert [d.doc_id for d in load_trec_run(path).rankings["q1"]] == ["m", "z", "a"]


def test_tied_scores_in_a_run_file_evaluate_as_pytrec_eval_does(tmp_path: Path) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    from semrank.eval import evaluate

    path = write(tmp_path / "run.trec", "1 Q0 a 1 5.0 t\n1 Q0 b 2 5.0 t\n1 Q0 c 3 5.0 t\n")
    qrels = {"1": {"a": 1, "b": 0, "c": 0}}
    ours = evaluate(qrels, load_trec_run(path), ["RR@10", "AP"]).aggregate
    reference = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank", "map"}).evaluate(
        {"1": {"a": 5.0, "b": 5.0, "c": 5.0}}
    )["1"]
    assert ours["RR@10"] == pytest.approx(reference["recip_rank"])  # 1/3: a is ranked last
    assert ours["AP"] == pytest.approx(reference["map"])


def test_a_damaged_gzip_file_is_a_format_error_naming_it(tmp_path: Path) -> None:
    """zlib's own error escaped as a traceback (a cut or bad-CRC file was already caught)."""
    import gzip

    data = bytearray(gzip.compress(("q1 0 d%d 1\n" * 200 % tuple(range(200))).encode()))
    data[20:40] = bytes(20)
    path = tmp_path / "qrels.txt.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match=r"qrels\.txt\.gz: a damaged or cut-short gzip file"):
        load_trec_qrels(path)


def test_scores_equal_as_32_bit_floats_tie_as_in_trec_eval(tmp_path: Path) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    from semrank.eval import evaluate

    path = write(tmp_path / "run.trec", "1 Q0 a 1 0.30000001 t\n1 Q0 b 2 0.3 t\n")
    qrels = {"1": {"a": 0, "b": 1}}
    ours = evaluate(qrels, load_trec_run(path), ["RR@10"]).aggregate["RR@10"]
    reference = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(
        {"1": {"a": 0.30000001, "b": 0.3}}
    )["1"]["recip_rank"]
    assert ours == pytest.approx(reference)


def test_candidates_in_another_shape_say_what_they_look_like(tmp_path: Path) -> None:
    """semrank's own --run-out file or JSON Lines as --candidates: a bare 'Extra data' JSON
    error; a repeated docid was not named."""
    run = tmp_path / "first_stage.trec"
    run.write_text("q1 Q0 d1 1 3.5 bm25\nq1 Q0 d2 2 3.1 bm25\n")
    with pytest.raises(DataFormatError, match=r"looks like a TREC run .* --index"):
        load_candidates(run)
    lines = tmp_path / "c.jsonl"
    lines.write_text('{"query": "a", "hits": []}\n{"query": "b", "hits": []}\n')
    with pytest.raises(DataFormatError, match="looks like JSON Lines"):
        load_candidates(lines)
    twice = tmp_path / "twice.json"
    hit = {"qid": "q1", "docid": "d1", "rank": 1, "score": 1.0, "content": "x"}
    twice.write_text(json.dumps([{"query": "a", "hits": [hit, {**hit, "rank": 2}]}]))
    with pytest.raises(DataFormatError, match=r"\(qid 'q1'\): docid 'd1' appears twice"):
        load_candidates(twice)


def test_a_run_file_the_disk_had_no_room_for_is_left_out_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk left a cut-short run file (trec_eval reads it as a run with fewer hits) and
    was called bad input (exit 2); it is the machine's (exit 3), and nothing is left behind."""
    import errno

    from semrank.errors import exit_code_for
    from semrank.eval import Run, ScoredDoc, write_trec_run

    class NoRoom:  # takes one line, then the disk is full
        def __init__(self, real: Any) -> None:
            self.real = real

        def __enter__(self) -> NoRoom:
            return self

        def __exit__(self, *exc: object) -> None:
            self.real.close()

        def writelines(self, lines: list[str]) -> None:
            self.real.write(lines[0])
            raise OSError(errno.ENOSPC, "No space left on device")

    opened = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: NoRoom(opened(self, *a, **k)))
    run = Run(name="r", rankings={"q1": [ScoredDoc(doc_id="d1", score=1.0)]})
    target = tmp_path / "runs" / "r.trec"
    with pytest.raises(OSError) as raised:
        write_trec_run(run, target)
    assert raised.value.errno == errno.ENOSPC and str(target) in str(raised.value)
    assert exit_code_for(raised.value) == 3
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_run_file_is_written_through_links_and_keeps_its_mode(tmp_path: Path) -> None:
    """Written beside and renamed, a link was replaced by a file (its target kept the old run)
    and a 0600 file became 0644."""
    import os

    from semrank.eval import Run, ScoredDoc, write_trec_run

    run = Run(name="r", rankings={"q1": [ScoredDoc(doc_id="d1", score=1.0)]})
    real = tmp_path / "real.trec"
    real.write_text("old\n")
    os.chmod(real, 0o600)
    link = tmp_path / "link.trec"
    link.symlink_to(real)
    write_trec_run(run, link)
    assert link.is_symlink() and real.read_text().startswith("q1 Q0 d1 1 ")
    assert real.stat().st_mode & 0o777 == 0o600


def test_queries_and_qrels_are_read_from_pipes(tmp_path: Path) -> None:
    """`--queries <(cat qs.tsv) --qrels <(cat q.trec)` was "no such file"; and a loader reads
    its file more than once (the format sniffed, then parsed; a refused line's hint), which
    found a pipe's data gone."""
    topics = fed_pipe(tmp_path / "topics", b"q1\twhat is a flea\nq2\tcapital of france\n")
    assert load_queries(topics) == {"q1": "what is a flea", "q2": "capital of france"}
    beir = fed_pipe(tmp_path / "qrels", gzip.compress(b"query-id\tcorpus-id\tscore\nq1\td1\t1\n"))
    assert load_qrels(beir) == {"q1": {"d1": 1}}
    broken = fed_pipe(tmp_path / "broken", b",qid,doc\n0,q1,d1\n1,q2,d2\n")
    with pytest.raises(DataFormatError, match=r"broken:1: expected 4 columns .*pandas' index"):
        load_trec_qrels(broken)
