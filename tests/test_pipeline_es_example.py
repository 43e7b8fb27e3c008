"""The ``text_similarity_reranker`` example of the Elasticsearch documentation runs unchanged
(apart from the index and the model name), from Python and from `semrank search --retriever`.

Source: the Elasticsearch reference, rest-apis/retrievers/text-similarity-reranker-retriever
("Example: Elastic Rerank", step 2: `POST _search`). Changed: ``inference_id`` names semrank's
bundled model instead of the ``my-elastic-rerank`` endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from semrank.errors import InvalidInputError
from semrank.pipeline import TextSimilarityReranker, parse_retriever, search
from semrank.store import create_index

ES_SEARCH_BODY = """
{
  "retriever": {
    "text_similarity_reranker": {
      "retriever": {
        "standard": {
          "query": {
            "match": {
              "text": "How often does the moon hide the sun?"
            }
          }
        }
      },
      "field": "text",
      "inference_id": "all-minilm-l6-v2",
      "inference_text": "How often does the moon hide the sun?",
      "rank_window_size": 100,
      "min_score": 0.5
    }
  }
}
"""

DOCS = [
    {
        "id": "eclipse-rate",
        "text": "Total solar eclipses, when the moon hides the sun completely, occur "
        "somewhere on Earth about every 18 months.",
    },
    {
        "id": "moon-phases",
        "text": "The moon goes through phases from new moon to full moon every 29.5 days.",
    },
    {"id": "sun-facts", "text": "The sun is a star at the centre of the solar system."},
    {
        "id": "how-often",
        "text": "How often should you water a cactus? Rarely: once every few weeks.",
    },
    {"id": "paris", "text": "Paris is the capital of France."},
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("es-home")
    with create_index("es-example", home=root, fields=["text"], embedding_model=None) as index:
        index.upsert(DOCS)
    return root


def test_documentation_example_runs_unchanged(home: Path) -> None:
    tree = parse_retriever(json.loads(ES_SEARCH_BODY))
    assert isinstance(tree, TextSimilarityReranker)
    assert tree.rank_window_size == 100 and tree.min_score == 0.5 and tree.field == "text"
    results = search("es-example", retriever=tree, k=10, home=home)
    assert results.ids[0] == "eclipse-rate"
    assert "paris" not in results.ids  # BM25 shares no term with it: never a candidate
    for hit in results.hits:
        assert hit.score >= 0.5 and hit.rerank_score == hit.score
        assert hit.first_stage_rank >= 1 and hit.first_stage_score > 0
    # The first stage is plain BM25 on the text field.
    first = search(
        "es-example",
        retriever=json.loads(ES_SEARCH_BODY)["retriever"]["text_similarity_reranker"]["retriever"],
        k=100,
        home=home,
    )
    by_id = {h.id: h for h in first.hits}
    for hit in results.hits:
        assert hit.first_stage_rank == by_id[hit.id].rank
        assert hit.first_stage_score == pytest.approx(by_id[hit.id].score)


def test_documentation_example_from_the_cli(home: Path, tmp_path: Path) -> None:
    from semrank.cli import app

    body = tmp_path / "retriever.json"
    body.write_text(ES_SEARCH_BODY)
    result = CliRunner().invoke(
        app, ["search", "es-example", "--retriever", str(body), "--json", "--home", str(home)]
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)["hits"]
    assert hits[0]["id"] == "eclipse-rate"
    assert set(hits[0]) >= {"id", "score", "first_stage_rank", "first_stage_score", "document"}
    assert hits[0]["document"]["text"].startswith("Total solar eclipses")


def test_a_search_body_whose_size_exceeds_the_window_is_refused_by_the_cli(
    home: Path, tmp_path: Path
) -> None:
    from semrank.cli import app

    body = json.loads(ES_SEARCH_BODY)
    body["retriever"]["text_similarity_reranker"]["rank_window_size"] = 2
    body["size"] = 5  # Elasticsearch refuses it rather than return 2 hits
    path = tmp_path / "narrow.json"
    path.write_text(json.dumps(body))
    args = ["search", "es-example", "--retriever", str(path), "--top-n", "5", "--json"]
    result = CliRunner().invoke(app, [*args, "--home", str(home)])
    assert isinstance(result.exception, InvalidInputError)  # `semrank` prints it, exits 2
    assert "rank_window_size 2 is below the 5 hits asked for" in str(result.exception)
