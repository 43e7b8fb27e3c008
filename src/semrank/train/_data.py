"""Training data: one in-memory shape for every source format.

A ``Collection`` is a pool of passage texts plus query groups that point into the pool by index
(positives, and negatives where the source labels them). Mining and teacher scoring then work on
any source the same way. Readers exist for plain JSONL pairs, BEIR collections with qrels and the
four training sets under ``../shared/data/train``.
"""

from __future__ import annotations

import difflib
import json
import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semrank._checks import is_finite_number, is_int, loads_json, require_unicode
from semrank._files import file_problem, numbered_lines
from semrank.errors import DataFormatError
from semrank.eval.loaders import (
    BEIR_QUERY_FILES,
    first_existing,
    load_beir_corpus,
    load_beir_queries,
    load_qrels,
)

log = logging.getLogger("semrank.train")

_SPEC_FORMAT = "PATH[,weight=W][,limit=N][,name=X][,corpus=FILE]"


@dataclass(kw_only=True)
class QueryGroup:
    """One training query: indices into its collection's pool."""

    query: str
    positive_ids: list[int]
    negative_ids: list[int] = field(default_factory=list)


@dataclass(kw_only=True)
class Collection:
    """A passage pool and the query groups that refer to it."""

    name: str
    passages: list[str]
    groups: list[QueryGroup]
    weight: float = 1.0


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """One ``--data`` value: ``PATH[,weight=W][,limit=N][,name=X][,corpus=FILE]``.

    ``corpus`` names unjudged passages (JSONL of ``{text, title?}``, BEIR's corpus format) that
    join the pool, so negatives are mined from a user's whole collection and not only from the
    passages their judgments mention.
    """

    path: Path
    weight: float = 1.0
    limit: int | None = None
    name: str | None = None
    corpus: Path | None = None

    def __post_init__(self) -> None:
        # Paths given as text are paths (DataSpec(path="pairs.jsonl") failed on .name).
        for key in ("path", "corpus"):
            if isinstance(getattr(self, key), str):
                object.__setattr__(self, key, Path(getattr(self, key)))
        # 0, negative or NaN weights would never draw the source (or break the draw for all);
        # a limit of 0 or less would train on nothing.
        if not is_finite_number(self.weight) or float(self.weight) <= 0:
            raise DataFormatError(
                f"--data {str(self.path)!r}: weight must be a finite number > 0, got "
                f"{self.weight!r}; use e.g. weight=0.5 (leave a source out instead of weight 0)"
            )
        if self.limit is not None and not is_int(self.limit, at_least=1):
            raise DataFormatError(
                f"--data {str(self.path)!r}: limit must be a whole number >= 1, got "
                f"{self.limit!r}; leave it out to use all the data"
            )
        if self.name is not None and not (isinstance(self.name, str) and self.name.strip()):
            raise DataFormatError(
                f"--data {str(self.path)!r}: name must be a non-empty text, got {self.name!r}"
            )

    @property
    def source_name(self) -> str:
        """The name the source goes by (``--val-source``, logs, caches)."""
        return self.name or self.path.name.split(".")[0]

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        path, *options = text.split(",")
        if not path.strip():
            raise DataFormatError(f"--data {text!r} has no path; use {_SPEC_FORMAT}")
        values: dict[str, str] = {}
        for option in options:
            key, sep, value = option.partition("=")
            if not sep or key not in {"weight", "limit", "name", "corpus"}:
                raise DataFormatError(
                    f"bad --data option {option!r} in {text!r}; use {_SPEC_FORMAT}"
                )
            if key in values:
                raise DataFormatError(f"--data {text!r} gives {key} twice; give it once")
            if not value.strip():
                raise DataFormatError(f"--data {text!r}: {key}= needs a value; use {_SPEC_FORMAT}")
            values[key] = value
        try:
            weight = float(values.get("weight", 1.0))
            limit = int(values["limit"]) if "limit" in values else None
        except ValueError:
            raise DataFormatError(
                f"--data {text!r}: weight must be a number and limit a whole number, "
                "e.g. data.jsonl,weight=0.5,limit=1000"
            ) from None
        return cls(
            path=Path(path).expanduser(),
            weight=weight,
            limit=limit,
            name=values.get("name"),
            corpus=Path(values["corpus"]).expanduser() if "corpus" in values else None,
        )


class _Pool:
    """Deduplicating passage pool (the same text gets one index)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, text: str) -> int:
        text = text.strip()
        if text not in self._index:
            self._index[text] = len(self.texts)
            self.texts.append(text)
        return self._index[text]


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield JSON objects of a JSONL file, naming the line when one is broken."""
    for _number, row in iter_numbered_jsonl(path):
        yield row


def iter_numbered_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, JSON value) of every non-blank line, plain or gzip (by content), a
    byte-order mark skipped: errors about a row, its bytes or its gzip stream name the line."""
    for number, line in numbered_lines(path):
        try:
            value = loads_json(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        yield number, value


def _sample(items: list[Any], limit: int | None, seed: int) -> list[Any]:
    if limit is None or limit >= len(items):
        return items
    return random.Random(seed).sample(items, limit)


def _texts(value: Any, where: str) -> list[str]:
    """A list of non-empty passage texts (a lone string is one text, not its letters)."""
    if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
        raise DataFormatError(f"{where} must be a list of non-empty texts, got {value!r:.80}")
    return value


_PAIR_KEYS = ("query", "positive", "positives", "negative", "negatives")
_ID_OR_SCORE = ("_id", "_ids", "_score", "_scores")  # columns that ride along with the labels


def _pair_row(path: Path, number: int, row: Any) -> tuple[str, list[str], list[str]]:
    """One checked ``{query, positive | positives, negative? | negatives?}`` row (the singular
    forms are sentence-transformers' triplet columns)."""
    where = f"{path}:{number}"
    if (
        not isinstance(row, dict)
        or "query" not in row
        or not ({"positive", "positives"} & set(row))
    ):
        got = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise DataFormatError(f"{where} needs 'query' and 'positive' or 'positives'; got {got}")
    require_unicode(row, where)  # a lone surrogate crashed the data digest with a traceback
    query = row["query"]
    if not isinstance(query, str) or not query.strip():
        raise DataFormatError(f"{where}: 'query' must be a non-empty text, got {query!r:.80}")
    positives = _texts(row.get("positives", []), f"{where}: 'positives'")
    if "positive" in row:
        positive = row["positive"]
        if not isinstance(positive, str) or not positive.strip():
            raise DataFormatError(
                f"{where}: 'positive' must be a non-empty text, got {positive!r:.80}"
            )
        positives = [positive, *positives]
    if not positives:
        raise DataFormatError(f"{where}: 'positives' is empty; give at least one positive passage")
    _refuse_misspelt_keys(row, where)
    negatives = _texts(row.get("negatives") or [], f"{where}: 'negatives'")
    # A null negative is none: pandas' to_json writes a row's missing value (NaN) as null, as
    # 'negatives: null' already reads.
    for key in _numbered_negatives(row):  # sentence-transformers' n-tuples: negative_1, ...
        negative = row[key]
        if negative is None:
            continue
        if not isinstance(negative, str) or not negative.strip():
            raise DataFormatError(
                f"{where}: {key!r} must be a non-empty text, got {negative!r:.80}"
            )
        negatives.append(negative)
    if row.get("negative") is not None:
        negative = row["negative"]
        if not isinstance(negative, str) or not negative.strip():
            use = " (use 'negatives' for a list)" if isinstance(negative, list) else ""
            raise DataFormatError(
                f"{where}: 'negative' must be a non-empty text{use}, got {negative!r:.80}"
            )
        negatives = [negative, *negatives]
    both = {p.strip() for p in positives} & {n.strip() for n in negatives}
    if both:
        raise DataFormatError(
            f"{where}: {sorted(both)[0]!r:.80} is both a positive and a negative; keep it in one"
        )
    return query, positives, negatives


# Other names for the labels ("hard_negatives", "neg", "negative_passages"): passages under them
# were dropped; metadata such as "pos_tag" or "neg_count" rides along.
_LABEL_LIKE = re.compile(
    r"(hard_)?(neg|pos|negative|positive)s?(_(passages|docs|documents|texts))?"
)


def _holds_texts(value: object) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)
    )


def _numbered_negatives(row: dict[str, Any]) -> list[str]:
    """``negative_1``, ``negative_2``... in number order (sentence-transformers' mined n-tuples)."""
    numbered = [k for k in row if isinstance(k, str) and re.fullmatch(r"negative_\d+", k)]
    return sorted(numbered, key=lambda key: int(key.rpartition("_")[2]))


def _refuse_misspelt_keys(row: dict[str, Any], where: str) -> None:
    """Other columns (ids, scores) may ride along; one that reads like a label would be
    silently dropped, with its passages ("hard_negatives", "neg", "negative_passages")."""
    numbered = set(_numbered_negatives(row))
    for key in row:
        lowered = str(key).lower()
        if key in _PAIR_KEYS or key in numbered or lowered.endswith(_ID_OR_SCORE):
            continue
        near = difflib.get_close_matches(lowered, _PAIR_KEYS, n=1, cutoff=0.8)
        if not near and _LABEL_LIKE.fullmatch(lowered) and _holds_texts(row[key]):
            near = ["negatives" if "neg" in lowered else "positives"]
        if near:  # not "query_id" or "neg_scores", which may ride along
            raise DataFormatError(
                f"{where}: unknown key {key!r}; did you mean {near[0]!r}? The labels are "
                f"{', '.join(_PAIR_KEYS)} (and negative_1, negative_2, ...)"
            )


def load_pairs_jsonl(path: Path, *, name: str, limit: int | None, seed: int) -> Collection:
    """``{query, positive | positives, negatives?}`` per line (every row checked, then sampled).

    Rows with the same query are one query group (one row per judged pair is the common
    layout): split as one, so validation holds no query that is trained on. A passage that is
    a positive of the query in one row and a negative in another counts as positive."""
    merged: dict[str, tuple[str, dict[str, None], dict[str, None]]] = {}
    for number, row in iter_numbered_jsonl(path):
        query, positives, negatives = _pair_row(path, number, row)
        _, known_positives, known_negatives = merged.setdefault(query.strip(), (query, {}, {}))
        known_positives.update(dict.fromkeys(p.strip() for p in positives))
        known_negatives.update(dict.fromkeys(n.strip() for n in negatives))
    pool, groups, contradicted = _Pool(), [], 0
    for query, positives, negatives in _sample(list(merged.values()), limit, seed):
        kept = [n for n in negatives if n not in positives]
        contradicted += len(negatives) - len(kept)
        groups.append(
            QueryGroup(
                query=query,
                positive_ids=[pool.add(p) for p in positives],
                negative_ids=[pool.add(n) for n in kept],
            )
        )
    if contradicted:
        log.warning(
            "%s: %d passages are a negative of a query in one row and its positive in another; "
            "they count as positives",
            path,
            contradicted,
        )
    return Collection(name=name, passages=pool.texts, groups=groups)


def load_beir(root: Path, *, split: str, name: str, limit: int | None, seed: int) -> Collection:
    """BEIR layout: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv (graded, >0 relevant)."""
    corpus_path = next(
        (root / f for f in ("corpus.jsonl.gz", "corpus.jsonl") if (root / f).exists()), None
    )
    if corpus_path is None:
        raise DataFormatError(f"BEIR folder {str(root)!r} has no corpus.jsonl[.gz]")
    # The evaluation loader (BEIR's 3 columns or TREC's 4): a malformed or contradictory line is
    # an error naming it, not skipped.
    qrels = load_qrels(root / "qrels" / f"{split}.tsv")
    # The evaluation loaders: a duplicate id (whose later text replaced a judged one, left in
    # the pool as a negative of its own query) is an error naming its line, as for `eval`.
    queries = load_beir_queries(first_existing(root, BEIR_QUERY_FILES))
    corpus = load_beir_corpus(corpus_path)
    _note_unknown_ids(root, qrels, set(queries), set(corpus))
    usable = sorted(q for q in qrels if q in queries and any(rel > 0 for rel in qrels[q].values()))
    chosen = _sample(usable, limit, seed)  # the limit counts queries that can be trained on
    _refuse_blank(root, chosen, queries, qrels, corpus)
    judged = {d for q in chosen for d in qrels[q]}
    others = [doc for doc_id, doc in corpus.items() if doc_id not in judged]
    kept = [doc for doc_id, doc in corpus.items() if doc_id in judged]  # in the file's order
    documents = kept + _sample(others, limit, seed)
    pool, doc_index = _Pool(), {}
    for doc in documents:
        text = f"{doc.title}. {doc.text}" if doc.title else doc.text
        require_unicode(text, f"{corpus_path}: document {doc.doc_id!r}")
        doc_index[doc.doc_id] = pool.add(text)
    groups, contradicted = [], 0
    for qid in chosen:
        positives = [doc_index[d] for d, rel in qrels[qid].items() if rel > 0 and d in doc_index]
        negatives = [doc_index[d] for d, rel in qrels[qid].items() if rel <= 0 and d in doc_index]
        # Two documents of one text are one passage: judged 1 and 0, it was both.
        distinct = [n for n in negatives if n not in positives]
        contradicted += len(negatives) - len(distinct)
        if positives:
            groups.append(
                QueryGroup(query=queries[qid], positive_ids=positives, negative_ids=distinct)
            )
    if contradicted:
        log.warning(
            "%s: %d documents judged not relevant have the text of a relevant one of the same "
            "query; they count as positives",
            root,
            contradicted,
        )
    return Collection(name=name, passages=pool.texts, groups=groups)


def _refuse_blank(
    root: Path,
    chosen: list[str],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    corpus: dict[str, Any],
) -> None:
    """An empty query, or an empty passage judged relevant, would be trained on as it is."""
    for qid in chosen:
        if not queries[qid].strip():
            raise DataFormatError(f"{root}/queries.jsonl: query {qid!r} has no text")
        require_unicode(queries[qid], f"{root}/queries.jsonl: query {qid!r}")
        for doc_id, relevance in qrels[qid].items():
            doc = corpus.get(doc_id)
            if relevance > 0 and doc is not None and not (doc.title + doc.text).strip():
                raise DataFormatError(
                    f"{root}: document {doc_id!r}, judged relevant to query {qid!r}, has no text"
                )


def _note_unknown_ids(root: Path, qrels: dict[str, dict[str, int]], queries: set[str],
                      documents: set[str]) -> None:  # fmt: skip
    """Judgments naming a query or document the folder lacks cannot be trained on: say so."""
    lost_queries = sorted(set(qrels) - queries)
    lost_documents = sorted({d for judged in qrels.values() for d in judged} - documents)
    if lost_queries or lost_documents:
        log.warning(
            "%s: qrels name %d queries not in queries.jsonl (%s) and %d documents not in the "
            "corpus (%s); their judgments are left out",
            root,
            len(lost_queries),
            ", ".join(lost_queries[:3]) or "-",
            len(lost_documents),
            ", ".join(lost_documents[:3]) or "-",
        )


def load_msmarco_positives(path: Path, *, name: str, limit: int | None, seed: int) -> Collection:
    """``{id, query, positive}`` (the MS MARCO dev-small positives file)."""
    rows = _sample(list(iter_jsonl(path)), limit, seed)
    pool = _Pool()
    groups = [QueryGroup(query=r["query"], positive_ids=[pool.add(r["positive"])]) for r in rows]
    return Collection(name=name, passages=pool.texts, groups=groups)


def load_squad(root: Path, *, name: str, limit: int | None, seed: int) -> Collection:
    """SQuAD questions with in-article BM25 negatives (``hard_neg_para_idx``).

    With ``limit``, a random set of ``limit`` paragraphs is drawn first and only questions and
    negatives inside it are kept: far fewer paragraphs to embed than sampling questions freely.
    """
    paragraphs = {
        (r["title"], r["para_idx"]): r["context"]
        for r in iter_jsonl(root / "squad11_train_paragraphs.jsonl.gz")
    }
    keys = set(_sample(sorted(paragraphs), limit, seed))
    rows = [
        r
        for r in iter_jsonl(root / "squad11_train_pairs_hn.jsonl.gz")
        if (r["title"], r["para_idx"]) in keys
    ]
    pool, groups = _Pool(), []
    for row in _sample(rows, limit, seed):
        negative_keys = [(row["title"], i) for i in row.get("hard_neg_para_idx", [])]
        groups.append(
            QueryGroup(
                query=row["question"],
                positive_ids=[pool.add(row["context"])],
                negative_ids=[pool.add(paragraphs[k]) for k in negative_keys if k in keys],
            )
        )
    return Collection(name=name, passages=pool.texts, groups=groups)


def load_medquad(path: Path, *, name: str, limit: int | None, seed: int) -> Collection:
    """MedQuAD; whole documents are sampled so that same-topic answers (hard negatives) stay."""
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for row in iter_jsonl(path):
        document = row.get("doc_id") or row.get("focus") or row["question"]  # some lack doc_id
        by_doc.setdefault(str(document), []).append(row)
    doc_ids = sorted(by_doc)
    random.Random(seed).shuffle(doc_ids)
    pool = _Pool()
    answers_of: dict[str, set[int]] = {}
    negatives_of: dict[str, set[int]] = {}
    for doc_id in doc_ids:
        if limit is not None and len(answers_of) >= limit:
            break
        rows = by_doc[doc_id]
        ids = [pool.add(r["answer"]) for r in rows]
        for row, answer_id in zip(rows, ids, strict=True):
            answers_of.setdefault(row["question"], set()).add(answer_id)
            negatives_of.setdefault(row["question"], set()).update(ids)
    groups = [
        QueryGroup(
            query=q,
            positive_ids=sorted(pos),
            negative_ids=sorted(negatives_of[q] - pos),
        )
        for q, pos in answers_of.items()
    ]
    return Collection(name=name, passages=pool.texts, groups=groups)


def load_wikiqa(path: Path, *, name: str, limit: int | None, seed: int) -> Collection:
    """WikiQA ``{question, sentence, label}``; questions without a positive are dropped."""
    labelled: dict[str, list[tuple[str, int]]] = {}
    for row in iter_jsonl(path):
        labelled.setdefault(row["question"], []).append((row["sentence"], row["label"]))
    answered = [q for q, rows in labelled.items() if any(label > 0 for _, label in rows)]
    pool, groups = _Pool(), []
    for question in _sample(answered, limit, seed):
        rows = [(pool.add(text), label) for text, label in labelled[question]]
        groups.append(
            QueryGroup(
                query=question,
                positive_ids=[i for i, label in rows if label > 0],
                negative_ids=[i for i, label in rows if label <= 0],
            )
        )
    return Collection(name=name, passages=pool.texts, groups=groups)


def load_collection(spec: DataSpec, *, seed: int = 0) -> Collection:
    """Read one ``--data`` source, recognising its format from the files it holds."""
    path, limit = spec.path, spec.limit
    name = spec.source_name
    problem = None if path.is_dir() else file_problem(path)  # a pipe is a file: <(cmd)
    if problem is not None:
        raise DataFormatError(f"training data {str(path)!r}: {problem}")
    collection = _dispatch(path, name=name, limit=limit, seed=seed)
    if not collection.groups:
        raise DataFormatError(f"training data {str(path)!r} has no query with a positive passage")
    collection.weight = spec.weight
    if spec.corpus is not None:
        _add_corpus(collection, Path(spec.corpus))
    return collection


def _add_corpus(collection: Collection, path: Path) -> None:
    """Append a corpus's passages to the pool (after the judged ones, whose indices stay)."""
    problem = file_problem(path)  # a pipe is read as a file: corpus=<(cmd)
    if problem is not None:
        raise DataFormatError(f"corpus {str(path)!r}: {problem}; give a JSONL file")
    seen = set(collection.passages)
    for number, row in iter_numbered_jsonl(path):
        text = row.get("text") if isinstance(row, dict) else None
        title = row.get("title") if isinstance(row, dict) else ""
        title = "" if title is None else str(title) if is_int(title) else title  # a year: 1984
        if not isinstance(title, str):
            raise DataFormatError(f"{path}:{number}: 'title' must be a string, got {title!r:.60}")
        # A title alone is a passage (BEIR corpora hold such rows).
        if not isinstance(text, str) or not (text.strip() or title.strip()):
            raise DataFormatError(f"{path}:{number}: needs a non-empty 'text' field")
        require_unicode(row, f"{path}:{number}")
        passage = (f"{title}. {text}" if title and text.strip() else title or text).strip()
        if passage not in seen:
            seen.add(passage)
            collection.passages.append(passage)


def _dispatch(path: Path, *, name: str, limit: int | None, seed: int) -> Collection:
    if not path.is_dir():  # a file or a pipe (load_collection refused the rest)
        return load_pairs_jsonl(path, name=name, limit=limit, seed=seed)
    known = {
        "msmarco_devsmall_pos.jsonl.gz": load_msmarco_positives,
        "medquad_pairs.jsonl.gz": load_medquad,
        "wikiqa_train.jsonl.gz": load_wikiqa,
    }
    try:
        for filename, reader in known.items():
            if (path / filename).exists():
                return reader(path / filename, name=name, limit=limit, seed=seed)
        if (path / "squad11_train_pairs_hn.jsonl.gz").exists():
            return load_squad(path, name=name, limit=limit, seed=seed)
    except (KeyError, TypeError, AttributeError) as exc:  # rows of another shape than the set's
        raise DataFormatError(
            f"{str(path)!r} is named like one of the shared training sets (see "
            f"../shared/data/train/README.md) but a row of it does not fit that set's shape "
            f"({type(exc).__name__}: {exc}); give your own data as JSONL of "
            "{query, positive|positives, negatives?} instead"
        ) from exc
    has_queries = any((path / name).is_file() for name in BEIR_QUERY_FILES)
    if (path / "qrels" / "train.tsv").exists() and has_queries:
        return load_beir(path, split="train", name=name, limit=limit, seed=seed)
    raise DataFormatError(
        f"cannot tell the format of {str(path)!r}: expected a JSONL file of "
        "{query, positive|positives, negatives?}, a BEIR folder with qrels/train.tsv, "
        "or one of the shared training sets"
    )
