"""nDCG@10 of the model being trained: on a held-out split and on a re-ranking run file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semrank.train._data import open_text


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
    """A ``[{query, hits:[{qid, docid, content}]}]`` JSON run plus a TREC qrels file."""
    rows = json.load(open_text(run_path))
    queries, candidates = {}, {}
    for row in rows:
        qid = str(row["hits"][0]["qid"])
        queries[qid] = row["query"]
        candidates[qid] = [(str(h["docid"]), h["content"]) for h in row["hits"]]
    qrels: dict[str, dict[str, int]] = {}
    for line in qrels_path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 4:
            qrels.setdefault(parts[0], {})[parts[2]] = int(parts[3])
    judged = {q: docs for q, docs in candidates.items() if q in qrels}
    return RankingTask(name=name, queries=queries, candidates=judged, qrels=qrels)
