"""PostgreSQL DSNs as text: recognised and shown without their password. Kept apart from
``semrank.store.postgres`` so that checking a setting does not import psycopg (an optional
dependency the runtime-only install lacks)."""

from __future__ import annotations

import re

DSN_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_dsn(value: object) -> bool:
    """Whether ``value`` names a PostgreSQL database (``postgresql://...``)."""
    return isinstance(value, str) and value.startswith(DSN_SCHEMES)


# A URL's user:password@ (in its authority part only) and ?password=... (to & or #, spaces
# included); a libpq key=value DSN's password=... (spaces around '=' allowed; a value in single
# quotes, or unquoted up to whitespace, with backslash escapes).
_URL_PASSWORD = re.compile(r"(://[^:/@?#\s]*:)([^@/?#\s]*)@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#]*)")
_KEY_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|(?:\\.|[^\s\\])*)")


def redact_dsn(dsn: str) -> str:
    """``dsn`` without its password, for messages and ``index info``."""
    if "://" in dsn:
        return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", dsn))
    return _KEY_PASSWORD.sub(r"\1***", dsn)


def redact_in(text: str, dsn: str) -> str:
    """``text``, a driver's complaint about ``dsn``'s syntax (which quotes the DSN's parts),
    without the DSN's password. Only for such errors: a server's reply never holds the
    password, and replacing a short one everywhere garbled the user, host or port it named."""
    patterns = (_URL_PASSWORD, _QUERY_PASSWORD) if "://" in dsn else (_KEY_PASSWORD,)
    secrets = [m.group(2).strip("'") for pattern in patterns for m in pattern.finditer(dsn)]
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
