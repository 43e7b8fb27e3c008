"""semrank.train: fine-tune cross-encoder re-rankers (torch is imported inside functions only)."""

from semrank.train._data import Collection, DataSpec, QueryGroup, load_collection
from semrank.train._loop import TrainConfig, parse_teacher_encoder, train

__all__ = [
    "Collection",
    "DataSpec",
    "QueryGroup",
    "TrainConfig",
    "load_collection",
    "parse_teacher_encoder",
    "train",
]
