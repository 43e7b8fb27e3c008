"""Preparing an index for re-ranking: its documents' windows embedded once, kept with it.

``prepare_index`` runs the re-ranker's bi-encoder over every stored document's windows and
stores the vectors in the index (``Store.save_prepared``); a re-ranking node then hands them to
the re-ranker (``use_prepared``) before scoring, so a search re-embeds only the query and the
windows of documents added since. See ``semrank.rerank._prepared`` for why this is exact.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semrank.errors import InvalidInputError
from semrank.pipeline._context import ScoresDocuments, load_reranker, model_ref
from semrank.pipeline._open import _is_dsn, using_index
from semrank.store import ALL_TEXT_FIELDS, LocalStore, PreparedArrays, Store, index_path
from semrank.store._base import id_list
from semrank.store._registry import AFTER_DROP, BEFORE_DROP

if TYPE_CHECKING:
    from semrank.rerank import Reranker
    from semrank.rerank._prepared import WindowTable

__all__ = ["PreparedWindows", "prepare_index", "use_prepared"]

DOCUMENTS_PER_BATCH = 64
# Extending keeps the windows of changed documents' old texts and of deleted documents: once a
# table holds this many times the rows its live documents are estimated to need, extending it
# drops them (see ``_outgrown``), so a table stays within this share of a fresh preparation's.
COMPACT_AT = 1.5


@dataclass(frozen=True, kw_only=True)
class PreparedWindows:
    """What ``prepare_index`` stored: one entry per bi-encoder of the model."""

    model: str
    windows: int  # in the stored table
    documents: int  # whose windows were planned (all, or the ones asked for)
    extended: bool = False  # the earlier table was extended with ``documents``


def prepare_index(
    index: str | Store,
    *,
    model: str | os.PathLike[str] | ScoresDocuments | None = None,
    field: str = ALL_TEXT_FIELDS,
    home: str | Path | None = None,
    ids: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[PreparedWindows]:
    """Embed the windows of every document of ``index`` with ``model``'s bi-encoder(s) (default
    model: the default re-ranker) and keep them with the index. Windows an earlier preparation
    stored are reused; ``ids`` limits the work to those documents (just added or changed) and
    keeps the earlier table's other windows; ``progress`` gets the number of documents done.

    >>> prepare_index("scifact")   # search(..., retriever="hybrid+rerank") then embeds the query
    """
    model = model_ref(model)
    with using_index(index, home) as store:
        return _prepare(store, model, field, ids, progress)


def _prepare(
    store: Store,
    model: str | ScoresDocuments | None,
    field: str,
    ids: Sequence[str] | None,
    progress: Callable[[int], None] | None,
) -> list[PreparedWindows]:
    from semrank.rerank._prepared import prepare_windows

    reranker = _reranker_for(store, model)
    store.check_field(field, purpose=" to prepare")
    extend = ids is not None
    wanted = list(dict.fromkeys(id_list(ids))) if ids is not None else store.document_ids()
    found: list[int] = []  # documents that exist (ids may name deleted or unknown ones)
    stored = {table.name: table.meta for table in store.prepared()}
    compact = extend and _outgrown(stored.values(), field, _model_name(model), len(store))
    tables = prepare_windows(
        reranker,
        _texts(store, wanted, field, found),
        previous=_previous_tables(store, field, extend=extend),
        extend=extend,
        # Every stored document's windows, planned only: the rows worth keeping.
        live=_texts(store, store.document_ids(), field, []) if compact else None,
        progress=progress,
    )
    if extend and not sum(found):
        return []  # nothing to add: the stored tables stay as they are
    for table in tables:
        name = _table_name(table, field)
        baseline = _baseline(stored.get(name, {}), table, len(store), full=not extend or compact)
        _save_table(store, table, field, _model_name(model), baseline)
    use_prepared(store, reranker)
    return [
        PreparedWindows(
            model=table.model, windows=len(table), documents=sum(found), extended=extend
        )
        for table in tables
    ]


def _reranker_for(store: Store, model: str | ScoresDocuments | None) -> Reranker:
    """The re-ranker to prepare ``store`` (one that can keep prepared windows) for."""
    from semrank.rerank import Reranker

    if not store.keeps_prepared:
        raise InvalidInputError(
            f"index {store.name!r} is kept in the {store.backend} store, which keeps no prepared "
            "windows (only the embedded local store does); searches re-rank it as before"
        )
    reranker = load_reranker(model)
    if not isinstance(reranker, Reranker):
        raise InvalidInputError(
            f"prepare needs a semrank Reranker or model name, got {type(reranker).__name__}"
        )
    return reranker


def _outgrown(
    tables: Iterable[dict[str, Any]], field: str, model_name: str | None, documents: int
) -> bool:
    """Whether a table of this model and field holds more than COMPACT_AT times the rows its
    ``documents`` are estimated to need: the rows of its last full preparation (or compaction)
    scaled by how many documents there are now. A table without that record (saved before it
    was kept) is compacted once, which records it."""
    for meta in tables:
        if meta.get("field", ALL_TEXT_FIELDS) != field or meta.get("model") != model_name:
            continue
        if "bi_encoder" not in meta:
            continue  # another kind of prepared table
        full_windows, full_documents = meta.get("full_windows"), meta.get("full_documents")
        if full_windows is None or full_documents is None:
            return True
        live_rows = full_windows * documents / full_documents if full_documents else 0
        if meta.get("windows", 0) > COMPACT_AT * live_rows:
            return True
    return False


def _baseline(
    earlier: dict[str, Any], table: WindowTable, documents: int, *, full: bool
) -> dict[str, Any]:
    """The counts ``_outgrown`` estimates the live rows by: this table's own after a full
    preparation or compaction (every row a live window), else the earlier table's."""
    if full:
        return {"full_windows": len(table), "full_documents": documents}
    return {key: earlier[key] for key in ("full_windows", "full_documents") if key in earlier}


def _save_table(
    store: Store,
    table: WindowTable,
    field: str,
    model_name: str | None,
    baseline: dict[str, Any],
) -> None:
    arrays = {"keys": table.keys, "vectors": table.vectors, "probe": table.probe}
    meta = {
        "windows": len(table),
        "field": field,
        "model": model_name,
        "bi_encoder": table.model,
        "backend": table.backend,
        **baseline,
    }
    store.save_prepared(_table_name(table, field), arrays, meta)


def _table_name(table: WindowTable, field: str) -> str:
    """One stored table per bi-encoder, field and precision: preparing for another model or
    field adds a table instead of replacing one (two models with one folder name included)."""
    probe = hashlib.sha1(np.round(table.probe, 3).tobytes()).hexdigest()[:8]
    return f"{table.model}|{field}|{table.backend}|{probe}"


def _model_name(model: str | ScoresDocuments | None) -> str | None:
    """How ``index add`` names the model to prepare new documents with again (a folder by its
    absolute path, so that it loads from wherever ``index add`` runs)."""
    if isinstance(model, str):
        return str(Path(model).resolve()) if Path(model).is_dir() else model
    if model is None:
        return None
    name = getattr(model, "name", None)
    return name if isinstance(name, str) and name else None


def _texts(store: Store, ids: list[str], field: str, found: list[int]) -> Iterator[list[str]]:
    """The texts of the documents ``ids`` in batches; ``found`` gets each batch's count."""
    for start in range(0, len(ids), DOCUMENTS_PER_BATCH):
        documents = store.get(ids[start : start + DOCUMENTS_PER_BATCH])
        # A document deleted meanwhile (or never stored) is skipped: there is nothing to prepare.
        texts = [store.rerank_text_of(doc, field) for doc in documents if doc is not None]
        found.append(len(texts))
        yield texts


def _previous_tables(store: Store, field: str, *, extend: bool) -> list[WindowTable]:
    """Tables whose windows can be reused, this field's first (a builder takes the first one of
    its model). Extending copies every row of that table, so it takes this field's only."""
    tables = _tables(store.prepared())
    same = [table for table in tables if table.field == field]
    return same if extend else same + [table for table in tables if table.field != field]


def _tables(stored: list[PreparedArrays]) -> list[WindowTable]:
    """The window tables among a store's prepared tables."""
    from semrank.rerank._prepared import WindowTable

    tables = []
    for table in stored:
        arrays = table.arrays
        if not {"keys", "vectors", "probe"} <= set(arrays):
            continue  # another kind of prepared table: not ours to read
        tables.append(
            WindowTable(
                model=str(table.meta.get("bi_encoder", table.name)),
                keys=np.asarray(arrays["keys"]),
                vectors=np.asarray(arrays["vectors"]),
                probe=np.asarray(arrays["probe"], dtype=np.float32),
                version=table.version,
                key=table.name,
                field=str(table.meta.get("field", ALL_TEXT_FIELDS)),
            )
        )
    return tables


def use_prepared(store: Store, model: ScoresDocuments) -> int:
    """Hand ``store``'s prepared windows to ``model`` (a semrank Reranker; anything else is
    left alone). Returns how many tables it took."""
    stored = store.prepared()
    if not stored:
        return 0
    # Imported only now: a search without prepared windows need not load the re-ranking code.
    from semrank.rerank import Reranker
    from semrank.rerank._prepared import use_windows

    tables = _tables(stored)
    if not tables or not isinstance(model, Reranker):
        return 0
    path = getattr(store, "path", None)
    taken = use_windows(
        model, tables, source=_windows_source(path) if path is not None else store.name
    )
    if isinstance(store, LocalStore) and store.was_dropped():
        # Dropped since they were read: the drop may have let go of the models' tables before
        # this hand-over, and would leave them mapping its deleted files.
        forget_windows_at(store.path)
        return 0
    return taken


def _windows_source(folder: Path) -> str:
    """What names an embedded index's tables in the models holding them: its folder resolved,
    so a drop naming the folder another way (relative, through a link) finds them."""
    return str(Path(folder).resolve())


def forget_prepared_windows(
    index: str, home: str | Path | None = None, *, store: str | None = None
) -> None:
    """Before ``index`` is dropped, every loaded model lets go of its prepared windows: they
    map its files, whose disk space and memory the drop would otherwise not free until the
    process ends (and which Windows cannot rename away while mapped). Run again once its
    folder is renamed away: a search already running may have handed them back in between
    (one handing them over later finds the index dropped, see ``use_prepared``)."""
    if not _is_dsn(store):  # PostgreSQL keeps no prepared windows
        forget_windows_at(index_path(index, home))


def forget_windows_at(folder: Path) -> None:
    """Every loaded model lets go of the prepared windows of the index in ``folder``."""
    # Not imported yet: no model was handed a table, and a drop need not load re-ranking code.
    if "semrank.rerank._prepared" in sys.modules:
        from semrank.rerank._prepared import forget_tables_from

        forget_tables_from(_windows_source(folder))


BEFORE_DROP.append(forget_prepared_windows)
AFTER_DROP.append(forget_prepared_windows)
