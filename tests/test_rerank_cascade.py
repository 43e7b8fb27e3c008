"""Cascade re-ranking: a bi-encoder prunes the window before the main cross-encoder reads it."""

from __future__ import annotations

import numpy as np
import pytest

from semrank import Reranker
from semrank.errors import InvalidInputError
from semrank.models import resolve_embedding_model
from semrank.rerank import CascadeConfig

QUERY = "how do fleas spread between pets"
DOCS = [
    "Paris is the capital of France.",
    "Fleas jump from one animal to another when pets play together.",
    "The stock market fell sharply on Monday.",
    "Dogs can pick up fleas in grass and pass them to cats.",
    "A recipe for lemon cake with butter and sugar.",
    "Flea eggs fall off a pet and hatch in carpets and bedding.",
    "Jupiter is the largest planet of the solar system.",
]


@pytest.fixture(scope="module")
def main_model(tiny_model):
    return tiny_model("bert")


@pytest.fixture(scope="module")
def pruner_order() -> list[int]:
    scores = Reranker(resolve_embedding_model()).score(QUERY, DOCS)
    return np.argsort(-scores, kind="stable").tolist()


def test_keep_at_least_window_changes_nothing(main_model):
    plain = Reranker(main_model).score(QUERY, DOCS)
    cascaded = Reranker(main_model, cascade=CascadeConfig(keep=len(DOCS))).rerank(QUERY, DOCS)
    assert not any(r.pruned for r in cascaded)
    for result in cascaded:
        assert result.relevance_score == pytest.approx(float(plain[result.index]), abs=1e-6)


def test_model_reads_only_the_pruners_best(main_model, pruner_order):
    keep = 3
    plain = Reranker(main_model).score(QUERY, DOCS)
    results = Reranker(main_model, cascade=CascadeConfig(keep=keep)).rerank(QUERY, DOCS)
    read, pruned = results[:keep], results[keep:]
    assert {r.index for r in read} == set(pruner_order[:keep])
    assert not any(r.pruned for r in read) and all(r.pruned for r in pruned)
    for result in read:  # read documents keep the main model's own scores
        assert result.relevance_score == pytest.approx(float(plain[result.index]), abs=1e-6)
    assert [r.index for r in pruned] == pruner_order[keep:]  # then first-stage order
    floor = min(r.relevance_score for r in read)
    assert all(0.0 <= r.relevance_score <= floor for r in pruned)


def test_min_score_drops_pruned_documents(main_model):
    reranker = Reranker(main_model, cascade=CascadeConfig(keep=2))
    results = reranker.rerank(QUERY, DOCS, min_score=0.0)
    assert len(results) == 2 and not any(r.pruned for r in results)


def test_cascade_over_several_queries_prunes_each_separately(main_model):
    reranker = Reranker(main_model, cascade=CascadeConfig(keep=2))
    many = reranker.rerank_many([QUERY, "largest planet"], [DOCS, DOCS[::-1]])
    assert [sum(not r.pruned for r in results) for results in many] == [2, 2]
    assert many[0] == reranker.rerank(QUERY, DOCS)


@pytest.mark.parametrize("keep", [0, -1, 2.5, True])
def test_bad_keep_is_rejected_with_its_value(keep):
    with pytest.raises(InvalidInputError, match="cascade keep"):
        CascadeConfig(keep=keep)


def test_a_blend_as_the_pruner_is_named(main_model):
    """It failed on the blend's folder having no tokenizer.json."""
    with pytest.raises(InvalidInputError, match="'semrank-minilm-l6' is a blend"):
        Reranker(main_model, cascade=CascadeConfig(keep=2, model="semrank-minilm-l6"))


class _Confident:
    """A real scorer whose logits are shifted up, as a strong cross-encoder's are on relevant
    passages: after the sigmoid, float32 rounds them (and the pruned placeholders) to one value."""

    def __init__(self, inner, shift: float) -> None:
        self.inner, self.shift = inner, shift
        self.kind, self.activation = inner.kind, inner.activation
        self.max_length, self.tokenizer = inner.max_length, inner.tokenizer

    def doc_token_budget(self, query):
        return self.inner.doc_token_budget(query)

    def score_pairs(self, pairs):
        return self.inner.score_pairs(pairs) + np.float32(self.shift)


def test_pruned_documents_rank_below_read_ones_even_when_scores_saturate(main_model, pruner_order):
    from semrank.models import resolve
    from semrank.runtime import load_scorer

    keep = 3
    confident = _Confident(load_scorer(resolve(str(main_model))), shift=20.0)
    reranker = Reranker("confident", scorer=confident, cascade=CascadeConfig(keep=keep))
    results = reranker.rerank(QUERY, DOCS)
    assert [r.pruned for r in results] == [False] * keep + [True] * (len(DOCS) - keep)
    assert [r.index for r in results[keep:]] == pruner_order[keep:]
    kept = reranker.rerank(QUERY, DOCS, min_score=0.5)
    assert {r.index for r in kept} == set(pruner_order[:keep])
