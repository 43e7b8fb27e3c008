"""Bad input found by fuzzing the HTTP API and the library: each case gets a 4xx JSON error (or
the library's InvalidInputError) that names the bad value, never a 500 or a Python exception."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from semrank._checks import MAX_WEIGHT, is_finite_number, require_unicode
from semrank.errors import DataFormatError, InvalidInputError
from semrank.rerank._documents import document_texts, validate_query

HUGE_INT = "1" + "0" * 400  # valid JSON; too large for a float
STANDARD = {"standard": {"query": {"match": {"text": "{{query}}"}}}}


def test_huge_integers_are_not_finite_numbers() -> None:
    assert not is_finite_number(10**400)
    assert is_finite_number(10**6, at_most=MAX_WEIGHT)
    assert not is_finite_number(MAX_WEIGHT * 10, at_most=MAX_WEIGHT)


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("a\ud800b", "doc holds a lone surrogate"),
        ({"text": "ok", "x": ["fine", "\udcff"]}, r"doc\.x\[1\]"),
        ({"\ud83d": "key"}, r"doc \(a field name\)"),
    ],
)
def test_lone_surrogates_are_named(value: Any, named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        require_unicode(value, "doc")


def test_rerank_input_checks_refuse_lone_surrogates() -> None:
    with pytest.raises(InvalidInputError, match="query holds a lone surrogate"):
        validate_query("fleas \udcff")
    with pytest.raises(InvalidInputError, match=r"documents\[1\] holds"):
        document_texts(["fine", "bad \ud800"])
    # A field that is not ranked is checked too: it may be sent back with the results.
    with pytest.raises(InvalidInputError, match=r"documents\[0\]\.note holds"):
        document_texts([{"text": "fine", "note": "\ud800"}])
    assert document_texts(["emoji \U0001f600 is fine"]) == ["emoji \U0001f600 is fine"]


async def _post(client: httpx.AsyncClient, path: str, raw: str) -> httpx.Response:
    return await client.post(path, content=raw, headers={"content-type": "application/json"})


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "raw", "named"),
    [
        ("/v2/rerank", '{"query": "fleas", "documents": ["a\\ud800 b"]}', "documents[0]"),
        (
            "/v1/rerank",
            '{"query": "fleas", "documents": [{"text": "a", "x": "\\ud800"}], '
            '"return_documents": true}',
            "documents[0].x",
        ),
        ("/rerank", '{"query": "fleas", "texts": ["\\udc00"]}', "lone surrogate"),
        ("/v2/rerank", '{"query": "q", "documents": ["a"], "timeout_ms": ' + HUGE_INT + "}", ""),
        ("/v2/rerank", '{"query": "q", "documents": ["a", "b"], "top_n": true}', "top_n"),
        # JSON true read as 1 (every document read as one token, or no result at all) and
        # "yes" read as true hid clients' mistakes.
        ("/v2/rerank", '{"query": "q", "documents": ["a"], "max_tokens_per_doc": true}', "max_tok"),
        ("/v2/rerank", '{"query": "q", "documents": ["a"], "min_score": true}', "min_score"),
        ("/v2/rerank", '{"query": "q", "documents": ["a"], "timeout_ms": true}', "timeout_ms"),
        ("/v1/rerank", '{"query": "q", "documents": ["a"], "max_chunks_per_doc": true}', "max_chu"),
        ("/v1/rerank", '{"query": "q", "documents": ["a"], "return_documents": "yes"}', "return_d"),
        (
            "/v2/rerank",
            '{"query": "q", "documents": ["a"], "chunking": {"max_chunks": true}}',
            "max",
        ),
        ("/v2/rerank", '{"query": "q", "documents": ["a"], "raw_scores": 1}', "raw_scores"),
        ("/rerank", '{"query": "q", "texts": ["a"], "return_text": "true"}', "return_text"),
    ],
)
async def test_rerank_bad_input_is_a_422(
    index_client: httpx.AsyncClient, path: str, raw: str, named: str
) -> None:
    response = await _post(index_client, path, raw)
    assert response.status_code == 422, response.text
    assert named in response.json()["error"]


async def _index(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/indexes", json={"name": "docs", "embedding_model": None})
    assert created.status_code == 201, created.text
    documents = [{"id": "d1", "text": "Fleas feed on blood."}, {"id": "d2", "text": "Paris."}]
    added = await client.post("/v1/indexes/docs/documents", json={"documents": documents})
    assert added.status_code == 200, added.text


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("retriever", "named"),
    [
        ({"text_similarity_reranker": {"retriever": STANDARD, "rank_window_size": None}}, "None"),
        (
            {"text_similarity_reranker": {"retriever": STANDARD, "min_score": HUGE_INT}},
            "min_score",
        ),
        ({"rrf": {"retrievers": [{"retriever": STANDARD, "weight": 1e308}]}}, "weight"),
        ({"linear": {"retrievers": [{"retriever": STANDARD, "weight": 1e308}]}}, "weight"),
        (
            {"standard": {"query": {"multi_match": {"query": "x", "fields": ["text^1e308"]}}}},
            "text^1e308",
        ),
    ],
)
async def test_search_bad_numbers_are_a_422(
    index_client: httpx.AsyncClient, retriever: dict[str, Any], named: str
) -> None:
    await _index(index_client)
    # HUGE_INT goes in as a bare JSON number, not a string.
    raw = json.dumps({"query": "fleas", "retriever": retriever}).replace(f'"{HUGE_INT}"', HUGE_INT)
    response = await _post(index_client, "/v1/indexes/docs/search", raw)
    assert response.status_code == 422, response.text
    assert named in response.json()["error"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "model", ["/etc", "", "org/some-hub-model", "BAAI/bge-reranker-v2-m3", "semrank-minilm-l6"]
)
async def test_index_embedding_model_must_be_a_catalog_name(
    index_client: httpx.AsyncClient, model: str
) -> None:
    response = await index_client.post("/v1/indexes", json={"name": "x", "embedding_model": model})
    assert response.status_code == 422, response.text
    assert "catalog" in response.json()["error"]
    assert "/" not in response.json()["error"].replace(model, "")  # no server folders named
    assert (await index_client.get("/v1/indexes")).json()["data"] == []


def test_training_never_overwrites_an_earlier_run(tiny_base: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from semrank.train import DataSpec, TrainConfig, train

    output = tmp_path / "run"
    (output / "best").mkdir(parents=True)
    (output / "config.json").write_text('{"earlier": true}')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"not_a_query": 1}\n')
    config = TrainConfig(base=tiny_base, data=(DataSpec(path=bad),), output=output, max_steps=1)
    with pytest.raises(InvalidInputError, match="already holds a training run"):
        train(config)
    # Without a checkpoint, --resume would restart at step 0 over best/: refused.
    with pytest.raises(InvalidInputError, match=r"best model but no checkpoint\.pt"):
        train(config, resume=True)
    # With one, --resume goes on to read the data, which is bad: the config is still intact.
    (output / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl"):
        train(config, resume=True)
    assert json.loads((output / "config.json").read_text()) == {"earlier": True}


def test_cli_files_that_are_not_utf8_or_are_folders_are_named(tmp_path: Path) -> None:
    from semrank.errors import DataFormatError
    from semrank.pipeline import parse_retriever
    from semrank.rerank.commands import _read_text

    latin1 = tmp_path / "docs.txt"
    latin1.write_bytes(b"caf\xe9 au lait\n")
    with pytest.raises(InvalidInputError, match=r"not valid UTF-8 \(byte 0xe9 at byte 3\)"):
        _read_text(str(latin1))
    with pytest.raises(DataFormatError, match="is not UTF-8"):
        parse_retriever(latin1)
    with pytest.raises(DataFormatError, match="is a folder"):
        parse_retriever(tmp_path)


def test_object_documents_with_non_string_keys_are_named() -> None:
    with pytest.raises(InvalidInputError, match=r"has no field 'text' \(it has \['1', 'x'\]\)"):
        document_texts([{1: "a", "x": "b"}])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raw", "named"),
    [
        # Python 3.13 words the reason otherwise ("Illegal trailing comma ..."): not asserted.
        ('{"query": "x", "documents": ["a",]}', "the request body is not valid JSON ("),
        ('{"query": "x", "documents": ["a", "b"], "top_n": 1, "top_k": 2}', "disagree"),
        # A raw tab in a string (a shell's $'...'): json's reason ends in "at" ("at at").
        (
            '{"query": "a\tb", "documents": ["x"]}',
            "(Invalid control character at character 12) (a tab or line break inside a string "
            "is written \\t or \\n)",
        ),
        ('{"query": "x", "documents": ["a]}', "(Unterminated string starting at character 29)"),
    ],
)
async def test_v1_bad_bodies_say_what_to_send(
    index_client: httpx.AsyncClient, raw: str, named: str
) -> None:
    response = await _post(index_client, "/v1/rerank", raw)
    assert response.status_code == 422, response.text
    assert named in response.json()["error"]


@pytest.mark.anyio
async def test_a_batch_names_its_empty_query(index_client: httpx.AsyncClient) -> None:
    body = {
        "queries": [{"query": "fleas", "documents": ["a"]}, {"query": "  ", "documents": ["b"]}]
    }
    response = await index_client.post("/v1/rerank/batch", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith("queries[1]: query is empty")


def test_library_options_are_checked_not_coerced(reranker: Any, tmp_path: Path) -> None:
    import numpy as np

    from semrank.eval import load_queries
    from semrank.rerank import CascadeConfig

    with pytest.raises(InvalidInputError, match="raw_scores must be True or False, got 'no'"):
        reranker.rerank("fleas", ["a"], raw_scores="no")
    with pytest.raises(InvalidInputError, match=r"queries\[1\]: query is empty"):
        reranker.rerank_many(["fleas", " "], [["a"], ["b"]])
    with pytest.raises(InvalidInputError, match=r"^query is empty"):
        reranker.rerank(" ", ["a"])
    # numpy integers count as integers, as _checks promises.
    assert CascadeConfig(keep=np.int64(3)).keep == 3
    assert len(reranker.rerank("fleas", ["fleas eat blood"], max_tokens_per_doc=np.int64(5))) == 1
    bom = tmp_path / "queries.jsonl"
    bom.write_text('{"_id": "q1", "text": "fleas"}\n', encoding="utf-8-sig")
    assert load_queries(bom) == {"q1": "fleas"}


def test_corpus_and_model_arguments_of_the_wrong_kind_are_named(tmp_path: Path) -> None:
    from semrank import Reranker
    from semrank.store import read_corpus

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"id": "1", "title": "Fleas", "text": "Fleas eat blood."}\n')
    assert read_corpus(corpus, fields="title").text_fields == ("title",)
    with pytest.raises(InvalidInputError, match="corpus path must be a str or pathlib"):
        read_corpus(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="model name is empty"):
        Reranker("")


def test_rank_fields_naming_a_field_twice_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="names a field twice"):
        document_texts([{"text": "a"}], ["text", "text"])


@pytest.mark.anyio
@pytest.mark.parametrize("content_type", ["text/plain", None])
async def test_a_body_not_sent_as_json_names_the_content_type(
    index_client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    body = b'{"name": "x"}'
    response = await index_client.post("/v1/indexes", content=body, headers=headers)
    assert response.status_code == 422, response.text
    sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    assert f"the request body was sent with {sent}" in response.json()["error"]
    assert "Content-Type: application/json" in response.json()["error"]


@pytest.mark.anyio
async def test_a_body_that_is_not_utf8_says_what_to_send(index_client: httpx.AsyncClient) -> None:
    latin1 = '{"query": "caf\u00e9", "documents": ["a"]}'.encode("latin-1")
    headers = {"content-type": "application/json"}
    response = await index_client.post("/v1/rerank", content=latin1, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("the request body could not be parsed as JSON")
    assert "UTF-8" in response.json()["error"]


@pytest.mark.anyio
async def test_json_nested_past_every_limit_is_a_clear_4xx(index_client: httpx.AsyncClient) -> None:
    """Nesting that passes the JSON parser but not Python's recursion limit was a 500 with a
    115 kB traceback in the log; past the parser's own limit the answer blamed the encoding."""
    headers = {"content-type": "application/json"}
    for depth in (500, 900, 3000):
        nested = "[" * depth + "]" * depth
        body = '{"query": "q", "documents": [{"text": "a", "meta": ' + nested + "}]}"
        response = await index_client.post("/v1/rerank", content=body.encode(), headers=headers)
        assert response.status_code in (400, 422), (depth, response.text)
        if response.status_code == 400:
            assert "nested at most" in response.json()["error"]
        else:  # read, but deeper than a response can carry back (MAX_JSON_DEPTH)
            assert "more than 200 levels deep" in response.json()["error"]


@pytest.mark.anyio
async def test_no_body_at_all_says_the_body_is_required(index_client: httpx.AsyncClient) -> None:
    response = await index_client.post("/v1/rerank")
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "body: Field required"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"text": float("nan")}, "has no text"),
        ({"text": [1.0, [float("-inf")]]}, "NaN or an infinity"),
        ({"text": 10**5000}, "integer too long"),
    ],
)
def test_ranked_fields_without_text_are_refused_naming_them(
    reranker: Any, document: dict[str, Any], message: str
) -> None:
    """NaN was scored as the text "nan", and a 5,000-digit integer raised a bare ValueError."""
    with pytest.raises(InvalidInputError, match=message) as caught:
        reranker.rerank("fleas", ["fleas eat blood", document])
    assert "documents[1]" in str(caught.value)


def test_the_library_ranks_objects_with_nan_in_fields_it_does_not_read(reranker: Any) -> None:
    """A pandas record with a missing price is fine in-process: only HTTP must refuse it."""
    documents = [{"text": "fleas bite dogs", "price": 3.5}, {"text": "paris", "price": math.nan}]
    assert len(reranker.rerank("fleas", documents)) == 2


@pytest.mark.anyio
async def test_http_refuses_documents_holding_nan_anywhere(index_client: httpx.AsyncClient) -> None:
    """Infinity came back as null: the answer changed the caller's document."""
    body = '{"query": "fleas", "documents": [{"text": "a"}, {"text": "b", "s": Infinity}]}'
    headers = {"content-type": "application/json"}
    response = await index_client.post("/v1/rerank", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert "documents[1] holds NaN or an infinity" in response.json()["error"]


def test_deeply_nested_documents_are_checked_without_recursion(reranker: Any) -> None:
    nested: Any = "a"
    for _ in range(5000):
        nested = [nested]
    results = reranker.rerank("fleas", [{"text": "fleas eat blood", "meta": nested}])
    assert len(results) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"size": True}, "size"),
        ({"timeout_ms": True}, "timeout_ms"),
        ({"return_documents": "yes"}, "return_documents"),
    ],
)
async def test_search_booleans_and_numbers_are_not_interchanged(
    index_client: httpx.AsyncClient, extra: dict[str, Any], named: str
) -> None:
    await _index(index_client)
    response = await index_client.post("/v1/indexes/docs/search", json={"query": "fleas", **extra})
    assert response.status_code == 422, response.text
    assert named in response.json()["error"]


def test_json_files_nested_past_the_recursion_limit_are_named_not_a_traceback(
    tmp_path: Path,
) -> None:
    """Documents, corpora and candidate files nested thousands of levels deep (a few KB of
    brackets) raised RecursionError tracebacks from json.loads."""
    from typer.testing import CliRunner

    from semrank.cli import app
    from semrank.errors import DataFormatError
    from semrank.eval.loaders import load_candidates
    from semrank.store import read_corpus

    deep = "[" * 5000 + "]" * 5000
    lines = tmp_path / "docs.jsonl"
    lines.write_text(f'{{"text": "fleas", "a": {deep}}}\n{{"text": "ticks"}}\n')
    shallow = tmp_path / "three_hundred.jsonl"
    shallow.write_text('{"text": "fleas", "a": ' + "[" * 300 + "]" * 300 + '}\n{"text": "x"}\n')
    runner = CliRunner()
    for path, said in (
        (lines, "docs.jsonl: JSON that cannot be read: nested more than 200 levels deep"),
        (shallow, "three_hundred.jsonl:1: the document nests lists / objects more than 200"),
    ):
        result = runner.invoke(app, ["rerank", "fleas", "--docs", str(path)])
        assert isinstance(result.exception, DataFormatError), result.output
        assert said in str(result.exception)
    with pytest.raises(DataFormatError, match=r"docs\.jsonl:1: not valid JSON \(nested more"):
        list(read_corpus(lines))
    candidates = tmp_path / "candidates.json"
    candidates.write_text(f'[{{"query": "q", "hits": [{{"docid": "d", "x": {deep}}}]}}]')
    with pytest.raises(DataFormatError, match="nested more than 200 levels deep"):
        load_candidates(candidates)


@pytest.mark.anyio
async def test_a_top_n_past_the_largest_index_returns_every_document(
    index_client: httpx.AsyncClient,
) -> None:
    """top_n of 2**63 ("all") was a 500 over HTTP and a ValueError traceback in the library
    and the CLI (islice takes at most sys.maxsize)."""
    from semrank import Reranker

    huge = 2**63
    assert len(Reranker().rerank("fleas", ["a flea", "a dog"], top_n=huge)) == 2
    for path in ("/v1/rerank", "/v2/rerank"):
        body = json.dumps({"query": "fleas", "documents": ["a flea", "a dog"], "top_n": huge})
        response = await _post(index_client, path, body)
        assert response.status_code == 200, response.text
        assert len(response.json()["results"]) == 2


@pytest.mark.anyio
async def test_a_json_body_sent_as_text_json_is_told_the_content_type(
    index_client: httpx.AsyncClient,
) -> None:
    """text/json (older clients) was told its object was not an object."""
    body = json.dumps({"query": "fleas", "documents": ["a flea"]})
    for sent_as in ("text/json", "application/x-json"):
        response = await index_client.post(
            "/v1/rerank", content=body, headers={"content-type": sent_as}
        )
        assert response.status_code == 422
        assert f"sent with Content-Type '{sent_as}'" in response.json()["error"], sent_as


@pytest.mark.anyio
async def test_a_keyless_server_answers_pages_only_from_localhost_or_an_ip(
    index_client: httpx.AsyncClient,
) -> None:
    """A page on a domain pointed at 127.0.0.1 (DNS rebinding) is same-origin to the browser:
    its requests passed every check of a keyless server (a delete was answered 200)."""
    body = json.dumps({"query": "fleas", "documents": ["a flea"]})
    rebound = "http://rebind.attacker.example:8000"
    sent = {"content-type": "application/json", "origin": rebound, "host": rebound[7:]}
    refused = await index_client.post("/v1/rerank", content=body, headers=sent)
    assert refused.status_code == 401 and rebound in refused.json()["error"]
    for origin in ("http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000", None):
        headers = {"content-type": "application/json", **({"origin": origin} if origin else {})}
        answered = await index_client.post("/v1/rerank", content=body, headers=headers)
        assert answered.status_code == 200, (origin, answered.text)
