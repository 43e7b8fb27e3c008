"""SQL functions that call a running ``semrank serve``: ``semrank.rank(...)``.

PL/Python (``plpython3u``) posts to the server's ``/v1/rerank`` with the standard library's
http.client, so nothing beyond PostgreSQL's own PL/Python package is needed inside the database.
The endpoint, timeout and batch size are read per call from the ``semrank.endpoint`` /
``semrank.timeout_s`` / ``semrank.batch_size`` settings (``ALTER DATABASE ... SET`` or ``SET``)
and otherwise from the ``semrank.settings`` table (documents go ``batch_size`` a request: a
server takes at most its ``--max-documents``); the API key from ``semrank.api_key`` (a
session's own) or the ``semrank.secrets`` table, which only the function's owner reads (it runs
as its owner).
Failures raise an SQL error (SQLSTATE 38000, external routine exception) naming the server and
the cause.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing semrank.store.postgres needs psycopg, which the CLI must not
    from semrank.store.postgres._schema import Migration

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0
# Documents per request: `semrank serve`'s default --max-documents.
DEFAULT_BATCH_SIZE = 1000

_SETTINGS_V1 = """
CREATE TABLE IF NOT EXISTS semrank.settings (
    key text PRIMARY KEY,
    value text NOT NULL
);
-- A setting: the session / database configuration parameter semrank.<key> if set, else the
-- semrank.settings row, else the default.
CREATE OR REPLACE FUNCTION semrank.setting(key text, fallback text DEFAULT NULL) RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT coalesce(nullif(current_setting('semrank.' || key, true), ''),
                      (SELECT value FROM semrank.settings s WHERE s.key = setting.key),
                      fallback) $$;
"""

_RANK_BODY = r"""
import heapq
import http.client
import json
import socket
import threading
import time
import urllib.parse

if documents is None or len(documents) == 0:
    return []
if query is None:
    plpy.error("semrank.rank: query is NULL",
               hint="pass the query text; leave out rows without one (WHERE query IS NOT NULL)",
               sqlstate="22004")
if not query.strip():  # the server would refuse it (422), after the documents were sent
    plpy.error("semrank.rank: query is empty%s; there is nothing to rank the documents by"
               % (" (only whitespace)" if query else ""),
               hint="pass the query text; leave out rows without one (WHERE query <> '')",
               sqlstate="22023")
if any(isinstance(value, list) for value in list(documents) + list(ids or [])):
    plpy.error("semrank.rank: documents and ids must be one-dimensional text[] arrays",
               hint="pass ARRAY['a', 'b'], not ARRAY[['a'], ['b']]", sqlstate="22023")
if ids is not None and len(ids) != len(documents):
    plpy.error("semrank.rank: ids has %d elements but documents has %d"
               % (len(ids), len(documents)),
               hint="pass one id per document, or NULL for positions", sqlstate="22023")
# The function runs as its owner (SECURITY DEFINER): the stored key is read here, never by the
# caller. Session settings (SET semrank.endpoint ...) still apply: they are the caller's.
# The schema may belong to another role (the one that made the store's tables): it could put a
# view or table of its own in place of ours and have its code run as this function's owner, a
# superuser. Both tables are locked (no swap until the transaction ends) and checked first,
# and no function of the schema is called.
plpy.execute("@LOCK@")
unsafe = plpy.execute("@UNSAFE@")[0]["unsafe"]
if unsafe is not None:
    plpy.error("semrank.rank: %s, not a table a superuser owns; semrank.rank runs as a "
               "superuser and does not read it" % unsafe,
               hint="as a superuser, check its rows and make it a table a superuser owns "
                    "(ALTER TABLE ... OWNER TO ...)", sqlstate="42501")
row = plpy.execute(
    "SELECT coalesce(nullif(current_setting('semrank.endpoint', true), ''), "
    "(SELECT value FROM semrank.settings WHERE key = 'endpoint'), '@ENDPOINT@') AS endpoint, "
    "coalesce(nullif(current_setting('semrank.timeout_s', true), ''), "
    "(SELECT value FROM semrank.settings WHERE key = 'timeout_s'), '@TIMEOUT@') AS timeout, "
    "coalesce(nullif(current_setting('semrank.batch_size', true), ''), "
    "(SELECT value FROM semrank.settings WHERE key = 'batch_size'), '@BATCH@') AS batch_size, "
    "nullif(current_setting('semrank.api_key', true), '') AS session_key, "
    "(SELECT value FROM semrank.secrets WHERE key = 'api_key') AS stored_key, "
    "(SELECT value FROM semrank.settings WHERE key = 'endpoint') AS stored_endpoint, "
    "CASE WHEN current_setting('statement_timeout') IN ('0', '') THEN NULL "
    "ELSE extract(epoch FROM current_setting('statement_timeout')::interval) "
    "- extract(epoch FROM clock_timestamp() - statement_timestamp()) END AS statement_left"
)[0]
endpoint = row["endpoint"]
parts = urllib.parse.urlsplit(endpoint)
# Only http(s) URLs with a host (urllib, used before, also opened file:// URLs).
try:
    port = parts.port
except ValueError:
    port = -1
if parts.scheme.lower() not in ("http", "https") or not parts.hostname or port == -1:
    plpy.error("semrank.rank: semrank.endpoint %r is not an http:// or https:// URL" % endpoint,
               hint="SET semrank.endpoint = 'http://host:port'", sqlstate="22023")
# A stored key goes only to the stored endpoint: a session that points semrank.endpoint
# elsewhere must bring its own key (it could otherwise capture the stored one).
stored_endpoint = row["stored_endpoint"] or "@ENDPOINT@"
if row["stored_key"] and row["session_key"] is None and endpoint != stored_endpoint:
    plpy.error("semrank.rank: semrank.endpoint is set to %s here, but the API key is the one "
               "stored for %s; a stored key is sent only to the stored endpoint"
               % (endpoint, stored_endpoint),
               hint="SET semrank.api_key alongside semrank.endpoint, or store the endpoint: "
                    "INSERT INTO semrank.settings VALUES ('endpoint', '...') "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
               sqlstate="42501")
api_key = row["session_key"] or row["stored_key"]
if api_key is not None and not all(33 <= ord(c) <= 126 for c in api_key):
    plpy.error("semrank.rank: semrank.api_key holds characters an HTTP header cannot carry "
               "(spaces, control or non-ASCII characters); the key is not shown here",
               hint="set the key the server was given with --api-key", sqlstate="22023")
try:
    timeout = float(row["timeout"])
except ValueError:
    timeout = float("nan")
# At most a day: larger values overflowed Python's clock and socket timeouts (OverflowError).
if not 0 < timeout <= 86400:
    plpy.error("semrank.rank: semrank.timeout_s is %r; it must be a number of seconds above 0, "
               "at most 86400" % row["timeout"],
               hint="SET semrank.timeout_s = '30' (or store it: INSERT INTO semrank.settings "
                    "VALUES ('timeout_s', '30') ON CONFLICT (key) DO UPDATE SET value = "
                    "EXCLUDED.value)", sqlstate="22023")
try:
    batch_size = int(row["batch_size"])
except ValueError:
    batch_size = 0
if batch_size < 1:
    plpy.error("semrank.rank: semrank.batch_size is %r; it must be a whole number of documents "
               "above 0" % row["batch_size"],
               hint="SET semrank.batch_size = '1000' (the server's --max-documents)",
               sqlstate="22023")
# As many requests as batch_size needs, of even sizes: a short last one (5 documents after
# 1000) would have its scores from a list of its own size (the default model's feedback).
requests = -(-len(documents) // batch_size)
bounds = [(len(documents) * i // requests, len(documents) * (i + 1) // requests)
          for i in range(requests)]
# One deadline for the whole call, within what statement_timeout leaves of the statement.
if row["statement_left"] is not None:
    timeout = min(timeout, max(float(row["statement_left"]), 0.001))
deadline = time.monotonic() + timeout
url = endpoint.rstrip("/") + "/v1/rerank"
texts = [d if d is not None else "" for d in documents]
headers = {"Content-Type": "application/json", "Accept": "application/json"}
if api_key:
    headers["Authorization"] = "Bearer " + api_key


def time_left():
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def request_body(start, end):
    body = {"query": query, "documents": texts[start:end],
            "return_documents": False, "fail_open": False,
            # The server stops at the same deadline, a little before this side gives up.
            "timeout_ms": max(1, min(int(time_left() * 950), 86400000))}
    if model is not None:
        body["model"] = model
    return json.dumps(body).encode("utf-8")


def post(payload_out):
    # (status, body bytes); redirects are not followed (the key would go along).
    https = parts.scheme.lower() == "https"
    connection = (http.client.HTTPSConnection if https else http.client.HTTPConnection)(
        parts.hostname, port, timeout=time_left())
    connection.connect()
    sock = connection.sock
    exchange["sock"] = sock  # for a cancel to shut
    if stopped.is_set():  # cancelled while connecting: the cancel may have shut the last socket
        sock.close()
        raise InterruptedError("cancelled")
    # A socket timeout bounds each receive, not the call (a server may trickle its headers or
    # body): at the deadline the socket is shut, which ends any receive still waiting.
    def shut():
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed: the call ended just then

    alarm = threading.Timer(time_left(), shut)
    alarm.daemon = True
    alarm.start()
    close = connection.close
    # getresponse() closes a connection the server will close; the body is still read through
    # its socket.
    connection.close = lambda: None
    try:
        try:
            connection.request("POST", parts.path.rstrip("/") + "/v1/rerank",
                               body=payload_out, headers=headers)
        except (BrokenPipeError, ConnectionResetError) as cut:
            # A server refusing a body over its --max-body-bytes answers 413 and closes while
            # the rest is still being sent: read that answer if it arrived.
            try:
                response = connection.getresponse()
            except (OSError, http.client.HTTPException):
                raise cut from None
        else:
            response = connection.getresponse()
        chunks = []
        while True:
            chunk = response.read1(65536)
            time_left()  # a receive the alarm ended looks like the end of the answer
            if not chunk:
                return response.status, b"".join(chunks)
            chunks.append(chunk)
    finally:
        alarm.cancel()
        close()


def run_exchange():
    # More documents than a server takes in one request (--max-documents, 1000 by default) go
    # at most batch_size at a time, one after the other, within the one deadline.
    try:
        for start, end in bounds:
            if stopped.is_set():
                return
            payload_out = request_body(start, end)
            exchange["sent"] = len(payload_out)
            status, payload = post(payload_out)
            exchange["answers"].append((start, end, status, payload))
            if status != 200:
                return
    except BaseException as exc:  # raised again on the function's own thread
        exchange["failure"] = exc


def wait_for(worker):
    # The HTTP exchange runs on a thread of its own: this (PostgreSQL's) thread wakes every
    # 0.1 s for a statement that checks for interrupts, so pg_cancel_backend,
    # pg_terminate_backend and statement_timeout end the call then, not at the deadline.
    # Not in the last moments before the deadline: the alarm ends the call then, and a
    # statement_timeout expiring with it is reported as this call's timeout.
    check = plpy.prepare("SELECT 1")
    while worker.is_alive():
        worker.join(max(0.01, min(0.1, deadline - time.monotonic())))
        if worker.is_alive() and deadline - time.monotonic() > 0.05:
            try:
                plpy.execute(check)
            except BaseException:  # a cancel or a termination: shut the socket and go
                stopped.set()  # no further batch
                sock = exchange.get("sock")
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass  # already closed
                worker.join(1.0)
                raise


exchange = {"answers": []}
stopped = threading.Event()
worker = threading.Thread(target=run_exchange, daemon=True)
worker.start()
wait_for(worker)
failure = exchange.get("failure")
if failure is not None and not isinstance(
        failure, (OSError, http.client.HTTPException, ValueError)):
    raise failure
if failure is not None:
    if time.monotonic() >= deadline:  # the alarm shut the socket: say so, not "reset"
        failure = TimeoutError("timed out")
else:
    status, payload = exchange["answers"][-1][2:]
if failure is not None:
    timed_out = isinstance(failure, TimeoutError) or "timed out" in str(failure)
    cut = isinstance(failure, (BrokenPipeError, ConnectionResetError))
    reason = "%s: %s" % (type(failure).__name__, failure) if str(failure) else repr(failure)
    what = "cannot reach the semrank server at %s" % url
    if timed_out:
        hint = ("the server took longer than semrank.timeout_s (%s s) or what statement_timeout "
                "left; raise it: SET semrank.timeout_s = '60'" % row["timeout"])
    elif cut:  # it was reached: it hung up while the request was sent
        what = "the semrank server at %s closed the connection while %d bytes were sent" % (
            url, exchange["sent"])
        hint = ("a request over the server's --max-body-bytes is refused that way: send fewer "
                "documents per request (SET semrank.batch_size = '100'; it is %d) or shorter "
                "ones, or raise --max-body-bytes" % batch_size)
    else:
        hint = ("start it with `semrank serve`, or point semrank.rank elsewhere: "
                "ALTER DATABASE ... SET semrank.endpoint = 'http://host:port'")
    plpy.error("semrank.rank: %s: %s" % (what, reason), hint=hint, sqlstate="38000")
# Only semrank's own error text is passed on (its answers carry error_type): any caller may
# point semrank.endpoint at another host, and echoing that host's answer would let them read
# services the database server reaches and they do not.
foreign = "an answer that is not semrank's (%d bytes; semrank.endpoint may point elsewhere)" % (
    len(payload))
if status != 200:
    text = foreign
    try:
        parsed = json.loads(payload.decode("utf-8", "replace"))
        if isinstance(parsed, dict) and "error_type" in parsed:
            text = str(parsed.get("error") or parsed.get("message") or foreign)
    except ValueError:
        pass
    hints = {
        401: "set semrank.api_key (or `semrank sql install --api-key`) to one of the keys the "
             "server was started with (--api-key)",
        413: "send fewer documents per request: SET semrank.batch_size to the server's "
             "--max-documents or less (semrank.batch_size is %d here), or fewer for long "
             "documents" % batch_size,
        429: "the server is busy (over its --max-pending requests); retry shortly",
        504: "the server's deadline passed: raise semrank.timeout_s (sent as timeout_ms)",
    }
    hint = hints.get(status)
    if 300 <= status < 400:
        hint = "semrank.rank does not follow redirects: point semrank.endpoint at the server"
    details = {"sqlstate": "38000"}
    if hint:  # hint=None would show as "HINT:  None"
        details["hint"] = hint
    plpy.error("semrank.rank: the semrank server at %s answered HTTP %d: %s"
               % (url, status, text[:500]), **details)
batches = []
warnings = []
try:
    for start, end, status, payload in exchange["answers"]:
        answer = json.loads(payload.decode("utf-8"))
        if answer.get("reranked") is False:
            raise ValueError("the documents came back unranked (the server's fail_open)")
        sent = end - start
        batch = []
        for result in answer["results"]:
            position = int(result["index"])
            if not 0 <= position < sent:
                raise IndexError("index %d for %d documents" % (position, sent))
            score = float(result["relevance_score"])
            if score != score or score in (float("inf"), float("-inf")):
                raise ValueError("relevance_score %r is not a finite number" % score)
            batch.append((start + position, score))
        batches.append(batch)
        # What the server flagged (a query cut to fit beside the documents): a NOTICE-level
        # WARNING, as the HTTP caller gets it in meta.warnings; once, not once per batch.
        for warning in (answer.get("meta") or {}).get("warnings") or []:
            if warning not in warnings:
                warnings.append(warning)
except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
    plpy.error("semrank.rank: the answer from %s is not a semrank rerank answer (%s: %s; %d "
               "bytes)" % (url, type(exc).__name__, str(exc)[:80], len(payload)),
               hint="check that semrank.endpoint points at `semrank serve`", sqlstate="38000")
for warning in warnings:
    plpy.warning("semrank.rank: %s" % warning)
# Each batch comes best first; merged by score, a tie goes to the earlier document, as one
# request orders it (a single batch keeps the server's order as it is).
ranked = batches[0] if len(batches) == 1 else heapq.merge(*batches, key=lambda r: -r[1])
rows = []
for rank, (position, score) in enumerate(ranked, start=1):
    key = ids[position] if ids is not None else str(position + 1)
    rows.append((key, rank, score))
return rows
"""

_RANK_V1 = """
CREATE OR REPLACE FUNCTION semrank.rank(
    query text,
    documents text[],
    ids text[] DEFAULT NULL,
    model text DEFAULT NULL
) RETURNS TABLE (id text, rank integer, relevance_score real)
LANGUAGE plpython3u VOLATILE
AS $semrank$@BODY@$semrank$;
COMMENT ON FUNCTION semrank.rank(text, text[], text[], text) IS
    'Re-rank documents for query with a running semrank server (POST /v1/rerank); rows best '
    'first: id (ids[i], or the 1-based position when ids is NULL), rank, relevance_score.';
"""


# The settings tables may have been put in place by the schema's owner, which need not be a
# superuser (the role owning the store's tables): reading or writing them as a superuser would
# run that role's code (a view's functions, a trigger) as the superuser, and a stored key would
# land in a table it reads. They are locked (so they cannot be swapped until the transaction
# ends) and must be tables a superuser owns.
LOCK_SETTINGS = "LOCK TABLE semrank.settings, semrank.secrets IN ACCESS SHARE MODE"
UNSAFE_SETTINGS = (
    "SELECT string_agg(format('semrank.%s is a %s owned by %s', c.relname, CASE c.relkind "
    "WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' ELSE 'relation' END, "
    "quote_ident(r.rolname)), '; ') AS unsafe "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner "
    "WHERE c.oid IN (to_regclass('semrank.settings'), to_regclass('semrank.secrets')) "
    "AND (c.relkind <> 'r' OR NOT r.rolsuper)"
)
_CHECK_SETTINGS = f"""
{LOCK_SETTINGS};
DO $check$
DECLARE
    unsafe text;
BEGIN
    {UNSAFE_SETTINGS} INTO unsafe;
    IF unsafe IS NOT NULL THEN
        RAISE EXCEPTION '%, not a table a superuser owns: its owner could run code as the '
            'superuser installing semrank.rank', unsafe
            USING ERRCODE = '42501',
                  HINT = 'as a superuser, check its rows and make it a table a superuser owns '
                         '(ALTER TABLE ... OWNER TO ...), then install again';
    END IF;
END
$check$;
"""

_RUN_AS_OWNER = """
CREATE TABLE IF NOT EXISTS semrank.secrets (
    key text PRIMARY KEY,
    value text NOT NULL
);
@CHECK@
REVOKE ALL ON semrank.secrets FROM PUBLIC;
INSERT INTO semrank.secrets SELECT key, value FROM semrank.settings WHERE key = 'api_key'
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
DELETE FROM semrank.settings WHERE key = 'api_key';
ALTER FUNCTION semrank.rank(text, text[], text[], text)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
""".replace("@CHECK@", _CHECK_SETTINGS)


def sql_migrations() -> tuple[Migration, ...]:
    """The migrations ``semrank sql install`` applies (versions 100+, after the store's)."""
    body = (
        _RANK_BODY.replace("@ENDPOINT@", DEFAULT_ENDPOINT)
        .replace("@TIMEOUT@", str(DEFAULT_TIMEOUT_S))
        .replace("@BATCH@", str(DEFAULT_BATCH_SIZE))
        .replace("@LOCK@", LOCK_SETTINGS)
        .replace("@UNSAFE@", UNSAFE_SETTINGS)
    )
    rank = _RANK_V1.replace("@BODY@", body)
    return (
        (100, "sql: settings", _SETTINGS_V1),
        (101, "sql: semrank.rank", rank),
        # Databases installed before: the same function, now refusing a NULL query, a bad
        # semrank.timeout_s and an answer that is not semrank's with their own messages.
        (102, "sql: semrank.rank checks its query, timeout and answer", rank),
        # Security: http(s) endpoints only (urllib opened file://), and a stored API key sent
        # only to the stored endpoint (a session could redirect it to a listener of its own).
        (103, "sql: semrank.rank sends only to http(s), and a stored key only where stored", rank),
        (104, "sql: semrank.rank refuses scores that are not finite numbers", rank),
        # A later migration that replaces semrank.rank must repeat _RUN_AS_OWNER's ALTER
        # FUNCTION: CREATE OR REPLACE resets SECURITY DEFINER, and callers then cannot read
        # the settings (tests/test_postgres_sql_safety.py checks prosecdef).
        # Security and deadlines: the API key moves to semrank.secrets, which only the owner
        # reads (semrank.rank runs as its owner, so callers need no access to any key); one
        # deadline for the whole call within statement_timeout; no redirects; fail_open off.
        (105, "sql: keys only the owner reads; one deadline; no redirects", rank + _RUN_AS_OWNER),
        (
            106,
            "sql: semrank.rank passes on the server's warnings; hints that work",
            rank + _RUN_AS_OWNER,
        ),
        (
            107,
            "sql: a body the server hung up on is named, not 'cannot reach'",
            rank + _RUN_AS_OWNER,
        ),
        (108, "sql: semrank.rank refuses arrays of arrays", rank + _RUN_AS_OWNER),
        # Security: a caller may point semrank.endpoint anywhere the database server reaches;
        # answers that are not semrank's are no longer shown to them.
        (109, "sql: semrank.rank shows only semrank's own error text", rank + _RUN_AS_OWNER),
        # semrank.timeout_s over a day overflowed Python's clock (a raw OverflowError).
        (110, "sql: semrank.timeout_s at most a day", rank + _RUN_AS_OWNER),
        # A query cancel (pg_cancel_backend, statement_timeout) waited for the HTTP call's own
        # deadline (up to semrank.timeout_s), and then said "timed out".
        (111, "sql: a query cancel ends semrank.rank at once", rank + _RUN_AS_OWNER),
        # Security: the schema's owner (not always a superuser) could swap semrank.setting or a
        # settings table for its own and have it run as the superuser owning semrank.rank.
        (112, "sql: semrank.rank reads only settings a superuser owns", rank + _RUN_AS_OWNER),
        # More documents than the server's --max-documents (1000 by default) were one request,
        # refused with 413: they now go semrank.batch_size at a time.
        (113, "sql: semrank.rank sends batch_size documents a request", rank + _RUN_AS_OWNER),
        # An empty query went to the server, whose 422 came back as SQLSTATE 38000.
        (114, "sql: semrank.rank refuses an empty query", rank + _RUN_AS_OWNER),
        # The 413 hint said "(it is 1000 here)" of batch_size, read as the server's limit.
        (115, "sql: semrank.rank's 413 hint names semrank.batch_size", rank + _RUN_AS_OWNER),
    )
