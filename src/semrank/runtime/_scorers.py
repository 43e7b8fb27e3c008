"""Backend-independent scorers: tokenization, batching, pooling and score extraction.

A backend only supplies a ``forward`` callable (padded int64 arrays -> logits or hidden
states); everything else is shared, so the ONNX and torch paths cannot drift apart.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

from semrank._tracing import ACTIVE_TRACER, span
from semrank.errors import InvalidInputError, ModelLoadError
from semrank.runtime._batching import BatchArrays, run_batched
from semrank.runtime._keytable import KeyTable
from semrank.runtime.base import Activation, BatchingConfig, ScorerKind, TextTokenizer
from semrank.runtime.tokenizer import EncodedInput, HFTokenizer

Forward = Callable[[BatchArrays], np.ndarray]


def logits_to_raw(logits: np.ndarray) -> np.ndarray:
    """One raw score per row: the logit, or logit[1] - logit[0] for two-label classifiers."""
    if logits.ndim != 2 or logits.shape[1] not in (1, 2):
        raise ModelLoadError(
            f"cross-encoder returned logits of shape {logits.shape}; only 1 or 2 labels can be "
            "used as a relevance score"
        )
    if logits.shape[1] == 2:
        return (logits[:, 1] - logits[:, 0]).astype(np.float32)
    return logits[:, 0].astype(np.float32)


def _check_pairs(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    checked = list(pairs)
    for i, pair in enumerate(checked):
        if len(pair) != 2 or not all(isinstance(t, str) for t in pair):
            raise InvalidInputError(f"pair {i} must be a (query, document) tuple of strings")
    return checked


class CrossEncoderScorer:
    """``PairScorer`` over a sequence-classification model."""

    kind: ScorerKind = "cross-encoder"
    backend: str = ""  # the concrete backend name, set by load_scorer
    # (scale, shift) under the activation: 0..1 scores are activation(scale * raw + shift);
    # raw scores stay the model's logits. Set by load_scorer from the model's folder.
    calibration: tuple[float, float] | None = None

    def __init__(
        self,
        tokenizer: HFTokenizer,
        forward: Forward,
        *,
        activation: Activation = "sigmoid",
        batching: BatchingConfig | None = None,
    ) -> None:
        self.hf_tokenizer: HFTokenizer = tokenizer
        self.tokenizer: TextTokenizer = tokenizer
        self.max_length: int = tokenizer.max_length
        self.activation = activation
        self.batching: BatchingConfig = batching or BatchingConfig()
        self._forward = forward

    def doc_token_budget(self, query: str) -> int:
        return self.hf_tokenizer.doc_token_budget(query)

    def query_token_limit(self, doc_tokens: int | None = None) -> int:
        return self.hf_tokenizer.query_token_limit(doc_tokens)

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        checked = _check_pairs(pairs)
        if not checked:
            return np.zeros(0, dtype=np.float32)
        with span("tokenize", scorer=self.kind, pairs=len(checked)):
            encoded = self.hf_tokenizer.encode_pairs(checked)
        with _model_run(self.kind, self.backend, encoded):
            raw: np.ndarray = run_batched(
                encoded,
                lambda batch: logits_to_raw(self._forward(batch)),
                self.batching,
                self.hf_tokenizer.pad_id,
                self.max_length,
            )
        return raw


def _model_run(
    kind: str, backend: str, encoded: Sequence[EncodedInput]
) -> AbstractContextManager[Any]:
    """The span of a model run over ``encoded`` inputs: the model's kind, its backend, inputs,
    longest input and tokens (counted only when traced)."""
    if ACTIVE_TRACER.get() is None:
        return span("model.run")  # a no-op
    lengths = [len(item) for item in encoded]
    sizes = {"inputs": len(lengths), "max_tokens": max(lengths), "tokens": sum(lengths)}
    return span("model.run", scorer=kind, backend=backend or None, **sizes)


class TextSteps(Protocol):
    """What a bi-encoder does to a text before its tokenizer reads it (an ``Embedder`` or the
    ``ResolvedModel`` it is loaded from: sentence-transformers' prompts and do_lower_case)."""

    @property
    def query_prompt(self) -> str: ...
    @property
    def document_prompt(self) -> str: ...
    @property
    def lowercase(self) -> bool: ...


def texts_as_read(
    texts: Sequence[str], steps: TextSteps, *, query: bool, prompted: bool = True
) -> list[str]:
    """``texts`` as the model reads them: its query prompt before queries (``query``), else its
    document prompt (``prompted=False``: neither), lowercased where it lowercases. Shared by
    search and training's mining, whose vectors must be the ones a search would make."""
    prompt = "" if not prompted else steps.query_prompt if query else steps.document_prompt
    read = [prompt + text for text in texts] if prompt else list(texts)
    if steps.lowercase:  # as sentence-transformers' Transformer module does: str.lower()
        read = [text.lower() for text in read]
    return read


class Embedder:
    """Sentence embeddings: pooled encoder states, L2-normalised unless ``normalize=False``."""

    backend: str = ""  # the concrete backend name, set by load_embedder

    def __init__(
        self,
        tokenizer: HFTokenizer,
        forward: Forward,
        *,
        pooling: str = "mean",
        normalize: bool = True,
        lowercase: bool = False,
        batching: BatchingConfig | None = None,
    ) -> None:
        if pooling not in ("mean", "cls"):
            raise ModelLoadError(f"unknown pooling {pooling!r}; use 'mean' or 'cls'")
        self.tokenizer: HFTokenizer = tokenizer
        self.max_length: int = tokenizer.max_length
        self.pooling = pooling
        self.normalize = normalize
        self.lowercase = lowercase
        self.query_prompt = ""  # set by load_embedder from the model (sentence-transformers')
        self.document_prompt = ""
        self.batching: BatchingConfig = batching or BatchingConfig()
        self._forward = forward

    def embed(
        self, texts: Sequence[str], *, query: bool = False, prompted: bool = True
    ) -> np.ndarray:
        """float32 array of shape ``(len(texts), dim)`` in input order; ``query``: the texts
        are queries (the model's query prompt before them, else its document prompt);
        ``prompted=False``: neither (what semrank embedded before it read prompts)."""
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise InvalidInputError("embed() takes a list of strings")
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        texts = texts_as_read(texts, self, query=query, prompted=prompted)
        with span("tokenize", scorer="embedder", texts=len(texts)):
            encoded = self.tokenizer.encode_texts(texts)
        with _model_run("embedder", self.backend, encoded):
            vectors = run_batched(
                encoded, self._pooled, self.batching, self.tokenizer.pad_id, self.max_length
            )
        return l2_normalize(vectors) if self.normalize else vectors

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """``embed`` for queries: the model's query prompt before each."""
        return self.embed(texts, query=True)

    def _pooled(self, batch: BatchArrays) -> np.ndarray:
        hidden = np.asarray(self._forward(batch), dtype=np.float32)
        if self.pooling == "cls":
            return hidden[:, 0, :]
        mask = batch["attention_mask"][:, :, None].astype(np.float32)
        counts = np.clip(mask.sum(axis=1), 1e-9, None)
        return (hidden * mask).sum(axis=1) / counts


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)


class BiEncoderScorer:
    """``PairScorer`` whose raw score is the cosine of query and document embeddings.

    It keeps the embeddings of the texts it embedded last (a bounded LRU), so comparing
    documents it has just scored with each other (``semrank.rerank``'s feedback) costs no second
    model pass. It also looks texts up in *known* tables: embeddings computed earlier, e.g. of
    an index's document windows at ingest (``semrank.rerank.prepare_windows``), keyed by
    ``text_key``. Model calls are serialised: a request thread and the server's batcher thread
    may both use it.
    """

    kind: ScorerKind = "bi-encoder"
    activation: Activation = "cosine"

    def __init__(self, embedder: Embedder, *, cache_size: int = 4096) -> None:
        self.embedder = embedder
        self.hf_tokenizer: HFTokenizer = embedder.tokenizer
        self.tokenizer: TextTokenizer = embedder.tokenizer
        self.max_length: int = embedder.max_length
        self.backend: str = embedder.backend
        self.cache_size = cache_size
        self._recent: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        # name -> (version, table): one table per source, replaced by a newer one; the least
        # recently handed over go first past max_tables (each maps a file).
        self._known: OrderedDict[str, tuple[object, KeyTable]] = OrderedDict()
        self.max_tables = 4
        self.embedded_texts: int = 0  # texts sent to the model, for tests and benchmarks
        self._prompt_tokens: dict[str, int] = {}

    def forget(self) -> None:
        """Drop the windows it remembers: a benchmark timing a request again, or one setting
        after another on the same passages, otherwise times lookups instead of the model."""
        with self._lock:
            self._recent.clear()

    def remember_table(
        self, name: str, version: object, keys: np.ndarray, vectors: np.ndarray
    ) -> None:
        """Know the normalised embeddings ``vectors`` of the texts whose ``text_key`` is the
        matching row of ``keys`` (an ``(n, 16)`` uint8 array). A table of the same ``name``
        and ``version`` is kept as it is; another version replaces it. At most ``max_tables``
        are kept, the least recently handed over dropped first."""
        with self._lock:
            held = self._known.get(name)
            if held is None or held[0] != version:
                try:
                    self._known[name] = (version, KeyTable(keys, vectors))
                except ValueError as exc:
                    raise InvalidInputError(f"table {name!r}: {exc}") from exc
            self._known.move_to_end(name)
            while len(self._known) > self.max_tables:
                self._known.popitem(last=False)

    def forget_tables(self, prefix: str) -> int:
        """Let go of the known tables whose name starts with ``prefix`` (those of an index
        being dropped: each may map its files, which a drop could then not free or, on
        Windows, rename). Returns how many it let go of."""
        with self._lock:
            names = [name for name in self._known if name.startswith(prefix)]
            for name in names:
                del self._known[name]
        return len(names)

    def embed_uncached(self, texts: list[str], *, counted: bool = True) -> np.ndarray:
        """L2-normalised embeddings of ``texts`` from the model itself, remembered nowhere (for
        bulk work such as preparing an index; serialised with the scorer's other model calls).
        ``counted=False`` keeps them out of ``embedded_texts`` (texts that are no document's)."""
        with self._lock:
            vectors = l2_normalize(self.embedder.embed(texts))
            self.embedded_texts += len(texts) if counted else 0
        return vectors

    def _take_from_tables(self, missing: dict[bytes, str]) -> None:
        """Move every text of ``missing`` that a known table holds into the memory."""
        for _, table in reversed(self._known.values()):  # the most recently handed over first
            wanted = list(missing)
            if not wanted:
                return
            for key, row in zip(wanted, table.rows(wanted).tolist(), strict=True):
                if row >= 0:
                    self._recent[key] = np.array(table.vectors[row], dtype=np.float32)
                    del missing[key]

    def doc_token_budget(self, query: str) -> int:
        # Query and document are encoded separately; the query takes no room, the model's
        # document prompt does (read before every window, it would push the window's end out).
        return self._room(self.embedder.document_prompt)

    def query_token_limit(self, doc_tokens: int | None = None) -> int:
        return self._room(self.embedder.query_prompt)  # read alone, after its prompt

    def _room(self, prompt: str) -> int:
        if prompt not in self._prompt_tokens:  # asked for every document list: counted once
            self._prompt_tokens[prompt] = self.hf_tokenizer.count_tokens(prompt) if prompt else 0
        room = self.max_length - self.hf_tokenizer.special_tokens_single
        return max(1, room - self._prompt_tokens[prompt])

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        checked = _check_pairs(pairs)
        if not checked:
            return np.zeros(0, dtype=np.float32)
        queries = list(dict.fromkeys(q for q, _ in checked))  # each query embedded once
        query_vectors = self.embed_normalized(queries, query=True)
        doc_vectors = self.embed_normalized([d for _, d in checked])
        row = {q: i for i, q in enumerate(queries)}
        per_pair = query_vectors[[row[q] for q, _ in checked]]
        return np.einsum("ij,ij->i", per_pair, doc_vectors).astype(np.float32)

    def embed_normalized(self, texts: list[str], *, query: bool = False) -> np.ndarray:
        """L2-normalised embeddings in input order; recently embedded texts are not re-run.

        The memory keeps the latest call's texts whole (and up to ``cache_size`` older ones),
        keyed by a digest: it holds no document text.
        """
        # A query is remembered apart from the same text as a document where prompts tell them
        # apart (without prompts both embed alike: one model call serves both).
        apart = query and self.embedder.query_prompt != self.embedder.document_prompt
        keys = [text_key(text, query=apart) for text in texts]
        with self._lock:
            missing = {key: text for key, text in zip(keys, texts, strict=True)}
            missing = {key: text for key, text in missing.items() if key not in self._recent}
            if missing and self._known:
                self._take_from_tables(missing)
            if missing:
                fresh = l2_normalize(self.embedder.embed(list(missing.values()), query=query))
                self.embedded_texts += len(missing)
                # Copies: a row view would keep its whole batch array alive.
                rows = zip(missing, fresh, strict=True)
                self._recent.update((key, row.copy()) for key, row in rows)
            vectors = [self._recent[key] for key in keys]
            distinct = dict.fromkeys(keys)
            for key in distinct:
                self._recent.move_to_end(key)
            while len(self._recent) > max(self.cache_size, len(distinct)):
                self._recent.popitem(last=False)
        return np.stack(vectors).astype(np.float32, copy=False)


# A query's key is a digest of its own kind (blake2b's personalisation), not of its text with a
# marker before it: a document beginning with the marker ("\x00query\x00" + a query, which a
# request may send) had that query's key, and its vector was then every later request's query
# vector, until it left the memory.
QUERY_PERSON = b"semrank-query"


def text_key(text: str, *, query: bool = False) -> bytes:
    """The 16-byte digest texts are remembered by (no text is kept); ``query``: the key of a
    query read with a prompt of its own, which no document's key equals."""
    person = QUERY_PERSON if query else b""
    data = text.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16, person=person).digest()
