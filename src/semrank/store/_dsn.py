"""PostgreSQL DSNs as text: recognised and shown without their password. Kept apart from
``semrank.store.postgres`` so that checking a setting does not import psycopg (an optional
dependency the runtime-only install lacks)."""

from __future__ import annotations

import re

DSN_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_dsn(value: object) -> bool:
    """Whether ``value`` names a PostgreSQL database (``postgresql://...``)."""
    return isinstance(value, str) and value.startswith(DSN_SCHEMES)


# A URL's user:password@, and password=... in a query string or a libpq key=value DSN (spaces
# around '=' allowed; a value in single quotes may hold spaces and \' escapes).
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)([^@]*)@")
_KEY_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)")


def redact_dsn(dsn: str) -> str:
    """``dsn`` without its password, for messages and ``index info``."""
    hidden = _URL_PASSWORD.sub(r"\1***@", dsn)
    return _KEY_PASSWORD.sub(r"\1***", hidden)


def redact_in(text: str, dsn: str) -> str:
    """``text`` (a driver's error, which may quote the DSN's parts) without ``dsn``'s password
    anywhere in it, as written in the DSN or quoted."""
    secrets = [m.group(2) for m in _URL_PASSWORD.finditer(dsn)]
    secrets += [m.group(2).strip("'") for m in _KEY_PASSWORD.finditer(dsn)]
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return redact_dsn(text)
