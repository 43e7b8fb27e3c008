"""Loaders and metrics on the shared collections (TREC DL 2019, SciFact); skipped without them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from semrank.cli import app
from semrank.eval import (
    Run,
    ScoredDoc,
    candidates_to_run,
    evaluate,
    load_beir,
    load_candidates,
    load_qrels,
)

pytestmark = pytest.mark.data

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shared_data() -> Path:
    path = REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"../shared/data not found: {path} (read-only evaluation data)")
    return path


def collection(shared_data: Path, name: str) -> Path:
    path = shared_data / "eval" / name
    if not path.is_dir():
        pytest.skip(f"../shared/data not found: {path}")
    return path


def test_trec_dl_2019_bm25_ndcg10_via_the_cli(shared_data: Path) -> None:
    folder = collection(shared_data, "trec-dl-2019")
    args = ["eval", "--candidates", str(folder / "bm25-top100.json.gz")]
    args += ["--qrels", str(folder / "qrels.txt"), "--no-rerank", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)["first_stage"]
    # The published BM25 value for these candidates (README of ../shared/data: 0.506).
    assert round(scores["nDCG@10"], 3) == 0.506
    assert scores["nDCG@10"] == pytest.approx(0.5058, abs=5e-5)


def test_trec_dl_2019_candidates_shape(shared_data: Path) -> None:
    folder = collection(shared_data, "trec-dl-2019")
    lists = load_candidates(folder / "bm25-top100.json.gz")
    qrels = load_qrels(folder / "qrels.txt")
    assert len(lists) == 43 and all(len(c.hits) == 100 for c in lists)
    assert {c.query_id for c in lists} == set(qrels)
    assert all([h.rank for h in c.hits] == list(range(1, 101)) for c in lists)
    result = evaluate(qrels, candidates_to_run(lists))
    assert result.query_count == 43


def test_scifact_loads_as_described(shared_data: Path) -> None:
    scifact = load_beir(collection(shared_data, "scifact"), split="test")
    assert len(scifact.corpus) == 5183
    assert len(scifact.qrels) == 300 and len(scifact.queries) == 300
    assert all(doc_id in scifact.corpus for rels in scifact.qrels.values() for doc_id in rels)
    some = next(iter(scifact.corpus.values()))
    assert some.title and some.text


def test_scifact_metrics_on_constructed_runs(shared_data: Path) -> None:
    scifact = load_beir(collection(shared_data, "scifact"), split="test")
    relevant = {q: [d for d, g in rels.items() if g > 0] for q, rels in scifact.qrels.items()}
    perfect = Run(
        name="perfect",
        rankings={
            q: [ScoredDoc(doc_id=d, score=1.0) for d in docs] for q, docs in relevant.items()
        },
    )
    assert evaluate(scifact.qrels, perfect).aggregate == {
        "nDCG@10": pytest.approx(1.0),
        "RR@10": 1.0,
        "R@100": 1.0,
        "AP": pytest.approx(1.0),
    }
    # One unjudged document in front of every relevant list: RR@10 is exactly 1/2 everywhere.
    judged = {d for rels in scifact.qrels.values() for d in rels}
    filler = next(d for d in scifact.corpus if d not in judged)
    pushed = Run(
        name="pushed",
        rankings={
            q: [ScoredDoc(doc_id=filler, score=1.0), *r] for q, r in perfect.rankings.items()
        },
    )
    assert evaluate(scifact.qrels, pushed, ["RR@10"]).aggregate["RR@10"] == pytest.approx(0.5)
