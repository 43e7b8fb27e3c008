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
_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)([^&#]*)")
# A query string before an '@' ("h:5432/db?application_name=me@work"): no user:password there.
_QUERY_BEFORE = re.compile(r"\?[^@]*=")
_KEY_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|(?:\\.|[^\s\\])*)")


def redact_dsn(dsn: str) -> str:
    """``dsn`` without its password, for messages and ``index info``."""
    if "://" in dsn:
        span = _url_password_span(dsn)
        if span is not None:
            dsn = dsn[: span[0]] + "***" + dsn[span[1] :]
        return _QUERY_PASSWORD.sub(r"\1***", dsn)
    return _KEY_PASSWORD.sub(r"\1***", dsn)


def _url_password_span(dsn: str) -> tuple[int, int] | None:
    """Where a URL's password lies: after the user's ':' up to the '@' that ends the user
    info. libpq ends it at an '@' before the first '/' (the last one here, to hide a password
    holding '@' whole, or '?' and '='); a password holding '/' has its '@' later, which libpq
    misreads (quoting it in its errors): the last '@' not inside a query string then, unless
    no ':' precedes the '/' (no password there: "h/db@prod" names a database holding '@')."""
    start = dsn.index("://") + 3
    slash = dsn.find("/", start)
    head = dsn[start : slash if slash >= 0 else len(dsn)]
    if "@" in head:
        return _after_user(dsn, start, start + head.rindex("@"))
    if ":" not in head:
        return None
    # "h:5432/db@prod" (a port, then a database holding '@') and "u:1234/x@h:5432" (a user and
    # a password holding '/') read alike: hidden, as a password, since a shown one leaks.
    ats = (i for i in range(len(dsn) - 1, start - 1, -1) if dsn[i] == "@")
    at = next((i for i in ats if not _QUERY_BEFORE.search(dsn[start:i])), None)
    return None if at is None else _after_user(dsn, start, at)


def _after_user(dsn: str, start: int, at: int) -> tuple[int, int] | None:
    colon = dsn.find(":", start, at)
    return None if colon < 0 else (colon + 1, at)


def unencoded_password(dsn: str) -> bool:
    """Whether ``dsn``'s password holds characters a URL needs percent-encoded: libpq then
    reads part of it as the host, and quotes it in its errors."""
    span = _url_password_span(dsn) if "://" in dsn else None
    # What libpq's URL parser splits on: '+', '!', '$' and the like it takes as they are.
    return span is not None and re.search(r"[/?#@\s]", dsn[span[0] : span[1]]) is not None


def encoding_hint(dsn: str) -> str:
    """What to do about an ``unencoded_password``: percent-encode it; but where what comes
    before the first '/' reads as a host and a port ("h:5432/my@db", a database name holding
    '@') there may be no password at all, and the advice says so."""
    head = dsn[dsn.index("://") + 3 :].split("/", 1)[0]
    fix = "percent-encode the password's special characters (e.g. '/' as %2F)"
    if "@" not in head and re.fullmatch(r"[^:]*:\d+", head):
        return (
            "if what comes before the first '/' is a user and a password, not a host and a "
            f"port, {fix}"
        )
    return fix


def redact_in(text: str, dsn: str) -> str:
    """``text``, a driver's complaint about ``dsn``'s syntax (which quotes the DSN's parts),
    without the DSN's password. Only for such errors: a server's reply never holds the
    password, and replacing a short one everywhere garbled the user, host or port it named."""
    patterns = (_QUERY_PASSWORD,) if "://" in dsn else (_KEY_PASSWORD,)
    secrets = [m.group(2).strip("'") for pattern in patterns for m in pattern.finditer(dsn)]
    span = _url_password_span(dsn) if "://" in dsn else None
    heads: list[str] = []
    if span is not None:
        secret = dsn[span[0] : span[1]]
        # libpq quotes the pieces it misread as host, port or path.
        pieces = [piece for piece in re.split(r"[/?#@:\s]", secret) if piece]
        secrets += [secret, *(piece for piece in pieces if len(piece) >= 3)]
        # A shorter piece could be part of anything; quoted before an '@' it is the head of a
        # host libpq misread ("failed to resolve host 'PW@127.0.0.1'").
        heads = [f"{quote}{piece}@" for piece in pieces for quote in "'\"" if len(piece) < 3]
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    for head in heads:
        text = text.replace(head, f"{head[0]}***@")
    return text
