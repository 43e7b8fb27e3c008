"""Hard-negative mining and teacher scores from a bi-encoder, computed once and cached.

The bi-encoder (all-MiniLM-L6-v2 by default) embeds every query and pool passage. Its cosine
ranks the pool for each query (the mined negatives) and is kept as the teacher score that the
cross-encoder is distilled towards, so the new head does not start from nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from semrank.errors import InvalidInputError
from semrank.runtime._scorers import TextSteps, texts_as_read
from semrank.train._data import Collection, QueryGroup
from semrank.train._evaluate import cpu_autocast

if TYPE_CHECKING:
    from semrank.models.spec import ResolvedModel

T = TypeVar("T")

log = logging.getLogger("semrank.train")

# A mined passage this close to a positive is a duplicate of it, not a negative.
DUPLICATE_COSINE = 0.98
MINING_MODES = ("dense", "hybrid")


@dataclass(kw_only=True)
class TeacherEmbeddings:
    """A further bi-encoder's embeddings of a collection; its cosine joins the teacher score."""

    weight: float
    query_embeddings: np.ndarray  # (n_groups, dim) float16, L2-normalised
    passage_embeddings: np.ndarray  # (n_passages, dim) float16, L2-normalised


@dataclass(kw_only=True)
class MinedCollection:
    """A collection plus embeddings: ``groups[i].negative_ids`` are given + mined negatives."""

    name: str
    weight: float
    passages: list[str]
    groups: list[QueryGroup]
    query_embeddings: np.ndarray  # (n_groups, dim) float16, L2-normalised
    passage_embeddings: np.ndarray  # (n_passages, dim) float16, L2-normalised
    extra_teachers: list[TeacherEmbeddings] = field(default_factory=list)

    def teacher_scores(self, group_index: int, passage_ids: list[int]) -> np.ndarray:
        """Bi-encoder cosine of one query against some of its pool's passages, plus each
        further teacher encoder's weighted cosine."""
        scores = _cosines(self.query_embeddings, self.passage_embeddings, group_index, passage_ids)
        for extra in self.extra_teachers:
            scores += extra.weight * _cosines(
                extra.query_embeddings, extra.passage_embeddings, group_index, passage_ids
            )
        return scores

    def keep_groups(self, keep: list[int]) -> None:
        """Keep only the groups at positions ``keep`` (their query embeddings with them)."""
        self.groups = [self.groups[i] for i in keep]
        self.query_embeddings = self.query_embeddings[keep]
        for extra in self.extra_teachers:
            extra.query_embeddings = extra.query_embeddings[keep]


def _cosines(
    queries: np.ndarray, passages: np.ndarray, group_index: int, passage_ids: list[int]
) -> np.ndarray:
    query = queries[group_index].astype(np.float32)
    return passages[passage_ids].astype(np.float32) @ query


def encoder_pooling(path: Path) -> str:
    """How the bi-encoder at ``path`` pools token states ("mean" or "cls", as its
    sentence-transformers config says; the catalog's loader reads it the same way)."""
    return encoder_model(path).pooling


def encoder_model(path: Path) -> ResolvedModel:
    """The bi-encoder at ``path`` as search loads it: its pooling, and its prompts and
    lowercasing (``texts_as_read``), which mining must apply as search does."""
    from semrank.models import inspect_directory

    return inspect_directory(Path(path), name=str(path), kind="bi-encoder")


def embed_texts(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    max_length: int,
    batch_size: int = 64,
    pooling: str = "mean",
    reading: TextSteps | None = None,
    query: bool = False,
    label: str | None = None,
) -> np.ndarray:
    """L2-normalised embeddings, pooled as the model was trained to be (``pooling``: "mean",
    sentence-transformers' recipe for MiniLM and mpnet, or "cls", as bge models), of the texts
    as search reads them with ``reading`` (its query or document prompt, lowercasing). With
    ``label``, a log line per tenth done says how far it is."""
    import torch

    if reading is not None:
        texts = texts_as_read(texts, reading, query=query)
    order = np.argsort([len(t) for t in texts])  # similar lengths share a batch: less padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float16)
    advance = _tenths_logged(label, len(texts)) if label else None
    model.eval()
    with torch.inference_mode(), cpu_autocast():
        for start in range(0, len(texts), batch_size):
            index = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in index],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[index] = pooled.numpy().astype(np.float16)
            if advance is not None:
                advance(len(index))
    return out


def _tenths_logged(label: str, total: int) -> Callable[[int], None]:
    """``advance(n)`` that logs a line at each tenth of ``total`` done: embedding a large
    collection took an hour with nothing said after "embedding N queries and M passages"."""
    from semrank._progress import tenths_said

    def say(done: int, percent: int, elapsed: float) -> None:
        log.info("%s: %d/%d embedded (%d%%) after %.0f s", label, done, total, percent, elapsed)

    return tenths_said(total, say)


def mine_negatives(
    collection: Collection,
    query_embeddings: np.ndarray,
    passage_embeddings: np.ndarray,
    *,
    depth: int,
    lexical: list[np.ndarray] | None = None,
) -> list[QueryGroup]:
    """Add each query's top-``depth`` pool passages (not positives) after its given negatives.

    With ``lexical`` (each query's BM25 ranking of the pool), the bi-encoder's and BM25's
    rankings are interleaved, so the lists also hold the word-overlap negatives of a BM25
    first stage, which is what the re-ranker reads at search time.
    """
    passages = passage_embeddings.astype(np.float32)
    mined_groups = []
    for start in range(0, len(collection.groups), 512):
        groups = collection.groups[start : start + 512]
        scores = query_embeddings[start : start + len(groups)].astype(np.float32) @ passages.T
        take = min(depth + 8, scores.shape[1])
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        for offset, (group, row, candidates) in enumerate(zip(groups, scores, top, strict=True)):
            candidates = candidates[np.argsort(-row[candidates])]
            if lexical is not None:
                candidates = _interleave(candidates, lexical[start + offset][:take])
            mined_groups.append(_merge_negatives(group, candidates, passages, depth))
    return mined_groups


def _interleave(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Alternate two rankings, keeping each passage's first appearance."""
    alternated = (i for pair in zip_longest(first.tolist(), second.tolist()) for i in pair)
    merged = dict.fromkeys(i for i in alternated if i is not None)
    return np.array(list(merged), dtype=np.int64)


def check_mining_mode(mining: str) -> None:
    if mining not in MINING_MODES:
        raise InvalidInputError(f"mining={mining!r}: use one of {', '.join(MINING_MODES)}")


def bm25_rankings(collection: Collection, *, depth: int) -> list[np.ndarray]:
    """Each query's BM25 (stemmed, stop words removed) top ``depth`` pool positions."""
    from semrank.retrieve import BM25Index

    index = BM25Index.build(collection.passages)
    return [index.search(group.query, depth).ids for group in collection.groups]


def _merge_negatives(
    group: QueryGroup, ranked: np.ndarray, passages: np.ndarray, depth: int
) -> QueryGroup:
    positives = set(group.positive_ids)
    positive_vectors = passages[group.positive_ids]
    mined = []
    for candidate in ranked.tolist():
        if candidate in positives:
            continue
        if float((positive_vectors @ passages[candidate]).max()) > DUPLICATE_COSINE:
            continue
        mined.append(candidate)
        if len(mined) >= depth:
            break
    negatives = list(dict.fromkeys(group.negative_ids + mined))
    return QueryGroup(query=group.query, positive_ids=group.positive_ids, negative_ids=negatives)


def _cache_key(
    collection: Collection, depth: int, max_length: int, encoder: str, mining: str, pooling: str
) -> str:
    digest = hashlib.sha256()
    settings = f"{encoder}|{depth}|{max_length}|{len(collection.passages)}|{mining}|{pooling}"
    digest.update(settings.encode())
    for group in collection.groups:
        digest.update(group.query.encode())
        digest.update(repr((group.positive_ids, group.negative_ids)).encode())
    for passage in collection.passages:  # an edited passage must not reuse old embeddings
        digest.update(passage.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def mine_collection(
    collection: Collection,
    *,
    encoder: Any,
    tokenizer: Any,
    encoder_id: str,
    depth: int,
    max_length: int,
    cache_dir: Path | None,
    mining: str = "dense",
    pooling: str = "mean",
    reading: TextSteps | None = None,
) -> MinedCollection:
    """Embed (pooled as the encoder was trained to pool, the texts as search reads them with
    ``reading``: prompts, lowercasing), mine (``mining``: "dense" or "hybrid" = dense + BM25)
    and cache one collection.

    The cache is keyed by the collection's content and the mining settings.
    """
    check_mining_mode(mining)
    reads = pooling + _reading_key(reading)
    key = _cache_key(collection, depth, max_length, encoder_id, mining, reads)
    cache = cache_dir / f"{collection.name}-{key}" if cache_dir else None
    if cache and (cache / "groups.json").exists():
        log.info("mining %s: cached at %s", collection.name, cache)
        cached = _read_cache(cache, lambda: _load_mined(cache, collection))
        if cached is not None:
            return cached
    log.info(
        "mining %s: embedding %d queries and %d passages",
        collection.name,
        len(collection.groups),
        len(collection.passages),
    )
    texts = [g.query for g in collection.groups]
    queries = embed_texts(
        encoder, tokenizer, texts, max_length=64, pooling=pooling, reading=reading, query=True,
        label=f"mining {collection.name}: queries",
    )  # fmt: skip
    passages = embed_texts(
        encoder, tokenizer, collection.passages, max_length=max_length, pooling=pooling,
        reading=reading, label=f"mining {collection.name}: passages",
    )  # fmt: skip
    lexical = bm25_rankings(collection, depth=depth + 8) if mining == "hybrid" else None
    groups = mine_negatives(collection, queries, passages, depth=depth, lexical=lexical)
    mined = MinedCollection(
        name=collection.name,
        weight=collection.weight,
        passages=collection.passages,
        groups=groups,
        query_embeddings=queries,
        passage_embeddings=passages,
    )
    if cache:
        _save_mined(cache, mined)
    return mined


def _reading_key(reading: TextSteps | None) -> str:
    """What a cache must be keyed by of how texts are read: a prompt changes every vector
    (texts read as given keep the key they had before prompts were read)."""
    if reading is None or not (
        reading.query_prompt or reading.document_prompt or reading.lowercase
    ):
        return ""
    return f"|{reading.query_prompt!r}|{reading.document_prompt!r}|{reading.lowercase}"


def _save_mined(cache: Path, mined: MinedCollection) -> None:
    rows = [[g.positive_ids, g.negative_ids] for g in mined.groups]
    arrays = {"queries.npy": mined.query_embeddings, "passages.npy": mined.passage_embeddings}
    _write_cache(cache, arrays, {"groups.json": rows})


def _write_cache(cache: Path, arrays: dict[str, Any], texts: dict[str, Any] | None = None) -> None:
    """Written beside and renamed into place: a write cut by a full disk or a kill left files
    that every later run failed to read. A cache that cannot be written is only a warning."""
    partial = cache.with_name(cache.name + ".partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name, array in arrays.items():
            np.save(partial / name, array)
        for name, value in (texts or {}).items():
            (partial / name).write_text(json.dumps(value), encoding="utf-8")
        shutil.rmtree(cache, ignore_errors=True)
        partial.replace(cache)
    except (OSError, ValueError) as exc:  # numpy reports a short write as either
        shutil.rmtree(partial, ignore_errors=True)
        log.warning("cannot keep the cache %s (%s); it will be computed again", cache, exc)


def _read_cache(cache: Path, read: Callable[[], T]) -> T | None:
    """``read()``, or None (computed again) where the cache is damaged."""
    try:
        return read()
    # cut .npy files (an empty one is EOFError), half-written or reshaped JSON, wrong lengths
    except (OSError, ValueError, EOFError, TypeError, KeyError, IndexError) as exc:
        log.warning("the cache %s is damaged (%s); computing it again", cache, exc)
        shutil.rmtree(cache, ignore_errors=True)
        return None


def _load_mined(cache: Path, collection: Collection) -> MinedCollection:
    rows = json.loads((cache / "groups.json").read_text())
    groups = [
        QueryGroup(query=g.query, positive_ids=pos, negative_ids=neg)
        for g, (pos, neg) in zip(collection.groups, rows, strict=True)
    ]
    return MinedCollection(
        name=collection.name,
        weight=collection.weight,
        passages=collection.passages,
        groups=groups,
        query_embeddings=np.load(cache / "queries.npy"),
        passage_embeddings=np.load(cache / "passages.npy"),
    )


def add_teacher_encoder(
    mined: MinedCollection,
    *,
    encoder: Any,
    tokenizer: Any,
    encoder_id: str,
    weight: float,
    max_length: int,
    cache_dir: Path | None,
) -> None:
    """Embed ``mined``'s queries and passages with a further bi-encoder whose cosine, times
    ``weight``, joins the teacher score (a stronger teacher than the mining bi-encoder alone).
    Must run before validation queries are split off; cached like the mining."""
    model = encoder_model(Path(encoder_id))
    reads = f"{encoder_id}|{max_length}|{len(mined.passages)}|2{_reading_key(model)}"
    digest = hashlib.sha256(reads.encode())
    for text in [*(g.query for g in mined.groups), *mined.passages]:
        digest.update(text.encode())
        digest.update(b"\0")  # texts apart: "ab" + "c" is not "a" + "bc"
    cache = cache_dir / f"{mined.name}-teacher-{digest.hexdigest()[:16]}" if cache_dir else None
    cached = None
    if cache and (cache / "passages.npy").exists():
        cached = _read_cache(cache, lambda: _load_teacher(cache, mined))
    if cached is not None:
        queries, passages = cached
    else:
        log.info("teacher %s: embedding %s", encoder_id, mined.name)
        texts = [g.query for g in mined.groups]
        queries = embed_texts(
            encoder, tokenizer, texts, max_length=64, pooling=model.pooling, reading=model,
            query=True, label=f"teacher {mined.name}: queries",
        )  # fmt: skip
        passages = embed_texts(
            encoder, tokenizer, mined.passages, max_length=max_length, pooling=model.pooling,
            reading=model, label=f"teacher {mined.name}: passages",
        )  # fmt: skip
        if cache:
            _write_cache(cache, {"queries.npy": queries, "passages.npy": passages})
    mined.extra_teachers.append(
        TeacherEmbeddings(weight=weight, query_embeddings=queries, passage_embeddings=passages)
    )


def _load_teacher(cache: Path, mined: MinedCollection) -> tuple[np.ndarray, np.ndarray]:
    queries, passages = np.load(cache / "queries.npy"), np.load(cache / "passages.npy")
    if len(queries) != len(mined.groups) or len(passages) != len(mined.passages):
        raise ValueError(f"{len(queries)} x {len(passages)} embeddings for another collection")
    return queries, passages
