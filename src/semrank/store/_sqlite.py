"""The document table: SQLite in WAL mode, one transaction per ingest batch.

SQLite is the source of truth. A batch's documents *and* their embeddings are committed in one
transaction, so a crash (even SIGKILL) loses at most the batch in flight and never leaves a half
written document. Every commit bumps ``generation``; derived files (BM25, vector snapshots) record
the generation they were built from and are rebuilt when it moved on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from semrank._files import user_name
from semrank.errors import DataFormatError, IndexNotFoundError, IndexVersionError, StorageError
from semrank.store._base import MAX_VERSION, version_overflow

DB_NAME = "documents.sqlite"
# 2: documents carry a version and the sequence number of their last write (Elasticsearch's
# _version and _seq_no), added to an index of schema 1 at its first open that may write it.
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    pk INTEGER PRIMARY KEY,          -- stable row number: the order of derived indexes
    id TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL,               -- JSON object of the document's fields
    text TEXT NOT NULL,              -- the text fields joined: BM25 "*" and what is embedded
    embedding BLOB,                  -- float32 bytes; NULL when the index has no dense model
    gen INTEGER NOT NULL,            -- generation of the last write of this row
    version INTEGER NOT NULL DEFAULT 1,  -- 1 when created, +1 per write (or a caller's own)
    seq_no INTEGER NOT NULL DEFAULT 0    -- the index's write number of its last write
);
"""

# Schema 1's documents table lacks the version columns: added with their defaults (every
# document version 1, seq_no 0; the index's next write takes seq_no 1), by ALTER TABLE, which
# rewrites no row.
_VERSION_COLUMNS = (
    "ALTER TABLE documents ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE documents ADD COLUMN seq_no INTEGER NOT NULL DEFAULT 0",
)

# Which rows a write touched, found without reading every row (a filter table brought up to
# date after one upsert read the whole table twice). Created at open, not in _SCHEMA: an
# index written by an earlier version gets it at its first open where the file may be written
# then, and one that may not is read as before. Earlier versions read a file that has it.
_GEN_INDEX = "CREATE INDEX IF NOT EXISTS documents_gen ON documents(gen)"

# Writes remembered (generation, commit token) so that derived files can be updated in place.
HISTORY_LENGTH = 512
_HISTORY = "commit_history"

_BUSY_TIMEOUT_S = 60.0  # how long a statement waits for another connection's lock

# SQLite's limit on bound parameters is 32766 in current builds; stay well below.
_CHUNK = 900


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# SQLite's result codes for a machine that cannot give the file what it needs (as opposed to
# a wrong statement, which is semrank's bug and should show as one).
_ENVIRONMENTAL = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_BUSY", "SQLITE_LOCKED",
                  "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_PERM")  # fmt: skip


def _is_environmental(exc: sqlite3.Error) -> bool:
    return str(getattr(exc, "sqlite_errorname", "")).startswith(_ENVIRONMENTAL)


def storage_error(path: Path, exc: BaseException) -> StorageError | IndexNotFoundError:
    """An environment failure of the index at ``path``, named with what to check."""
    if not path.exists():  # dropped (moved to the trash) while this request used it
        return IndexNotFoundError(
            f"index {path.parent.name!r} was dropped while this request was using it; create "
            "it again to use its name"
        )
    name = str(getattr(exc, "sqlite_errorname", ""))
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        advice = (
            "another process kept the index locked for writing (an ingest still running?); "
            "retry once it has finished"
        )
    else:
        advice = _files_this_user_may_not_write(path) or (
            "SQLite needs to write in the index folder even to read it, so check that this user "
            "may write there and that the disk has space"
        )
    return StorageError(f"index {path.parent.name!r} cannot be used here ({exc}; {path}): {advice}")


def _files_this_user_may_not_write(path: Path) -> str | None:
    """What to do where the index folder may be written and its database files may not (an
    index another member of a group made 0644, a sudo run's root-owned -wal/-shm): "check that
    this user may write there" pointed at a folder this user could write."""
    files = [path.with_name(path.name + end) for end in ("", "-wal", "-shm")]
    locked = [file for file in files if file.exists() and not _may_write(file)]
    if not locked or not _may_write(path.parent):
        return None
    info = locked[0].stat()
    owner = user_name(info.st_uid)
    names = " ".join(shlex.quote(str(file)) for file in locked)
    return (
        f"SQLite writes its files even to read the index, and {names} may not be written by "
        f"this user (owned by {owner}, mode {info.st_mode & 0o777:o}); run semrank as {owner}, "
        f"or where a group shares the index have {owner} let it write them: chmod g+w {names}"
    )


def _may_write(path: Path) -> bool:
    """As SQLite opens files: with the effective user (a setuid helper, a seteuid test)."""
    return os.access(path, os.W_OK, effective_ids=os.access in os.supports_effective_ids)


def create_database_file(path: Path) -> None:
    """Create the (empty) database file with the permissions the umask gives new files. SQLite
    makes its files 0644 whatever the umask, and its -wal and -shm files take the database's
    mode: in a folder a group shares (setgid, umask 002) the other members could not write the
    index, nor afterwards could its creator once a member's search had left those files."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o666))


# Every open DocumentDB of this process: a forked child closes its copies (below), or keeps
# those another thread was still using at the fork and refuses to open their files again.
_OPEN_DBS: weakref.WeakSet[DocumentDB] = weakref.WeakSet()
_KEPT_AFTER_FORK: list[DocumentDB] = []
_UNSAFE_AFTER_FORK: set[Path] = set()
_TAKEN_FOR_FORK: list[threading.RLock] = []
FORK_WAIT_S = 5.0  # how long a fork waits for other threads' queries to end, in all


def _quiet_before_fork() -> None:
    """Take every open database's locks, waiting a little for queries of other threads to end,
    so that the child's copies are idle and can be closed."""
    deadline = time.monotonic() + FORK_WAIT_S
    for db in list(_OPEN_DBS):
        for lock in (db._write_lock, db._read_lock):
            if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                _TAKEN_FOR_FORK.append(lock)


def _release_after_fork() -> None:
    while _TAKEN_FOR_FORK:
        _TAKEN_FOR_FORK.pop().release()


def _close_copies_after_fork() -> None:
    """In a forked child, close the copies of the parent's connections at once. Left open, they
    keep SQLite's per-process record of the parent's file locks, so a connection the child
    opens to the same index believes it holds locks it does not: the parent, closing, took
    itself for the last user and deleted the write-ahead log the child was writing to. Closing
    a copy cannot end the parent's use: the kernel's locks are the parent's."""
    _release_after_fork()
    for db in list(_OPEN_DBS):
        if db._idle_at_fork():
            with contextlib.suppress(sqlite3.Error, AttributeError):
                db._close_connections()
        else:
            # Another thread of the parent was still inside SQLite on it: the copy of its
            # mutex is held by a thread the child does not have, so closing (now, or when
            # collected) would wait for good, and its lock records make a new connection to
            # the file unsafe here.
            _KEPT_AFTER_FORK.append(db)
            _UNSAFE_AFTER_FORK.add(db.path)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_quiet_before_fork,
        after_in_parent=_release_after_fork,
        after_in_child=_close_copies_after_fork,
    )


class DocumentDB:
    """Thread-safe access to one index's SQLite file: one connection writes, one reads.

    Reads never wait for a write: in WAL mode a reader sees the last commit while a writer works,
    so a write waiting for another process's lock (an ingest) holds up only other writes, not
    the searches and index info of a server (they queued behind it on one shared connection).
    """

    def __init__(self, path: Path) -> None:
        if path in _UNSAFE_AFTER_FORK:
            raise StorageError(
                f"index {path.parent.name!r} cannot be opened in this process: it was forked "
                "while another thread of its parent was still reading or writing the index, "
                "and SQLite's records of that use make a new connection unsafe here (writes "
                "could be lost); fork before using indexes from threads, or start processes "
                "with multiprocessing's 'spawn' method"
            )
        self.path = path
        self._pid = os.getpid()  # SQLite's connections and locks belong to the opening process
        # Re-entrant: a nested transaction fails in SQLite with its own error, not a hang.
        self._write_lock = threading.RLock()
        self._read_lock = threading.RLock()
        self.versioned = False  # whether the documents table has its version columns (_setup)
        try:  # a drop racing this open: "unable to open database file", raw, was a 500
            self._writer = self._reader = self._connect(path)
        except sqlite3.OperationalError as exc:
            raise storage_error(path, exc) from exc
        try:
            self._setup()
            self._reader = self._connect(path)
        except IndexVersionError:
            self._close_connections()
            raise
        except sqlite3.OperationalError as exc:  # locked, read-only...: not the file's fault
            self._close_connections()
            if not _is_environmental(exc):
                raise
            raise storage_error(path, exc) from exc
        except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
            self._close_connections()
            name = path.parent.name
            raise DataFormatError(
                f"{path} is not a readable SQLite database ({exc}); restore it from a backup, "
                f"or delete the index with `semrank index drop {name}`",
                client_message=f"index {name!r} is not a readable SQLite database ({exc}); "
                f"restore it from a backup, or delete it (DELETE /v1/indexes/{name})",
            ) from exc
        _OPEN_DBS.add(self)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        return sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )

    def _setup(self) -> None:
        self._check_layout()  # before anything here writes to the file
        self._writer.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives power loss too, not only a killed process; one fsync per batch.
        self._writer.execute("PRAGMA synchronous=FULL")
        self._writer.executescript(_SCHEMA)
        self._add_gen_index()
        self.versioned = self._has_version_columns(self._writer)
        if not self.versioned:
            self._try_adding_version_columns()

    @staticmethod
    def _has_version_columns(conn: sqlite3.Connection) -> bool:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(documents)")}
        return "seq_no" in columns

    def _try_adding_version_columns(self) -> None:
        """Schema 1 brought to 2 where the file may be written now (as ``_add_gen_index``);
        otherwise the first write transaction adds them (``transaction``), and reads meanwhile
        see every document as version 1, seq_no 0, as the columns' defaults."""
        conn = self._writer
        conn.execute("PRAGMA busy_timeout=0")
        try:
            with self.transaction():  # which adds them first
                pass
        except StorageError:  # locked by another process's write, or read-only here
            pass
        finally:
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_S * 1000:.0f}")

    def _add_version_columns(self, conn: sqlite3.Connection) -> None:
        """In the caller's write transaction: another process may have added them meanwhile."""
        if not self._has_version_columns(conn):
            for statement in _VERSION_COLUMNS:
                conn.execute(statement)
            # Older semrank refuses the index from now on: its writes would keep no versions.
            self.set_meta(conn, "schema_version", SCHEMA_VERSION)
        self.versioned = True

    def _add_gen_index(self) -> None:
        """Index ``gen`` where it is missing, if the file may be written now: without it the
        reads by generation scan every row (as they did), so an open does not wait for another
        process's write lock, nor fail where this user may only read, to add it."""
        conn = self._writer
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name='documents_gen'").fetchone():
            return
        conn.execute("PRAGMA busy_timeout=0")
        try:
            conn.execute(_GEN_INDEX)
        except sqlite3.OperationalError as exc:
            if not _is_environmental(exc):
                raise
        finally:
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_S * 1000:.0f}")

    def _check_layout(self) -> None:
        """Refuse a file a newer semrank wrote in a layout this one does not know: reading it
        could give wrong hits, and this version's tables written into it could damage it."""
        conn = self._writer
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        row = (
            has_meta
            and conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        )
        version = json.loads(row[0]) if row else SCHEMA_VERSION
        if isinstance(version, int) and version <= SCHEMA_VERSION:
            return
        index = self.path.parent
        raise IndexVersionError(
            f"index {index.name!r} at {index} was written by a newer semrank (index schema "
            f"{version!r}; this semrank reads schema {SCHEMA_VERSION} at most): install the "
            "newer semrank (from its checkout or wheel: pip install -U .) to open it; the index "
            "is left as it is"
        )

    def _close_connections(self) -> None:
        self._writer.close()
        if self._reader is not self._writer:
            self._reader.close()

    def close(self) -> None:
        if os.getpid() != self._pid:
            return  # a forked child's copy, closed when the child began
        with self._write_lock, self._read_lock:
            self._close_connections()

    def _idle_at_fork(self) -> bool:
        """In a forked child: whether no other thread of the parent held this database's locks
        (was inside SQLite through it) when the fork happened."""
        taken = [lock for lock in (self._write_lock, self._read_lock) if lock.acquire(False)]
        for lock in taken:
            lock.release()
        return len(taken) == 2

    def _check_process(self) -> None:
        """Refuse use from a process forked after the open: SQLite does not support a
        connection across fork(), and a child's writes through it were lost (the parent,
        closing, took itself for the last user and deleted the write-ahead log)."""
        if os.getpid() != self._pid:
            name = self.path.parent.name
            raise StorageError(
                f"index {name!r} was opened in another process (this one was forked from it), "
                "and SQLite's connections do not survive a fork: open the index again in this "
                "process (semrank.store.open_index, or search it by name)"
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` .. ``COMMIT``: one writer at a time, all or nothing."""
        self._check_process()
        conn = self._writer
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if not self.versioned:
                        self._add_version_columns(conn)
                    yield conn
                except BaseException:
                    if conn.in_transaction:  # SQLite ends it itself on a full disk
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if not _is_environmental(exc):
                    raise
                raise storage_error(self.path, exc) from exc

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The read connection, under its lock; a locked or unreadable file is a StorageError
        (HTTP 503) naming the index, as for writes, not an internal error."""
        self._check_process()
        with self._read_lock:
            try:
                yield self._reader
            except sqlite3.OperationalError as exc:
                if not _is_environmental(exc):
                    raise
                raise storage_error(self.path, exc) from exc

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        with self._reading() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    # --- meta ------------------------------------------------------------------------------
    def get_meta(
        self, key: str, default: Any = None, conn: sqlite3.Connection | None = None
    ) -> Any:
        if conn is not None:  # the caller's transaction or snapshot: its lock is held
            row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        else:
            with self._reading() as reader:
                row = reader.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    @staticmethod
    def set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, json.dumps(value)),
        )

    def generation(self, conn: sqlite3.Connection | None = None) -> int:
        return int(self.get_meta("generation", 0, conn))

    def commit_token(self, conn: sqlite3.Connection | None = None) -> str:
        """A random token of the last write: generations alone repeat when a backup of the
        database is restored and written to again (empty for indexes written before it)."""
        return str(self.get_meta("commit", "", conn))

    def state(self) -> tuple[int, str]:
        """(generation, commit token), read together: a write between two reads would pair a
        generation with another write's token."""
        with self.snapshot() as conn:
            return self.generation(conn), self.commit_token(conn)

    @classmethod
    def bump_generation(cls, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        generation = (int(json.loads(row[0])) if row else 0) + 1
        token = uuid.uuid4().hex
        cls.set_meta(conn, "generation", generation)
        cls.set_meta(conn, "commit", token)
        row = conn.execute("SELECT value FROM meta WHERE key=?", (_HISTORY,)).fetchone()
        history = json.loads(row[0]) if row else []
        cls.set_meta(conn, _HISTORY, [*history, [generation, token]][-HISTORY_LENGTH:])
        return generation

    def commit_history(self, conn: sqlite3.Connection) -> dict[int, str]:
        """``{generation: commit token}`` of the last ``HISTORY_LENGTH`` writes of this
        database's own history: a derived file of a generation whose token is here was built
        from an earlier state of these very documents (not from a restored backup's other
        future), so it can be brought up to date by the rows written since."""
        return {int(g): str(t) for g, t in self.get_meta(_HISTORY, [], conn)}

    # --- documents -------------------------------------------------------------------------
    def count(self) -> int:
        with self._reading() as reader:
            return int(reader.execute("SELECT count(*) FROM documents").fetchone()[0])

    def stored_docs(
        self, ids: Sequence[str], conn: sqlite3.Connection | None = None
    ) -> dict[str, str]:
        """``{id: doc JSON}`` for the ids that exist (read in ``conn``, the caller's
        transaction, if given)."""
        found: dict[str, str] = {}
        with contextlib.nullcontext(conn) if conn is not None else self._reading() as reader:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                rows = reader.execute(
                    f"SELECT id, doc FROM documents WHERE id IN ({marks})", tuple(chunk)
                )
                found.update(rows.fetchall())
        return found

    def stored_versions(
        self, ids: Sequence[str], conn: sqlite3.Connection | None = None
    ) -> dict[str, tuple[str, int, int]]:
        """``{id: (doc JSON, version, seq_no)}`` for the ids that exist (in ``conn``, the
        caller's transaction, if given); an index whose file has no version columns yet (read
        only) reads every document as version 1, seq_no 0."""
        found: dict[str, tuple[str, int, int]] = {}
        with contextlib.nullcontext(conn) if conn is not None else self._reading() as reader:
            if not self.versioned:  # another process may have added them since this open
                self.versioned = self._has_version_columns(reader)
            columns = "version, seq_no" if self.versioned else "1, 0"
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                rows = reader.execute(
                    f"SELECT id, doc, {columns} FROM documents WHERE id IN ({marks})",
                    tuple(chunk),
                )
                found.update((row[0], (row[1], int(row[2]), int(row[3]))) for row in rows)
        return found

    @classmethod
    def take_seq_nos(cls, conn: sqlite3.Connection, count: int) -> int:
        """The first of ``count`` new sequence numbers of the index's writes, in the caller's
        write transaction (the last one taken is kept in meta; 0 before any)."""
        row = conn.execute("SELECT value FROM meta WHERE key='seq_no'").fetchone()
        last = int(json.loads(row[0])) if row else 0
        if count:
            cls.set_meta(conn, "seq_no", last + count)
        return last + 1

    def embedded_rows(self, ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        """``{id: (text, embedding blob)}`` for the ids that exist with a vector."""
        found: dict[str, tuple[str, bytes]] = {}
        with self._reading() as reader:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                rows = reader.execute(
                    f"SELECT id, text, embedding FROM documents WHERE id IN ({marks}) "
                    "AND embedding IS NOT NULL",
                    tuple(chunk),
                )
                found.update((doc_id, (text, blob)) for doc_id, text, blob in rows)
        return found

    @staticmethod
    def count_rows(conn: sqlite3.Connection) -> int:
        """The number of documents, in the caller's snapshot (by the smallest index)."""
        return int(conn.execute("SELECT count(*) FROM documents").fetchone()[0])

    @staticmethod
    def row_keys(conn: sqlite3.Connection) -> np.ndarray:
        """Every row's ``pk``, ascending: read from an index, no document read."""
        rows = conn.execute("SELECT pk FROM documents")
        return np.sort(np.fromiter((row[0] for row in rows), dtype=np.int64))

    @staticmethod
    def rows_written_after(conn: sqlite3.Connection, generation: int) -> list[tuple[int, str]]:
        """``(pk, id)`` of the rows last written after ``generation``, in ``pk`` order: found
        by the index on ``gen`` (sorted here: ``ORDER BY pk`` has SQLite scan every row)."""
        rows = conn.execute("SELECT pk, id FROM documents WHERE gen > ?", (generation,))
        return sorted((int(pk), str(doc_id)) for pk, doc_id in rows)

    def ids_written_since(self, ids: Sequence[str], generation: int) -> set[str]:
        found: set[str] = set()
        with self._reading() as reader:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                rows = reader.execute(
                    f"SELECT id FROM documents WHERE gen > ? AND id IN ({marks})",
                    (generation, *chunk),
                )
                found.update(row[0] for row in rows)
        return found

    @classmethod
    def write_rows(
        cls,
        conn: sqlite3.Connection,
        rows: Sequence[tuple[str, str, str, bytes | None]],
        generation: int,
        versions: Sequence[int | None] | None = None,
    ) -> None:
        """``(id, doc, text, embedding)`` rows, each given the next sequence number and its
        version in ``versions`` (None, or no list: the stored one + 1, 1 when new)."""
        given = [None] * len(rows) if versions is None else versions
        first = cls.take_seq_nos(conn, len(rows))
        # A document at the highest version is left as it is (SQLite's + 1 would store a
        # float), and refused below, rolling the caller's transaction back.
        written = conn.executemany(
            "INSERT INTO documents(id, doc, text, embedding, gen, version, seq_no) "
            "VALUES(?1, ?2, ?3, ?4, ?5, coalesce(?6, 1), ?7) "
            "ON CONFLICT(id) DO UPDATE SET doc=excluded.doc, text=excluded.text, "
            "embedding=excluded.embedding, gen=excluded.gen, "
            "version=coalesce(?6, documents.version + 1), seq_no=excluded.seq_no "
            f"WHERE ?6 IS NOT NULL OR documents.version < {MAX_VERSION}",
            [
                (*row, generation, version, first + n)
                for n, (row, version) in enumerate(zip(rows, given, strict=True))
            ],
        ).rowcount
        if written < len(rows):
            cls._refuse_past_max_version(conn, [row[0] for row in rows])

    @staticmethod
    def _refuse_past_max_version(conn: sqlite3.Connection, ids: list[str]) -> None:
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            row = conn.execute(
                f"SELECT id FROM documents WHERE version >= ? AND id IN ({marks})",
                (MAX_VERSION, *chunk),
            ).fetchone()
            if row is not None:
                raise version_overflow(row[0])

    @classmethod
    def delete_ids(cls, conn: sqlite3.Connection, ids: Sequence[str]) -> int:
        """Each document of ``ids`` the index holds deleted, each delete a write taking a
        sequence number."""
        removed = 0
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            removed += conn.execute(
                f"DELETE FROM documents WHERE id IN ({marks})", tuple(chunk)
            ).rowcount
        cls.take_seq_nos(conn, removed)
        return removed

    def docs_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {doc_id: json.loads(doc) for doc_id, doc in self.stored_docs(ids).items()}

    def iter_rows(
        self, conn: sqlite3.Connection, columns: str, *, written_after: int | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Rows in ``pk`` order; only those written after generation ``written_after`` if
        given."""
        if written_after is None:
            rows = conn.execute(f"SELECT {columns} FROM documents ORDER BY pk")
        else:
            rows = conn.execute(
                f"SELECT {columns} FROM documents WHERE gen > ? ORDER BY pk", (written_after,)
            )
        # Not `yield from`: it would close the cursor when the generator is dropped, and a
        # generator dropped after its connection closed (a BM25 build stopped by an error
        # while it streamed the rows) printed "Exception ignored ... closed database".
        for row in rows:  # noqa: UP028 (see above)
            yield row

    def documents_after(
        self, pk: int | None, limit: int, *, written: tuple[int, int] | None = None
    ) -> list[tuple[int, str, str]]:
        """Up to ``limit`` rows ``(pk, id, doc JSON)`` past row ``pk`` (None: from the first),
        in ``pk`` order: one page of an export, read by the primary key's index. ``written``
        ``(after, up_to)``: only the rows last written in a generation after ``after`` and not
        after ``up_to``."""
        where = ["pk > ?"] if pk is not None else []
        if written is not None:
            # Every row up to a generation: not by the index on gen, which would sort them all
            # for the first page; the rows of a few writes are found by it.
            where += ["+gen > ? AND +gen <= ?" if written[0] < 0 else "gen > ? AND gen <= ?"]
        params = ([] if pk is None else [pk]) + ([] if written is None else [*written])
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self._reading() as reader:
            rows = reader.execute(
                f"SELECT pk, id, doc FROM documents {clause}ORDER BY pk LIMIT ?",
                (*params, limit),
            )
            return [(int(row[0]), str(row[1]), str(row[2])) for row in rows.fetchall()]

    def missing_embeddings(self, limit: int) -> list[tuple[int, str]]:
        with self._reading() as reader:
            rows = reader.execute(
                "SELECT pk, text FROM documents WHERE embedding IS NULL ORDER BY pk LIMIT ?",
                (limit,),
            )
            return [(int(pk), text) for pk, text in rows.fetchall()]

    @staticmethod
    def set_embeddings(
        conn: sqlite3.Connection,
        rows: Sequence[tuple[int, str]],
        vectors: np.ndarray,
        generation: int,
    ) -> None:
        """The vectors of ``(pk, text)`` rows; a row whose text was rewritten since it was read
        (by another writer, with its own vector) keeps what that writer stored."""
        conn.executemany(
            "UPDATE documents SET embedding=?, gen=? WHERE pk=? AND text=?",
            [
                (vec.astype(np.float32).tobytes(), generation, pk, text)
                for (pk, text), vec in zip(rows, vectors, strict=True)
            ],
        )
