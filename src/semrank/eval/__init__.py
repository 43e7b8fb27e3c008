"""Evaluation: collection loaders (BEIR, TREC, candidate lists), metrics, re-ranking runs.

>>> from semrank.eval import load_candidates, load_qrels, candidates_to_run, evaluate
>>> lists = load_candidates("bm25-top100.json.gz")
>>> evaluate(load_qrels("qrels.txt"), candidates_to_run(lists)).aggregate["nDCG@10"]
"""

from semrank.eval.loaders import (
    BeirCollection,
    Candidate,
    CandidateList,
    Document,
    Qrels,
    Queries,
    Run,
    ScoredDoc,
    candidates_to_run,
    load_beir,
    load_beir_corpus,
    load_beir_qrels,
    load_beir_queries,
    load_candidates,
    load_qrels,
    load_queries,
    load_trec_qrels,
    load_trec_run,
    load_trec_topics,
    write_trec_run,
)
from semrank.eval.metrics import (
    DEFAULT_MEASURES,
    Evaluation,
    PairedComparison,
    compare,
    evaluate,
    parse_measures,
)
from semrank.eval.reranking import (
    RerankOutcome,
    ScoreFunction,
    depth_curve,
    reranked_run,
    score_candidates,
)

__all__ = [
    "DEFAULT_MEASURES",
    "BeirCollection",
    "Candidate",
    "CandidateList",
    "Document",
    "Evaluation",
    "PairedComparison",
    "Qrels",
    "Queries",
    "RerankOutcome",
    "Run",
    "ScoreFunction",
    "ScoredDoc",
    "candidates_to_run",
    "compare",
    "depth_curve",
    "evaluate",
    "load_beir",
    "load_beir_corpus",
    "load_beir_qrels",
    "load_beir_queries",
    "load_candidates",
    "load_qrels",
    "load_queries",
    "load_trec_qrels",
    "load_trec_run",
    "load_trec_topics",
    "parse_measures",
    "reranked_run",
    "score_candidates",
    "write_trec_run",
]
