"""PostgreSQL DSNs as text: recognised and shown without their password. Kept apart from
``semrank.store.postgres`` so that checking a setting does not import psycopg (an optional
dependency the runtime-only install lacks)."""

from __future__ import annotations

import re

DSN_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_dsn(value: object) -> bool:
    """Whether ``value`` names a PostgreSQL database (``postgresql://...``)."""
    return isinstance(value, str) and value.startswith(DSN_SCHEMES)


def redact_dsn(dsn: str) -> str:
    """``dsn`` without its password, for messages and ``index info``."""
    hidden = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password=)[^&\s]*", r"\1***", hidden)  # ?password=... and key=value DSNs
