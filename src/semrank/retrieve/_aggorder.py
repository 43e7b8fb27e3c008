"""A bucket aggregation's ``order`` by a metric sub-aggregation, as Elasticsearch reads its
path (``AggregationPath``): ``avg_price`` (a single-value metric, or ``avg_price.value``),
``stats_price.max`` (a multi-value metric's value: the part after the last dot) or
``p[99.9]`` (the key in brackets, for keys holding a dot). Paths through single-bucket
aggregations (``filter>avg``) have nothing to go through: semrank has none.

``check_order`` refuses, when the request is read, the paths Elasticsearch refuses with its
"Invalid aggregation order path" errors; ``order_value`` reads a path's value from a
bucket's sub-aggregation answer (None: no value, sorted last either way; a min or max of
no values is Elasticsearch's infinity).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from semrank.errors import InvalidInputError
from semrank.retrieve._aggs import INTRINSIC_ORDERS, Aggregation, MetricAgg

__all__ = ["check_order", "order_metrics", "order_value", "split_path"]

SINGLE_VALUE = ("min", "max", "avg", "sum", "value_count", "cardinality")
STATS_VALUES = ("count", "min", "max", "avg", "sum")
_EXTENDED_VALUES = (
    *STATS_VALUES, "sum_of_squares", "variance", "variance_population", "variance_sampling",
    "std_deviation", "std_deviation_population", "std_deviation_sampling",
)  # fmt: skip
# extended_stats' bounds, as an order path names them, and where its answer holds them.
_BOUNDS = {
    f"std_{side}{suffix}": f"{side}{suffix}"
    for side in ("upper", "lower")
    for suffix in ("", "_population", "_sampling")
}
# What Elasticsearch ranks a bucket by where a min or max has no value (its answer: null):
# it starts a min at +Infinity and a max at -Infinity, which sort as numbers (first in the
# other direction), where every other metric of no value is a NaN, sorted last either way.
_EMPTY = {"min": math.inf, "max": -math.inf}
_BUCKETS_ONLY = (
    "Buckets can only be sorted on a sub-aggregator path that is built out of zero or more "
    "single-bucket aggregations within the path and a final single-bucket or a metrics "
    "aggregation at the path end."
)


def split_path(path: str) -> tuple[str, str | None]:
    """``path``'s aggregation name and the value key after it (None: none), as
    Elasticsearch splits its last element: ``name[key]``, else at the last dot."""
    if path.endswith("]") and "[" in path:
        name, _, key = path[:-1].rpartition("[")
        return name, key
    name, dot, key = path.rpartition(".")
    return (name, key) if dot and name and key else (path, None)


def check_order(agg: Any, subs: Mapping[str, Aggregation], at: str) -> None:
    """Refuse each of ``agg``'s order paths naming no metric of ``subs`` (its
    sub-aggregations) or a value that metric has not, in Elasticsearch's words."""
    for by, _ in getattr(agg, "order", ()):
        if by in INTRINSIC_ORDERS:
            continue
        problem = _path_problem(by, subs)
        if problem is not None:
            raise InvalidInputError(
                f"{at}: Invalid aggregation order path [{by}]. {problem} (order by _count, "
                "_key or a metric sub-aggregation of this aggregation: "
                '{"avg_price": "desc"}, {"price_stats.max": "asc"}, {"pct[99.9]": "desc"})'
            )


def _path_problem(path: str, subs: Mapping[str, Aggregation]) -> str | None:
    first = path.split(">", 1)[0]
    name, key = split_path(first) if ">" not in path else (first, None)
    sub = subs.get(name)
    if sub is None:
        return (
            f"The provided aggregation [{name}] either does not exist, or is a pipeline "
            "aggregation and cannot be used to sort the buckets."
        )
    if not isinstance(sub, MetricAgg) or ">" in path:
        return _BUCKETS_ONLY
    if sub.kind in SINGLE_VALUE:
        if key not in (None, "value"):
            return (
                "Ordering on a single-value metrics aggregation can only be done on its "
                f'value. Either drop the key (a la "{name}") or change it to "value" (a la '
                f'"{name}.value")'
            )
        return None
    if key is None:
        return "When ordering on a multi-value metrics aggregation a metric name must be specified."
    if _percent(sub, key) is None and key not in _metric_names(sub):
        return f"Unknown metric name [{key}] on multi-value metrics aggregation [{name}]"
    return None


def _metric_names(metric: MetricAgg) -> tuple[str, ...]:
    if metric.kind == "stats":
        return STATS_VALUES
    return (*_EXTENDED_VALUES, *_BOUNDS) if metric.kind == "extended_stats" else ()


def _percent(metric: MetricAgg, key: str) -> float | None:
    """The percent a percentiles' order key names, where it is one of those it computes."""
    if metric.kind != "percentiles":
        return None
    try:
        percent = float(key)
    except ValueError:
        return None
    return percent if percent in metric.percents else None


def order_metrics(
    order: tuple[tuple[str, bool], ...], subs: Mapping[str, Aggregation]
) -> dict[str, MetricAgg]:
    """The sub-aggregations ``order`` ranks buckets by (checked: metrics), by name."""
    named = (split_path(by)[0] for by, _ in order if by not in INTRINSIC_ORDERS)
    return {name: sub for name in named if isinstance(sub := subs[name], MetricAgg)}


def order_value(answer: Mapping[str, Any], metric: MetricAgg, path: str) -> float | None:
    """The value ``path`` names in a bucket's ``answer`` of ``metric`` (None: none)."""
    _, key = split_path(path)
    if metric.kind in SINGLE_VALUE:
        value = answer["value"]
    elif metric.kind == "percentiles":
        percent = _percent(metric, key or "")
        values = answer["values"]
        if isinstance(values, Mapping):
            value = values[str(percent)]
        else:
            value = next(item["value"] for item in values if item["key"] == percent)
    elif key in _BOUNDS:
        value = answer["std_deviation_bounds"][_BOUNDS[key]]
    else:
        value = answer[key or ""]
    if value is None:  # a min or max of no values: the infinity Elasticsearch holds there
        return _EMPTY.get(metric.kind if metric.kind in SINGLE_VALUE else key or "")
    return float(value)
