"""Readers and writers for relevance-judged collections: BEIR, TREC and candidate lists.

Every parse error raises :class:`semrank.errors.DataFormatError` whose message starts with
``file:line:`` (JSON candidate lists, often one long line, name the query and hit index instead).
Files may be gzip-compressed; that is detected from the content, not the name.
"""

from __future__ import annotations

import errno
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import numpy as np

from semrank._checks import (
    UnreadableJSONError,
    blank_kind,
    id_problem,
    is_int,
    loads_json,
    require_collection,
    require_unicode,
)
from semrank._files import (
    format_error,
    numbered_lines,
    pandas_index_hint,
    read_text,
    reads_pipes_once,
    require_path,
    written_whole,
)
from semrank.errors import DataFormatError, InvalidInputError

T = TypeVar("T")

# query id -> doc id -> graded relevance (0 = judged not relevant).
Qrels = dict[str, dict[str, int]]
# query id -> query text.
Queries = dict[str, str]

TopicField = Literal["title", "desc"]
_BEIR_QRELS_HEADER = ("query-id", "corpus-id", "score")


@dataclass(frozen=True, kw_only=True)
class Document:
    """One corpus entry."""

    doc_id: str
    text: str
    title: str = ""


@dataclass(frozen=True, kw_only=True)
class ScoredDoc:
    """One entry of a ranking: a document id and the score its system gave it."""

    doc_id: str
    score: float


@dataclass(frozen=True, kw_only=True)
class Run:
    """A system's output: per query, documents best first.

    The list order IS the ranking; scores are kept for run files and reports but never used
    to re-sort, so ties in score cannot reorder a ranking.
    """

    name: str
    rankings: dict[str, list[ScoredDoc]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked when built: a malformed run would otherwise fail much later, deep inside
        # evaluate or write_trec_run, with an AttributeError naming neither run nor query.
        if not isinstance(self.name, str):
            raise InvalidInputError(
                f"Run name must be a string, got {type(self.name).__name__} ({self.name!r:.60})"
            )
        checked_rankings(self.rankings)

    def __repr__(self) -> str:
        # Counts, not every ScoredDoc: a notebook cell showing a run printed hundreds of KB.
        entries = sum(len(ranking) for ranking in self.rankings.values())
        counts = f"{len(self.rankings)} queries, {entries} entries"
        return f"Run(name={self.name!r}, rankings=<{counts}>)"


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One first-stage hit with its text, ready to be re-ranked."""

    doc_id: str
    rank: int
    score: float
    text: str


@dataclass(frozen=True, kw_only=True)
class CandidateList:
    """A query and its first-stage hits, ordered by the given rank."""

    query_id: str
    query: str
    hits: tuple[Candidate, ...]

    def __repr__(self) -> str:
        # Not every hit's text: a notebook cell showing TREC DL's 43 lists printed 2 MB.
        return (
            f"CandidateList(query_id={self.query_id!r}, query={self.query!r}, "
            f"hits=<{len(self.hits)} candidates>)"
        )


@dataclass(frozen=True, kw_only=True)
class BeirCollection:
    """A BEIR dataset split: corpus, the queries judged in the split, and their qrels."""

    corpus: dict[str, Document]
    queries: Queries
    qrels: Qrels

    def __repr__(self) -> str:
        # Not the corpus: a notebook cell showing SciFact's collection printed 8 MB of text.
        judgments = sum(len(judged) for judged in self.qrels.values())
        return (
            f"BeirCollection(corpus=<{len(self.corpus)} documents>, "
            f"queries=<{len(self.queries)} queries>, qrels=<{judgments} judgments>)"
        )


# --------------------------------------------------------------------------- BEIR


def _json_line(path: Path | str, number: int, line: str) -> dict[str, Any]:
    try:
        record = loads_json(line)
    except json.JSONDecodeError as exc:
        raise format_error(path, number, f"not valid JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise format_error(path, number, "expected a JSON object per line")
    return record


def _required_str(record: Mapping[str, Any], key: str, path: Path | str, number: int) -> str:
    if key not in record:
        raise format_error(path, number, f"no field {key!r}")
    value = record[key]
    if isinstance(value, int) and not isinstance(value, bool):  # a query that is a year: 1984
        return str(value)
    if not isinstance(value, str):
        raise format_error(
            path,
            number,
            f"field {key!r} is {json.dumps(value)[:60]} ({type(value).__name__}); it must be "
            "a string",
        )
    return value


def _required_id(record: Mapping[str, Any], path: Path | str, number: int) -> str:
    """The record's ``_id`` as text, by the rule an index's corpus reader applies (7 is "7")."""
    if "_id" not in record:
        raise format_error(path, number, "no field '_id'; each line needs an '_id' and a 'text'")
    problem = id_problem(record["_id"])
    if problem is not None:
        raise format_error(path, number, f"field '_id' {problem}")
    return str(record["_id"])


def load_beir_corpus(path: Path | str) -> dict[str, Document]:
    """``corpus.jsonl[.gz]``: one ``{"_id", "title", "text"}`` object per line."""
    corpus: dict[str, Document] = {}
    for number, line in numbered_lines(path):
        record = _json_line(path, number, line)
        doc_id = _required_id(record, path, number)
        text = _required_str(record, "text", path, number)
        title = "" if record.get("title") is None else _required_str(record, "title", path, number)
        if doc_id in corpus:
            raise format_error(path, number, f"duplicate document id {doc_id!r}")
        corpus[doc_id] = Document(doc_id=doc_id, text=text, title=title)
    return corpus


def load_beir_queries(path: Path | str) -> Queries:
    """``queries.jsonl[.gz]``: one ``{"_id", "text"}`` object per line."""
    queries: Queries = {}
    lines: dict[str, int] = {}
    for number, line in numbered_lines(path):
        record = _json_line(path, number, line)
        query_id = _required_id(record, path, number)
        _add_query(
            queries, lines, query_id, _required_str(record, "text", path, number), path, number
        )
    return queries


@reads_pipes_once
def load_beir_qrels(path: Path | str) -> Qrels:
    """``qrels/<split>.tsv``: header ``query-id corpus-id score``, then one judgment per line."""
    qrels: Qrels = {}
    lines: dict[tuple[str, str], int] = {}
    for number, line in numbered_lines(path):
        fields = line.split()
        if number == 1 and tuple(fields) == _BEIR_QRELS_HEADER:
            continue
        if len(fields) != 3:
            raise _columns_error(path, number, "3 columns 'query-id corpus-id score'", len(fields))
        query_id, doc_id, grade = fields
        _judge(
            qrels, lines, (query_id, doc_id), _int_field(grade, "score", path, number), path, number
        )
    return qrels


def load_beir(directory: Path | str, split: str = "test") -> BeirCollection:
    """A BEIR dataset folder; queries are limited to those judged in ``split`` (as BEIR does)."""
    directory = Path(directory)
    corpus_path = first_existing(directory, ("corpus.jsonl", "corpus.jsonl.gz"))
    queries_path = first_existing(directory, BEIR_QUERY_FILES)
    qrels = load_beir_qrels(directory / "qrels" / f"{split}.tsv")
    all_queries = load_beir_queries(queries_path)
    queries = {qid: all_queries[qid] for qid in qrels if qid in all_queries}
    return BeirCollection(corpus=load_beir_corpus(corpus_path), queries=queries, qrels=qrels)


BEIR_QUERY_FILES = ("queries.jsonl", "queries.jsonl.gz")  # the first that exists is read


def first_existing(directory: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise DataFormatError(f"{directory}: no {' or '.join(names)} found (is this a BEIR folder?)")


# --------------------------------------------------------------------------- TREC


def _judge(
    qrels: Qrels,
    lines: dict[tuple[str, str], int],
    pair: tuple[str, str],
    grade: int,
    path: Path | str,
    number: int,
) -> None:
    """Record one judgment; the same pair judged twice alike is fine, differently an error
    (keeping either would change the scores without a word)."""
    query_id, doc_id = pair
    known = qrels.setdefault(query_id, {}).get(doc_id)
    if known is not None and known != grade:
        raise format_error(
            path,
            number,
            f"query {query_id!r} document {doc_id!r} is judged {grade} here but {known} on line "
            f"{lines[pair]}; keep one judgment per query and document",
        )
    lines.setdefault(pair, number)
    qrels[query_id][doc_id] = grade


def _add_query(
    queries: Queries, lines: dict[str, int], query_id: str, text: str, path: Path | str, number: int
) -> None:
    """Record one query; an id given twice with different texts is an error naming both lines."""
    known = queries.get(query_id)
    if known is not None and known != text:
        raise format_error(
            path,
            number,
            f"query id {query_id!r} has another text here than on line {lines[query_id]} "
            f"({known!r:.60}); give each query its own id",
        )
    lines.setdefault(query_id, number)
    queries[query_id] = text


def _columns_error(path: Path | str, number: int, expected: str, got: int) -> DataFormatError:
    return format_error(path, number, f"expected {expected}, got {got}{pandas_index_hint(path)}")


def _int_field(value: str, name: str, path: Path | str, number: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise format_error(path, number, f"{name} must be an integer, got {value!r}") from None


def _float_field(value: str, name: str, path: Path | str, number: int) -> float:
    try:
        parsed = float(value)
    except ValueError:
        raise format_error(path, number, f"{name} must be a number, got {value!r}") from None
    if math.isnan(parsed):  # compares false with every score: the whole query sorted wrong
        raise format_error(
            path,
            number,
            f"{name} must be a number, got {value!r}, which no ranking can place; "
            "give the document a score (e.g. the lowest of its query)",
        )
    return parsed


@reads_pipes_once
def load_trec_qrels(path: Path | str) -> Qrels:
    """TREC qrels: ``qid iteration docid relevance`` per line (whitespace separated)."""
    qrels: Qrels = {}
    lines: dict[tuple[str, str], int] = {}
    for number, line in numbered_lines(path):
        fields = line.split()
        if len(fields) != 4:
            raise _columns_error(path, number, "4 columns 'qid 0 docid relevance'", len(fields))
        query_id, _iteration, doc_id, grade = fields
        grade_value = _int_field(grade, "relevance", path, number)
        _judge(qrels, lines, (query_id, doc_id), grade_value, path, number)
    return qrels


@reads_pipes_once
def load_trec_run(path: Path | str, name: str | None = None) -> Run:
    """TREC run: ``qid Q0 docid rank score tag``.

    Each query's documents are ordered by score (highest first), ties by document id from the
    last in byte order to the first: how trec_eval reads a run (it ignores the rank column).
    ``name`` defaults to the tag of the first line.
    """
    rows: dict[str, list[tuple[float, int, str]]] = {}
    seen: set[tuple[str, str]] = set()
    tag = name
    for number, line in numbered_lines(path):
        fields = line.split()
        if len(fields) != 6:
            raise _columns_error(
                path, number, "6 columns 'qid Q0 docid rank score tag'", len(fields)
            )
        query_id, _q0, doc_id, rank, score, run_tag = fields
        if (query_id, doc_id) in seen:
            raise format_error(path, number, f"document {doc_id!r} listed twice for {query_id!r}")
        seen.add((query_id, doc_id))
        tag = tag or run_tag
        rows.setdefault(query_id, []).append(
            (
                _float_field(score, "score", path, number),
                _int_field(rank, "rank", path, number),
                doc_id,
            )
        )
    rankings = {
        qid: [ScoredDoc(doc_id=d, score=s) for s, _r, d in _trec_eval_order(entries)]
        for qid, entries in rows.items()
    }
    return Run(name=tag or Path(path).name, rankings=rankings)


def _trec_eval_order(entries: list[tuple[float, int, str]]) -> list[tuple[float, int, str]]:
    by_id = sorted(entries, key=lambda entry: entry[2], reverse=True)
    # Scores compared as trec_eval keeps them, 32-bit floats: 0.30000001 and 0.3 are a tie.
    return sorted(by_id, key=lambda entry: -float(np.float32(entry[0])))  # stable


def write_trec_run(run: Run, path: Path | str, tag: str | None = None) -> Path:
    """Write ``run`` as a TREC run file (rank = list position, 1-based); returns the path."""
    path = require_path(path, "write_trec_run(path)")
    if path.is_dir():
        raise InvalidInputError(f"{path} is a folder; pass the path of the run file to write")
    rankings = require_run(run)
    # Check every id before opening the file, so a bad id leaves no half-written run behind.
    for query_id, ranking in rankings.items():
        _check_trec_ids(query_id, ranking)
    run_tag = re.sub(r"\s+", "_", tag or run.name)
    lines = [
        f"{query_id} Q0 {doc.doc_id} {rank} {score!r} {run_tag}\n"
        for query_id, ranking in rankings.items()
        for rank, (doc, score) in enumerate(
            zip(ranking, _decreasing_scores(query_id, ranking), strict=True), start=1
        )
    ]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A cut-short run file reads as a run with fewer hits: it is written whole or not at
        # all (a full disk, Ctrl-C, SIGTERM), through links and into pipes and devices.
        with written_whole(path) as partial, partial.open("w", encoding="utf-8") as out:
            out.writelines(lines)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # The machine's (exit 3, "the disk is full"), not the path given; named.
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise InvalidInputError(
            f"{path}: cannot write the run file ({exc.strerror or exc}); "
            "pass a file path in a folder you can write to"
        ) from exc
    return path


def _decreasing_scores(query_id: str, ranking: list[ScoredDoc]) -> list[float]:
    """The run's scores, made strictly decreasing in list order as trec_eval sees them.

    trec_eval, pytrec_eval and ir-measures order a run file by score and break ties by doc id,
    so tied BM25 scores (or scores that disagree with the given ranks) would be re-evaluated
    in another order than the one semrank measured. A score that does not fall below the one
    before it becomes the next value below that one: every other score is written exactly as
    the system gave it, and the nudged ones stay within a rounding error of theirs (rank-derived
    scores would reproduce the order too, but lose the scores that fusion and reading need).
    trec_eval keeps scores as 32-bit floats, so "below" is judged, and nudged, at that precision.
    """
    import numpy as np

    scores: list[float] = []
    previous = np.float32(np.inf)
    with np.errstate(over="ignore"):  # 1e300 is +inf to trec_eval too: nudged like a tie
        for doc in ranking:
            score = float(doc.score)
            if not np.float32(score) < previous:  # a tie, a rise, or NaN
                score = float(np.nextafter(previous, np.float32(-np.inf)))
            if np.float32(score) == previous:  # previous is -inf: nothing lies below it
                raise InvalidInputError(
                    f"query {query_id!r}: document {doc.doc_id!r} follows a score of -inf, so "
                    "no run file score can keep the ranking's order; give finite scores"
                )
            previous = np.float32(score)
            scores.append(score)
    return scores


def check_writable_as_runs(lists: Sequence[CandidateList]) -> None:
    """What ``write_trec_run`` would refuse, checked on the first stage before any re-ranking
    (it was found after minutes of it, and the results went with it): ids a run file cannot
    hold, and a -inf score followed by other hits. Re-ranked runs hold the same ids, and finite
    scores."""
    for candidates in lists:
        ranking = [ScoredDoc(doc_id=hit.doc_id, score=hit.score) for hit in candidates.hits]
        _check_trec_ids(candidates.query_id, ranking)
        _decreasing_scores(candidates.query_id, ranking)


def _check_trec_ids(query_id: str, ranking: Sequence[ScoredDoc]) -> None:
    _check_trec_id(query_id, "query")
    for doc in ranking:
        _check_trec_id(doc.doc_id, f"document (query {query_id!r})")


def _check_trec_id(value: str, kind: str) -> None:
    # Run files are whitespace-separated columns: an empty id or one with a space would shift
    # the columns, and the file would be read back as something else or not at all.
    if not value or any(char.isspace() for char in value):
        raise InvalidInputError(
            f"{kind} id {value!r} is empty or contains whitespace, which a TREC run file "
            "cannot hold; rename the id (e.g. replace spaces with '_')"
        )


@reads_pipes_once
def load_trec_topics(path: Path | str, topic_field: TopicField = "title") -> Queries:
    """TREC topics, either SGML (``<top><num>...<title>...</top>``) or TSV ``qid<TAB>text``."""
    # Checked before reading, so a wrong field fails the same way for SGML and TSV files.
    if topic_field not in get_args(TopicField):
        allowed = ", ".join(repr(name) for name in get_args(TopicField))
        raise InvalidInputError(f"topic_field must be one of {allowed}, got {topic_field!r}")
    text = read_text(path)
    if text.lstrip().startswith("<"):
        return _parse_sgml_topics(text, path, topic_field)
    return _parse_tsv_topics(path)


def _parse_tsv_topics(path: Path | str) -> Queries:
    queries: Queries = {}
    lines: dict[str, int] = {}
    for number, line in numbered_lines(path):
        query_id, tab, query = line.partition("\t")
        if not tab or not query_id.strip() or not query.strip():
            raise format_error(
                path, number, f"expected 'query-id<TAB>query text'{pandas_index_hint(path)}"
            )
        _add_query(queries, lines, query_id.strip(), query.strip(), path, number)
    return queries


_TOP = re.compile(r"<top>(.*?)</top>", re.IGNORECASE | re.DOTALL)
_NUM = re.compile(r"<num>\s*(?:Number:)?\s*([^<\s]+)", re.IGNORECASE)
_FIELD_PREFIX = {"title": r"(?:Topic:)?", "desc": r"(?:Description:)?"}


def _parse_sgml_topics(text: str, path: Path | str, topic_field: TopicField) -> Queries:
    opened, closed = len(re.findall(r"<top>", text, re.I)), len(re.findall(r"</top>", text, re.I))
    if opened != closed:
        raise format_error(path, None, f"{opened} <top> tags but {closed} </top> tags")
    pattern = re.compile(
        rf"<{topic_field}>\s*{_FIELD_PREFIX[topic_field]}(.*?)(?=<|\Z)", re.IGNORECASE | re.DOTALL
    )
    queries: Queries = {}
    lines: dict[str, int] = {}
    for match in _TOP.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        number = _NUM.search(match.group(1))
        body = pattern.search(match.group(1))
        if number is None:
            raise format_error(path, line, "topic without a <num> tag")
        query = " ".join(body.group(1).split()) if body else ""
        if not query:
            raise format_error(path, line, f"topic {number.group(1)} has no <{topic_field}> text")
        _add_query(queries, lines, number.group(1), query, path, line)
    if not queries:
        raise format_error(path, None, "no <top> ... </top> topics found")
    return queries


# --------------------------------------------------------------------------- auto-detection


def _first_line(path: Path | str) -> str:
    for _number, line in numbered_lines(path):
        return line
    raise format_error(path, None, "file is empty")


@reads_pipes_once
def load_queries(path: Path | str) -> Queries:
    """Queries from BEIR ``queries.jsonl``, TREC SGML topics or ``qid<TAB>text`` (detected)."""
    if _first_line(path).lstrip().startswith("{"):
        return load_beir_queries(path)
    return load_trec_topics(path)


@reads_pipes_once
def load_qrels(path: Path | str) -> Qrels:
    """Qrels in BEIR TSV (3 columns, optional header) or TREC (4 columns) format (detected)."""
    if len(_first_line(path).split()) == 3:
        return load_beir_qrels(path)
    return load_trec_qrels(path)


# --------------------------------------------------------------------------- candidate lists


def load_candidates(path: Path | str) -> list[CandidateList]:
    """Candidate lists: ``[{"query", "hits": [{"qid", "docid", "rank", "score", "content"}]}]``.

    Hits are ordered by their ``rank``. The query id comes from the hits' ``qid`` (or a
    top-level ``qid``); an entry with neither (no hits) is skipped since it ranks nothing.
    """
    text = read_text(path)
    try:
        entries = loads_json(text)
    except UnreadableJSONError as exc:  # found with no place in the text
        raise format_error(path, None, f"not valid JSON ({exc.msg})") from exc
    except json.JSONDecodeError as exc:
        raise format_error(
            path, exc.lineno, f"not valid JSON ({exc.msg}, column {exc.colno}){_not_a_list(text)}"
        ) from exc
    if not isinstance(entries, list):
        raise format_error(path, None, "expected a JSON list of {query, hits} objects")
    lists: list[CandidateList] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        parsed = _candidate_entry(entry, f"{path}: query #{index}")
        if parsed is None:
            continue
        if parsed.query_id in seen:
            raise DataFormatError(f"{path}: query #{index}: query id {parsed.query_id!r} repeats")
        seen.add(parsed.query_id)
        lists.append(parsed)
    return lists


def _not_a_list(text: str) -> str:
    """What the file looks like instead of a JSON list, and what to do (a TREC run, JSONL)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    if len(first.split()) == 6 and not first.lstrip().startswith(("[", "{")):
        return (
            "; it looks like a TREC run (qid Q0 docid rank score tag), which holds no texts to "
            "re-rank: give candidate lists with their texts, or search an index with --index "
            "(--retriever) to make them"
        )
    if first.lstrip().startswith("{"):
        return "; it looks like JSON Lines: put the {query, hits} objects in one JSON list"
    return ""


def _candidate_entry(entry: object, where: str) -> CandidateList | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("query"), str):
        raise DataFormatError(f"{where}: expected an object with a string 'query'")
    raw_hits = entry.get("hits")
    if not isinstance(raw_hits, list):
        raise DataFormatError(f"{where}: 'hits' must be a list")
    hits = [_candidate_hit(hit, f"{where} hit #{i}") for i, hit in enumerate(raw_hits)]
    query_ids = {qid for qid, _hit in hits}
    if "qid" in entry:
        query_ids.add(_candidate_id(entry, "qid", where))
    if len(query_ids) > 1:
        raise DataFormatError(f"{where}: hits carry different qids {sorted(query_ids)}")
    if not query_ids:
        return None
    # Refused here: the re-ranker would refuse it later without naming this file.
    check_query_text(entry["query"], f"{where} (qid {next(iter(query_ids))!r}): 'query'")
    docs = [hit for _qid, hit in hits]
    if len({hit.doc_id for hit in docs}) != len(docs):
        ids = [hit.doc_id for hit in docs]
        twice = next(doc_id for doc_id in ids if ids.count(doc_id) > 1)
        qid = next(iter(query_ids))
        raise DataFormatError(f"{where} (qid {qid!r}): docid {twice!r} appears twice in 'hits'")
    ordered = tuple(sorted(docs, key=lambda hit: hit.rank))
    return CandidateList(query_id=query_ids.pop(), query=entry["query"], hits=ordered)


def _candidate_hit(hit: object, where: str) -> tuple[str, Candidate]:
    if not isinstance(hit, dict):
        raise DataFormatError(f"{where}: expected an object")
    missing = [key for key in ("qid", "docid", "rank", "score", "content") if key not in hit]
    if missing:
        raise DataFormatError(f"{where}: missing {', '.join(missing)}")
    if not isinstance(hit["content"], str):
        raise DataFormatError(f"{where}: 'content' must be a string")
    # No coercion: int(1.9) or int(True) would silently reorder the list.
    if not is_int(hit["rank"], at_least=1):
        raise DataFormatError(
            f"{where}: 'rank' must be an integer >= 1, got {hit['rank']!r}; "
            "write the 1-based position in the first-stage ranking"
        )
    try:
        score = float(hit["score"])
    except (TypeError, ValueError, OverflowError) as exc:  # overflow: a 400-digit integer
        raise DataFormatError(f"{where}: bad 'score' ({exc})") from exc
    candidate = Candidate(
        doc_id=_candidate_id(hit, "docid", where),
        rank=int(hit["rank"]),
        score=score,
        text=hit["content"],
    )
    require_unicode(candidate.text, f"{where} (docid {candidate.doc_id!r}): 'content'")
    return _candidate_id(hit, "qid", where), candidate


def check_query_text(text: str, where: str) -> None:
    """A query the re-ranker can read: visible text (U+200B alone is none), valid Unicode."""
    said = blank_kind(text)
    if said is not None:
        raise DataFormatError(f"{where} is {said}; give the query text")
    require_unicode(text, where)


def _candidate_id(record: Mapping[str, Any], key: str, where: str) -> str:
    """A query or document id: a string or an integer (``str(None)`` would match nothing)."""
    value = record[key]
    if is_int(value):
        return str(value)
    if not isinstance(value, str) or not value:
        raise DataFormatError(
            f"{where}: {key!r} must be a non-empty string or an integer, got {value!r}"
        )
    return value


def candidates_to_run(candidates: Sequence[CandidateList], name: str = "first_stage") -> Run:
    """The first-stage run the candidate lists encode (order = given rank)."""
    hint = "load them with load_candidates(path)"
    require_collection(candidates, expected="candidates must be a list of CandidateList", hint=hint)
    rankings: dict[str, list[ScoredDoc]] = {}
    positions: dict[str, int] = {}
    for position, entry in enumerate(candidates):
        if not isinstance(entry, CandidateList):
            raise InvalidInputError(
                f"candidates[{position}] must be a CandidateList, got {type(entry).__name__} "
                f"({entry!r:.60}); {hint}"
            )
        if entry.query_id in positions:
            # Keeping either list would silently drop the other's documents from the run.
            raise InvalidInputError(
                f"query id {entry.query_id!r} has two candidate lists (candidates"
                f"[{positions[entry.query_id]}] and [{position}]); give each query one list"
            )
        positions[entry.query_id] = position
        rankings[entry.query_id] = [_scored_hit(hit, entry.query_id) for hit in entry.hits]
    return Run(name=name, rankings=rankings)


def _scored_hit(hit: object, query_id: str) -> ScoredDoc:
    if not isinstance(hit, Candidate):
        raise InvalidInputError(
            f"the hits of query {query_id!r} must be Candidate objects, got "
            f"{type(hit).__name__} ({hit!r:.60}); load them with load_candidates(path)"
        )
    return ScoredDoc(doc_id=hit.doc_id, score=hit.score)


# --------------------------------------------------------------------------- run checks

_RANKINGS_SHAPE = "{query_id: [ScoredDoc(doc_id=..., score=...), ...]} (best first)"


def id_string(value: object, what: str) -> str:
    """A query or document id as a string. Integer ids (numpy's too) become the string a run
    or qrels file would hold; pytrec_eval takes string ids only, and 1 would never match "1"."""
    if isinstance(value, str):
        return value
    if is_int(value):
        return str(int(value))  # type: ignore[call-overload]
    raise InvalidInputError(
        f"{what} must be a string (or an integer), got {type(value).__name__} ({value!r:.60})"
    )


def keyed_by_id_text(
    items: Mapping[Any, T], what: str, twice: Callable[[str, object], str]
) -> dict[str, T]:
    """``items`` keyed by ``id_string`` of their keys; two keys with the same text (1 and "1")
    would share one entry, so they are refused with the message ``twice(id, raw key)``."""
    keyed: dict[str, T] = {}
    for raw_id, value in items.items():
        key = id_string(raw_id, what)
        if key in keyed:
            raise InvalidInputError(twice(key, raw_id))
        keyed[key] = value
    return keyed


def checked_rankings(rankings: object) -> dict[str, list[ScoredDoc]]:
    """``rankings`` as ``{query id: [ScoredDoc, ...]}`` with string ids; anything else (a list
    of pairs, dicts instead of ScoredDoc, a document listed twice) is refused by name."""
    if not isinstance(rankings, Mapping):
        raise InvalidInputError(
            f"Run rankings must be a dict {_RANKINGS_SHAPE}, got {type(rankings).__name__} "
            f"({rankings!r:.60})"
        )
    keyed = keyed_by_id_text(
        rankings,
        "a query id of Run rankings",
        lambda query_id, raw: (
            f"Run rankings hold query {query_id!r} twice (as {raw!r} and as "
            "another id with the same text); give each query one ranking"
        ),
    )
    return {query_id: _checked_ranking(query_id, ranking) for query_id, ranking in keyed.items()}


def _checked_ranking(query_id: str, ranking: object) -> list[ScoredDoc]:
    if isinstance(ranking, str | bytes) or not isinstance(ranking, Sequence):
        raise InvalidInputError(
            f"Run rankings[{query_id!r}] must be a list of ScoredDoc, got "
            f"{type(ranking).__name__} ({ranking!r:.60}); rankings are {_RANKINGS_SHAPE}"
        )
    checked: list[ScoredDoc] = []
    first: dict[str, int] = {}
    for position, doc in enumerate(ranking):
        if not isinstance(doc, ScoredDoc):
            raise InvalidInputError(
                f"Run rankings[{query_id!r}][{position}] must be a ScoredDoc(doc_id=..., "
                f"score=...), got {type(doc).__name__} ({doc!r:.60})"
            )
        doc_id = id_string(doc.doc_id, f"the doc id at Run rankings[{query_id!r}][{position}]")
        if doc_id in first:
            # Evaluation keys documents by id, so one of the two positions would be dropped.
            raise InvalidInputError(
                f"query {query_id!r} lists document {doc_id!r} twice (positions "
                f"{first[doc_id]} and {position}); keep each document once, at its best rank"
            )
        first[doc_id] = position
        checked.append(doc if doc_id is doc.doc_id else ScoredDoc(doc_id=doc_id, score=doc.score))
    return checked


def require_run(run: object) -> dict[str, list[ScoredDoc]]:
    """The checked rankings of ``run``, which must be a ``Run``. Checked again here although
    ``Run`` checks itself: its rankings dict can be changed after it was built."""
    if not isinstance(run, Run):
        raise InvalidInputError(
            f"run must be a semrank.eval.Run (see load_trec_run, candidates_to_run), got "
            f"{type(run).__name__}"
        )
    return checked_rankings(run.rankings)
