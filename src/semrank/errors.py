"""One exception tree for all of semrank.

Every error a user can cause names the bad value and says how to fix it. The server maps these
classes to HTTP status codes through ``HTTP_STATUS`` (one table, used by every router).
"""

from __future__ import annotations

import errno


class SemrankError(Exception):
    """Base of every error semrank raises on purpose.

    ``client_message``: what a remote client is told instead of the message, when the message
    names what only the server's operator may see (a database host, port or user); the server
    logs the message itself.
    """

    error_type = "semrank_error"
    # Set by semrank.client on errors from (or about) a server: the HTTP status (None when none
    # came back), and a 429's or 503's Retry-After in seconds.
    status_code: int | None = None
    retry_after: float | None = None

    def __init__(self, *args: object, client_message: str | None = None) -> None:
        super().__init__(*args)
        self.client_message = client_message


class InvalidInputError(SemrankError, ValueError):
    """A request or argument is malformed (empty query, bad top_n, non-string document...)."""

    error_type = "invalid_request"


class ModelNotFoundError(SemrankError, LookupError):
    """A model name, path or hub id cannot be resolved to files."""

    error_type = "model_not_found"


class ModelLoadError(SemrankError):
    """Model files exist but cannot be loaded (unexpected layout, broken weights)."""

    error_type = "model_load_error"


class UnsupportedArchitectureError(ModelLoadError):
    """The checkpoint's architecture has no runtime implementation."""

    error_type = "unsupported_architecture"


class BackendUnavailableError(SemrankError):
    """The requested inference backend (torch, CUDA, OpenVINO...) is not installed here."""

    error_type = "backend_unavailable"


class UnknownBackendError(InvalidInputError, BackendUnavailableError):
    """A backend or device name semrank does not know: the caller's input (422, exit status 2),
    still caught as a ``BackendUnavailableError``."""

    error_type = "invalid_input"


class IndexNotFoundError(SemrankError, LookupError):
    """A named index does not exist."""

    error_type = "index_not_found"


class IndexExistsError(SemrankError):
    """An index with that name already exists."""

    error_type = "index_exists"


class ResourceExistsError(InvalidInputError):
    """Elasticsearch's ``PUT /{index}`` of an index that exists: a 400 there, as Elasticsearch
    answers it (code written for it ignores status 400 to "create unless it exists")."""

    error_type = "resource_already_exists_exception"


class VersionConflictError(SemrankError):
    """A conditional write (``Expected``; Elasticsearch's ``if_seq_no``, ``version``) of a
    document stored otherwise than the condition says: another writer got there first."""

    error_type = "version_conflict_engine_exception"  # Elasticsearch's, which clients read


class DocumentExistsError(VersionConflictError):
    """An Elasticsearch create (``_create``, ``op_type=create``) of an id the index holds."""


class DocumentNotFoundError(SemrankError, LookupError):
    """An Elasticsearch update of a document the index does not hold (no upsert asked)."""

    error_type = "document_missing_exception"


class IndexModelChangedError(SemrankError):
    """An index's embedding model no longer embeds as its stored vectors were made (its folder
    was retrained or replaced in place): the index must be built again, or the model restored."""

    error_type = "index_model_changed"


class IndexVersionError(SemrankError):
    """An index was written by a newer semrank, in a layout this one does not read: upgrade
    semrank to open it (writing it with the older code could damage it)."""

    error_type = "index_version"


class DataFormatError(SemrankError, ValueError):
    """An input file (corpus, qrels, run, candidates, training data) cannot be parsed."""

    error_type = "data_format_error"


class StorageError(SemrankError):
    """An index's files cannot be read or written here (permissions, a full disk, a lock)."""

    error_type = "storage_error"


class RequestTooLargeError(InvalidInputError):
    """A request exceeds a configured size limit (documents, bytes, tokens)."""

    error_type = "request_too_large"


class OverloadedError(SemrankError):
    """The server queue is full; retry later."""

    error_type = "overloaded"


class SearchContextMissingError(SemrankError, LookupError):
    """A scroll or point-in-time id that names no open context here: never opened, cleared,
    expired, or opened by another worker process of the server."""

    error_type = "search_context_missing_exception"  # Elasticsearch's, which clients read


class TooManySearchContextsError(OverloadedError):
    """A new scroll or point in time past the server's limit on open contexts, or on the hits
    they hold together; clear some (or let them expire) and retry."""

    error_type = "too_many_scroll_contexts_exception"


class DeadlineExceededError(SemrankError):
    """A request did not finish within its deadline."""

    error_type = "deadline_exceeded"


class BodyTimeoutError(SemrankError):
    """A request's body did not arrive in time (a stalled or deliberately slow client)."""

    error_type = "request_timeout"


class ClientDisconnectedError(SemrankError):
    """The client went away (or its request ended) before the work was done; nobody reads
    the answer, and the work left is dropped."""

    error_type = "client_disconnected"


class AuthenticationError(SemrankError):
    """Missing or wrong API key."""

    error_type = "unauthorized"


class InternalError(SemrankError):
    """A fault of semrank's own (a bug): the server answers 500 naming the request id that its
    log holds the traceback under."""

    error_type = "internal_error"


# The only place that decides which HTTP status an error becomes.
HTTP_STATUS: dict[type[SemrankError], int] = {
    RequestTooLargeError: 413,
    InvalidInputError: 422,
    DataFormatError: 422,
    ModelNotFoundError: 404,
    IndexNotFoundError: 404,
    IndexExistsError: 409,
    DocumentExistsError: 409,
    VersionConflictError: 409,
    DocumentNotFoundError: 404,
    IndexModelChangedError: 409,
    IndexVersionError: 409,
    AuthenticationError: 401,
    OverloadedError: 429,
    TooManySearchContextsError: 429,
    SearchContextMissingError: 404,
    DeadlineExceededError: 504,
    BodyTimeoutError: 408,
    ClientDisconnectedError: 499,  # nginx's "client closed request": recorded, never sent
    UnsupportedArchitectureError: 422,
    BackendUnavailableError: 503,
    StorageError: 503,
    ModelLoadError: 500,
    InternalError: 500,
    SemrankError: 500,
}


# Import name of each optional dependency -> the extra that installs it.
OPTIONAL_MODULES = {
    "bm25s": "search",
    "Stemmer": "search",
    "usearch": "search",
    "ir_measures": "eval",
    "pytrec_eval": "eval",
    "scipy": "eval",
    "matplotlib": "eval",
    "fastapi": "server",
    "uvicorn": "server",
    "prometheus_client": "server",
    "httpx": "client",
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
    "torch": "torch",
    "transformers": "torch",
    "tqdm": "train",
    "sklearn": "train",
}


def missing_extra(error: ModuleNotFoundError) -> BackendUnavailableError | None:
    """An optional dependency not installed, as the error naming the extra that installs it
    (HTTP 503, exit 3); None for any other module."""
    extra = OPTIONAL_MODULES.get((error.name or "").split(".")[0])
    if extra is None:
        return None
    return BackendUnavailableError(
        f"this needs {error.name!r}: pip install 'semrank[{extra}]' (it is not installed)"
    )


def http_status_for(error: SemrankError) -> int:
    """Most specific status in ``HTTP_STATUS`` for ``error`` (walks the class's MRO)."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


# The CLI's exit statuses, read from the same table: scripts can tell "fix the command" from
# "try again later" (a database or model the machine cannot reach now) from a bug.
EXIT_USAGE = 2  # what the command was given: flags, files, names (HTTP 4xx)
EXIT_ENVIRONMENT = 3  # what this machine lacks or cannot reach (HTTP 503, a model that fails)
EXIT_BUG = 1


def exit_code_for(error: BaseException) -> int:
    """``semrank``'s exit status for ``error`` (documented in the README)."""
    if isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG:
        return EXIT_USAGE  # a path given too long: the command's input, not the machine
    if isinstance(error, MemoryError):
        return EXIT_ENVIRONMENT  # the machine's (or its container's) memory, not a bug
    if isinstance(error, OSError | ModelLoadError) and not isinstance(
        error, UnsupportedArchitectureError
    ):
        return EXIT_ENVIRONMENT
    if not isinstance(error, SemrankError):
        return EXIT_BUG
    status = http_status_for(error)
    if 400 <= status < 500:
        return EXIT_USAGE
    # 504: a database that cancelled a statement (its statement_timeout): not a bug either.
    return EXIT_ENVIRONMENT if status in (503, 504) else EXIT_BUG
