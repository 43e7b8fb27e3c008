"""Elasticsearch's document writes (``_bulk``'s index, create, update and delete, and the
one-document routes built on them) applied to a semrank index.

A semrank document is an id and its fields: an action's ``_source`` is the fields, where the
index's id field (``id`` unless the index was created otherwise), if the source holds it,
must be the action's ``_id`` (it is the id, and not kept twice); an index or create without an
``_id`` takes the source's id field, else a generated id (20 URL-safe characters, random, as
long as Elasticsearch's). The actions on one index are applied in their order to what the
index holds, then written with one upsert and one delete: an id given several times ends as
its last action leaves it, as in Elasticsearch.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from semrank._checks import id_problem, is_int, loads_json
from semrank.errors import (
    DataFormatError,
    DocumentExistsError,
    DocumentNotFoundError,
    InvalidInputError,
    SemrankError,
    VersionConflictError,
    http_status_for,
)
from semrank.server._errors import client_message
from semrank.store import Document
from semrank.store._base import (
    DocumentVersion,
    Expected,
    FoundVersions,
    NewVersion,
    VersionedDocument,
    next_version,
)
from semrank.store._corpus import IngestChecks, documents_from

OPERATIONS = ("index", "create", "update", "delete")
# An action line's keys that change nothing semrank does (one shard, no routing, no
# conflicts to retry: an update reads and writes in one transaction); those asking for
# pipelines or scripts are refused.
IGNORED_ACTION_KEYS = frozenset(
    {"routing", "retry_on_conflict", "require_alias", "require_data_stream", "_source",
     "dynamic_templates", "list_executed_pipelines", "op_type"}
)  # fmt: skip
CONDITION_KEYS = ("if_seq_no", "if_primary_term", "version", "version_type")
VERSION_TYPES = ("internal", "external", "external_gte")
UPDATE_KEYS = frozenset({"doc", "doc_as_upsert", "upsert", "detect_noop", "_source"})
NOT_SUPPORTED = "semrank runs no ingest pipelines and no scripts"


@dataclass(frozen=True, kw_only=True)
class Condition:
    """An action's optimistic concurrency control: ``if_seq_no`` + ``if_primary_term`` (the
    document must be stored as last read), or an ``external`` / ``external_gte`` ``version``
    (the document's version becomes it, if above (or equal to) the stored one)."""

    if_seq_no: int | None = None
    if_primary_term: int | None = None
    version: int | None = None
    version_type: str = "internal"


def parse_condition(given: dict[str, Any], where: str, op: str) -> Condition | None:
    """An action's condition from its metadata or query string (``given``), or None; refused
    (400) as Elasticsearch refuses what it cannot mean."""
    if not any(key in given for key in CONDITION_KEYS):
        return None
    numbers = {key: _non_negative(given, key, where) for key in CONDITION_KEYS[:3]}
    seq_no, term, version = numbers["if_seq_no"], numbers["if_primary_term"], numbers["version"]
    version_type = given.get("version_type", "internal")
    if version_type not in VERSION_TYPES:
        raise InvalidInputError(
            f"{where}version_type {version_type!r:.40}: give external or external_gte (with "
            "version), or use if_seq_no and if_primary_term"
        )
    if (seq_no is None) != (term is None):
        raise InvalidInputError(f"{where}if_seq_no and if_primary_term go together: give both")
    if seq_no is not None and version is not None:
        raise InvalidInputError(f"{where}give if_seq_no and if_primary_term, or version, not both")
    if version is not None and version_type == "internal":
        raise InvalidInputError(
            f"{where}internal versioning can not be used for optimistic concurrency control; "
            "use if_seq_no and if_primary_term, or version_type=external"
        )
    if version is not None and op == "update":
        raise InvalidInputError(
            f"{where}an update does not take version; use if_seq_no and if_primary_term"
        )
    if version is None and version_type != "internal":
        raise InvalidInputError(f"{where}version_type {version_type} needs a version")
    if op == "create":  # as Elasticsearch: a create only ever writes an id not there
        raise InvalidInputError(
            f"{where}create operations do not support compare and set (if_seq_no) nor "
            "external versions; use index instead (op_type=index)"
        )
    return Condition(
        if_seq_no=seq_no, if_primary_term=term, version=version, version_type=version_type
    )


# Elasticsearch's versions and sequence numbers are Java longs, as the stores' columns are.
MAX_LONG = 2**63 - 1


def _non_negative(given: dict[str, Any], key: str, where: str) -> int | None:
    value = given.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():  # not "²": int() refuses it
        value = int(value)
    if not is_int(value, at_least=0) or int(value) > MAX_LONG:
        raise InvalidInputError(
            f"{where}{key} must be an integer from 0 to {MAX_LONG}, got {value!r:.40}"
        )
    return int(value)


@dataclass(frozen=True, kw_only=True)
class WriteAction:
    """One write: ``body`` is an index's or create's source, or an update's body; ``id`` is
    None for an index or create that names none (``_id_of`` settles it)."""

    op: str
    index: str
    id: str | None
    body: dict[str, Any] | None
    number: int  # 1-based, among the request's actions
    condition: Condition | None = None


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one action did: its ``result``, or the ``error`` that refused it."""

    op: str
    index: str
    id: str
    result: str | None = None
    error: SemrankError | None = None
    version: DocumentVersion | None = None  # the document's after the action (not_found: none)

    @property
    def status(self) -> int:
        if self.error is not None:
            status = http_status_for(self.error)
            return 400 if status == 422 else status  # Elasticsearch's status for a bad document
        return {"created": 201, "not_found": 404}.get(self.result or "", 200)

    @property
    def shown_version(self) -> DocumentVersion:
        """Its version as answered: a delete that found nothing wrote nothing (version 1, as
        Elasticsearch answers; seq_no 0, where Elasticsearch's would take one)."""
        return self.version or DocumentVersion(version=1, seq_no=0)

    def as_item(self, private_names: Sequence[tuple[str, str]] = ()) -> dict[str, dict[str, Any]]:
        """The ``_bulk`` answer's item for this action (``private_names``: the server's places
        its errors' texts show by another name, as error answers do)."""
        item: dict[str, Any] = {"_index": self.index, "_id": self.id}
        if self.error is None:
            item |= {"_version": self.shown_version.version, "result": self.result}
            item |= {"_seq_no": self.shown_version.seq_no, "_primary_term": 1}
            item["_shards"] = {"total": 1, "successful": 1, "failed": 0}
        else:
            reason = client_message(self.error, private_names)
            item["error"] = {"type": self.error.error_type, "reason": reason, "index": self.index}
        return {self.op: {**item, "status": self.status}}


def new_id() -> str:
    return secrets.token_urlsafe(15)


# --- reading a _bulk body --------------------------------------------------------------------


def parse_bulk(body: bytes, default_index: str | None) -> list[WriteAction]:
    """The actions of an NDJSON ``_bulk`` body; anything malformed refuses the whole request,
    naming its line, as Elasticsearch does."""
    lines = _lines(body)
    actions: list[WriteAction] = []
    for number, text in lines:
        op, meta = _action_line(number, text)
        index = _index_of(number, meta, default_index)
        given = meta.get("_id")
        doc_id = None if given is None else _checked_id(given, f"line {number}: _id")
        if op in ("update", "delete") and doc_id is None:
            raise InvalidInputError(f"line {number}: a {op} action needs an _id")
        body_of = None
        if op != "delete":
            body_of = _source_line(number, next(lines, None), op)
        count = len(actions) + 1
        condition = parse_condition(meta, f"line {number}: ", op)
        actions.append(
            WriteAction(
                op=op, index=index, id=doc_id, body=body_of, number=count, condition=condition
            )
        )
    if not actions:
        raise InvalidInputError("the _bulk request body holds no actions; send NDJSON lines")
    return actions


def _lines(body: bytes) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(ndjson_text(body, "_bulk").split("\n"), start=1):
        if line.strip():  # blank lines (the final newline's) carry nothing
            yield number, line


def ndjson_text(body: bytes, what: str) -> str:
    """An NDJSON body (``what``'s, e.g. "_bulk") as text."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"the {what} body is not UTF-8 text (byte {exc.start}); send NDJSON as UTF-8"
        ) from None


def json_line(number: int, text: str, what: str = "_bulk") -> Any:
    """Line ``number`` of ``what``'s NDJSON body, read as JSON."""
    try:
        return loads_json(text)
    except ValueError as exc:
        raise InvalidInputError(
            f"line {number} of the {what} body is not valid JSON ({exc}); each line must be one "
            "JSON object (NDJSON: no line breaks inside an object)"
        ) from None


def _action_line(number: int, text: str) -> tuple[str, dict[str, Any]]:
    action = json_line(number, text)
    if not (isinstance(action, dict) and len(action) == 1 and next(iter(action)) in OPERATIONS):
        raise InvalidInputError(
            f"line {number} of the _bulk body is not an action line: expected one of "
            f'{", ".join(OPERATIONS)} as its only key, e.g. {{"index": {{"_id": "1"}}}}, got '
            f"{text.strip()[:100]}"
        )
    op, meta = next(iter(action.items()))
    if not isinstance(meta, dict):
        raise InvalidInputError(f"line {number}: the {op} action's metadata must be an object")
    for key in meta:
        if key not in ("_index", "_id", *CONDITION_KEYS) and key not in IGNORED_ACTION_KEYS:
            raise InvalidInputError(
                f"line {number}: the {op} action's {key!r:.60} is not supported ({NOT_SUPPORTED})"
            )
    return op, meta


def _index_of(number: int, meta: dict[str, Any], default: str | None) -> str:
    index = meta.get("_index", default)
    if index is None:
        raise InvalidInputError(
            f"line {number}: the action names no _index; give one, or send the request to "
            "POST /{index}/_bulk"
        )
    if not isinstance(index, str) or not index:
        raise InvalidInputError(f"line {number}: _index must be an index name, got {index!r:.60}")
    return index


def _checked_id(given: object, what: str) -> str:
    """An id as an ingest reads one (7 is "7"), or refused naming ``what`` gave it."""
    problem = id_problem(given)
    if problem is not None:
        raise InvalidInputError(f"{what} {problem}")
    return str(given)


def _source_line(number: int, line: tuple[int, str] | None, op: str) -> dict[str, Any]:
    if line is None:
        raise InvalidInputError(
            f"line {number}: the {op} action has no document line after it; an index, create "
            "or update action is followed by a line with its document (update: its body)"
        )
    source = json_line(*line)
    if not isinstance(source, dict):
        raise InvalidInputError(f"line {line[0]}: a document must be a JSON object")
    if op == "update":
        check_update_body(source, f"line {line[0]}: ")
    return source


def check_update_body(body: dict[str, Any], where: str = "") -> None:
    """An update's body: a partial ``doc`` (merged into the stored document), ``upsert`` or
    ``doc_as_upsert`` for a document the index lacks; scripts are refused."""
    for key in body:
        if key not in UPDATE_KEYS:
            said = f"not supported ({NOT_SUPPORTED})" if "script" in key else "unknown key"
            raise InvalidInputError(
                f"{where}an update's {key!r:.60} is {said}; an update takes doc, doc_as_upsert, "
                "upsert and detect_noop"
            )
    if "doc" not in body and "upsert" not in body:
        raise InvalidInputError(f'{where}an update needs "doc": {{fields to change}}')
    for key in ("doc", "upsert"):
        if key in body and not isinstance(body[key], dict):
            raise InvalidInputError(f"{where}an update's {key} must be a JSON object")
    for key in ("doc_as_upsert", "detect_noop"):
        if not isinstance(body.get(key, False), bool):
            raise InvalidInputError(f"{where}an update's {key} must be true or false")


# --- applying them ---------------------------------------------------------------------------


# One lock per open index: a request's writes read the documents they change and write them
# back, so two at once (partial updates of one document) would each write back what it read,
# the other's change lost though both answered "updated". The embedded and PostgreSQL stores'
# update_documents holds their write lock from the read to the write, for other processes too;
# this lock keeps a store of a user's own (whose update_documents is a get, then an upsert)
# whole within this process.
_WRITE_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _write_lock(store: Any) -> threading.Lock:
    with _LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(store, threading.Lock())


def apply_writes(store: Any, actions: Sequence[WriteAction]) -> tuple[list[Outcome], Any]:
    """``actions`` (all on ``store``) applied in order; returns each one's outcome and the
    write's counts (None where nothing was written). The documents are read and written back
    in one of the store's write transactions (``update_documents``): another request's writes
    to the index, of this server process or another, come before or after, whole."""
    with _write_lock(store):
        return _applied(store, actions)


def _applied(store: Any, actions: Sequence[WriteAction]) -> tuple[list[Outcome], Any]:
    named = [_id_of(store, action) for action in actions]  # new ids drawn once, not per read
    ids = list(dict.fromkeys(action.id for action in named if action.id is not None))
    outcomes: list[Outcome] = []
    found: FoundVersions = {}

    def change(before: FoundVersions) -> dict[str, NewVersion]:
        """What the actions make of ``before``; the store may call it again (the outcomes
        are those of its last call, the one written, in its transaction: the conditions
        hold for what is written)."""
        found.update(before)
        state = _Versions(before)
        outcomes[:] = [_outcome(store, action, state) for action in named]
        return state.answer()

    done = store.update_versioned(ids, change)
    finished = [_numbered(outcome, done.versions, found) for outcome in outcomes]
    return finished, done.counts if done.counts.documents else None


class _Versions:
    """The documents as the request's actions leave them, one action after another: each
    id's fields (None: none), its version, and the ids the actions changed."""

    def __init__(self, before: FoundVersions) -> None:
        self.now = {i: None if d is None else d.fields for i, d in before.items()}
        self.version = {i: None if d is None else d.version.version for i, d in before.items()}
        self.seq_no = {i: None if d is None else d.version.seq_no for i, d in before.items()}
        self.changed: dict[str, None] = {}  # in the order of their last actions

    def current(self, doc_id: str) -> DocumentVersion | None:
        """The stored version of ``doc_id`` (None: no document); one an earlier action of the
        request wrote has no sequence number yet (-2, Elasticsearch's unassigned)."""
        version, seq_no = self.version.get(doc_id), self.seq_no.get(doc_id)
        if self.now.get(doc_id) is None or version is None:
            return None
        return DocumentVersion(version=version, seq_no=-2 if seq_no is None else seq_no)

    def put(self, doc_id: str, fields: dict[str, Any] | None, version: int) -> None:
        self.now[doc_id], self.version[doc_id], self.seq_no[doc_id] = fields, version, None
        self.changed.pop(doc_id, None)  # its write numbered after those of earlier actions
        self.changed[doc_id] = None

    def answer(self) -> dict[str, NewVersion]:
        return {i: NewVersion(fields=self.now[i], version=self.version[i]) for i in self.changed}


def _numbered(
    outcome: Outcome, written: dict[str, DocumentVersion], found: FoundVersions
) -> Outcome:
    """``outcome`` with the sequence number of its document's write (a noop: the stored one)."""
    if outcome.version is None:
        return outcome
    stored: VersionedDocument | None = found.get(outcome.id)
    seq_no = written[outcome.id].seq_no if outcome.id in written else None
    if seq_no is None:
        seq_no = 0 if stored is None else stored.version.seq_no
    version = DocumentVersion(version=outcome.version.version, seq_no=seq_no)
    return dataclasses.replace(outcome, version=version)


def _id_of(store: Any, action: WriteAction) -> WriteAction:
    """``action`` with its id settled: its own, else its source's id field, else a new one."""
    if action.id is not None or action.op not in ("index", "create"):
        return action
    assert action.body is not None
    key = store.settings.id_field or "id"
    given = action.body.get(key)
    what = f"action {action.number}: its {key!r} field (the document's id)"
    doc_id = new_id() if given is None else _checked_id(given, what)
    return dataclasses.replace(action, id=doc_id)


def _outcome(store: Any, action: WriteAction, state: _Versions) -> Outcome:
    assert action.id is not None
    done = {"op": action.op, "index": store.name, "id": action.id}
    try:
        result = _apply(store, action, state)
    except (InvalidInputError, DataFormatError, VersionConflictError, DocumentNotFoundError) as exc:
        return Outcome(**done, error=exc)
    version = state.current(action.id) if result != "not_found" else None
    if action.op == "delete" and result == "deleted":
        last = state.version[action.id]  # the delete's own (0: an external version 0)
        version = DocumentVersion(version=1 if last is None else last, seq_no=-2)
    return Outcome(**done, result=result, version=version)


def _apply(store: Any, action: WriteAction, state: _Versions) -> str:
    """One action on ``state``: its result."""
    doc_id, body = action.id, action.body or {}
    assert doc_id is not None
    current = state.now.get(doc_id)
    version = _checked_version(action, state)
    if action.op == "delete":
        if current is None:
            return "not_found"
        state.put(doc_id, None, version)
        return "deleted"
    if action.op == "create" and current is not None:
        raise DocumentExistsError(
            f"[{doc_id}]: version conflict, document already exists in index {store.name!r}"
        )
    if action.op != "update":
        state.put(doc_id, _fields(store, action, body), version)
        return "created" if current is None else "updated"
    if current is None:
        fresh = body.get("doc") if body.get("doc_as_upsert") else body.get("upsert")
        if fresh is None:
            raise _missing(doc_id, store.name)
        state.put(doc_id, _fields(store, action, fresh), version)
        return "created"
    merged = _fields(store, action, _merged(current, body.get("doc", {})))
    if merged == current and body.get("detect_noop", True):
        return "noop"
    state.put(doc_id, merged, version)
    return "updated"


def _checked_version(action: WriteAction, state: _Versions) -> int:
    """The version ``action`` gives its document, once its condition holds (else a
    ``VersionConflictError``): an external one, else the last one + 1 (1 for a new id)."""
    assert action.id is not None
    condition, current = action.condition, state.current(action.id)
    # A document an earlier action deleted starts again at 1, as one a request deleted does.
    last = None if current is None else current.version
    delete = action.op == "delete"
    if condition is None:
        return next_version(action.id, last, delete=delete)
    if condition.if_seq_no is not None:
        assert condition.if_primary_term is not None
        expected = Expected(seq_no=condition.if_seq_no, primary_term=condition.if_primary_term)
        expected.check(action.id, current)
    if condition.version is None:
        return next_version(action.id, last, delete=delete)
    gte = condition.version_type == "external_gte"
    if current is not None and (condition.version < current.version or (
        condition.version == current.version and not gte
    )):  # fmt: skip
        than = "higher than" if gte else "higher or equal to"
        raise VersionConflictError(
            f"[{action.id}]: version conflict, current version [{current.version}] is {than} "
            f"the one provided [{condition.version}]"
        )
    return condition.version


def _missing(doc_id: str, index: str) -> DocumentNotFoundError:
    return DocumentNotFoundError(
        f"[{doc_id}]: document missing from index {index!r}; send doc_as_upsert: true (or an "
        "upsert document) to create it"
    )


def _merged(current: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` merged into ``current`` as Elasticsearch merges a partial update: objects
    key by key, any other value replaced."""
    merged = dict(current)
    for key, value in doc.items():
        inside = merged.get(key)
        both = isinstance(value, dict) and isinstance(inside, dict)
        merged[key] = _merged(inside, value) if both else value  # type: ignore[arg-type]
    return merged


def _fields(store: Any, action: WriteAction, source: dict[str, Any]) -> dict[str, Any]:
    """``source`` as the document's fields, refused as an ingest refuses a record (none of the
    index's text fields, a value no search can read, this store's own limits)."""
    assert action.id is not None
    key = store.settings.id_field or "id"
    fields = dict(source)
    if key in fields:
        given = fields.pop(key)
        if str(given) != action.id or isinstance(given, bool | dict | list):
            raise InvalidInputError(
                f"document {action.id!r}: its {key!r} field ({given!r:.60}) is not its _id; "
                f"index {store.name!r} takes {key!r} as the document's id: leave it out or "
                "give the same value"
            )
    (document,) = documents_from([Document(action.id, fields)])
    IngestChecks(store.settings.text_fields).check(document, action.number)
    store.check_storable(document)
    return fields
