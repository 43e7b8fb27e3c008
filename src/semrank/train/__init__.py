"""semrank.train: fine-tune cross-encoder re-rankers (torch is imported inside functions only)."""

from semrank.train._data import Collection, DataSpec, QueryGroup, load_collection
from semrank.train._loop import TrainConfig, train

__all__ = ["Collection", "DataSpec", "QueryGroup", "TrainConfig", "load_collection", "train"]
