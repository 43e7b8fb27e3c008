"""`semrank eval --index ... --retriever bm25,dense,hybrid,hybrid+rerank`: several runs, one table.

Each name is a first stage of the pipeline (``bm25``, ``dense``, ``hybrid``, ``linear`` or a
retriever TREE.json); a ``+rerank`` suffix re-ranks that first stage's top ``depth`` with the
chosen model. Every run is evaluated on the same judged queries and compared (paired t-test)
with the first run named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from semrank.errors import InvalidInputError

if TYPE_CHECKING:
    from semrank.eval.loaders import CandidateList, Qrels, Run
    from semrank.eval.metrics import Evaluation, PairedComparison

RERANK_SUFFIX = "+rerank"

# (base retriever) -> candidate lists; supplied by the command so progress bars stay there.
Retrieve = Callable[[str], "list[CandidateList]"]
# candidate lists -> run re-ranked by the model
RerankCandidates = Callable[["list[CandidateList]"], "Run"]  # candidates -> re-ranked run


@dataclass(kw_only=True)
class Comparison:
    """Runs by name (in the order asked), their evaluations, and paired tests vs the first."""

    runs: dict[str, Run] = field(default_factory=dict)
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    comparisons: dict[str, list[PairedComparison]] = field(default_factory=dict)


def split_retrievers(text: str) -> list[str]:
    """``"bm25, dense,hybrid+rerank"`` -> the names, validated (an inline JSON tree, commas
    and all, is one name)."""
    from semrank.eval.metrics import split_top_level

    names = [part.strip() for part in split_top_level(text) if part.strip()]
    if not names:
        raise InvalidInputError(f"--retriever {text!r} names no retriever")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"--retriever {text!r} names a retriever twice")
    return names


def compare_retrievers(
    names: list[str],
    judgments: Qrels,
    measures: list[str],
    *,
    retrieve: Retrieve,
    rerank: RerankCandidates,
) -> Comparison:
    """Evaluate every named run; first stages are retrieved once and shared."""
    from semrank.eval.loaders import candidates_to_run
    from semrank.eval.metrics import compare, evaluate

    cache: dict[str, list[CandidateList]] = {}
    result = Comparison()
    for name in names:
        base = name.removesuffix(RERANK_SUFFIX)
        if base not in cache:
            cache[base] = retrieve(base)
        lists = cache[base]
        run = rerank(lists) if name.endswith(RERANK_SUFFIX) else candidates_to_run(lists, name)
        result.runs[name] = run
        result.evaluations[name] = evaluate(judgments, run, measures)
    baseline = result.evaluations[names[0]]
    for name in names[1:]:
        result.comparisons[name] = [
            compare(baseline, result.evaluations[name], m) for m in measures
        ]
    return result
