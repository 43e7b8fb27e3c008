"""First-stage retrieval from a semrank index, turned into candidate lists for evaluation.

The interface this module expects from the index side (``semrank.pipeline`` or
``semrank.store``, whichever has it first)::

    search(index: str, query: str, *, retriever: str, k: int) -> Sequence[hit]

best hit first, where a hit (object or mapping) has an id (``id`` / ``doc_id`` / ``docid``), a
``score`` and, for re-ranking, its text (``text`` / ``content`` / ``document``; a document that
is a mapping contributes its ``title`` and ``text``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from semrank.errors import BackendUnavailableError, DataFormatError
from semrank.eval.loaders import Candidate, CandidateList, Queries

SearchFunction = Callable[..., Sequence[Any]]
_SEARCH_MODULES = ("semrank.pipeline", "semrank.store")


def find_search_function() -> SearchFunction:
    """The index search function, or BackendUnavailableError while none is implemented."""
    for module_name in _SEARCH_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        search = getattr(module, "search", None)
        if callable(search):
            return search
    raise BackendUnavailableError(
        "`semrank eval --index` is not available yet: neither semrank.pipeline nor "
        "semrank.store provides search(index, query, retriever=..., k=...). "
        "Evaluate a candidate file instead: semrank eval --candidates FILE --qrels FILE"
    )


def _field(hit: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = hit.get(name) if isinstance(hit, Mapping) else getattr(hit, name, None)
        if value is not None:
            return value
    return None


def _hit_text(hit: Any) -> str:
    value = _field(hit, ("text", "content", "document"))
    if isinstance(value, Mapping):
        parts = [value.get("title"), value.get("text")]
        return "\n".join(str(part) for part in parts if part)
    return "" if value is None else str(value)


def _to_candidate(hit: Any, rank: int, where: str) -> Candidate:
    doc_id = _field(hit, ("id", "doc_id", "docid"))
    score = _field(hit, ("score", "relevance_score"))
    if doc_id is None or score is None:
        raise DataFormatError(f"{where}: search hit #{rank} has no id or no score: {hit!r}")
    return Candidate(doc_id=str(doc_id), rank=rank, score=float(score), text=_hit_text(hit))


def retrieve_candidates(
    queries: Queries,
    *,
    index: str,
    retriever: str,
    k: int,
    search: SearchFunction | None = None,
    on_query: Callable[[], None] | None = None,
) -> list[CandidateList]:
    """Run every query through the index's first stage, keeping the top ``k`` hits."""
    search = search or find_search_function()
    lists = []
    for query_id, query in queries.items():
        hits = search(index, query, retriever=retriever, k=k)
        where = f"index {index!r}, query {query_id!r}"
        candidates = tuple(_to_candidate(hit, r, where) for r, hit in enumerate(hits, start=1))
        lists.append(CandidateList(query_id=query_id, query=query, hits=candidates[:k]))
        if on_query is not None:
            on_query()
    return lists
