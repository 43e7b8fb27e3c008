"""The ``semrank`` schema: versioned, idempotent migrations.

Every migration runs once per database, recorded in ``semrank.migrations``; all of them run in
one transaction under an advisory lock, so concurrent first connections do not race.

Layout: ``semrank.indexes`` (one row per index: settings and corpus statistics for BM25),
``semrank.aliases`` (alias -> index, since migration 2) and ``semrank.documents``, partitioned
by index name, with an english ``tsvector`` generated column (GIN-indexed), the documents
(``doc jsonb``, GIN-indexed with ``jsonb_path_ops`` for filters, since migration 2), the BM25
term frequencies (``jsonb``, GIN-indexed), each field's BM25 term frequencies (``field_terms``,
since migration 4) and a ``vector(384)``
column (each partition gets an HNSW index, cosine ops, once it holds ``ann_threshold``
documents; below that exact search is as fast and exact).
"""

from __future__ import annotations

from typing import Any

from semrank.errors import BackendUnavailableError, IndexVersionError
from semrank.store.postgres._pool import NOT_PERMITTED, pooled_connection, redact

SCHEMA = "semrank"
TEXT_CONFIG = "english"
VECTOR_DIM = 384
_LOCK_KEY = 0x73656D72  # "semr": the advisory lock serialising migrations

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS semrank;
CREATE TABLE IF NOT EXISTS semrank.migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""

_STORE_V1 = f"""
-- Token count of a tsvector (stop words excluded), for BM25 over one field analysed in SQL.
CREATE OR REPLACE FUNCTION semrank.tsvector_length(tsvector) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT coalesce(sum(coalesce(cardinality(t.positions), 1)), 0)::integer
      FROM unnest($1) AS t $$;

CREATE TABLE IF NOT EXISTS semrank.indexes (
    name text PRIMARY KEY,
    partition text NOT NULL UNIQUE,
    settings jsonb NOT NULL,
    generation bigint NOT NULL DEFAULT 0,
    doc_count bigint NOT NULL DEFAULT 0,
    total_length bigint NOT NULL DEFAULT 0,
    fields_seen text[] NOT NULL DEFAULT '{{}}',
    embedding_dim integer,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- body: the text fields joined (what is searched and embedded).
-- fts: PostgreSQL's english analysis of body, for full-text first stages written in SQL.
-- terms / terms_length: body analysed like the embedded store's BM25 (bm25s tokens, Snowball
--   English stemmer, English stop words) as {{term: frequency}}, so BM25 here ranks the same.
CREATE TABLE IF NOT EXISTS semrank.documents (
    index_name text NOT NULL,
    id text NOT NULL,
    doc jsonb NOT NULL,
    body text NOT NULL,
    fts tsvector GENERATED ALWAYS AS (to_tsvector('{TEXT_CONFIG}'::regconfig, body)) STORED,
    terms jsonb NOT NULL,
    terms_length integer NOT NULL,
    embedding vector({VECTOR_DIM}),
    generation bigint NOT NULL,
    PRIMARY KEY (index_name, id)
) PARTITION BY LIST (index_name);

CREATE INDEX IF NOT EXISTS documents_fts ON semrank.documents USING gin (fts);
CREATE INDEX IF NOT EXISTS documents_terms ON semrank.documents USING gin (terms);
"""

# Migration 2. Index aliases (alias -> the one index it names), removed with their index. The
# roles granted semrank.indexes are granted this table too: a role given table grants only
# (docs/postgresql.md) reads every index through it from now on, and lost its searches when it
# had no grant here. The table goes to the owner of semrank.indexes where another role (a
# superuser) migrates: owned by that role, the owner of every other table lost every search and
# write to "permission denied". And a GIN index on ``doc``: document filters' term conditions
# carry a ``doc @? jsonpath`` conjunct (_filters.py) it finds the passing rows for
# (jsonb_path_ops: values under their path of keys, arrays read through), where a filtered
# search scanned the whole partition; built on every partition here (once, as the upgraded
# database's first connection migrates it; writes wait meanwhile), and by PostgreSQL on each
# new partition.
_STORE_V2 = """
CREATE TABLE IF NOT EXISTS semrank.aliases (
    alias text PRIMARY KEY,
    index_name text NOT NULL REFERENCES semrank.indexes (name) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS aliases_index_name ON semrank.aliases (index_name);

DO $$
DECLARE
    granted record;
    owner regrole;
BEGIN
    FOR granted IN
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS who,
               string_agg(a.privilege_type, ', ') AS what
        FROM pg_class c, aclexplode(c.relacl) AS a
        WHERE c.oid = 'semrank.indexes'::regclass AND a.grantee <> c.relowner
        GROUP BY a.grantee
    LOOP
        EXECUTE format('GRANT %s ON semrank.aliases TO %s', granted.what, granted.who);
    END LOOP;
    SELECT relowner::regrole INTO owner FROM pg_class WHERE oid = 'semrank.indexes'::regclass;
    IF owner = current_user::regrole
        OR (SELECT relowner FROM pg_class WHERE oid = 'semrank.aliases'::regclass)
            <> current_user::regrole THEN
        RETURN;  -- the owner migrates (or the table was there, not made now)
    ELSIF pg_has_role(current_user, owner, 'MEMBER') THEN
        EXECUTE format('ALTER TABLE semrank.aliases OWNER TO %s', owner);
    ELSE  -- a role that may not give the table away: the owner may do all with it
        EXECUTE format('GRANT ALL ON semrank.aliases TO %s', owner);
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS documents_doc ON semrank.documents USING gin (doc jsonb_path_ops);
"""

# Migration 3. Document versions (Elasticsearch's _version and _seq_no): each document's
# version (1 when created, +1 per write) and the sequence number of its last write, and each
# index's last sequence number. Columns with a constant default: PostgreSQL adds them to the
# catalog without rewriting a row, so existing documents read as version 1, seq_no 0 at once
# and the index's next write takes seq_no 1. Table grants cover the new columns, and the
# tables keep their owner; a semrank without this migration refuses the database from now on
# (_refuse_newer): its writes would keep no versions.
_STORE_V3 = """
ALTER TABLE semrank.documents
    ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS seq_no bigint NOT NULL DEFAULT 0;
ALTER TABLE semrank.indexes ADD COLUMN IF NOT EXISTS seq_no bigint NOT NULL DEFAULT 0;
"""

# Migration 4. Each document's top-level fields analysed by semrank's BM25 analyser (as the
# all-fields ``terms`` are), for BM25 over one field: {name under NFC: {term: frequency}} and
# {name: length}. A single field was analysed with PostgreSQL's english configuration, which
# keeps one-letter words and splits no unspaced script, so it ranked otherwise than the
# embedded store. Nullable columns without a default: added to the catalog without rewriting a
# row; NULL marks a row written before, analysed in Python (it cannot be in SQL) the first time
# the index is searched by one field (PostgresStore._analyse_older_fields).
_STORE_V4 = """
ALTER TABLE semrank.documents
    ADD COLUMN IF NOT EXISTS field_terms jsonb,
    ADD COLUMN IF NOT EXISTS field_lengths jsonb;
"""

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "store: indexes and documents", _STORE_V1),
    (2, "store: index aliases; GIN index on doc for filters", _STORE_V2),
    (3, "store: document versions and sequence numbers", _STORE_V3),
    (4, "store: per-field BM25 terms analysed as the embedded store's", _STORE_V4),
)

_MIGRATED: set[str] = set()  # DSNs migrated by this process


Migration = tuple[int, str, str]  # version, name, SQL


def migrate(
    conn: Any,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    extensions: tuple[str, ...] = ("vector",),
) -> list[int]:
    """Apply the migrations ``conn``'s database lacks; returns the versions applied now.

    ``extensions`` are created first (``IF NOT EXISTS``; creating one needs the privilege)."""

    if _up_to_date(conn, migrations, extensions):
        return []  # no DDL: a role with table grants only may not even run CREATE ... IF NOT EXISTS
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        for extension in extensions:
            _create_extension(conn, extension)
        conn.execute(_BOOTSTRAP)
        done = {row[0] for row in conn.execute("SELECT version FROM semrank.migrations")}
        _refuse_newer(conn, done, migrations)
        for version, name, statements in migrations:
            if version in done:
                continue
            conn.execute(statements)
            conn.execute(
                "INSERT INTO semrank.migrations (version, name) VALUES (%s, %s)", (version, name)
            )
            applied_now.append(version)
    return applied_now


def _up_to_date(conn: Any, migrations: tuple[Migration, ...], extensions: tuple[str, ...]) -> bool:
    """Whether every extension and migration is in place already (read-only queries)."""
    with conn.transaction():
        if conn.execute("SELECT to_regclass('semrank.migrations')").fetchone()[0] is None:
            return False
        present = {row[0] for row in conn.execute("SELECT extname FROM pg_extension")}
        done = {row[0] for row in conn.execute("SELECT version FROM semrank.migrations")}
    _refuse_newer(conn, done, migrations)
    return set(extensions) <= present and all(m[0] in done for m in migrations)


# Migrations come in families numbered by the hundred (the store's 1-99, `semrank sql`'s
# 100-199), each applied by its own command.
_FAMILY = 100


def _refuse_newer(conn: Any, done: set[int], migrations: tuple[Migration, ...]) -> None:
    """Refuse a database a newer semrank migrated past ``migrations``: this version's queries
    could read its tables wrongly, and its writes damage them."""
    known = max(version for version, _, _ in migrations)
    newer = sorted(v for v in done if v // _FAMILY == known // _FAMILY and v > known)
    if newer:
        raise IndexVersionError(
            f"database {conn.info.dbname!r} on {conn.info.host} was migrated by a newer semrank "
            f"(migration {newer[-1]}; this semrank knows {known} at most): "
            "install the newer semrank (from its checkout or wheel: pip install -U .) to use it; "
            "nothing was changed",
            client_message="the index store was migrated by a newer semrank than this server's; "
            "the server must be upgraded to use it",
        )


# How to install each extension semrank creates, for the error when the server lacks it.
_EXTENSION_PACKAGES = {
    "vector": "pgvector (Debian/Ubuntu: apt-get install postgresql-<major>-pgvector)",
    "plpython3u": "PL/Python (Debian/Ubuntu: apt-get install postgresql-plpython3-<major>)",
}


def _create_extension(conn: Any, extension: str) -> None:
    import psycopg
    from psycopg import sql

    statement = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension))
    try:
        conn.execute(statement)
    # PostgreSQL 16 answers a missing control file with FeatureNotSupported, older ones with
    # UndefinedFile.
    except (psycopg.errors.UndefinedFile, psycopg.errors.FeatureNotSupported) as exc:
        package = _EXTENSION_PACKAGES.get(extension, f"the {extension} extension")
        raise BackendUnavailableError(
            f"this PostgreSQL server has no {extension!r} extension ({str(exc).strip()}); "
            f"install {package} on the database server"
        ) from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise BackendUnavailableError(
            f"creating the {extension!r} extension needs a superuser ({str(exc).strip()}); run "
            f"this once as one, or have one run CREATE EXTENSION {extension} in this database"
        ) from exc


def ensure_migrated(pool: Any, dsn: str) -> None:
    """Migrate ``dsn``'s database once per process."""
    import psycopg

    if dsn in _MIGRATED:
        return
    with pooled_connection(pool, dsn) as conn:
        try:
            migrate(conn)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise _cannot_migrate(conn, dsn, exc) from exc
    _MIGRATED.add(dsn)


def _cannot_migrate(conn: Any, dsn: str, exc: BaseException) -> BackendUnavailableError:
    """A role with table grants only (docs/postgresql.md, 'Roles') is the first to use a
    database this semrank has migrations for: said as what its owner must run once, not as the
    grants the role already has."""
    cause = " ".join(str(exc).split())[:200]
    return BackendUnavailableError(
        f"the PostgreSQL role of {redact(dsn)} may not apply semrank's {_missing(conn)} "
        f"({cause}), which this semrank needs before it reads the indexes there: run one "
        "semrank command as the owner of the semrank tables (or the database owner where there "
        "are none yet), e.g. `semrank index list --store` with its DSN, and this role's "
        "searches and writes work from then on (docs/postgresql.md, 'Roles')",
        client_message=NOT_PERMITTED,
    )


def _missing(conn: Any) -> str:
    """The migrations ``conn``'s database lacks, named."""
    import psycopg

    try:
        with conn.transaction():
            made = conn.execute("SELECT to_regclass('semrank.migrations')").fetchone()[0]
            rows = conn.execute("SELECT version FROM semrank.migrations") if made else []
            done = {row[0] for row in rows}
    except psycopg.Error:  # not even readable by this role
        return "migrations"
    missing = [f"{version} ({name})" for version, name, _ in MIGRATIONS if version not in done]
    return f"migration{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
