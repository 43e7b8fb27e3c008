"""Semantic ranking callable from SQL: ``semrank sql install`` puts ``semrank.rank(query,
documents, ids, model)`` into a PostgreSQL database; it calls a running ``semrank serve``.

>>> from semrank.sql import install
>>> install("postgresql://localhost/search", endpoint="http://127.0.0.1:8000")
"""

from semrank.sql._functions import DEFAULT_ENDPOINT, DEFAULT_TIMEOUT_S, sql_migrations
from semrank.sql._install import install, set_settings

__all__ = ["DEFAULT_ENDPOINT", "DEFAULT_TIMEOUT_S", "install", "set_settings", "sql_migrations"]
