"""Named indexes under a home directory: create, open, drop, list."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from semrank._checks import is_int
from semrank._files import user_home, user_name
from semrank.errors import (
    BackendUnavailableError,
    IndexExistsError,
    IndexNotFoundError,
    InvalidInputError,
    SemrankError,
    StorageError,
)
from semrank.retrieve import DEFAULT_ANN_THRESHOLD, BM25Params, TextEmbedder
from semrank.store._base import ALL_TEXT_FIELDS, IndexSettings
from semrank.store._corpus import Document, check_id_is_not_text
from semrank.store._dsn import redact_dsn
from semrank.store._local import LocalStore
from semrank.store._snapshots import unchanged_for
from semrank.store._sqlite import DB_NAME

if TYPE_CHECKING:
    from semrank.store.postgres import PostgresStore

_log = logging.getLogger(__name__)

HOME_ENV = "SEMRANK_HOME"
DEFAULT_EMBEDDING = "default"  # the bundled all-MiniLM-L6-v2
# Used with fullmatch: "$" alone would accept a trailing newline ("abc\n").
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# The hidden folders of a create (".NAME.<hex>.tmp": filled, then renamed into place) and of a
# drop (".NAME.<hex>.trash": renamed away, then deleted) that a killed process leaves.
_LEFTOVER = re.compile(r"\.[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.[0-9a-f]{32}\.(tmp|trash)")
_STALE_STAGING_SECONDS = 3600.0  # as _snapshots.clean_temporaries
# What an index folder holds beside documents.sqlite: without it they are no use (index.json
# is never read, derived/ is rebuilt from the documents), so `drop` may remove them.
_BESIDE_DB = frozenset(
    {"index.json", "derived", f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"}
)


def default_home() -> Path:
    """``$SEMRANK_HOME``, else ``$XDG_DATA_HOME/semrank`` (``~/.local/share/semrank`` where
    XDG_DATA_HOME is unset)."""
    configured = os.environ.get(HOME_ENV)
    if configured and not configured.strip():  # "   " made indexes no later command found
        raise InvalidInputError(
            f"${HOME_ENV} is blank ({configured!r}); set it to the folder of the indexes, or "
            "unset it for ~/.local/share/semrank"
        )
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg).expanduser() / "semrank"
    try:
        base = user_home() / ".local" / "share"
    except RuntimeError:  # HOME unset, and a uid without a passwd entry (env -i, a container)
        raise BackendUnavailableError(
            f"this process has no home folder (HOME is unset or empty and its user has none): set "
            f"${HOME_ENV} to the folder of the indexes (or HOME)"
        ) from None
    return base / "semrank"


def resolve_home(home: str | Path | None) -> Path:
    """The folder of the embedded indexes: ``home`` (``~`` expanded), or ``default_home()``
    where None; an ``InvalidInputError`` where it is a file."""
    if home is not None and not isinstance(home, str | Path):
        raise InvalidInputError(
            f"home must be a folder path (str or pathlib.Path), got {type(home).__name__} "
            f"({home!r:.60}); omit it for {default_home()}"
        )
    root = Path(home).expanduser() if home is not None else default_home()
    if root.exists() and not root.is_dir():  # listed as "no indexes", opened as "not found"
        given = "given (--home; semrank serve: --index-home)" if home is not None else HOME_ENV
        raise InvalidInputError(
            f"index home {root} ({given}) is a file; name a folder for the indexes"
        )
    return root


RESERVED_SUFFIXES = (".tmp", ".trash")  # folders of an index being created or dropped


def index_path(name: str, home: str | Path | None = None) -> Path:
    """The folder index ``name`` has (or would have) under ``home``; an ``InvalidInputError``
    for a name that is not a valid index name."""
    if isinstance(name, str) and name.endswith(RESERVED_SUFFIXES):
        raise InvalidInputError(
            f"invalid index name {name!r}: names ending in {' or '.join(RESERVED_SUFFIXES)} are "
            "kept for semrank's own folders; choose another ending"
        )
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid index name {name!r}: use ASCII letters and digits (A-Z, a-z, 0-9), '.', "
            "'_' and '-' (max 128), starting with a letter or digit"
        )
    return resolve_home(home) / name


def _require_exportable(model: Any) -> None:
    """An index embeds on ONNX Runtime / OpenVINO: an architecture they cannot run is refused
    before the index is made (it was made, then every write failed)."""
    from semrank.runtime.onnx_export import ENCODER_ARCHITECTURES, SUPPORTED_ARCHITECTURES

    if model.architecture not in SUPPORTED_ARCHITECTURES:
        raise InvalidInputError(
            f"embedding model {model.name!r} has architecture {model.architecture}, which an "
            "index cannot embed with (it runs on ONNX Runtime or OpenVINO, which know "
            f"{', '.join(ENCODER_ARCHITECTURES)}); choose "
            "a bi-encoder of those families, e.g. all-minilm-l6-v2 (the default)"
        )


def _embedding_name(model: str | None) -> str | None:
    if model is None:
        return None
    from semrank.models.loading import refuse_cross_encoder_embedder, resolve_embedding_model

    resolved = resolve_embedding_model(None if model == DEFAULT_EMBEDDING else model)
    refuse_cross_encoder_embedder(resolved)
    _require_exportable(resolved)
    folder = Path(model).expanduser()
    if model != DEFAULT_EMBEDDING and folder.is_dir():
        # A folder by its absolute path: the index is searched and written from other working
        # directories (a server, the CLI elsewhere), where a relative path finds nothing, or a
        # hub repository of that name whose vectors mean something else.
        return str(folder.resolve())
    return resolved.name


def storable_check(store: str | None) -> Callable[[Document], None] | None:
    """What ``store`` refuses of a document beyond what every store refuses (None: nothing),
    for checking a file through before an index is created there."""
    postgres = _postgres(store)
    return None if postgres is None else postgres.check_postgres_storable


def _postgres(store: str | None) -> Any:
    """The ``semrank.store.postgres`` module when ``store`` is a PostgreSQL DSN, else None
    (``None`` / ``"local"``: the embedded store under ``home``)."""
    if store is None or store == "local":
        return None
    if not store.startswith(("postgresql://", "postgres://")):
        raise InvalidInputError(
            f"unknown store {redact_dsn(store)!r}: use 'local' (the default) or a PostgreSQL "
            "DSN postgresql://user@host:port/database"
        )
    try:
        from semrank.store import postgres
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the PostgreSQL store needs psycopg 3 ({exc}): pip install 'semrank[postgres]'"
        ) from exc
    return postgres


@overload
def create_index(
    name: str,
    *,
    home: str | Path | None = ...,
    fields: Sequence[str] = ...,
    id_field: str | None = ...,
    embedding_model: str | None = ...,
    embedding_max_length: int | None = ...,
    bm25: BM25Params | None = ...,
    ann_threshold: int = ...,
    embedder: TextEmbedder | None = ...,
    store: None = ...,
) -> LocalStore: ...
@overload
def create_index(
    name: str,
    *,
    home: str | Path | None = ...,
    fields: Sequence[str] = ...,
    id_field: str | None = ...,
    embedding_model: str | None = ...,
    embedding_max_length: int | None = ...,
    bm25: BM25Params | None = ...,
    ann_threshold: int = ...,
    embedder: TextEmbedder | None = ...,
    store: str | None,
) -> LocalStore | PostgresStore: ...
def create_index(
    name: str,
    *,
    home: str | Path | None = None,
    fields: Sequence[str] = ("title", "text"),
    id_field: str | None = "id",
    embedding_model: str | None = DEFAULT_EMBEDDING,
    embedding_max_length: int | None = None,
    bm25: BM25Params | None = None,
    ann_threshold: int = DEFAULT_ANN_THRESHOLD,
    embedder: TextEmbedder | None = None,
    store: str | None = None,
) -> LocalStore | PostgresStore:
    """Create an empty index; ``embedding_model=None`` makes a BM25-only index.

    ``store``: ``None`` (the embedded store under ``home``) or a PostgreSQL DSN. The embedded
    store's directory is prepared under a temporary name and renamed into place, so a crash
    never leaves a half-created index behind.
    """
    target = index_path(name, home)
    postgres = _postgres(store)
    if postgres is None:
        _clean_leftovers(target.parent)
        check_name_is_free(name, target)
    text_fields = _text_fields(fields)
    check_id_is_not_text(id_field, text_fields)
    _check_creation_numbers(embedding_max_length, ann_threshold)
    settings = IndexSettings(
        name=name,
        text_fields=text_fields,
        id_field=id_field,
        embedding_model=embedding_name
        if (embedding_name := _embedding_name(embedding_model))
        else None,
        embedding_max_length=embedding_max_length,
        bm25=bm25 or BM25Params(),
        ann_threshold=ann_threshold,
    )
    if postgres is not None:
        return postgres.PostgresStore.create(str(store), settings, embedder=embedder)
    _make_home(target.parent)
    staging = target.parent / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        LocalStore.initialize(staging, settings).close()
    except (StorageError, OSError) as exc:
        # A full disk or a folder this user may not write: leave nothing behind, and name the
        # index, not the staging folder the error met.
        shutil.rmtree(staging, ignore_errors=True)
        raise StorageError(
            f"index {name!r} cannot be created in {target.parent} ({_cause(exc)}); check that "
            "this user may write there and that the disk has space"
        ) from exc
    try:
        _rename_into_place(name, staging, target)
    except OSError as exc:  # another create got there first (or the name is taken since)
        shutil.rmtree(staging, ignore_errors=True)
        check_name_is_free(name, target)
        raise IndexExistsError(f"index {name!r} already exists at {target}") from exc
    except SemrankError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return LocalStore(target, embedder=embedder)


def _rename_into_place(name: str, staging: Path, target: Path) -> None:
    """The new index's folder renamed to its name, holding the home's aliases: an alias of
    that name added since the create began is refused here, not left beside the index."""
    from semrank.store._aliases import aliases_locked, refuse_alias_name

    with aliases_locked(target.parent):
        refuse_alias_name(name, target.parent, None)
        os.rename(staging, target)


def _cause(exc: BaseException) -> str:
    """The underlying reason of a storage failure, without the staging folder's name."""
    cause = exc.__cause__ if isinstance(exc, StorageError) and exc.__cause__ else exc
    return " ".join(str(cause).split())[:200] or type(cause).__name__


def check_can_create(
    name: str, *, home: str | Path | None, store: str | None, bm25: BM25Params
) -> None:
    """What would refuse creating index ``name`` (an invalid or taken name; in PostgreSQL also a
    server out of reach or a BM25 method SQL does not compute), said before a corpus is read
    through for it, which takes a while."""
    target = index_path(name, home)
    postgres = _postgres(store)
    if postgres is None:
        check_name_is_free(name, target)
    else:
        postgres.check_postgres_can_create(str(store), name, bm25)


def check_name_is_free(name: str, target: Path) -> None:
    """An empty folder is free (the new index replaces it); an index, or anything else there,
    is named with what to do: an index whose ingest never finished says how to finish it. An
    alias's name (of the home ``target`` is in) is not free."""
    from semrank.store._aliases import refuse_alias_name

    refuse_alias_name(name, target.parent, None)
    if (target / DB_NAME).exists():
        note = None
        try:
            # The home is named in the commands suggested: without it they act on the default
            # home, or on $SEMRANK_STORE's database where that is set.
            where = f" --home {shlex.quote(str(target.parent))}"
            with LocalStore(target) as index:
                note = index.unfinished_note(where=where)
        except SemrankError:
            pass  # unreadable: it exists all the same (`semrank index list` says why)
        raise IndexExistsError(
            f"index {name!r} already exists at {target}: {note}"
            if note
            else f"index {name!r} already exists at {target}; drop it first"
        )
    if os.path.lexists(target) and not _is_empty_folder(target):
        raise IndexExistsError(f"cannot create index {name!r}: {_not_an_index(name, target)}")


def _not_an_index(name: str, target: Path) -> str:
    """Why ``target``, there without documents.sqlite, is no index, and what to do about it."""
    if _is_empty_folder(target):
        return f"{target} is an empty folder; `semrank index create {name}` makes an index there"
    if _only_beside_db(target):
        return (
            f"{target} has no {DB_NAME}, and nothing but files an index keeps beside it, of no "
            f"use without it (a partial copy or restore?); `semrank index drop {name}` removes "
            "them"
        )
    what = "a folder with other files" if target.is_dir() else "a file"
    return f"{target} is {what}, not an index (no {DB_NAME}); move or remove it by hand"


def _is_empty_folder(target: Path) -> bool:
    try:
        return target.is_dir() and not any(target.iterdir())
    except OSError:
        return False


def _only_beside_db(target: Path) -> bool:
    try:
        return target.is_dir() and all(e.name in _BESIDE_DB for e in target.iterdir())
    except OSError:
        return False


def _clean_leftovers(root: Path) -> None:
    """Remove the hidden folders killed creates and drops left in ``root``: a drop's at once
    (renamed away to be deleted, nothing reads it; a drop still running just finishes
    sooner) and a create's once unchanged for an hour (before, its create may still be
    filling it)."""
    try:
        entries = [e for e in root.iterdir() if _LEFTOVER.fullmatch(e.name)]
    except OSError:
        return  # no home yet, or unreadable: nothing of ours to clean
    now = time.time()
    for entry in entries:
        try:
            young = not unchanged_for(entry, _STALE_STAGING_SECONDS, now)
        except OSError:
            continue
        if entry.name.endswith(".trash") or not young:
            _remove_renamed_away(entry)


def _remove_renamed_away(entry: Path) -> bool:
    """Delete a folder renamed away by a drop (or a stale create's); whether it is gone. An
    index that is a link (its files moved to a bigger disk) loses the link only: the folder it
    leads to may be linked from another home too, and is never emptied through it. (rmtree
    refuses a link, so a drop said "dropped", left the link under its hidden name for good, and
    the index whole.)"""
    if entry.is_symlink():
        with contextlib.suppress(OSError):
            entry.unlink()
    else:
        shutil.rmtree(entry, ignore_errors=True)
    return not os.path.lexists(entry)


def _left_behind(name: str, trash: Path) -> str:
    """Why a dropped index's folder stays, and how to remove it: files another user wrote
    there (a `sudo semrank index add` of the owner's index) are not this user's to delete, and
    the drop said "dropped" while they kept their space (and what they hold) for good."""
    owners = set()
    for folder, _, files in os.walk(trash):
        for entry in (folder, *(os.path.join(folder, file) for file in files)):
            with contextlib.suppress(OSError):
                owners.add(os.lstat(entry).st_uid)
    others = sorted(owners - {os.geteuid()}) if hasattr(os, "geteuid") else []
    whose = f"owned by {', '.join(map(user_name, others))}" if others else "still in use?"
    return (
        f"index {name!r} is dropped, but some of its files could not be deleted ({whose}); "
        f"they are left in {trash}: remove that folder as their owner (e.g. sudo rm -rf "
        f"{shlex.quote(str(trash))}) to free their space"
    )


# The flag that names the index home, as resolve_home names it: the CLI's, and the server's.
HOME_FLAGS = "--home (semrank serve: --index-home)"


def _make_home(home: Path, flag: str = HOME_FLAGS) -> None:
    """A path under a file is the one who named it to fix (exit 2); a folder this machine will
    not let the process make (a read-only file system, no permission) is the machine's: a
    storage error (exit 3, HTTP 503), not a client's 422."""
    try:
        home.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise InvalidInputError(
            f"index home {home} is a file (or lies under one); name a folder with {flag} or "
            f"${HOME_ENV}"
        ) from exc
    except OSError as exc:
        raise _unwritable_home(home, exc, flag) from exc


def _unwritable_home(home: Path, exc: OSError, flag: str) -> StorageError:
    cause = exc.strerror or str(exc)
    return StorageError(
        f"index home {home} cannot be created or written ({cause}); give a writable folder "
        f"with {flag} or ${HOME_ENV}",
        # An HTTP client can do nothing about the server's folder, nor pass it a flag.
        client_message=f"the server's index home cannot be created or written ({cause}); "
        "its operator must give it a writable folder",
    )


def writable_home(home: str | Path | None, *, flag: str = HOME_FLAGS) -> Path:
    """The index home, made if missing and checked writable (SQLite writes in an index's folder
    even to read it): ``semrank serve`` checks it before it starts, so a read-only one fails
    the start, not every index request after a ready probe said yes."""
    root = resolve_home(home)
    _make_home(root, flag)
    try:
        with tempfile.TemporaryFile(dir=root):  # an existing folder: mkdir said nothing
            pass
    except OSError as exc:
        raise _unwritable_home(root, exc, flag) from exc
    return root


def _text_fields(fields: Sequence[str] | str) -> tuple[str, ...]:
    """The index's text fields; a lone string is one field, not one per letter."""
    if not isinstance(fields, str | Sequence):
        raise InvalidInputError(
            f"fields must be a list of text field names, got {type(fields).__name__}"
        )
    names = [fields] if isinstance(fields, str) else list(fields)
    if not names:
        raise InvalidInputError("an index needs at least one text field (--fields)")
    if not all(isinstance(name, str) and name for name in names):
        raise InvalidInputError(f"text fields must be non-empty field names, got {names!r}")
    if ALL_TEXT_FIELDS in names:  # it would store a field named "*", never found in documents
        raise InvalidInputError(
            f"text fields {names!r} name {ALL_TEXT_FIELDS!r}, which searches use for all text "
            "fields together; name the documents' fields themselves (title, text, ...)"
        )
    if len(names) > MAX_TEXT_FIELDS:  # Elasticsearch's index.mapping.total_fields.limit
        raise InvalidInputError(
            f"an index takes at most {MAX_TEXT_FIELDS} text fields, and {len(names)} were named "
            "or found (every string field of the documents, unless --fields / HTTP 'fields' "
            "names them): name the fields searched; the others are kept as stored fields"
        )
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise InvalidInputError(
            f"text field(s) {', '.join(map(repr, repeated))} named twice in {names!r}; name each "
            "field once"
        )
    return tuple(names)


MAX_TEXT_FIELDS = 1000


def _check_creation_numbers(embedding_max_length: object, ann_threshold: object) -> None:
    if embedding_max_length is not None and not is_int(embedding_max_length, at_least=1):
        raise InvalidInputError(
            f"embedding_max_length must be a positive integer, got {embedding_max_length!r}; "
            "omit it to use the model's own maximum"
        )
    if not is_int(ann_threshold, at_least=0):
        raise InvalidInputError(
            f"ann_threshold must be an integer >= 0 (documents before HNSW search), got "
            f"{ann_threshold!r}"
        )


@overload
def open_index(
    name: str,
    *,
    home: str | Path | None = ...,
    embedder: TextEmbedder | None = ...,
    store: None = ...,
) -> LocalStore: ...
@overload
def open_index(
    name: str,
    *,
    home: str | Path | None = ...,
    embedder: TextEmbedder | None = ...,
    store: str | None,
) -> LocalStore | PostgresStore: ...
def open_index(
    name: str,
    *,
    home: str | Path | None = None,
    embedder: TextEmbedder | None = None,
    store: str | None = None,
) -> LocalStore | PostgresStore:
    """Open an existing index, or the one alias ``name`` names (``IndexNotFoundError`` naming
    the known ones if absent); ``store``: a PostgreSQL DSN, or ``None`` for the embedded store
    under ``home``."""
    from semrank.store._aliases import resolve_index_name

    postgres = _postgres(store)
    if postgres is not None:
        # One pool for the alias lookup and the index: the lookup's own, closed before the
        # index opened another, left a role at its connection limit refused for a moment.
        pool = postgres.acquire_pool(str(store))
        try:
            name = resolve_index_name(name, home, store=store)
            return postgres.PostgresStore(str(store), name, embedder=embedder)
        finally:
            postgres.release_pool(str(store), pool)
    name = resolve_index_name(name, home, store=store)
    target = index_path(name, home)
    if not (target / DB_NAME).is_file() and os.path.lexists(target):
        raise IndexNotFoundError(f"index {name!r} not found: {_not_an_index(name, target)}")
    if not (target / DB_NAME).is_file():
        known = ", ".join(list_indexes(home)) or "none"
        raise IndexNotFoundError(
            f"index {name!r} not found in {target.parent} (indexes there: {known}); create it "
            f"with `semrank index create {name} --from PATH`",
            # What an HTTP client can do about it (the server's folder and CLI are not its).
            client_message=f"index {name!r} not found (indexes: {known}); create it with "
            "POST /v1/indexes",
        )
    return LocalStore(target, embedder=embedder)


# Called before an index is dropped: the search pipeline closes the handle it keeps open, so
# a dropped index's files are not held (its disk space was freed only at the next search).
BEFORE_DROP: list[Callable[..., None]] = []
# Called, with the same arguments, once an embedded index's folder is renamed away (before its
# files are deleted): what a request already running took again between BEFORE_DROP and the
# rename (the models' prepared windows) is let go of too.
AFTER_DROP: list[Callable[..., None]] = []


def drop_index(name: str, *, home: str | Path | None = None, store: str | None = None) -> None:
    """Delete an index and all its files (renamed away first, so it vanishes at once). An
    embedded index whose folder is a link loses the link, and keeps the files it leads to.
    Its aliases go with it; an alias is not dropped this way (``update_aliases`` removes one)."""
    from semrank.store._aliases import refuse_alias_name

    refuse_alias_name(name, home, store, dropping=True)
    for let_go in BEFORE_DROP:
        let_go(name, home, store=store)
    target = index_path(name, home)
    postgres = _postgres(store)
    if postgres is not None:
        postgres.drop_postgres_index(str(store), name)
        return
    _clean_leftovers(target.parent)
    if not (target / DB_NAME).is_file():
        if not os.path.lexists(target):
            raise IndexNotFoundError(f"index {name!r} not found in {target.parent}")
        if not _only_beside_db(target):  # never delete what semrank did not make
            raise IndexNotFoundError(f"index {name!r} not found: {_not_an_index(name, target)}")
    trash = target.parent / f".{name}.{uuid.uuid4().hex}.trash"
    try:
        _rename_away(name, target, trash)
    except FileNotFoundError:  # another drop of the same index got there first
        raise IndexNotFoundError(f"index {name!r} not found in {target.parent}") from None
    except PermissionError as exc:  # a home another user made (a `sudo semrank` run): raw errno
        raise _undroppable(name, target.parent, exc) from exc
    for let_go in AFTER_DROP:
        let_go(name, home, store=store)
    if not _remove_renamed_away(trash):
        _log.warning(_left_behind(name, trash))


def _rename_away(name: str, target: Path, trash: Path) -> None:
    """The index's folder renamed away and its aliases removed, holding the home's aliases (an
    alias added meanwhile would outlive the index). A damaged alias file refuses the drop
    before the rename: after it, the drop failed saying so with the index gone all the same."""
    from semrank.store._aliases import aliases_locked, forget_aliases_of, list_aliases

    with aliases_locked(target.parent):
        list_aliases(target.parent)
        os.rename(target, trash)
        forget_aliases_of(target.parent, name)


def _undroppable(name: str, home: Path, exc: OSError) -> StorageError:
    owner = user_name(home.stat().st_uid)
    return StorageError(
        f"index {name!r} cannot be dropped: this user may not change {home} ({exc.strerror}; "
        f"it is owned by {owner}); drop it as {owner}, or let this user write that folder",
        client_message=f"index {name!r} cannot be dropped: the server may not change its "
        f"index home ({exc.strerror}); its operator must let it write there",
    )


def list_indexes(home: str | Path | None = None, *, store: str | None = None) -> list[str]:
    """Names of the indexes under ``home`` (or in PostgreSQL DSN ``store``), sorted; none
    where the folder does not exist."""
    postgres = _postgres(store)
    if postgres is not None:
        return postgres.list_postgres_indexes(str(store))
    root = resolve_home(home)
    if not root.is_dir():
        return []
    _clean_leftovers(root)
    return sorted(
        p.name for p in root.iterdir() if (p / DB_NAME).is_file() and _NAME.fullmatch(p.name)
    )
