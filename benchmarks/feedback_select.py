"""Choose the default's pseudo-relevance feedback (``top_k``, ``weight``) on development data.

The feedback settings in the bundled ``blend.json`` were chosen here, on collections semrank does
not report on: Vaswani (93 queries, ~22 relevant documents each), Cranfield (225 queries, ~8) and
200 SciFact *train* claims (~1), each BM25-retrieved from its own corpus (top 100 / 50 / 30) and
re-ranked by the default. TREC DL 2019 and SciFact test are never read. The default scores every
list once (feedback off); each setting then re-uses those scores and the embeddings of the same
windows, so the grid costs no model passes. The chosen setting maximises the mean nDCG@10 gain
over the three collections.

    python benchmarks/feedback_select.py                  # ~30 min on 2 cores
    python benchmarks/feedback_select.py --collections vaswani
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _cli import run  # benchmarks/ is on sys.path

from semrank import Reranker
from semrank.eval import evaluate
from semrank.eval.loaders import Run, ScoredDoc, load_beir, load_trec_qrels, load_trec_topics
from semrank.rerank._feedback import Feedback, FeedbackConfig
from semrank.retrieve._bm25 import BM25Index
from semrank.runtime._scorers import BiEncoderScorer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eval"
Collection = tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]


def cranfield() -> Collection:
    root = DATA / "cranfield"
    docs = {}
    for block in (root / "cran.all.1400").read_text().split(".I ")[1:]:
        title = re.search(r"\.T\n(.*?)\n\.A", block, re.S)
        body = block.split(".W\n", 1)[1] if ".W\n" in block else ""
        heading = " ".join(title.group(1).split()) if title else ""
        docs[block.split("\n", 1)[0].strip()] = f"{heading}\n{' '.join(body.split())}".strip()
    blocks = (root / "cran.qry").read_text().split(".I ")[1:]
    # Queries are numbered by position: the file's own numbers skip values, the qrels do not.
    queries = {str(i): " ".join(b.split(".W\n", 1)[1].split()) for i, b in enumerate(blocks, 1)}
    qrels: dict[str, dict[str, int]] = {}
    for line in (root / "cranqrel").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            code = int(parts[2])  # 1 = complete answer ... 4 = minimal interest; -1/5 = none
            qrels.setdefault(parts[0], {})[parts[1]] = 5 - code if 1 <= code <= 4 else 0
    return docs, queries, qrels


def vaswani() -> Collection:
    root = DATA / "vaswani"
    text = (root / "corpus" / "doc-text.trec").read_text()
    pattern = r"<DOCNO>(\d+)</DOCNO>(.*?)</DOC>"
    docs = {m.group(1): " ".join(m.group(2).split()) for m in re.finditer(pattern, text, re.S)}
    topics = load_trec_topics(root / "query-text.trec")
    queries = {qid: query.lower() for qid, query in topics.items()}
    return docs, queries, load_trec_qrels(root / "qrels")


def scifact_train(claims: int = 200) -> Collection:
    collection = load_beir(DATA / "scifact", split="train")
    docs = {d.doc_id: f"{d.title}\n{d.text}".strip() for d in collection.corpus.values()}
    chosen = sorted(collection.qrels)
    np.random.default_rng(0).shuffle(chosen)
    chosen = chosen[:claims]
    return (
        docs,
        {q: collection.queries[q] for q in chosen},
        {q: collection.qrels[q] for q in chosen},
    )


COLLECTIONS = {
    "vaswani": (vaswani, 100),
    "cranfield": (cranfield, 50),
    "scifact": (scifact_train, 30),
}


class RememberAll:
    """The default's own scorer, remembering every pair's raw score (feedback re-uses them)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.kind, self.activation = inner.kind, inner.activation
        self.max_length, self.tokenizer = inner.max_length, inner.tokenizer
        self.scores: dict[tuple[str, str], np.float32] = {}

    def doc_token_budget(self, query: str) -> int:
        return int(self.inner.doc_token_budget(query))

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        missing = list(dict.fromkeys(p for p in pairs if p not in self.scores))
        if missing:
            self.scores.update(zip(missing, self.inner.score_pairs(missing), strict=True))
        return np.array([self.scores[p] for p in pairs], dtype=np.float32)


def lists_of(name: str) -> tuple[list[tuple[str, str, list[str], list[str]]], dict[str, Any]]:
    load, depth = COLLECTIONS[name]
    docs, queries, qrels = load()
    ids = list(docs)
    index = BM25Index.build([docs[i] for i in ids])
    lists = []
    for qid, query in queries.items():
        if qid in qrels:
            hits = [ids[int(i)] for i in index.search(query, depth).ids]
            lists.append((qid, query, hits, [docs[h] for h in hits]))
    return lists, qrels


def ndcg(reranker: Reranker, lists: list[Any], qrels: dict[str, Any]) -> float:
    rankings = {}
    for qid, query, hits, texts in lists:
        scores = reranker.score(query, texts, raw=True)
        order = np.argsort(-scores, kind="stable").tolist()
        rankings[qid] = [ScoredDoc(doc_id=hits[i], score=float(scores[i])) for i in order]
    return evaluate(qrels, Run(name="feedback", rankings=rankings), ["nDCG@10"]).aggregate[
        "nDCG@10"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--collections", nargs="+", default=list(COLLECTIONS), choices=list(COLLECTIONS)
    )
    parser.add_argument("--top-k", nargs="+", type=int, default=[2, 3, 4, 5, 8])
    parser.add_argument("--weights", nargs="+", type=float, default=[1, 2, 3, 4, 6, 8])
    args = parser.parse_args()
    default = Reranker()
    remember = RememberAll(default.scorer)
    bi_encoder = default.feedback.embedder if default.feedback else None
    assert isinstance(bi_encoder, BiEncoderScorer), "the default model has no feedback entry"
    bi_encoder.cache_size = 10**7  # keep every window's embedding for the whole grid
    reranker = Reranker(default.name, scorer=remember, feedback=False)
    data = {name: lists_of(name) for name in args.collections}
    base = {name: ndcg(reranker, *data[name]) for name in args.collections}
    print("feedback off:", {name: round(value, 4) for name, value in base.items()}, flush=True)
    rows = []
    for top_k in args.top_k:
        for weight in args.weights:
            config = FeedbackConfig(top_k=top_k, weight=weight)
            reranker.feedback = Feedback(config=config, embedder=bi_encoder)
            gains = {name: ndcg(reranker, *data[name]) - base[name] for name in args.collections}
            rows.append((statistics.mean(gains.values()), top_k, weight, gains))
            print(f"top_k={top_k} weight={weight}: mean gain {rows[-1][0]:+.4f}", gains, flush=True)
    best = max(rows, key=lambda row: row[0])
    print(f"chosen: top_k={best[1]} weight={best[2]} (mean nDCG@10 gain {best[0]:+.4f})")


if __name__ == "__main__":
    run(main)
