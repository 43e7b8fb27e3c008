"""Batches of (query, positive + negatives, teacher scores), drawn with a resumable RNG."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from semrank.errors import InvalidInputError
from semrank.train._evaluate import RankingTask
from semrank.train._mining import MinedCollection


@dataclass(kw_only=True)
class Batch:
    queries: list[str]
    passages: list[list[str]]  # per query: positive first, then negatives
    teacher: np.ndarray  # (queries, candidates) bi-encoder cosine


class GroupSampler:
    """Picks a collection by weight, then its next query in a per-epoch shuffled order.

    ``state()``/``restore()`` make a resumed run draw exactly the batches it would have drawn.
    """

    def __init__(
        self, collections: list[MinedCollection], *, negatives: int, depth: int, seed: int
    ) -> None:
        for collection in collections:
            _check_enough_passages(collection, negatives)
        self.collections = collections
        self.negatives = negatives
        self.depth = depth
        self.rng = np.random.default_rng(seed)
        weights = np.array([c.weight * 1.0 for c in collections])
        self.probabilities = weights / weights.sum()
        self.orders = [self.rng.permutation(len(c.groups)) for c in collections]
        self.positions = [0] * len(collections)
        self.epochs = [0] * len(collections)

    def state(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "orders": [o.tolist() for o in self.orders],
            "positions": list(self.positions),
            "epochs": list(self.epochs),
        }

    def restore(self, state: dict[str, Any]) -> None:
        orders = [np.array(o) for o in state["orders"]]
        sizes = [len(c.groups) for c in self.collections]
        if len(orders) != len(sizes) or any(
            len(o) and int(o.max()) >= size for o, size in zip(orders, sizes, strict=False)
        ):
            raise InvalidInputError(
                "--resume: the checkpoint was saved over other training queries than these (a "
                "run from before validation queries were left out of every --data source); "
                "name a new folder, with --init-from its best model to start from it"
            )
        self.rng.bit_generator.state = state["rng"]
        self.orders = orders
        self.positions = list(state["positions"])
        self.epochs = list(state["epochs"])

    def _next_group(self, c: int) -> int:
        if self.positions[c] >= len(self.orders[c]):
            self.orders[c] = self.rng.permutation(len(self.collections[c].groups))
            self.positions[c] = 0
            self.epochs[c] += 1
        group = int(self.orders[c][self.positions[c]])
        self.positions[c] += 1
        return group

    def _candidates(self, collection: MinedCollection, g: int) -> list[int]:
        group = collection.groups[g]
        positive = int(self.rng.choice(group.positive_ids))
        pool = group.negative_ids
        if len(pool) >= self.negatives:
            negatives = self.rng.choice(pool, self.negatives, replace=False).tolist()
        else:  # too few labelled/mined: fill with random pool passages
            excluded = set(group.positive_ids) | set(pool)
            # (Drawn with replacement, as the shipped model's recipe drew them: changing the
            # draw would change every run's batches.)
            drawn = self.rng.choice(len(collection.passages), 4 * self.negatives)
            extra = [int(i) for i in drawn if int(i) not in excluded]
            if len(pool) + len(extra) < self.negatives:  # a small pool: draw without repeats
                order = self.rng.permutation(len(collection.passages)).tolist()
                extra = [i for i in order if i not in excluded]
            negatives = (list(pool) + extra)[: self.negatives]
        return [positive] + [int(n) for n in negatives]

    def next_batch(self, queries: int) -> Batch:
        batch = Batch(queries=[], passages=[], teacher=np.zeros((0, self.negatives + 1)))
        teacher_rows = []
        for c in self.rng.choice(len(self.collections), queries, p=self.probabilities):
            collection = self.collections[int(c)]
            g = self._next_group(int(c))
            ids = self._candidates(collection, g)
            batch.queries.append(collection.groups[g].query)
            batch.passages.append([collection.passages[i] for i in ids])
            teacher_rows.append(collection.teacher_scores(g, ids))
        batch.teacher = np.stack(teacher_rows)
        return batch


def _check_enough_passages(collection: MinedCollection, negatives: int) -> None:
    """Every list needs ``negatives`` passages besides its query's positives: fewer would give
    lists of different lengths (or, with one passage in all, a loss of 0 that teaches nothing)."""
    passages = len(collection.passages)
    for group in collection.groups:
        others = passages - len(set(group.positive_ids))
        if others < negatives:
            raise InvalidInputError(
                f"{collection.name}: query {group.query!r:.60} has {others} "
                f"passages besides its positives, fewer than --negatives {negatives}; lower "
                "--negatives, or add passages to mine from (,corpus=FILE)"
            )


POSITIVES_PER_CANDIDATE = 4  # a validation list holds at most 1 positive per 4 candidates


def split_validation(
    collection: MinedCollection, *, queries: int, candidates: int, seed: int
) -> tuple[RankingTask, float]:
    """Take ``queries`` groups out of ``collection`` for validation (removed in place).

    Returns the task and the bi-encoder teacher's nDCG@10 on it (the reference to beat).
    """
    from semrank.train._evaluate import ndcg_at_10

    rng = np.random.default_rng(seed + 7919)
    count = min(queries, len(collection.groups) // 2)
    if count == 0:
        raise InvalidInputError(
            f"{collection.name}: {len(collection.groups)} training query is too few to hold out "
            "validation queries (at most half are); add data, or pass --val-queries 0 to train "
            "without a validation split (the last step is kept)"
        )
    chosen = set(rng.choice(len(collection.groups), count, replace=False).tolist())
    task = RankingTask(name=f"val-{collection.name}", queries={}, candidates={}, qrels={})
    teacher_run: dict[str, dict[str, float]] = {}
    for index in sorted(chosen):
        group = collection.groups[index]
        qid = f"q{index}"
        # At most one positive in four candidates: lists of a query's many positives rate any
        # order near 1.0 (13 of 30 Vaswani lists held positives only; a random order scored
        # above the teacher), and the calibration fitted on them read every score as likely
        # relevant. One-positive lists (MS MARCO's) are as before.
        positives = group.positive_ids[: max(1, candidates // POSITIVES_PER_CANDIDATE)]
        ids = positives + group.negative_ids[: candidates - len(positives)]
        task.queries[qid] = group.query
        task.candidates[qid] = [(f"d{i}", collection.passages[i]) for i in ids]
        task.qrels[qid] = {f"d{i}": 1 for i in positives}
        scores = collection.teacher_scores(index, ids)
        teacher_run[qid] = {f"d{i}": float(s) for i, s in zip(ids, scores, strict=True)}
    collection.keep_groups([i for i in range(len(collection.groups)) if i not in chosen])
    return task, ndcg_at_10(task.qrels, teacher_run)
