"""Request and response shapes of the HTTP API (the only pydantic in semrank).

Field names follow the APIs clients already speak: Cohere rerank v1 and v2, Jina, Together
and Voyage (``POST /v1/rerank``, ``POST /v2/rerank``) and Hugging Face
text-embeddings-inference (``POST /rerank``). semrank's extras (``min_score``, ``chunking``,
deadlines, per-result truncation and chunk facts) are optional fields on all of them; unknown
fields are ignored, so clients that send provider-specific options keep working.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    model_serializer,
)

Document = str | dict[str, Any]


# Longest deadline a request may ask for: a day (larger values overflow the clock arithmetic).
MAX_TIMEOUT_MS = 86_400_000


def _not_bool(value: object) -> object:
    # JSON's true would otherwise pass as the integer 1 (pydantic's lax mode).
    if isinstance(value, bool):
        raise ValueError(f"must be an integer, got {str(value).lower()}")
    return value


def _not_bool_number(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {str(value).lower()}")
    return value


Count = Annotated[int, BeforeValidator(_not_bool)]
# Bounds inside the type, not on an optional field: pydantic writes a Field's ge / le on
# "X | None" as "ge" / "le" keys in the OpenAPI document, which JSON Schema does not know.
# (The bounds before the validator: after it, they are written as "ge" too.)
PositiveCount = Annotated[int, Field(ge=1), BeforeValidator(_not_bool)]
NonNegativeCount = Annotated[int, Field(ge=0), BeforeValidator(_not_bool)]
TimeoutMs = Annotated[int, Field(ge=1, le=MAX_TIMEOUT_MS), BeforeValidator(_not_bool)]
PageSize = Annotated[int, Field(ge=1, le=10_000), BeforeValidator(_not_bool)]
# A search's size: 0 asks for no hits, only the aggregations and how many documents matched.
SearchSize = Annotated[int, Field(ge=0, le=10_000), BeforeValidator(_not_bool)]
AGGS_DESCRIPTION = (
    "Elasticsearch aggregations (facets) over every document the search matches, not only "
    'the hits returned: {"NAME": {"terms": {"field": "source"}}}; terms, min, max, avg, sum, '
    "value_count, cardinality, stats, extended_stats, percentiles, range, histogram, "
    'date_histogram; a bucket aggregation may hold "aggs" of its own (sub-aggregations)'
)
Number = Annotated[float, BeforeValidator(_not_bool_number)]
Flag = StrictBool  # "yes", 1 or "true" read as true hid a client's mistake


class _Schema(BaseModel):
    model_config: ClassVar[ConfigDict] = ConfigDict(extra="ignore")


# semrank's own objects refuse unknown keys (a misspelt option was ignored: 200 with the
# defaults); the rerank bodies around them ignore extras, as their vendors' APIs do.
_FORBID_EXTRA = ConfigDict(extra="forbid")


class ChunkingOptions(_Schema):
    """How documents longer than the model's window are read (omitted fields: server defaults)."""

    model_config: ClassVar[ConfigDict] = _FORBID_EXTRA

    enabled: Flag | None = Field(None, description="false truncates instead of chunking")
    overlap_tokens: NonNegativeCount | None = Field(
        None, description="overlap of consecutive chunks"
    )
    aggregation: Literal["max", "mean", "topk_mean"] | None = Field(
        None, description="how chunk scores become the document's score"
    )
    top_k: PositiveCount | None = Field(None, description="chunks averaged by topk_mean")
    max_chunks: PositiveCount | None = Field(None, description="chunks read per document at most")
    heading_tokens: NonNegativeCount | None = Field(
        None,
        description="a first line this short is read again before every chunk (0: never)",
    )


class SemrankOptions(_Schema):
    """semrank extras accepted by every rerank endpoint."""

    min_score: Number | None = Field(
        None,
        allow_inf_nan=False,
        description="drop results scoring below this (after top_n ranking)",
    )
    chunking: Flag | ChunkingOptions | None = Field(
        None, description="true/false or chunking options; default: the model's chunking"
    )
    raw_scores: Flag = Field(False, description="raw model scores instead of 0..1 relevance")
    timeout_ms: TimeoutMs | None = Field(
        None,
        description="deadline for this request (default: the server's)",
    )
    fail_open: Flag | None = Field(
        None,
        description=(
            "past the deadline, return the input order with reranked=false instead of 504 "
            "(top_n applies; scores are 0.0 and min_score does not, as nothing was scored)"
        ),
    )


class ChunkInfo(_Schema):
    """The chunk of a long document that produced its score (offsets in Unicode code points,
    not UTF-16 units or bytes, end exclusive; with several rank_fields, into the text of the
    field holding most of the chunk, named by field)."""

    index: int
    start: int
    end: int
    field: str | None = None


class ResultFacts(_Schema):
    """What the model read of a document (semrank extra on every result)."""

    tokens: int = Field(
        description="document tokens the model read, all chunks (a token in the overlap of two "
        "chunks is read, and counted, in each)"
    )
    truncated: bool = Field(description="true when part of the document was not read")
    num_chunks: int = Field(1, description="model inputs the document was split into")
    chunk: ChunkInfo | None = Field(None, description="best chunk, for chunked documents")
    pruned: bool = Field(
        False, description="true when a cascade's first stage ranked it out of the model's window"
    )


# --- Cohere v2 -----------------------------------------------------------------------------


class V2RerankRequest(SemrankOptions):
    model: str | None = Field(None, description="served model name (default: the first)")
    query: str = Field(min_length=1)
    documents: list[str] = Field(min_length=1)
    top_n: PositiveCount | None = None
    max_tokens_per_doc: PositiveCount | None = Field(
        None,
        description="read at most this many tokens of each document (in the model's windows)",
    )
    max_chunks_per_doc: PositiveCount | None = Field(
        None,
        description="chunks read per document at most, as older Cohere v2 SDKs send it (Cohere's "
        "v2 API has replaced it with max_tokens_per_doc)",
    )
    return_documents: Flag = Field(
        False,
        description="each result's document as {'text': ...}, as older Cohere v2 SDKs ask for "
        "(Cohere's v2 API has dropped it)",
    )


class _Ranked(_Schema):
    index: int = Field(description="position of the document in the request")
    relevance_score: float


class _V2Ranked(_Ranked):
    document: dict[str, str] | None = Field(
        None, description="with return_documents: {'text': ...}"
    )


# Bases listed facts-first so that serialised results read index, score, ..., then the facts.
class V2Result(ResultFacts, _V2Ranked):
    pass


class ApiVersion(_Schema):
    version: str


class BilledUnits(_Schema):
    search_units: int


class Tokens(_Schema):
    input_tokens: int


class ApiMeta(_Schema):
    api_version: ApiVersion
    billed_units: BilledUnits
    tokens: Tokens
    warnings: list[str] | None = Field(
        None, description="Cohere's field: how the input was read, e.g. a query cut to fit"
    )


class V2RerankResponse(_Schema):
    id: str
    model: str
    results: list[V2Result]
    meta: ApiMeta
    reranked: bool = Field(True, description="false when fail_open returned the input order")


# --- v1: Cohere v1, Jina, Together, Voyage -------------------------------------------------


class V1RerankRequest(SemrankOptions):
    model: str | None = None
    query: str = Field(min_length=1)
    documents: list[Document] = Field(
        min_length=1, description="strings, or objects whose rank_fields (default 'text') hold text"
    )
    top_n: PositiveCount | None = None
    top_k: PositiveCount | None = Field(None, description="Voyage's name for top_n")
    rank_fields: list[str] | None = Field(None, min_length=1)
    return_documents: Flag | None = Field(
        None, description="default false (the server's --return-documents makes it true)"
    )
    max_chunks_per_doc: PositiveCount | None = Field(
        None, description="Cohere v1: chunks per document"
    )
    max_tokens_per_doc: PositiveCount | None = Field(
        None,
        description="read at most this many tokens of each document (in the model's windows)",
    )
    truncation: Flag | None = Field(
        None, description="Voyage: false makes over-long inputs an error instead of truncating"
    )
    response_format: Literal["cohere", "voyage"] | None = Field(
        None,
        description="response shape; default voyage when top_k or truncation is sent (as "
        "Voyage's client does, top_k even as null), else cohere with Voyage's data list too",
    )


class _V1Ranked(_Ranked):
    document: dict[str, Any] | None = Field(
        None, description="{'text': ...} for strings, the object itself for objects"
    )


class V1Result(ResultFacts, _V1Ranked):
    pass


class Usage(_Schema):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: int = Field(0, description="always 0 (read by Together and Jina clients)")


class V1RerankResponse(_Schema):
    id: str
    object: Literal["rerank"] = "rerank"
    model: str
    results: list[V1Result]
    meta: ApiMeta
    usage: Usage
    reranked: bool = True
    data: list[VoyageResult] | None = Field(
        None,
        description="the results again in Voyage's shape, when the request does not say which "
        "shape it wants (Voyage's minimal request looks like Cohere's)",
    )


class _VoyageRanked(_Ranked):
    document: Document | None = None


class VoyageResult(ResultFacts, _VoyageRanked):
    pass


class VoyageUsage(_Schema):
    total_tokens: int


class VoyageRerankResponse(_Schema):
    object: Literal["list"] = "list"
    data: list[VoyageResult]
    model: str
    usage: VoyageUsage
    reranked: bool = True


# --- Hugging Face text-embeddings-inference ------------------------------------------------


class TeiRerankRequest(SemrankOptions):
    model: str | None = None
    query: str = Field(min_length=1)
    texts: list[str] = Field(min_length=1)
    truncate: Flag | None = Field(
        None, description="false makes over-long inputs an error; default: server --auto-truncate"
    )
    truncation_direction: Literal["right", "Right", "left", "Left"] = "right"
    raw_scores: Flag = False
    return_text: Flag = False


# POST /rerank also takes the other APIs' body: clients that add /rerank to a base URL reach it
# (Together's 1.x client given the server's root URL, Voyage's without /v1, and the many
# "Cohere-compatible" clients that post to {base}/rerank). The tags appear in pydantic's error
# locations, so they are names no body field has (the error messages leave them out).
TEI_SHAPE, DOCUMENTS_SHAPE = "tei_shape", "documents_shape"


def _root_rerank_shape(body: Any) -> str:
    """TEI's shape unless the body sends 'documents' and not TEI's 'texts'."""
    if isinstance(body, dict):
        return DOCUMENTS_SHAPE if "documents" in body and "texts" not in body else TEI_SHAPE
    return DOCUMENTS_SHAPE if isinstance(body, V1RerankRequest) else TEI_SHAPE


RootRerankRequest = Annotated[
    Annotated[TeiRerankRequest, Tag(TEI_SHAPE)] | Annotated[V1RerankRequest, Tag(DOCUMENTS_SHAPE)],
    Discriminator(_root_rerank_shape),
]


class _TeiScored(_Schema):
    index: int
    score: float
    text: str | None = None


class TeiRank(ResultFacts, _TeiScored):
    pass


class TeiClassifierModel(_Schema):
    id2label: dict[str, str]
    label2id: dict[str, int]


class TeiEmbeddingModel(_Schema):
    pooling: str | None = Field(
        description="how token states become the text's embedding: mean or cls (null: unknown)"
    )


class TeiRerankerType(_Schema):
    """A cross-encoder: one relevance score per (query, text) pair."""

    reranker: TeiClassifierModel


class TeiEmbeddingType(_Schema):
    """A bi-encoder: semrank re-ranks with it by the cosine of the two embeddings."""

    embedding: TeiEmbeddingModel


class TeiInfo(_Schema):
    """GET /info as TEI's router answers it (its ``Info``), for the default model; the fields
    semrank has no equivalent of are null."""

    model_id: str = Field(description="the default model's served name (GET /v1/models)")
    model_sha: str | None = Field(default=None, description="always null: no hub revision")
    model_dtype: str | None = Field(default=None, description="always null: backend-dependent")
    model_type: TeiRerankerType | TeiEmbeddingType
    max_concurrent_requests: int = Field(description="--max-pending, per worker process")
    max_input_length: int = Field(description="tokens read at once (GET /v1/models max_length)")
    max_batch_tokens: int = Field(description="--batch-token-budget")
    max_batch_requests: int = Field(description="(query, text) pairs per model call at most")
    max_client_batch_size: int = Field(description="--max-documents")
    auto_truncate: bool = Field(description="--auto-truncate")
    tokenization_workers: int | None = Field(
        default=None, description="always null: texts are tokenised in the request threads"
    )
    version: str = Field(description="semrank's version")
    sha: str | None = Field(default=None, description="always null")
    docker_label: str | None = Field(default=None, description="always null")


# --- semrank batch -------------------------------------------------------------------------


class BatchQuery(_Schema):
    model_config: ClassVar[ConfigDict] = _FORBID_EXTRA

    query: str = Field(min_length=1)
    documents: list[Document] = Field(min_length=1)
    top_n: PositiveCount | None = None
    min_score: Number | None = Field(None, allow_inf_nan=False)


class BatchRerankRequest(SemrankOptions):
    """Many queries, each with its own candidates; scored together in merged model calls."""

    model_config: ClassVar[ConfigDict] = _FORBID_EXTRA

    model: str | None = None
    queries: list[BatchQuery] = Field(min_length=1)
    top_n: PositiveCount | None = Field(None, description="default for queries without top_n")
    rank_fields: list[str] | None = Field(None, min_length=1)
    return_documents: Flag = False
    max_tokens_per_doc: PositiveCount | None = Field(
        None,
        description="read at most this many tokens of each document (in the model's windows)",
    )


class BatchQueryResult(_Schema):
    query_index: int
    results: list[V1Result]
    reranked: bool = True
    warnings: list[str] | None = Field(None, description="how the query was read (cut to fit)")


class BatchRerankResponse(_Schema):
    id: str
    object: Literal["rerank.batch"] = "rerank.batch"
    model: str
    results: list[BatchQueryResult]
    usage: Usage
    reranked: bool = Field(True, description="false when any query fell back to input order")


# --- indexes and search -------------------------------------------------------------------


class IndexName(_Schema):
    name: str
    aliases: list[str] = Field(
        default_factory=list, description="the index's aliases (POST /_aliases), sorted"
    )


class IndexList(_Schema):
    object: Literal["list"] = "list"
    data: list[IndexName]


class _Strict(_Schema):
    """semrank's own request bodies: an unknown key is refused (422), not ignored, since it is
    almost always a misspelt option (the rerank APIs' bodies ignore extras, as their vendors'
    do, so that clients sending newer fields keep working)."""

    model_config: ClassVar[ConfigDict] = _FORBID_EXTRA


# The store's index names (semrank.store._registry), told to clients in the OpenAPI document
# only: the store's own check refuses others with a message that says what to use.
INDEX_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
INDEX_NAME_SCHEMA: dict[str, Any] = {"pattern": INDEX_NAME_PATTERN}


class CreateIndexRequest(_Strict):
    name: str = Field(min_length=1, max_length=128, json_schema_extra=INDEX_NAME_SCHEMA)
    fields: list[str] = Field(["title", "text"], min_length=1, description="searched text fields")
    id_field: str = Field("id", min_length=1, description="document field holding its id")
    embedding_model: str | None = Field(
        "default", description="dense embeddings model ('default': bundled); null: BM25 only"
    )


class UpsertDocumentsRequest(_Strict):
    documents: list[dict[str, Any]] = Field(min_length=1, description="objects with an id field")


class UpsertResult(_Schema):
    upserted: int = Field(description="distinct ids in the request, stored now")
    written: int = Field(description="of them, new or changed: written")
    skipped: int = Field(description="of them, stored already exactly as given: not rewritten")
    warnings: list[str] | None = Field(
        None, description="e.g. text in fields the index keeps but does not search"
    )


class PrepareRequest(_Strict):
    """Which served model's re-ranking windows to embed ahead, for which field."""

    model: str | None = Field(
        None, description="a served model name (default: the server's default model)"
    )
    field: str = Field("*", min_length=1, description="the field searches re-rank on")


class PreparedTable(_Schema):
    model: str
    windows: int
    documents: int


class PrepareResult(_Schema):
    prepared: list[PreparedTable]


class DeleteDocumentsRequest(_Strict):
    """The documents to delete: by ``ids``, or every one passing ``filter`` (one of them)."""

    ids: list[StrictStr | StrictInt | StrictFloat] | None = Field(
        None, min_length=1, description='as given at upsert: numbers are ids too (7 is "7")'
    )
    filter: dict[str, Any] | list[Any] | None = Field(
        default=None,
        description="instead of ids: every document passing this Elasticsearch filter (term, "
        "terms, range, exists, ids, bool; a list: all of them), deleted in one transaction; a "
        "filter passing every document (match_all, an empty bool) is refused",
    )


class DeleteResult(_Schema):
    deleted: int


class UnfinishedIngest(_Schema):
    started: str  # local time of the server, "YYYY-MM-DD HH:MM:SS"
    running: bool  # False: interrupted (`semrank index add` of the same file finishes it)


class IndexInfo(_Schema):
    """An index's info as a client sees it: locations under ``<index home>``, files by name."""

    name: str
    backend: str  # "local" | "postgresql"
    location: str
    documents: int
    generation: int
    settings: dict[str, Any]
    embedding_dim: int | None
    vector_search: str | None  # "exact" | "hnsw" | None (BM25 only)
    fields_seen: list[str]
    size_bytes: int
    derived: dict[str, Any]
    # Ingests of a file that have not finished, by file name.
    unfinished_ingests: dict[str, UnfinishedIngest] = Field(default_factory=dict)


HIGHLIGHT_DESCRIPTION = (
    'Elasticsearch highlight: {"fields": {"text": {}}} with pre_tags, post_tags, fragment_size '
    "(100), number_of_fragments (5; 0: the whole field), order (none | score), encoder (default "
    '| html), no_match_size, require_field_match, type (unified | plain | fvh; "semantic": '
    "the windows a text_similarity_reranker scored best), per field or for all; or field names"
)


SORT_DESCRIPTION = (
    'Elasticsearch sort by fields: "date", [{"price": "desc"}, "_score"], {"price": {"order": '
    '"desc", "missing": "_first", "mode": "avg"}}; a filter search sorts every passing document, '
    "a match or knn search its retrieved hits; each hit's sort values then page on with "
    "search_after"
)
SEARCH_AFTER_DESCRIPTION = "the last hit's sort values: the page after it (with the same sort)"
TRACK_SCORES_DESCRIPTION = "hits sorted by fields keep their scores (default: _score is null)"
POST_FILTER_DESCRIPTION = (
    "Elasticsearch filter the hits (and hits.total) pass but the aggregations do not: a "
    "facet's counts stay those of the whole query; applied to the tree's final ranking (a "
    "re-ranker's window holds documents it drops)"
)
COLLAPSE_DESCRIPTION = (
    '{"field": "family"}: the best hit per value of a single-valued keyword or number field '
    "(hits without it are one null group); from/size page the groups; inner_hits and "
    "max_concurrent_group_searches are refused"
)
HIT_FIELDS_DESCRIPTION = (
    "the values of the fields the search asked (fields), as arrays, and where it collapsed "
    "the hit's value of the collapse field, {field: [value]}"
)


class SearchRequest(_Strict):
    """An Elasticsearch-style ``_search`` body (``retriever``, ``size``) plus a ``query`` that
    fills ``{{query}}`` placeholders (a tree without any has it replace its query texts)."""

    query: str | None = Field(None, min_length=1)
    retriever: str | dict[str, Any] | None = Field(
        None,
        description="retriever JSON (standard, knn, rrf, linear, text_similarity_reranker) or a "
        "shorthand: bm25, dense, hybrid, linear, optionally +rerank; default bm25",
    )
    size: SearchSize = Field(10, description="hits to return (0: only aggs and matched)")
    from_: NonNegativeCount = Field(
        0,
        alias="from",
        description="hits to skip: 10 with size 10 is the second page, ranked 11 to 20 (from + "
        "size at most 10,000; a compound retriever pages over its rank_window_size)",
    )
    filter: dict[str, Any] | list[Any] | None = Field(
        default=None,
        description="Elasticsearch filter (term, terms, range, exists, ids, match_all, bool; a "
        "list: all of them) every hit passes, as if on the tree's top retriever",
    )
    return_documents: Flag = True
    timeout_ms: TimeoutMs | None = None
    highlight: dict[str, Any] | str | list[str] | None = Field(
        None, description=HIGHLIGHT_DESCRIPTION
    )
    aggs: dict[str, Any] | None = Field(None, description=AGGS_DESCRIPTION)
    sort: str | dict[str, Any] | list[Any] | None = Field(None, description=SORT_DESCRIPTION)
    search_after: list[Any] | None = Field(None, description=SEARCH_AFTER_DESCRIPTION)
    track_scores: Flag = Field(False, description=TRACK_SCORES_DESCRIPTION)
    post_filter: dict[str, Any] | list[Any] | None = Field(
        default=None, description=POST_FILTER_DESCRIPTION
    )
    collapse: dict[str, Any] | None = Field(default=None, description=COLLAPSE_DESCRIPTION)


class SearchHit(_Schema):
    index: str = Field(
        description="the index holding the hit (never an alias of it): a search of several "
        "indexes may find one id in two of them"
    )
    id: str
    score: float
    rank: int
    first_stage_rank: int
    first_stage_score: float
    rerank_score: float | None = None
    document: dict[str, Any] | None = None
    highlight: dict[str, list[str]] | None = Field(
        None, description="fragments per field, where highlight was asked (fields with one)"
    )
    sort: list[Any] | None = Field(
        None, description="its sort values, where the search sorted by fields (search_after)"
    )
    fields: dict[str, list[Any]] | None = Field(None, description=HIT_FIELDS_DESCRIPTION)


class SearchResponse(_Schema):
    object: Literal["search"] = "search"
    index: str
    hits: list[SearchHit]
    warnings: list[str] | None = Field(
        None, description="said of the whole search, e.g. a query a re-ranker cut to fit"
    )
    aggregations: dict[str, Any] | None = Field(
        None, description="each of the body's aggs, in Elasticsearch's answer shapes"
    )
    matched: int | None = Field(
        None, description="documents the search matched (those aggregated), with aggs or size 0"
    )


# --- Elasticsearch's own _search (elasticsearch-py, LangChain's and LlamaIndex's retrievers) ----


class EsPointInTime(_Strict):
    id: str = Field(description="the id POST /{index}/_pit answered")
    keep_alive: str | None = Field(None, description='how much longer to keep it, e.g. "1m"')


# track_total_hits as a number: -1 is false, as Elasticsearch reads it.
TrackTotalHits = Annotated[int, Field(ge=-1), BeforeValidator(_not_bool)]


def _boolean_words(value: object) -> object:
    # Elasticsearch's parser reads the strings "true" and "false" as the booleans here.
    return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value


class EsSourceFilter(_Strict):
    """``_source`` as an object: the fields a hit's _source keeps, less those it drops."""

    includes: str | list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("includes", "include")
    )
    excludes: str | list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("excludes", "exclude")
    )


class EsSearchRequest(_Strict):
    """An Elasticsearch ``_search`` body: a retriever tree holding its own texts, or the
    classic ``query`` / ``knn`` / ``rank`` (read by semrank.pipeline's parser)."""

    retriever: dict[str, Any] | str | None = Field(
        None,
        description="retriever JSON (standard, knn, rrf, linear, text_similarity_reranker) "
        "holding its own texts",
    )
    query: dict[str, Any] | None = Field(
        None,
        description="classic query (match, multi_match, or bool with one of them in must, "
        "filter and must_not), or a filter query (match_all, term, terms, range, exists, ids, "
        "constant_score, bool) listing the documents passing it; instead of a retriever",
    )
    knn: dict[str, Any] | list[dict[str, Any]] | None = Field(
        None,
        description="classic top-level knn search (or a list of them, each with its boost), "
        "summed with the query's scores",
    )
    rank: dict[str, Any] | None = Field(
        None, description='{"rrf": {...}}: fuse query and knn by rank (Elasticsearch 8.8-8.13)'
    )
    sub_searches: list[dict[str, Any]] | None = Field(
        None, description='queries fused by rank: [{"query": {...}}, ...] (with rank only)'
    )
    aggs: dict[str, Any] | None = Field(None, description=AGGS_DESCRIPTION)
    aggregations: dict[str, Any] | None = Field(None, description="aggs, by its longer name")
    size: SearchSize = 10
    from_: NonNegativeCount = Field(
        0,
        alias="from",
        description="hits to skip, as in Elasticsearch (from + size at most 10,000; a compound "
        "retriever pages over its rank_window_size)",
    )
    source: Flag | str | list[str] | EsSourceFilter | None = Field(
        None,
        alias="_source",
        description="false leaves each hit's _source out; a field, a list of them or "
        '{"includes": [...], "excludes": [...]} (dotted paths, * wildcards) keeps those alone',
    )
    fields: list[str | dict[str, Any]] | None = Field(
        None,
        description='fields each hit also answers under "fields", each as an array of its '
        'values: ["title", "meta.*"] (or {"field": "title"})',
    )
    track_total_hits: Annotated[Flag | TrackTotalHits | None, BeforeValidator(_boolean_words)] = (
        Field(
            None,
            description="true: hits.total counts every match; false: no hits.total; a number N: "
            "exact up to N, else N with relation gte (default 10000)",
        )
    )
    timeout: str | None = Field(
        None,
        description='the search\'s deadline ("2s", "500ms"), the shorter of it and the '
        "server's --timeout; past it the search is a 504",
    )
    min_score: Number | None = Field(
        None, description="hits scoring below it are left out (the tree's final scores)"
    )
    explain: Flag | None = Field(None, description="false only (no score explanations)")
    profile: Flag | None = Field(None, description="false only (no profiles)")
    stored_fields: str | list[str] | None = Field(
        None, description='"_none_" only: as _source: false (semrank stores no fields apart)'
    )
    highlight: dict[str, Any] | None = Field(None, description=HIGHLIGHT_DESCRIPTION)
    sort: str | dict[str, Any] | list[Any] | None = Field(None, description=SORT_DESCRIPTION)
    search_after: list[Any] | None = Field(None, description=SEARCH_AFTER_DESCRIPTION)
    track_scores: Flag | None = Field(None, description=TRACK_SCORES_DESCRIPTION)
    post_filter: dict[str, Any] | None = Field(None, description=POST_FILTER_DESCRIPTION)
    collapse: dict[str, Any] | None = Field(None, description=COLLAPSE_DESCRIPTION)
    pit: EsPointInTime | None = Field(
        None, description='a point in time to search (POST /{index}/_pit): {"id": ...}'
    )
    version: Flag | None = Field(None, description="true: each hit's _version (also ?version=true)")
    seq_no_primary_term: Flag | None = Field(
        None,
        description="true: each hit's _seq_no and _primary_term, read with its _source, for "
        "a conditional write (if_seq_no); also ?seq_no_primary_term=true",
    )


def _es_key(key: str, **field: Any) -> Any:
    """A field answered under Elasticsearch's ``_``-name and set by its own (FastAPI may
    validate an answer again from its JSON, so the ``_``-name is read too)."""
    choices = AliasChoices(key.removeprefix("_"), key)
    return Field(validation_alias=choices, serialization_alias=key, **field)


HIT_VERSION_KEYS = ("sort", "_version", "version", "_seq_no", "seq_no", "_primary_term",
                    "primary_term", "fields")  # fmt: skip


class EsHit(_Schema):
    """A hit searched with ``_source: false``: no ``_source`` key, as in Elasticsearch."""

    index: str = _es_key("_index")
    id: str = _es_key("_id")
    score: float | None = _es_key(
        "_score", description="null for hits sorted by fields, or by _doc"
    )
    sort: list[Any] | None = Field(
        None, description="its sort values, where the search sorted (search_after)"
    )
    version: int | None = _es_key("_version", default=None, description="with version: true")
    seq_no: int | None = _es_key(
        "_seq_no", default=None, description="with seq_no_primary_term: true (for if_seq_no)"
    )
    primary_term: int | None = _es_key(
        "_primary_term", default=None, description="with seq_no_primary_term: true"
    )
    fields: dict[str, list[Any]] | None = Field(None, description=HIT_FIELDS_DESCRIPTION)

    @model_serializer(mode="wrap")
    def _without_absent_sort(self, handler: SerializerFunctionWrapHandler) -> Any:
        """As Elasticsearch answers a hit of a search by score: no sort key (nor, unless
        asked, _version, _seq_no and _primary_term)."""
        return _without_absent(handler(self), *HIT_VERSION_KEYS)


class EsHitWithSource(EsHit):
    source: dict[str, Any] = _es_key("_source")


# A hit carries "highlight" only where a field had a fragment, as in Elasticsearch: a class
# of its own (as _source), since an absent key is no None that every hit would answer.
_HIGHLIGHT_FIELD = "fragments per field (only fields with one), where highlight was asked"


class EsHighlightedHit(EsHit):
    highlight: dict[str, list[str]] = Field(description=_HIGHLIGHT_FIELD)


class EsHighlightedHitWithSource(EsHitWithSource):
    highlight: dict[str, list[str]] = Field(description=_HIGHLIGHT_FIELD)


class EsTotal(_Schema):
    value: int
    relation: Literal["eq", "gte"]


class EsHits(_Schema):
    total: EsTotal | int | None = Field(
        description="left out with track_total_hits: false; a number with "
        "rest_total_hits_as_int=true"
    )
    max_score: float | None
    # The most specific first: smart unions keep each hit's own class.
    hits: list[EsHighlightedHitWithSource | EsHitWithSource | EsHighlightedHit | EsHit]

    @model_serializer(mode="wrap")
    def _without_absent_total(self, handler: SerializerFunctionWrapHandler) -> Any:
        """As Elasticsearch answers a search with track_total_hits: false: no total key."""
        return _without_absent(handler(self), "total")


class EsShards(_Schema):
    total: int = 1
    successful: int = 1
    skipped: int = 0
    failed: int = 0


class EsSearchResponse(_Schema):
    took: int = Field(description="milliseconds")
    timed_out: bool = False
    shards: EsShards = _es_key("_shards", default_factory=EsShards)
    hits: EsHits
    aggregations: dict[str, Any] | None = Field(
        None, description="each of the body's aggs (left out of the answer without any)"
    )

    scroll_id: str | None = _es_key("_scroll_id", default=None, description="with ?scroll=")
    pit_id: str | None = Field(None, description="the point in time searched (its id)")

    @model_serializer(mode="wrap")
    def _without_absent_aggregations(self, handler: SerializerFunctionWrapHandler) -> Any:
        """As Elasticsearch answers a search without aggs (or scroll, or point in time): no
        aggregations key (nor _scroll_id, nor pit_id)."""
        return _without_absent(handler(self), "aggregations", "_scroll_id", "scroll_id", "pit_id")


def _without_absent(answer: Any, *keys: str) -> Any:
    """``answer`` without those of ``keys`` whose value is None."""
    if isinstance(answer, dict):
        for key in keys:
            if key in answer and answer[key] is None:
                del answer[key]
    return answer


class EsScrollRequest(_Strict):
    """Elasticsearch's ``POST /_search/scroll`` body (or its query string)."""

    scroll_id: str | None = Field(None, description="the _scroll_id the last page answered")
    scroll: str | None = Field(None, description='how much longer to keep the context: "1m"')


class EsClearScrollRequest(_Strict):
    scroll_id: str | list[str] | None = Field(
        None, description="the scroll ids to free (or DELETE /_search/scroll/_all)"
    )


class EsClosePitRequest(_Strict):
    id: str = Field(description="the point in time to close")


class EsFreed(_Schema):
    """What a clear of scrolls or a close of a point in time freed (404 where none)."""

    succeeded: bool = True
    num_freed: int


class EsPitResponse(_Schema):
    id: str
    shards: EsShards = _es_key("_shards", default_factory=EsShards)


class EsMsearchResponse(_Schema):
    took: int = Field(description="milliseconds, for every search of the request")
    responses: list[dict[str, Any]] = Field(
        description='one per search, in order: a _search answer with "status": 200, or '
        '{"error": {"root_cause", "type", "reason"}, "status": ...} where that search failed'
    )


class EsCountRequest(_Strict):
    """An Elasticsearch ``_count`` body: the documents matching its query (all, without)."""

    query: dict[str, Any] | None = Field(
        None,
        description="match, multi_match or a bool with one of them in must (the documents "
        "sharing a term with it and passing its filter), or a filter query: match_all, term, "
        "terms, range, exists, ids, constant_score, bool",
    )


class EsCountResponse(_Schema):
    count: int
    shards: EsShards = _es_key("_shards", default_factory=EsShards)


class EsAliasesRequest(_Strict):
    """Elasticsearch's ``POST /_aliases`` body: actions applied together or not at all."""

    actions: list[dict[str, Any]] = Field(
        description='add / remove actions, e.g. [{"remove": {"index": "old", "alias": "live"}}, '
        '{"add": {"index": "new", "alias": "live"}}]; an alias names one index in semrank'
    )


class EsAcknowledged(_Schema):
    acknowledged: bool = True


class EsIndexAliases(_Schema):
    """One index's aliases, as Elasticsearch's ``GET /_alias`` gives them (each alias: {})."""

    aliases: dict[str, dict[str, Any]]


# --- Elasticsearch's document and index APIs (_es_docs) -----------------------------------
WriteResult = Literal["created", "updated", "deleted", "not_found", "noop"]


class EsWriteResult(_Schema):
    """A document write's answer: the document's ``_version`` after it, and the ``_seq_no`` of
    the write in its index (``_primary_term``: 1, semrank's one shard)."""

    index: str = _es_key("_index")
    id: str = _es_key("_id")
    version: int = _es_key("_version", default=1)
    result: WriteResult
    shards: EsShards = _es_key("_shards", default_factory=EsShards)
    seq_no: int = _es_key("_seq_no", default=0)
    primary_term: int = _es_key("_primary_term", default=1)


class EsBulkResponse(_Schema):
    took: int = Field(description="milliseconds")
    errors: bool = Field(description="whether an item failed (its own error object says why)")
    items: list[dict[str, dict[str, Any]]] = Field(
        description='one per action, in order: {"index": {"_index", "_id", "result", "status", '
        '...}}, with "error": {"type", "reason"} where it failed'
    )


_BY_QUERY = (
    "match, multi_match or a bool with one of them in must (the documents sharing a term with "
    "it and passing its filter), or a filter query: match_all, term, terms, range, exists, "
    "ids, constant_score, bool"
)
_CONFLICTS = "abort (the default: stop with 409 and the conflicts as failures) or proceed (count "
_CONFLICTS += "them in version_conflicts and go on): a document written since the query listed it "
_CONFLICTS += "is left as it is, or a reindex's op_type create meets an id dest holds"


class EsDeleteByQueryRequest(_Strict):
    """An Elasticsearch ``_delete_by_query`` body: every document its query matches."""

    query: dict[str, Any] | None = Field(None, description=_BY_QUERY)
    max_docs: PositiveCount | None = Field(None, description="the most documents acted on")
    conflicts: Literal["abort", "proceed"] | None = Field(None, description=_CONFLICTS)
    slice: Any = Field(None, description="refused: semrank runs a request as one slice")
    sort: Any = Field(None, description="refused: the order documents are acted on in")


class EsUpdateByQueryRequest(EsDeleteByQueryRequest):
    """An Elasticsearch ``_update_by_query`` body (no script: see docs/server.md)."""

    script: Any = Field(None, description="refused: semrank runs no scripts (use _update or _bulk)")


class EsReindexRequest(_Strict):
    """An Elasticsearch ``_reindex`` body: copy one index's documents into another."""

    source: dict[str, Any] = Field(
        description='{"index": NAME, "query"?: {...}, "_source"?: [fields], "size"?: batch}'
    )
    dest: dict[str, Any] = Field(
        description='{"index": NAME, "op_type"?: "index" | "create"}; a missing index is '
        "created with the source's settings"
    )
    max_docs: PositiveCount | None = Field(None, description="the most documents copied")
    conflicts: Literal["abort", "proceed"] | None = Field(None, description=_CONFLICTS)
    script: Any = Field(None, description="refused: semrank runs no scripts")
    size: Any = Field(None, description="refused: give max_docs")


class EsRetries(_Schema):
    bulk: int = 0
    search: int = 0


class EsByQueryResponse(_Schema):
    """What a ``_delete_by_query`` did, in Elasticsearch's shape (one request, no tasks)."""

    took: int = Field(description="milliseconds")
    timed_out: bool = False
    total: int = Field(description="documents the request acted on")
    deleted: int = 0
    batches: int = 0
    version_conflicts: int = 0
    noops: int = 0
    retries: EsRetries = Field(default_factory=EsRetries)
    throttled_millis: int = 0
    requests_per_second: float = -1.0
    throttled_until_millis: int = 0
    failures: list[dict[str, Any]] = Field(
        default_factory=list,
        description='per document, where one failed: {"index", "id", "cause": {"type", '
        '"reason"}, "status"}',
    )


class EsUpdateByQueryResponse(EsByQueryResponse):
    updated: int = 0


class EsReindexResponse(EsUpdateByQueryResponse):
    created: int = 0


class EsGetResult(_Schema):
    """A document by id (``found: false`` and a 404 where the index has none)."""

    index: str = _es_key("_index")
    id: str = _es_key("_id")
    version: int | None = _es_key("_version", default=None)
    seq_no: int | None = _es_key("_seq_no", default=None)
    primary_term: int | None = _es_key("_primary_term", default=None)
    found: bool
    source: dict[str, Any] | None = _es_key("_source", default=None)


class EsMgetRequest(_Strict):
    docs: list[dict[str, Any]] | None = Field(
        None, description='[{"_index": ..., "_id": ...}] (_index: by default the index in the path)'
    )
    ids: list[Any] | None = Field(None, description="ids in the path's index")


class EsMgetResponse(_Schema):
    docs: list[dict[str, Any]] = Field(description="one per id asked, in order, as GET _doc's")


class EsCreateIndexRequest(_Strict):
    """Elasticsearch's ``PUT /{index}`` body: what semrank reads of it is in docs/server.md."""

    settings: dict[str, Any] | None = Field(None, description="accepted, not used")
    mappings: dict[str, Any] | None = Field(
        None,
        description="properties of type text are the index's text fields; a dense_vector or "
        "semantic_text property (or no mappings) embeds them with the default model",
    )
    aliases: dict[str, dict[str, Any]] | None = Field(None, description="aliases of the index")


class EsCreateIndexResponse(_Schema):
    acknowledged: bool = True
    shards_acknowledged: bool = True
    index: str


class EsRefreshResponse(_Schema):
    shards: EsShards = _es_key("_shards", default_factory=EsShards)


class EsVersion(_Schema):
    number: str
    build_flavor: str = "default"
    build_type: str = "semrank"


class EsInfo(_Schema):
    name: str = "semrank"
    cluster_name: str = "semrank"
    version: EsVersion
    semrank_version: str
    tagline: str


class EsErrorCause(_Schema):
    type: str
    reason: str


class EsError(_Schema):
    root_cause: list[EsErrorCause]
    type: str
    reason: str


class EsErrorBody(_Schema):
    """Errors on the Elasticsearch routes: ``type`` is semrank's ``error_type``."""

    error: EsError
    status: int


# --- models, health, errors ----------------------------------------------------------------


class ModelInfo(_Schema):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "semrank"
    kind: str
    max_length: int
    default: bool


class CohereModel(_Schema):
    """A served model as Cohere's API describes one (its GetModelResponse): what Cohere's SDK
    reads from ``client.models.list()`` and ``client.models.get(name)``."""

    name: str
    endpoints: list[Literal["rerank"]] = ["rerank"]
    default_endpoints: list[Literal["rerank"]] = Field(
        description="['rerank'] for the model a request naming none gets"
    )
    context_length: int = Field(description="tokens the model reads at once (max_length)")


class ModelList(_Schema):
    object: Literal["list"] = "list"
    data: list[ModelInfo]
    models: list[CohereModel] = Field(description="the same models, as Cohere's API lists them")


class Health(_Schema):
    status: str


class Readiness(_Schema):
    status: Literal["ready", "starting", "draining"]
    models: list[str]


class ErrorBody(_Schema):
    """Every error response: a readable message and a stable machine-readable type. The message
    is repeated as ``message`` (Cohere's key) and ``detail`` (Voyage's and FastAPI's), so that
    vendors' clients show it and map statuses such as 429 to their own retrying errors."""

    error: str
    error_type: str
    message: str
    detail: str
