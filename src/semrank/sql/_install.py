"""Installing the SQL functions and their settings into a database."""

from __future__ import annotations

from typing import Any

from semrank._checks import is_finite_number
from semrank.errors import BackendUnavailableError, InvalidInputError, StorageError
from semrank.sql._functions import LOCK_SETTINGS, UNSAFE_SETTINGS, sql_migrations

SETTING_KEYS = ("endpoint", "api_key", "timeout_s", "batch_size")
SECRET_KEYS = frozenset({"api_key"})


def _connect(dsn: str) -> Any:
    from semrank.store._dsn import redact_in
    from semrank.store.postgres import is_postgres_dsn, redact

    if not is_postgres_dsn(dsn):
        raise InvalidInputError(
            f"not a PostgreSQL DSN: {redact(dsn)!r}; use postgresql://user@host/db"
        )
    try:
        import psycopg
    except ImportError as exc:
        raise BackendUnavailableError(
            "semrank sql needs psycopg 3: pip install 'semrank[postgres]'"
        ) from exc
    try:
        return psycopg.connect(dsn)
    except psycopg.ProgrammingError as exc:  # the DSN's syntax: libpq quotes its parts
        cause = redact_in(" ".join(str(exc).split()), dsn)
        raise InvalidInputError(
            f"--dsn {redact(dsn)!r} does not parse ({cause}); check its syntax (a '%' in a "
            "password is written %25 in a URL)"
        ) from None
    except psycopg.OperationalError as exc:
        raise BackendUnavailableError(f"cannot connect to {redact(dsn)}: {exc}") from exc


def refuse_unsafe_settings(conn: Any, *, lock: bool = True) -> None:
    """Refuse settings tables that are not tables a superuser owns: the schema's owner (the
    store's, not always a superuser) could have put its own there, and a superuser writing them
    would run its code (a trigger, a view's functions) and hand it the API key. ``lock`` keeps
    them from being swapped until the transaction ends (both tables must exist then)."""
    if lock:
        conn.execute(LOCK_SETTINGS)
    unsafe = conn.execute(UNSAFE_SETTINGS).fetchone()[0]
    if unsafe is not None:
        raise StorageError(
            f"{unsafe}, not a table a superuser owns: its owner could run code as the superuser "
            "installing semrank.rank, and read the API key; as a superuser, check its rows and "
            "make it a table a superuser owns (ALTER TABLE ... OWNER TO ...), then install "
            "again; nothing was changed"
        )


def set_settings(conn: Any, values: dict[str, str | None]) -> None:
    """Store settings (``None`` values are left as they are): the API key in
    ``semrank.secrets`` (only its owner reads it), the others in ``semrank.settings``."""
    from psycopg import sql

    refuse_unsafe_settings(conn)
    for key, value in values.items():
        if key not in SETTING_KEYS:
            raise InvalidInputError(f"unknown setting {key!r}; known: {', '.join(SETTING_KEYS)}")
        if value is None:
            continue
        table = "secrets" if key in SECRET_KEYS else "settings"
        conn.execute(
            sql.SQL(
                "INSERT INTO semrank.{} (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ).format(sql.Identifier(table)),
            (key, value),
        )


def _check_endpoint(endpoint: str | None) -> None:
    if endpoint is None:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    try:
        parts.port  # noqa: B018 (a port out of range raises here, as in semrank.rank)
    except ValueError:
        parts = parts._replace(scheme="")
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(
            f"endpoint {endpoint!r} is not an http:// or https:// URL of a `semrank serve`; "
            "e.g. http://127.0.0.1:8000"
        )


def install(
    dsn: str,
    *,
    endpoint: str | None = None,
    api_key: str | None = None,
    timeout_s: float | None = None,
) -> list[int]:
    """Create ``plpython3u`` (needs a superuser), the ``semrank`` schema, the settings table and
    ``semrank.rank``; idempotent. Returns the migration versions applied now."""
    if timeout_s is not None and not (is_finite_number(timeout_s) and 0 < timeout_s <= 86400):
        raise InvalidInputError(
            f"timeout_s must be a number of seconds above 0, at most 86400, got {timeout_s!r}; "
            "e.g. 30"
        )

    _check_endpoint(endpoint)
    if api_key is not None and not (api_key and all(33 <= ord(c) <= 126 for c in api_key)):
        # Stored as given, it failed every semrank.rank call (22023) instead of the install.
        raise InvalidInputError(
            "the API key is empty or holds characters an HTTP header cannot carry (spaces, "
            "control or non-ASCII characters); give the key the server was started with "
            "(--api-key)"
        )
    import psycopg

    from semrank.store.postgres import migrate

    with _connect(dsn) as conn:
        with conn.transaction():  # the migrations check again, with the tables locked
            refuse_unsafe_settings(conn, lock=False)
        try:
            # A missing or forbidden plpython3u is named by migrate (BackendUnavailableError).
            applied = migrate(conn, sql_migrations(), extensions=("plpython3u",))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise BackendUnavailableError(
                f"installing semrank's SQL functions needs a superuser ({str(exc).strip()}); "
                "run `semrank sql install` as one"
            ) from exc
        with conn.transaction():
            set_settings(
                conn,
                {
                    "endpoint": endpoint,
                    "api_key": api_key,
                    "timeout_s": None if timeout_s is None else str(timeout_s),
                },
            )
    return applied
