"""Elasticsearch APIs that clients and tools (Kibana, Grafana, Beats, Logstash, the official
clients) call and semrank does not serve: each is a 400 in Elasticsearch's shape, naming the
API and what semrank answers instead, where it was "invalid index name '_xpack'" (the path
read as GET /{index}) or a 404 naming semrank's rerank routes. Registered last: the routes
semrank serves under these prefixes (``/_cat/indices``, ``/_cluster/health``) come first.
"""

from __future__ import annotations

from fastapi import Request

from semrank.errors import InvalidInputError
from semrank.server._es_router import es_router

router = es_router()

SERVED = "docs/server.md lists the Elasticsearch APIs semrank serves"
# (paths, what they are in Elasticsearch, what semrank answers instead)
UNSERVED = (
    (("/_xpack", "/_xpack/{rest:path}", "/_license", "/_license/{rest:path}"),
     "X-Pack and license information",
     "semrank has no licensed features; GET / answers its name and version"),
    (("/_settings", "/_settings/{rest:path}", "/{index}/_settings",
      "/{index}/_settings/{rest:path}"),
     "index settings",
     "GET /{index} answers each index's settings (one shard, no replicas), which do not change"),
    (("/_cat/{rest:path}",),
     "this _cat table",
     "GET /_cat lists the tables semrank answers (indices, aliases, health, count)"),
    (("/_cluster/{rest:path}",),
     "this cluster API",
     "semrank is one node: GET /_cluster/health, GET /_nodes and GET /_cat/indices describe it"),
    (("/_ingest/{rest:path}",),
     "ingest pipelines",
     "semrank has none: documents are stored as sent (POST /{index}/_bulk, PUT /{index}/_doc)"),
    (("/_template", "/_template/{rest:path}", "/_index_template",
      "/_index_template/{rest:path}", "/_component_template",
      "/_component_template/{rest:path}"),
     "index templates",
     "semrank has none: PUT /{index} with the index's mappings makes an index"),
    (("/_security/{rest:path}",),
     "security (users, roles, API keys)",
     "semrank checks the API keys it is started with (--api-key; docs/server.md, Keys) "
     "and has no users"),
)  # fmt: skip


def _refusal(what: str, instead: str) -> object:
    async def refuse(request: Request) -> None:
        raise InvalidInputError(
            f"semrank does not serve Elasticsearch's {request.method} {request.url.path} "
            f"({what}); {instead}. {SERVED}"
        )

    return refuse


for _paths, _what, _instead in UNSERVED:
    for _path in _paths:
        router.add_api_route(
            _path,
            _refusal(_what, _instead),  # type: ignore[arg-type]
            methods=["GET", "PUT", "POST", "DELETE"],
            include_in_schema=False,
        )
