"""Document windows embedded once, ahead of search, instead of at every search.

Why: the default blend scores every window of every candidate with its bi-encoder as well as
its cross-encoder. The cross-encoder must read query and window together, but the bi-encoder
reads the window alone, so its vector depends on the document only and can be computed when the
document is stored. ``prepare_windows`` computes those vectors for a collection of texts;
``use_windows`` hands them to the re-ranker's bi-encoders, which then find a window by the digest
of its text (``semrank.runtime`` ``text_key``) instead of running the model. A window the table
does not hold (a document added or changed since, a very long query that shortens the windows)
is embedded as before: a stale table costs speed, never correctness.

A table is tied to the model that made it by a probe, the model's embedding of a fixed
sentence: a bi-encoder whose own probe embedding differs (another model, another checkpoint,
another backend or precision) does not take the table.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semrank.errors import InvalidInputError
from semrank.rerank._blend import BlendScorer
from semrank.rerank._reranker import Reranker
from semrank.runtime._keytable import KeyTable
from semrank.runtime._scorers import BiEncoderScorer, text_key

__all__ = [
    "WindowTable",
    "forget_tables_from",
    "prepare_windows",
    "use_windows",
    "window_encoders",
]

PROBE_TEXT = "semrank prepared windows: a probe sentence that identifies the embedding model."
# A table serves only the model *and precision* that made it: bf16 against fp32 embeddings of
# one model differ by about 1e-3 per component, which would move scores; reruns of one backend
# give the same probe to the last bit or nearly.
PROBE_TOLERANCE = 1e-5
EMBED_BATCH = 256  # windows per model call while preparing (the progress callback's step)

_PROBES: weakref.WeakKeyDictionary[BiEncoderScorer, np.ndarray] = weakref.WeakKeyDictionary()
_PROBES_LOCK = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class WindowTable:
    """Normalised embeddings of window texts by one bi-encoder, keyed by ``text_key``."""

    model: str  # the bi-encoder's name (its folder), for display and file names
    keys: np.ndarray  # (n, 16) uint8
    vectors: np.ndarray  # (n, dim) float32
    probe: np.ndarray  # (dim,) float32: the model's embedding of PROBE_TEXT
    version: str = ""  # where it was stored: a newer version replaces an older one
    backend: str = ""  # the backend that computed it (its precision), for display
    key: str = ""  # its name where it is stored (one per model, field and precision)
    field: str = "*"  # the document field it was prepared for

    def __len__(self) -> int:
        return len(self.keys)


def window_encoders(reranker: Reranker) -> list[tuple[str, BiEncoderScorer]]:
    """The bi-encoders inside ``reranker`` that read documents alone, with their names."""
    scorer = _unwrapped(reranker.scorer)
    if isinstance(scorer, BiEncoderScorer):
        name = Path(reranker.name).name or "bi-encoder"
        return [(name, scorer)]
    if not isinstance(scorer, BlendScorer):
        return []
    found = []
    for position, component in enumerate(scorer.components):
        inner = _unwrapped(component.scorer)
        if isinstance(inner, BiEncoderScorer):
            source = component.source.name if component.source else f"component-{position}"
            name = component.name or source
            found.append((name, inner))
    return found


def forget_windows(reranker: Reranker) -> None:
    """Everything ``reranker`` remembers of earlier calls, dropped: its bi-encoders' windows
    (its cascade's pruner's too) and the latest call's scores (see each ``forget``)."""
    pending: list[object] = [reranker.scorer, reranker.pruner]
    while pending:  # every scorer inside: wrappers' inner ones and a blend's components
        scorer = pending.pop()
        if scorer is None:
            continue
        forget = getattr(scorer, "forget", None)
        if forget is not None:
            forget()
        pending.append(getattr(scorer, "inner", None))
        pending.extend(component.scorer for component in getattr(scorer, "components", ()))


def _unwrapped(scorer: object) -> object:
    """The scorer under wrappers that remember or batch (they keep it as ``inner``)."""
    while not isinstance(scorer, BiEncoderScorer | BlendScorer) and hasattr(scorer, "inner"):
        scorer = scorer.inner
    return scorer


def document_windows(reranker: Reranker, texts: Sequence[str]) -> list[str]:
    """The window texts ``reranker`` reads of ``texts`` for a short query, as it would at
    search time (its own chunking and the model's window length)."""
    plans = reranker._plan("", list(texts), None, reranker.chunking)
    return [
        piece.text_in(text)
        for text, plan in zip(texts, plans, strict=True)
        for piece in plan.pieces
    ]


def prepare_windows(
    reranker: Reranker,
    batches: Iterable[Sequence[str]],
    *,
    previous: Sequence[WindowTable] = (),
    extend: bool = False,
    live: Iterable[Sequence[str]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[WindowTable]:
    """One table per bi-encoder of ``reranker`` holding every window of the texts in
    ``batches``. Windows a matching ``previous`` table holds are copied, not embedded again;
    with ``extend`` the new table also keeps every other row of that table (the texts are only
    the documents added since), and a bi-encoder without such a table gets none. With ``extend``
    and ``live`` (the texts of every stored document, planned but not embedded) only the rows
    that are windows of ``live`` are kept: rows of deleted documents and of changed documents'
    old texts are dropped. ``progress`` is called with the number of texts of each batch done."""
    encoders = window_encoders(reranker)
    if not encoders:
        shown = reranker.served_name or reranker.name  # a server's clients know it by that
        raise InvalidInputError(
            f"model {shown!r} has no bi-encoder: every part of it reads query and document "
            "together, so nothing can be computed ahead; prepared windows speed up "
            "models with a bi-encoder, such as the default blend"
        )
    tables = [_TableBuilder(name, encoder, previous) for name, encoder in encoders]
    keep = _window_keys(reranker, live) if extend and live is not None else None
    for batch in batches:
        windows = list(dict.fromkeys(document_windows(reranker, batch)))
        for table in tables:
            table.add(windows)
        if progress is not None:
            progress(len(batch))
    # Extending only grows tables that exist: a model (or precision) without one gets none,
    # rather than a table of the new documents alone.
    return [
        table.finish(extend=extend, keep=keep)
        for table in tables
        if not extend or table.earlier is not None
    ]


def _window_keys(reranker: Reranker, batches: Iterable[Sequence[str]]) -> set[bytes]:
    """The keys of every window of the texts in ``batches``: tokenization only, no model."""
    return {text_key(window) for batch in batches for window in document_windows(reranker, batch)}


class _TableBuilder:
    """Collects one bi-encoder's window embeddings, reusing a matching earlier table."""

    def __init__(self, name: str, encoder: BiEncoderScorer, previous: Sequence[WindowTable]):
        self.name, self.encoder = name, encoder
        self.probe = probe_vector(encoder)
        self.earlier = next((t for t in previous if _same_model(t.probe, self.probe)), None)
        # The same binary-search lookup searches use, not a dict of every earlier key.
        earlier = self.earlier
        self.lookup = KeyTable(earlier.keys, earlier.vectors) if earlier is not None else None
        self.rows: dict[bytes, np.ndarray] = {}

    def add(self, windows: list[str]) -> None:
        keyed = [(key, window) for window in windows if (key := text_key(window)) not in self.rows]
        keys = [key for key, _ in keyed]
        rows = self.lookup.rows(keys).tolist() if self.lookup else [-1] * len(keys)
        fresh = []
        for (key, window), row in zip(keyed, rows, strict=True):
            if row >= 0 and self.lookup is not None:
                self.rows[key] = np.asarray(self.lookup.vectors[row], dtype=np.float32)
            else:
                fresh.append((key, window))
        for start in range(0, len(fresh), EMBED_BATCH):
            chunk = fresh[start : start + EMBED_BATCH]
            # The scorer's own normalisation: a prepared vector equals a search-time one.
            vectors = self.encoder.embed_uncached([window for _, window in chunk])
            self.rows.update((key, vector) for (key, _), vector in zip(chunk, vectors, strict=True))

    def finish(self, *, extend: bool = False, keep: set[bytes] | None = None) -> WindowTable:
        """The table of the windows added; with ``extend`` also the earlier table's other rows,
        those whose keys are in ``keep`` when it is given."""
        if extend and self.earlier is not None:
            for row, key in enumerate(np.asarray(self.earlier.keys, dtype=np.uint8)):
                key_bytes = bytes(key)
                if keep is None or key_bytes in keep:
                    vector = np.asarray(self.earlier.vectors[row], np.float32)
                    self.rows.setdefault(key_bytes, vector)
        dim = len(self.probe)
        ordered = sorted(self.rows)  # stored sorted: lookups binary-search the keys
        keys = np.frombuffer(b"".join(ordered), dtype=np.uint8).reshape(len(ordered), 16)
        vectors = np.stack([self.rows[key] for key in ordered]) if ordered else np.zeros((0, dim))
        return WindowTable(
            model=self.name,
            keys=keys,
            vectors=vectors.astype(np.float32),
            probe=self.probe,
            backend=self.encoder.backend,
        )


def probe_vector(encoder: BiEncoderScorer) -> np.ndarray:
    """``encoder``'s embedding of PROBE_TEXT, computed once per loaded model."""
    with _PROBES_LOCK:
        known = _PROBES.get(encoder)
    if known is None:
        known = encoder.embed_uncached([PROBE_TEXT], counted=False)[0]
        with _PROBES_LOCK:
            _PROBES[encoder] = known
    return known


def _same_model(probe: np.ndarray, other: np.ndarray) -> bool:
    """Whether two probe embeddings come from one model run at one precision."""
    if probe.shape != other.shape:
        return False
    return float(np.max(np.abs(probe - other), initial=0.0)) <= PROBE_TOLERANCE


def use_windows(reranker: Reranker, tables: Sequence[WindowTable], *, source: str | Path) -> int:
    """Hand each of ``reranker``'s bi-encoders the tables its model made (``source`` names
    where they come from: a newer table from the same source replaces the older one).
    Returns how many tables were taken."""
    taken = 0
    for _, encoder in window_encoders(reranker):
        probe = probe_vector(encoder)
        for table in tables:
            name = f"{_source_prefix(source)}{table.key or table.model}"
            if _same_model(table.probe, probe):
                encoder.remember_table(name, table.version, table.keys, table.vectors)
                taken += 1
    return taken


def forget_tables_from(source: str | Path) -> int:
    """Let every loaded bi-encoder go of the tables ``use_windows`` gave it from ``source``
    (an index being dropped: the tables map its files). Returns how many were let go of."""
    # Every bi-encoder handed a table has a probe: the server's cached models and a library
    # user's own Reranker alike.
    with _PROBES_LOCK:
        encoders = list(_PROBES.keys())
    return sum(encoder.forget_tables(_source_prefix(source)) for encoder in encoders)


def _source_prefix(source: str | Path) -> str:
    return f"{source}:"
