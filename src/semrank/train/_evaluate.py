"""nDCG@10 of the model being trained: on a held-out split and on a re-ranking run file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semrank.errors import DataFormatError


@dataclass(kw_only=True)
class RankingTask:
    """Queries with candidate passages and graded judgments (qrels)."""

    name: str
    queries: dict[str, str]
    candidates: dict[str, list[tuple[str, str]]]  # qid -> [(docid, text)]
    qrels: dict[str, dict[str, int]]


def score_pairs(
    model: Any,
    tokenizer: Any,
    pairs: list[tuple[str, str]],
    *,
    max_length: int,
    batch_size: int = 64,
) -> np.ndarray:
    """Cross-encoder logits for (query, passage) pairs, in input order."""
    import torch

    order = np.argsort([len(q) + len(p) for q, p in pairs])
    out = np.zeros(len(pairs), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for start in range(0, len(pairs), batch_size):
            index = order[start : start + batch_size]
            batch = encode_pairs(tokenizer, [pairs[i] for i in index], max_length=max_length)
            out[index] = model(**batch).logits[:, 0].float().numpy()
    model.train(was_training)
    return out


def encode_pairs(tokenizer: Any, pairs: list[tuple[str, str]], *, max_length: int) -> Any:
    return tokenizer(
        [q for q, _ in pairs],
        [p for _, p in pairs],
        truncation="longest_first",
        max_length=max_length,
        padding=True,
        return_tensors="pt",
    )


def ndcg_at_10(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> float:
    import ir_measures
    from ir_measures import nDCG

    return float(ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10])


def evaluate_task(model: Any, tokenizer: Any, task: RankingTask, *, max_length: int) -> float:
    """Re-rank every query's candidates with the model; nDCG@10 against the task's qrels."""
    keys = [(qid, doc) for qid, docs in task.candidates.items() for doc, _ in docs]
    pairs = [(task.queries[qid], text) for qid, docs in task.candidates.items() for _, text in docs]
    scores = score_pairs(model, tokenizer, pairs, max_length=max_length)
    run: dict[str, dict[str, float]] = {}
    for (qid, doc), score in zip(keys, scores, strict=True):
        run.setdefault(qid, {})[doc] = float(score)
    return ndcg_at_10(task.qrels, run)


def load_trec_rerank_task(run_path: Path, qrels_path: Path, *, name: str) -> RankingTask:
    """A ``[{query, hits:[{qid, docid, content}]}]`` candidates file plus qrels (TREC or BEIR),
    read by the evaluation loaders (gzip, line-numbered errors) as ``semrank eval`` reads them."""
    from semrank.eval.loaders import load_candidates, load_qrels

    lists = load_candidates(run_path)
    qrels = load_qrels(qrels_path)
    queries = {c.query_id: c.query for c in lists}
    candidates = {
        c.query_id: [(hit.doc_id, hit.text) for hit in c.hits] for c in lists if c.query_id in qrels
    }
    if not candidates:
        raise DataFormatError(
            f"--report {name}: no query of {run_path} is judged in {qrels_path}; give the qrels "
            "of those queries"
        )
    return RankingTask(name=name, queries=queries, candidates=candidates, qrels=qrels)
