"""SQL functions that call a running ``semrank serve``: ``semrank.rank(...)``.

PL/Python (``plpython3u``) posts to the server's ``/v1/rerank`` with the standard library's
urllib, so nothing beyond PostgreSQL's own PL/Python package is needed inside the database.
The endpoint, API key and timeout are read per call from the ``semrank.endpoint`` /
``semrank.api_key`` / ``semrank.timeout_s`` settings (``ALTER DATABASE ... SET`` or ``SET``) and
otherwise from the ``semrank.settings`` table. Failures raise an SQL error (SQLSTATE 38000,
external routine exception) naming the server and the cause.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing semrank.store.postgres needs psycopg, which the CLI must not
    from semrank.store.postgres._schema import Migration

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0

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
import json
import urllib.error
import urllib.request

if documents is None or len(documents) == 0:
    return []
if query is None:
    plpy.error("semrank.rank: query is NULL",
               hint="pass the query text; leave out rows without one (WHERE query IS NOT NULL)",
               sqlstate="22004")
if ids is not None and len(ids) != len(documents):
    plpy.error("semrank.rank: ids has %d elements but documents has %d"
               % (len(ids), len(documents)),
               hint="pass one id per document, or NULL for positions", sqlstate="22023")
row = plpy.execute(
    "SELECT semrank.setting('endpoint', '@ENDPOINT@') AS endpoint, "
    "semrank.setting('api_key') AS api_key, semrank.setting('timeout_s', '@TIMEOUT@') AS timeout, "
    "nullif(current_setting('semrank.api_key', true), '') AS session_key, "
    "(SELECT value FROM semrank.settings WHERE key = 'endpoint') AS stored_endpoint"
)[0]
endpoint = row["endpoint"]
# Only http(s): urllib would also open file:// URLs, as the database server's OS user.
if endpoint.split(":", 1)[0].lower() not in ("http", "https"):
    plpy.error("semrank.rank: semrank.endpoint %r is not an http:// or https:// URL" % endpoint,
               hint="SET semrank.endpoint = 'http://host:port'", sqlstate="22023")
# A key kept in semrank.settings goes only to the endpoint kept there: a session that points
# semrank.endpoint elsewhere must bring its own key (it could otherwise capture the stored one).
stored_endpoint = row["stored_endpoint"] or "@ENDPOINT@"
if row["api_key"] and row["session_key"] is None and endpoint != stored_endpoint:
    plpy.error("semrank.rank: semrank.endpoint is set to %s here, but the API key is the one "
               "stored for %s; a stored key is sent only to the stored endpoint"
               % (endpoint, stored_endpoint),
               hint="SET semrank.api_key alongside semrank.endpoint, or store the endpoint: "
                    "UPDATE semrank.settings SET value = '...' WHERE key = 'endpoint'",
               sqlstate="42501")
try:
    timeout = float(row["timeout"])
except ValueError:
    timeout = float("nan")
if not 0 < timeout < float("inf"):
    plpy.error("semrank.rank: semrank.timeout_s is %r; it must be a number of seconds above 0"
               % row["timeout"],
               hint="SET semrank.timeout_s = '30' (or UPDATE semrank.settings SET value = '30' "
                    "WHERE key = 'timeout_s')", sqlstate="22023")
url = endpoint.rstrip("/") + "/v1/rerank"
body = {"query": query, "documents": [d if d is not None else "" for d in documents],
        "return_documents": False}
if model is not None:
    body["model"] = model
headers = {"Content-Type": "application/json", "Accept": "application/json"}
if row["api_key"]:
    headers["Authorization"] = "Bearer " + row["api_key"]
request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers,
                                 method="POST")
hint = ("start it with `semrank serve`, or point semrank.rank elsewhere: "
        "ALTER DATABASE ... SET semrank.endpoint = 'http://host:port' "
        "(or UPDATE semrank.settings SET value = ... WHERE key = 'endpoint')")
try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = response.read()
except urllib.error.HTTPError as exc:
    text = exc.read().decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
        error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
        if isinstance(error, dict):
            text = str(error.get("message") or error.get("detail") or text)
        elif isinstance(error, str):
            text = error
    except ValueError:
        pass
    plpy.error("semrank.rank: the semrank server at %s answered HTTP %d: %s"
               % (url, exc.code, text), sqlstate="38000")
except (urllib.error.URLError, OSError, ValueError) as exc:
    reason = getattr(exc, "reason", exc)
    if "timed out" in str(reason):
        hint = "the server took longer than semrank.timeout_s (%s s); raise it: " \
               "SET semrank.timeout_s = '60'" % row["timeout"]
    plpy.error("semrank.rank: cannot reach the semrank server at %s: %s" % (url, reason),
               hint=hint, sqlstate="38000")
rows = []
try:
    for rank, result in enumerate(json.loads(payload.decode("utf-8"))["results"], start=1):
        position = int(result["index"])
        if not 0 <= position < len(documents):
            raise IndexError("index %d for %d documents" % (position, len(documents)))
        key = ids[position] if ids is not None else str(position + 1)
        score = float(result["relevance_score"])
        if score != score or score in (float("inf"), float("-inf")):
            raise ValueError("relevance_score %r is not a finite number" % score)
        rows.append((key, rank, score))
except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
    plpy.error("semrank.rank: the answer from %s is not a semrank rerank answer (%s: %s): %r"
               % (url, type(exc).__name__, exc, payload[:120].decode("utf-8", "replace")),
               hint="check that semrank.endpoint points at `semrank serve`", sqlstate="38000")
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


def sql_migrations() -> tuple[Migration, ...]:
    """The migrations ``semrank sql install`` applies (versions 100+, after the store's)."""
    body = _RANK_BODY.replace("@ENDPOINT@", DEFAULT_ENDPOINT).replace(
        "@TIMEOUT@", str(DEFAULT_TIMEOUT_S)
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
    )
