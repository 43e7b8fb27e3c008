"""Model catalog and loading: names, directories and hub ids to files on disk."""

from semrank.models.catalog import CATALOG, default_spec, find_spec
from semrank.models.loading import inspect_directory, resolve, resolve_embedding_model
from semrank.models.spec import ModelSpec, ResolvedModel

__all__ = [
    "CATALOG",
    "ModelSpec",
    "ResolvedModel",
    "default_spec",
    "find_spec",
    "inspect_directory",
    "resolve",
    "resolve_embedding_model",
]
