"""nDCG@10 of the model being trained: on a held-out split and on a re-ranking run file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semrank.errors import DataFormatError, InvalidInputError


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
    with torch.inference_mode(), cpu_autocast():
        for start in range(0, len(pairs), batch_size):
            index = order[start : start + batch_size]
            batch = encode_pairs(tokenizer, [pairs[i] for i in index], max_length=max_length)
            out[index] = model(**batch).logits[:, 0].float().numpy()
    model.train(was_training)
    return out


def cpu_autocast() -> Any:
    """bf16 autocast where the CPU computes bf16 natively, else fp32 (a disabled autocast):
    torch emulates bf16 elsewhere (AVX2 laptops, Xeons before Cooper Lake, Graviton2), and
    training ran several times slower than in fp32 there."""
    import torch

    from semrank.runtime._select import cpu_computes_bf16

    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_computes_bf16())


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


def random_order_ndcg(task: RankingTask, *, seed: int) -> float:
    """nDCG@10 of the task's lists in random orders (the mean of 10): what validation gives a
    model that ranks nothing, beside the teacher's score."""
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(10):
        run = {
            qid: {doc: float(rng.random()) for doc, _ in candidates}
            for qid, candidates in task.candidates.items()
        }
        scores.append(ndcg_at_10(task.qrels, run))
    return float(np.mean(scores))


def evaluate_task(model: Any, tokenizer: Any, task: RankingTask, *, max_length: int) -> float:
    """Re-rank every query's candidates with the model; nDCG@10 against the task's qrels."""
    return ndcg_at_10(task.qrels, task_run(model, tokenizer, task, max_length=max_length))


def task_run(
    model: Any, tokenizer: Any, task: RankingTask, *, max_length: int
) -> dict[str, dict[str, float]]:
    """The model's logit for every candidate of every query (qid -> docid -> logit)."""
    keys = [(qid, doc) for qid, docs in task.candidates.items() for doc, _ in docs]
    pairs = [(task.queries[qid], text) for qid, docs in task.candidates.items() for _, text in docs]
    scores = score_pairs(model, tokenizer, pairs, max_length=max_length)
    run: dict[str, dict[str, float]] = {}
    for (qid, doc), score in zip(keys, scores, strict=True):
        run.setdefault(qid, {})[doc] = float(score)
    return run


def fit_calibration(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]
) -> tuple[float, float] | None:
    """``(scale, shift)`` such that ``sigmoid(scale * logit + shift)`` is the probability that a
    candidate is judged relevant (a logistic regression on the held-out lists, scikit-learn).

    A ranking loss leaves logits with an arbitrary offset (sessions saw -25 to -56 for every
    candidate, relevant ones too): 0..1 scores and ``min_score`` need it taken out. None where
    there is nothing to fit (one label only) or the model ranks relevant candidates lower."""
    from sklearn.linear_model import LogisticRegression

    logits = [score for qid in run for score in run[qid].values()]
    labels = [int(qrels.get(qid, {}).get(doc, 0) > 0) for qid in run for doc in run[qid]]
    if len(set(labels)) < 2:
        return None
    regression = LogisticRegression(C=1e4, max_iter=1000)
    regression.fit(np.asarray(logits, dtype=np.float64)[:, None], labels)
    scale, shift = float(regression.coef_[0][0]), float(regression.intercept_[0])
    return (scale, shift) if scale > 0 else None


def load_trec_rerank_task(run_path: Path, qrels_path: Path, *, name: str) -> RankingTask:
    """A ``[{query, hits:[{qid, docid, content}]}]`` candidates file plus qrels (TREC or BEIR),
    read by the evaluation loaders (gzip, line-numbered errors) as ``semrank eval`` reads them.
    A query judged only below 0 (junk, -2 in TREC Web qrels) is left out, as ``semrank eval``
    leaves it out: trec_eval's C code crashed the whole run on it at the first evaluation."""
    from semrank.eval.loaders import load_candidates, load_qrels
    from semrank.eval.metrics import measured_qrels

    lists = load_candidates(run_path)
    try:
        qrels = measured_qrels(load_qrels(qrels_path))
    except InvalidInputError as exc:
        raise DataFormatError(f"--report {name}: {qrels_path}: {exc}") from None
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
