"""First-stage retrieval from a semrank index, turned into candidate lists for evaluation.

The index side is ``semrank.pipeline.search(index, query, *, retriever, k)``, which returns
``SearchResults`` whose ``hits`` carry ``id``, ``score`` and the stored ``document`` fields;
the document's text is what ``Store.text_of`` makes of those fields (all text fields joined),
the same text the pipeline's own re-ranker reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semrank.errors import BackendUnavailableError, DataFormatError
from semrank.eval.loaders import Candidate, CandidateList, Queries

if TYPE_CHECKING:
    from semrank.pipeline import Retriever

# search(index, query, *, retriever=..., k=...) -> SearchResults (or any iterable of hits)
SearchFunction = Callable[..., Any]
# stored document fields -> the text a re-ranker reads
TextOf = Callable[[Mapping[str, Any]], str]


def index_search(
    index: str, home: str | Path | None = None, *, kept_in: str | None = None
) -> tuple[SearchFunction, TextOf]:
    """The pipeline's search function and ``index``'s text extraction (index opened once).

    ``home`` is where the index lives (default: $SEMRANK_HOME or the XDG data directory);
    ``kept_in``: a PostgreSQL DSN holding it instead.
    """
    try:
        from semrank.pipeline import open_cached, search
    except ImportError as exc:  # pragma: no cover - only without the pipeline package
        raise BackendUnavailableError(
            f"`semrank eval --index` is not available: semrank.pipeline cannot be imported "
            f"({exc}). Evaluate a candidate file instead: semrank eval --candidates FILE"
        ) from exc
    store = open_cached(index, home, store=kept_in)  # IndexNotFoundError names those there

    def search_store(_name: str, query: str, **options: Any) -> Any:
        return search(store, query, **options)

    return search_store, lambda fields: store.text_of(dict(fields))


def _check_tree_takes_queries(retriever: str | Retriever, k: int, queries: Queries) -> None:
    """A tree that cannot take the queries (a fixed knn vector where they replace its texts) is
    refused once, as for many queries: its search's own refusal offered to leave the query
    out, which an evaluation cannot."""
    from semrank.pipeline import as_retriever, check_vectors_follow

    first = next(iter(queries.values()), None)
    check_vectors_follow(as_retriever(retriever, size=k), first, one_query=False)


def _field(hit: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = hit.get(name) if isinstance(hit, Mapping) else getattr(hit, name, None)
        if value is not None:
            return value
    return None


def _default_text(fields: Mapping[str, Any]) -> str:
    parts = (fields.get("title"), fields.get("text"))
    return "\n".join(str(part) for part in parts if part)


def _to_candidate(hit: Any, rank: int, text_of: TextOf, where: str) -> Candidate:
    doc_id = _field(hit, ("id", "doc_id", "docid"))
    score = _field(hit, ("score",))
    if doc_id is None or score is None:
        raise DataFormatError(f"{where}: search hit #{rank} has no id or no score: {hit!r}")
    document = _field(hit, ("document", "text", "content"))
    text = text_of(document) if isinstance(document, Mapping) else str(document or "")
    return Candidate(doc_id=str(doc_id), rank=rank, score=float(score), text=text)


def retrieve_candidates(
    queries: Queries,
    *,
    index: str,
    retriever: str | Retriever,
    k: int,
    search: SearchFunction | None = None,
    text_of: TextOf | None = None,
    on_query: Callable[[], None] | None = None,
    home: str | Path | None = None,
    store: str | None = None,
) -> list[CandidateList]:
    """Run every query through ``retriever`` (a name, a tree's JSON or file, or a tree) on
    ``index``, keeping the top ``k`` hits.

    ``search`` / ``text_of`` default to the pipeline's search and the index's own text fields.
    """
    if search is None:
        search, text_of = index_search(index, home, kept_in=store)
        _check_tree_takes_queries(retriever, k, queries)
    text_of = text_of or _default_text
    lists = []
    for query_id, query in queries.items():
        results = search(index, query, retriever=retriever, k=k)
        hits: Iterable[Any] = results.hits if hasattr(results, "hits") else results
        where = f"index {index!r}, query {query_id!r}"
        candidates = tuple(
            _to_candidate(hit, rank, text_of, where) for rank, hit in enumerate(hits, start=1)
        )
        lists.append(CandidateList(query_id=query_id, query=query, hits=candidates[:k]))
        if on_query is not None:
            on_query()
    return lists
