"""The Reranker: scoring logic written once, for every backend."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semrank._checks import is_int, require_collection, require_flags
from semrank._tracing import span
from semrank.errors import InvalidInputError
from semrank.models import ResolvedModel, resolve, resolve_embedding_model
from semrank.rerank._aggregate import aggregate_documents
from semrank.rerank._blend import BlendScorer, is_blend, load_blend_scorer
from semrank.rerank._chunking import ReadPlan, character_end, plan_document
from semrank.rerank._config import CascadeConfig, ChunkingConfig
from semrank.rerank._documents import (
    FieldSpans,
    document_texts,
    field_spans,
    validate_min_score,
    validate_queries,
    validate_query,
    validate_top_n,
)
from semrank.rerank._feedback import Feedback, apply_feedback
from semrank.rerank._prune import plan_cascade
from semrank.rerank._results import ChunkSpan, Document, RerankResult, select_results
from semrank.runtime import load_scorer, model_backend
from semrank.runtime.base import (
    BatchingConfig,
    PairScorer,
    ScorerKind,
    TextTokenizer,
    apply_activation,
)
from semrank.runtime.base import query_token_limit as scorers_query_token_limit
from semrank.runtime.tokenizer import MAX_CHARS_PER_TOKEN, enough_of, only_space_after


@dataclass(frozen=True, kw_only=True)
class _DocumentScores:
    """Per-document outcome of scoring one query's documents."""

    scores: np.ndarray  # float32, input order
    plans: list[ReadPlan]
    best_chunks: list[int]
    piece_scores: list[np.ndarray]  # each document's windows' scores, as ``scores``
    pruned: np.ndarray  # bool, input order: a cascade's first stage dropped the document
    order: np.ndarray  # input indices, best first: read documents, then pruned ones


@dataclass(frozen=True, kw_only=True)
class QueryReading:
    """How a model read a query next to the documents it re-ranked."""

    tokens: int  # the query's tokens
    read: int  # of them, read next to the longest document piece
    unknown: int  # of them, unknown to the model's vocabulary ([UNK])


class Reranker:
    """Re-rank documents for a query with a cross-encoder or a bi-encoder.

    >>> r = Reranker()                      # bundled default, offline
    >>> docs = ["Fleas are small insects.", "Paris is in France."]
    >>> [best] = r.rerank("what is a flea", docs, top_n=1)
    >>> best.index, best.relevance_score > 0.5
    (0, True)
    """

    def __init__(
        self,
        model: str | Path | ResolvedModel | None = None,
        *,
        backend: str | None = None,
        device: str | None = None,
        kind: ScorerKind | None = None,
        batching: BatchingConfig | None = None,
        chunking: ChunkingConfig | bool | None = None,
        scorer: PairScorer | None = None,
        threads: int | None = None,
        cascade: CascadeConfig | None = None,
        pruner: PairScorer | None = None,
        feedback: bool = True,
    ) -> None:
        """Load ``model`` (default: the bundled default) on ``backend``.

        ``threads`` caps the backend's intra-op threads (default: all cores).
        ``scorer`` skips loading and scores with the given ``PairScorer`` (the server wraps the
        model's scorer to batch across requests); ``model`` then only names it.
        ``cascade`` prunes each query's documents with a cheaper scorer first (see
        ``CascadeConfig``); ``pruner`` gives that scorer instead of loading ``cascade.model``.
        """
        self.chunking: ChunkingConfig = _chunking_config(chunking, ChunkingConfig())
        self.cascade: CascadeConfig | None = _validate_cascade(cascade)
        if batching is not None and not isinstance(batching, BatchingConfig):
            raise InvalidInputError(
                f"batching must be a BatchingConfig, got {type(batching).__name__} "
                f"({batching!r:.60}); e.g. semrank.BatchingConfig(max_batch_size=8)"
            )
        _validate_threads(threads)
        if scorer is not None:
            _check_scorer("scorer", scorer)
            self.model: ResolvedModel | None = model if isinstance(model, ResolvedModel) else None
            self._name = self.model.name if self.model is not None else str(model or "")
            self._scorer: PairScorer = scorer
        else:
            self.model = model if isinstance(model, ResolvedModel) else resolve(model, kind=kind)
            self._name = self.model.name
            self._scorer = _load_main_scorer(self.model, backend, device, batching, threads)
        if not isinstance(feedback, bool):
            raise InvalidInputError(f"feedback must be True or False, got {feedback!r}")
        self.feedback: Feedback | None = _model_feedback(self._scorer) if feedback else None
        if pruner is not None:
            _check_scorer("pruner", pruner)
        self.pruner = pruner
        if cascade is not None and pruner is None:
            self.pruner = _load_pruner(cascade, backend, device, threads, main=self._scorer)
        # The name its messages give it where a server serves it (`--model NAME=SOURCE`): its
        # clients know it by that, not by the folder it was loaded from (`name`).
        self.served_name: str | None = None

    @property
    def scorer(self) -> PairScorer:
        """The backend scorer every model call goes through."""
        return self._scorer

    @property
    def query_token_limit(self) -> int | None:
        """Query tokens the model reads next to every document; a longer query is cut next to
        documents long enough to need the room (None: the scorer does not say)."""
        return scorers_query_token_limit(self.scorer)

    def query_tokens_read(self, query_tokens: int, doc_tokens: int) -> int:
        """Of a query of ``query_tokens``, how many are read next to a document piece of
        ``doc_tokens`` (all of them where the scorer does not say)."""
        limit = scorers_query_token_limit(self.scorer, doc_tokens=doc_tokens)
        return query_tokens if limit is None else min(query_tokens, limit)

    def query_reading(self, query: str, results: Sequence[RerankResult]) -> QueryReading:
        """How the model read ``query`` next to the ``results`` of re-ranking it (one encoding
        of the query): a query is cut only next to a document piece that needs the room."""
        unknown, count = self._query_tokens(query)
        require_collection(
            results,
            expected="results must be a list of RerankResult",
            hint="pass what rerank returned",
        )
        # The longest window, not the mean: a short last window hid a cut next to the others.
        pieces = [
            r.longest_piece or math.ceil(r.tokens / r.num_chunks)
            for r in results
            if r.num_chunks > 0
        ]
        read = self.query_tokens_read(count, max(pieces, default=0))
        return QueryReading(tokens=count, read=read, unknown=unknown)

    def query_read(self, query: str, results: Sequence[RerankResult]) -> tuple[int, int]:
        """``(tokens of query, tokens of it read)`` for the ``results`` of re-ranking it."""
        reading = self.query_reading(query, results)
        return reading.tokens, reading.read

    def query_warnings(
        self, query: str, results: Sequence[RerankResult], *, name: str | None = None
    ) -> list[str]:
        """What a caller is told of how ``query`` was read: cut to fit, or mostly unknown."""
        reading = self.query_reading(query, results)
        said = [self.query_cut_message(reading.tokens, reading.read, name=name)]
        unknown = self.unknown_query_message(reading.unknown, reading.tokens, name=name)
        return (said if reading.read < reading.tokens else []) + ([unknown] if unknown else [])

    def query_cut_warning(self, query: str, results: Sequence[RerankResult]) -> str | None:
        """A sentence saying the query was cut to fit the model next to ``results``, or None."""
        count, read = self.query_read(query, results)
        return self.query_cut_message(count, read) if read < count else None

    def query_unknown_warning(self, query: str, *, name: str | None = None) -> str | None:
        """A sentence saying the model reads most of ``query`` as unknown tokens (a language or
        script it was not trained on: its scores then say little), or None."""
        unknown, count = self._query_tokens(query)
        return self.unknown_query_message(unknown, count, name=name)

    def unknown_query_message(
        self, unknown: int, count: int, *, name: str | None = None
    ) -> str | None:
        """What a query of ``count`` tokens, ``unknown`` of them unknown, is told (or None)."""
        if unknown == 0 or 2 * unknown < count:
            return None
        shown = name or self.served_name or self.name
        return (
            f"model {shown!r} reads {unknown} of the query's {count} tokens as "
            "unknown: it does not know this language or script, so its scores say little; "
            "use a multilingual model (e.g. BAAI/bge-reranker-v2-m3)"
        )

    def _query_tokens(self, query: str) -> tuple[int, int]:
        """``(unknown tokens, tokens)`` of ``query``: one encoding."""
        query = validate_query(query)  # the public warnings take it as rerank does
        tokenizer = self.scorer.tokenizer
        counter = getattr(tokenizer, "unknown_tokens", None)
        if counter is None:  # a tokenizer that does not say which tokens it knows
            return 0, int(tokenizer.count_tokens(query))
        unknown, count = counter(query)
        return int(unknown), int(count)

    def query_cut_message(self, count: int, read: int, *, name: str | None = None) -> str:
        """What a query of ``count`` tokens, ``read`` of them read, is told (``name``: the
        model as its caller knows it, e.g. a server's alias)."""
        shown = name or self.served_name or self.name
        return (
            f"the query is {count} tokens; model {shown!r} read its first {read} next to each "
            "document"
        )

    def __getstate__(self) -> None:
        # The loaded networks (compiled graphs, locks) do not pickle; say what to do instead.
        raise InvalidInputError(
            f"{self!r} holds a loaded model and cannot be pickled or deep-copied; create one "
            "Reranker per process (or share this one: it is thread-safe)"
        )

    @property
    def name(self) -> str:
        """The model's name as the user gave it (catalog name, directory or hub id)."""
        return self._name

    def __repr__(self) -> str:
        return f"Reranker(model={self.name!r}, kind={self.scorer.kind!r})"

    def score(
        self,
        query: str,
        documents: Sequence[Document],
        *,
        raw: bool = False,
        rank_fields: Sequence[str] | None = None,
        max_tokens_per_doc: int | None = None,
        chunking: ChunkingConfig | bool | None = None,
    ) -> np.ndarray:
        """One score per document (float32), in input order; 0..1 unless ``raw``.

        With a cascade, documents it pruned unread score just below the weakest one read (in
        order, not a judgment): ``rerank`` marks them ``pruned``, and its ``min_score`` drops them.
        """
        require_flags(raw=raw)
        texts = document_texts(documents, rank_fields)
        outcome = self._score_groups(
            [validate_query(query)],
            [texts],
            raw,
            max_tokens_per_doc,
            self._chunking(chunking, max_tokens_per_doc),
        )
        return outcome[0].scores

    def rerank(
        self,
        query: str,
        documents: Sequence[Document],
        *,
        top_n: int | None = None,
        min_score: float | None = None,
        rank_fields: Sequence[str] | None = None,
        max_tokens_per_doc: int | None = None,
        return_documents: bool = True,
        chunking: ChunkingConfig | bool | None = None,
        raw_scores: bool = False,
    ) -> list[RerankResult]:
        """Documents sorted by relevance to ``query``, best first."""
        options = _RankOptions.checked(top_n, min_score, return_documents, raw_scores)
        return self._rerank([validate_query(query)], [documents], ["documents"], options,
                            rank_fields, max_tokens_per_doc, chunking)[0]  # fmt: skip

    def rerank_many(
        self,
        queries: Sequence[str],
        documents: Sequence[Sequence[Document]],
        *,
        top_n: int | None = None,
        min_score: float | None = None,
        rank_fields: Sequence[str] | None = None,
        max_tokens_per_doc: int | None = None,
        return_documents: bool = True,
        chunking: ChunkingConfig | bool | None = None,
        raw_scores: bool = False,
    ) -> list[list[RerankResult]]:
        """Re-rank several queries' candidates with one pass over the model (batched together)."""
        checked = validate_queries(queries)
        require_collection(
            documents,
            expected="documents must be a list of document lists",
            hint="pass one list of documents per query",
        )
        if len(checked) != len(documents):
            raise InvalidInputError(
                f"got {len(queries)} queries but {len(documents)} document lists; pass one "
                "list of documents per query"
            )
        options = _RankOptions.checked(top_n, min_score, return_documents, raw_scores)
        names = [f"documents[{i}]" for i in range(len(documents))]
        return self._rerank(checked, documents, names, options, rank_fields,
                            max_tokens_per_doc, chunking)  # fmt: skip

    def _rerank(
        self,
        queries: list[str],
        documents: Sequence[Sequence[Document]],
        names: list[str],
        options: _RankOptions,
        rank_fields: Sequence[str] | None,
        max_tokens_per_doc: int | None,
        chunking: ChunkingConfig | bool | None,
    ) -> list[list[RerankResult]]:
        texts = [
            document_texts(docs, rank_fields, name=name)
            for docs, name in zip(documents, names, strict=True)
        ]
        groups = self._score_groups(
            queries,
            texts,
            options.raw_scores,
            max_tokens_per_doc,
            self._chunking(chunking, max_tokens_per_doc),
        )
        return [
            _ranked(group, docs if options.return_documents else None, options.top_n,
                    options.min_score, field_spans(docs, rank_fields))
            for group, docs in zip(groups, documents, strict=True)
        ]  # fmt: skip

    def _chunking(
        self, chunking: ChunkingConfig | bool | None, max_tokens_per_doc: int | None
    ) -> ChunkingConfig:
        """The call's chunking, its window count settled: a ``max_chunks`` given (here or to
        the Reranker) is a bound (a client's cost limit); without one the windows follow
        ``max_tokens_per_doc`` (Cohere reads that many tokens: 16 overlapping windows stopped at
        ~1,568 of 2,048), else 16."""
        config = _chunking_config(chunking, self.chunking)
        if max_tokens_per_doc is not None and not is_int(max_tokens_per_doc, at_least=1):
            raise InvalidInputError(
                f"max_tokens_per_doc must be a positive integer, got {max_tokens_per_doc!r}"
            )
        return dataclasses.replace(config, max_chunks=config.window_limit(max_tokens_per_doc))

    def _score_groups(
        self,
        queries: list[str],
        texts: list[list[str]],
        raw: bool,
        max_tokens_per_doc: int | None,
        chunking: ChunkingConfig,
    ) -> list[_DocumentScores]:
        """Plan every document of every query, score all pieces in one call, aggregate."""
        with span("plan", documents=sum(len(docs) for docs in texts)):  # tokenizes documents
            plans = [
                self._plan(q, docs, max_tokens_per_doc, chunking)
                for q, docs in zip(queries, texts, strict=True)
            ]
        pairs = [
            (query, piece.text_in(text))
            for query, docs, doc_plans in zip(queries, texts, plans, strict=True)
            for text, plan in zip(docs, doc_plans, strict=True)
            for piece in plan.pieces
        ]
        masks = [np.zeros(len(doc_plans), dtype=bool) for doc_plans in plans]
        first_stage: list[np.ndarray] | None = None
        cascade = None
        if self.pruner is not None and self.cascade is not None:
            cascade = plan_cascade(self.pruner, pairs, plans, chunking, self.cascade.keep)
            read = [pair for pair, flag in zip(pairs, cascade.read, strict=True) if flag]
            raw_scores, masks = cascade.fill(self.scorer.score_pairs(read)), cascade.pruned
            first_stage = cascade.orders
        else:
            raw_scores = self.scorer.score_pairs(pairs)
        with span("aggregate", windows=len(pairs)):  # feedback, activation, per document
            if self.feedback is not None:
                counts = [[len(plan.pieces) for plan in doc_plans] for doc_plans in plans]
                raw_scores = apply_feedback(
                    raw_scores, pairs, counts, masks, chunking, self.feedback
                )
                if cascade is not None:  # feedback moved read documents: pruned ones below again
                    raw_scores = cascade.fill(raw_scores[cascade.read])
            calibration = getattr(self.scorer, "calibration", None)
            scores = apply_activation(raw_scores, self.scorer.activation, calibration)
            raw_scores = np.asarray(raw_scores, dtype=np.float32)
            return _split_scores(
                np.asarray(scores, dtype=np.float32),
                plans,
                masks,
                first_stage,
                chunking,
                # Ties in 0..1 are broken by the model's own scores: a float32 sigmoid is 1.0
                # for every logit above ~17, which left such documents in input order.
                tiebreak=raw_scores,
                # Documents are ordered by their 0..1 scores either way: a mean of windows'
                # logits orders them otherwise than a mean of their 0..1 scores, and
                # raw_scores=True re-ranked the documents it was only to show on another scale.
                shown=raw_scores if raw else None,
            )

    def _plan(
        self,
        query: str,
        texts: list[str],
        max_tokens_per_doc: int | None,
        chunking: ChunkingConfig,
    ) -> list[ReadPlan]:
        budget = max(1, self.scorer.doc_token_budget(query))
        # Tokens a document can be read to: one window, or max_chunks windows (each within one
        # budget of the last); max_tokens_per_doc caps that (``_chunking`` lets the windows
        # follow it where the caller did not bound them).
        reach = budget * (chunking.window_limit() if chunking.enabled else 1)
        if max_tokens_per_doc is not None:  # checked by ``_chunking``
            reach = min(reach, int(max_tokens_per_doc))
        tokenizer = self.scorer.tokenizer
        return [_plan_head(t, tokenizer, reach, budget, chunking) for t in texts]


# What ``rerank`` reads of a scorer (``PairScorer``): a bare object with score_pairs failed at
# the first rerank with an AttributeError from deep inside.
_SCORER_MEMBERS = ("score_pairs", "doc_token_budget", "tokenizer", "activation", "max_length")


def _check_scorer(name: str, scorer: object) -> None:
    missing = [member for member in _SCORER_MEMBERS if not hasattr(scorer, member)]
    if missing:
        raise InvalidInputError(
            f"{name} must be a semrank.runtime.PairScorer (e.g. from semrank.runtime."
            f"load_scorer), got {type(scorer).__name__} without {', '.join(missing)}"
        )


def _plan_head(
    text: str, tokenizer: TextTokenizer, reach: int, budget: int, chunking: ChunkingConfig
) -> ReadPlan:
    """The plan of ``text`` read no further than its first ``reach`` tokens.

    Only a head of the text is tokenized (a megabytes-long document took seconds and gigabytes
    for a few windows); the plan is made on the first ``reach`` tokens and says truncated when
    the text goes on."""
    cap = (reach + 1) * MAX_CHARS_PER_TOKEN
    first = tokenizer.token_offsets(text[:cap])
    offsets, seen = enough_of(text, first, cap, reach, tokenizer.token_offsets, len)
    if len(offsets) <= reach and seen == len(text):
        return plan_document(text, offsets, budget, chunking)
    unread = len(offsets) > reach or not only_space_after(text, seen)
    if len(offsets) > reach:  # between characters: a text span cannot end inside one
        offsets = offsets[: character_end(offsets, reach, floor=1)]
    elif unread and offsets and offsets[-1][1] >= seen:  # it may go on past the head's cut
        offsets = offsets[: character_end(offsets, len(offsets) - 1, floor=1)]
    head = text[: offsets[-1][1]] if offsets else ""
    plan = plan_document(head, offsets, budget, chunking)
    # One more token than read says truncated: the text goes on past its head.
    return dataclasses.replace(plan, total_tokens=len(offsets) + int(unread))


@dataclass(frozen=True, kw_only=True)
class _RankOptions:
    top_n: int | None
    min_score: float | None
    return_documents: bool
    raw_scores: bool

    @classmethod
    def checked(
        cls, top_n: object, min_score: object, return_documents: object, raw_scores: object
    ) -> _RankOptions:
        require_flags(return_documents=return_documents, raw_scores=raw_scores)
        return cls(
            top_n=validate_top_n(top_n),
            min_score=validate_min_score(min_score),
            return_documents=bool(return_documents),
            raw_scores=bool(raw_scores),
        )


def _model_feedback(scorer: PairScorer) -> Feedback | None:
    """The model's own feedback settings (a blend's ``feedback`` entry), if it has any."""
    feedback = getattr(scorer, "feedback", None)
    return feedback if isinstance(feedback, Feedback) else None


def _chunking_config(chunking: object, base: ChunkingConfig) -> ChunkingConfig:
    """``chunking`` as a config: None keeps ``base``, a bool switches ``base`` on or off."""
    if chunking is None:
        return base
    if isinstance(chunking, bool):
        return dataclasses.replace(base, enabled=chunking)
    if not isinstance(chunking, ChunkingConfig):
        raise InvalidInputError(
            f"chunking must be a ChunkingConfig, True or False, got {type(chunking).__name__} "
            f"({chunking!r:.60})"
        )
    return chunking


def _validate_cascade(cascade: object) -> CascadeConfig | None:
    if cascade is not None and not isinstance(cascade, CascadeConfig):
        raise InvalidInputError(
            f"cascade must be a CascadeConfig, e.g. CascadeConfig(keep=30), got "
            f"{type(cascade).__name__} ({cascade!r:.60})"
        )
    return cascade


def _validate_threads(threads: object) -> None:
    from semrank.runtime._select import check_threads

    check_threads(threads)


def _load_main_scorer(
    model: ResolvedModel,
    backend: str | None,
    device: str | None,
    batching: BatchingConfig | None,
    threads: int | None,
) -> PairScorer:
    if is_blend(model):
        # The blend's bf16 loss is measured as a whole, so its components follow its choice.
        return load_blend_scorer(
            model.path,
            backend=model_backend(model, backend),
            device=device,
            batching=batching,
            threads=threads,
        )
    return load_scorer(model, backend=backend, device=device, batching=batching, threads=threads)


def _load_pruner(
    cascade: CascadeConfig,
    backend: str | None,
    device: str | None,
    threads: int | None,
    *,
    main: PairScorer,
) -> PairScorer:
    model = resolve(cascade.model) if cascade.model else resolve_embedding_model()
    if is_blend(model):  # was a "no tokenizer.json" error about the blend's folder
        raise InvalidInputError(
            f"cascade model {cascade.model!r} is a blend of several models; the pruner is one "
            "cheap model: a bi-encoder (the default, all-minilm-l6-v2) or a small cross-encoder"
        )
    if isinstance(main, BlendScorer) and cascade.backend in (None, backend):
        # The blend already runs this model on this backend: share it, score each pair once.
        shared = main.remember_component(model.path)
        if shared is not None:
            return shared
    return load_scorer(model, backend=cascade.backend or backend, device=device, threads=threads)


def _split_scores(
    scores: np.ndarray,
    plans: list[list[ReadPlan]],
    masks: list[np.ndarray],
    first_stage: list[np.ndarray] | None,
    chunking: ChunkingConfig,
    *,
    tiebreak: np.ndarray | None = None,
    shown: np.ndarray | None = None,
) -> list[_DocumentScores]:
    """Per query, the documents' scores and order; ``tiebreak``: the pieces' raw scores,
    aggregated alike, which order documents whose ``scores`` tie; ``shown``: the pieces'
    scores to report instead of ``scores`` (raw ones), aggregated alike, never to order by."""
    counts = [[len(plan.pieces) for plan in doc_plans] for doc_plans in plans]
    per_query = aggregate_documents(scores, counts, chunking)
    seconds = per_query if tiebreak is None else aggregate_documents(tiebreak, counts, chunking)
    reported = (
        per_query
        if shown is None
        else seconds
        if shown is tiebreak  # raw scores shown are the tiebreak's: aggregated once
        else aggregate_documents(shown, counts, chunking)
    )
    orders = first_stage or [np.zeros(0, dtype=int)] * len(plans)
    pieces = _per_document(scores if shown is None else shown, counts)
    # aggregate_documents gives per query (documents' scores, their best chunks): the chunks
    # are those of the scores ranked by, the others' only their scores are kept.
    ranked = [doc_scores for doc_scores, _ in per_query]
    best_chunks = [best for _, best in per_query]
    ties = [doc_scores for doc_scores, _ in seconds]
    values = [doc_scores for doc_scores, _ in reported]
    rows = zip(ranked, best_chunks, ties, values, plans, masks, orders, pieces, strict=True)
    return [
        _DocumentScores(
            scores=shown_scores,
            plans=doc_plans,
            best_chunks=best,
            piece_scores=doc_pieces,
            pruned=pruned,
            order=_rank_order(by_score, pruned, order, tie_scores),
        )
        for by_score, best, tie_scores, shown_scores, doc_plans, pruned, order, doc_pieces in rows
    ]


def _per_document(scores: np.ndarray, counts: list[list[int]]) -> list[list[np.ndarray]]:
    """The pieces' ``scores`` (every query's, one after another) split per query, per document."""
    ends = np.cumsum([count for doc_counts in counts for count in doc_counts], dtype=np.int64)
    flat = np.split(np.asarray(scores, dtype=np.float32), ends[:-1]) if len(ends) else []
    split, at = [], 0
    for doc_counts in counts:
        split.append(flat[at : at + len(doc_counts)])
        at += len(doc_counts)
    return split


def _rank_order(
    scores: np.ndarray, pruned: np.ndarray, first_stage: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """Read documents by score (ties by ``second``, then input order), then pruned ones in the
    cascade pruner's order.

    Pruned documents' placeholder scores already sort below the read ones, but after a sigmoid
    at high logits float32 can no longer tell them apart, so the order is not left to the values.
    """
    read = np.flatnonzero(~pruned)
    # lexsort is stable (its last key first): full ties keep input order, so results are
    # deterministic and a top k is the head of every longer top k.
    by_score = read[np.lexsort((-second[read], -scores[read]))]
    rest = [d for d in first_stage.tolist() if pruned[d]]
    return np.concatenate([by_score, np.asarray(rest, dtype=by_score.dtype)])


def _ranked(
    group: _DocumentScores,
    documents: Sequence[Document] | None,
    top_n: int | None,
    min_score: float | None,
    spans: list[FieldSpans | None],
) -> list[RerankResult]:
    ranked = (
        _result(group, i, float(group.scores[i]), documents, spans[i]) for i in group.order.tolist()
    )
    return select_results(ranked, top_n=top_n, min_score=min_score)


def _chunk_span(index: int, start: int, end: int, spans: FieldSpans | None) -> ChunkSpan:
    """The chunk in the caller's terms: offsets into the field holding most of it, where the text
    read was composed of several fields (offsets into "title: ...\ntext: ..." fit nothing
    the caller holds)."""
    if spans is None:
        return ChunkSpan(index=index, start=start, end=end)
    # The field holding most of the window (a first window reads the title, then mostly text).
    field, first, last = max(spans, key=lambda span: min(end, span[2]) - max(start, span[1]))
    local_start = min(max(start, first), last) - first
    local_end = max(min(end, last), first) - first
    return ChunkSpan(index=index, start=local_start, end=max(local_start, local_end), field=field)


def _result(
    group: _DocumentScores,
    index: int,
    score: float,
    documents: Sequence[Document] | None,
    spans: FieldSpans | None,
) -> RerankResult:
    plan = group.plans[index]
    chunk = None
    if plan.chunked:
        piece = plan.pieces[group.best_chunks[index]]
        chunk = _chunk_span(piece.chunk_index, piece.start, piece.end, spans)
    return RerankResult(
        index=index,
        relevance_score=score,
        document=documents[index] if documents is not None else None,
        tokens=sum(p.tokens for p in plan.pieces),
        truncated=plan.truncated,
        chunk=chunk,
        num_chunks=len(plan.pieces),
        pruned=bool(group.pruned[index]),
        piece_tokens=tuple(p.tokens for p in plan.pieces),
        window_scores=tuple(
            (p.start, p.end, float(score))
            for p, score in zip(plan.pieces, group.piece_scores[index], strict=True)
        ),
    )
