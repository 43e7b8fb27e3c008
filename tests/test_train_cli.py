"""`semrank train` rejects bad invocations before loading any model."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from semrank.errors import DataFormatError, InvalidInputError
from semrank.train import DataSpec, load_collection
from semrank.train._blend import _spec_of
from semrank.train.commands import register


@pytest.fixture
def app() -> typer.Typer:
    application = typer.Typer()
    register(application)

    @application.callback()
    def _root() -> None:  # a callback keeps "train" a named sub-command
        pass

    return application


def test_data_spec_parses_options() -> None:
    spec = DataSpec.parse("some/dir,weight=2.5,limit=10,name=x")
    assert (spec.path, spec.weight, spec.limit, spec.name) == (Path("some/dir"), 2.5, 10, "x")


def test_data_spec_rejects_unknown_option() -> None:
    with pytest.raises(DataFormatError, match="colour"):
        DataSpec.parse("dir,colour=red")


def test_train_needs_a_budget(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--output", str(tmp_path)])
    assert isinstance(result.exception, InvalidInputError)
    assert "--max-steps" in str(result.exception)


@pytest.mark.parametrize(
    ("option", "value"), [("--max-steps", "0"), ("--max-minutes", "-1"), ("--negatives", "0")]
)
def test_train_rejects_a_budget_or_count_that_is_not_positive(
    app: typer.Typer, tmp_path: Path, option: str, value: str
) -> None:
    budget = ["--max-minutes", "1"] if option == "--max-steps" else ["--max-steps", "1"]
    args = ["train", "--data", str(tmp_path), "--output", str(tmp_path / "run"), *budget]
    result = CliRunner().invoke(app, [*args, option, value])
    assert isinstance(result.exception, InvalidInputError), result.exception
    assert f"({option}): must be a positive number" in str(result.exception)


def test_train_names_its_extra_before_any_work_when_a_package_is_missing(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With semrank[train] alone, ir_measures was missing and found only after mining."""
    from semrank.errors import BackendUnavailableError
    from semrank.train import commands

    monkeypatch.setattr(commands, "TRAINING_MODULES", ("torch", "ir_measures_not_here"))
    args = ["train", "--data", str(tmp_path), "--output", str(tmp_path / "run"), "--max-steps", "1"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, BackendUnavailableError), result.exception
    assert "needs ir_measures_not_here: pip install 'semrank[train]'" in str(result.exception)
    assert not (tmp_path / "run").exists()


def test_train_names_a_missing_data_path(app: typer.Typer, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    args = ["train", "--data", str(missing), "--output", str(tmp_path), "--max-steps", "1"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, InvalidInputError)
    assert str(missing) in str(result.exception)


def test_train_names_a_bad_teacher_encoder(app: typer.Typer, tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"query": "q", "positive": "p"}\n')
    missing = tmp_path / "no-model"
    args = ["train", "--data", str(data), "--output", str(tmp_path / "run"), "--max-steps", "1"]
    result = CliRunner().invoke(app, [*args, "--teacher-encoder", f"{missing}:2"])
    assert isinstance(result.exception, InvalidInputError)
    assert str(missing) in str(result.exception) and "config.json" in str(result.exception)


def test_report_tasks_take_windows_drive_paths() -> None:
    """`--report dl=C:\\runs\\dl.json:C:\\qrels.txt` was split at the drive's ':'."""
    from semrank.train.commands import _report_task

    assert _report_task("dl=C:\\runs\\dl.json.gz:D:/qrels/dl.txt") == (
        "dl",
        Path("C:\\runs\\dl.json.gz"),
        Path("D:/qrels/dl.txt"),
    )
    assert _report_task("dl=runs/dl.json:C:\\qrels.txt") == (
        "dl",
        Path("runs/dl.json"),
        Path("C:\\qrels.txt"),
    )
    with pytest.raises(InvalidInputError, match=r"use NAME=RUN\.json"):
        _report_task("dl=C:\\runs\\dl.json")  # no qrels: the drive's ':' is not one


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_corpus_passages_join_the_pool_after_the_judged_ones(tmp_path: Path) -> None:
    pairs = _write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"query": "q1", "positive": "p1", "negatives": ["n1"]}, {"query": "q2", "positive": "p2"}],
    )
    corpus = _write_jsonl(
        tmp_path / "corpus.jsonl",
        [{"text": "c1"}, {"text": "p1"}, {"title": "T", "text": "c2"}, {"text": "c1"}],
    )
    plain = load_collection(DataSpec.parse(str(pairs)))
    spec = DataSpec.parse(f"{pairs},corpus={corpus}")
    assert spec.corpus == corpus
    collection = load_collection(spec)
    # The judged passages keep their indices; the corpus adds only texts not yet in the pool.
    assert collection.passages[: len(plain.passages)] == plain.passages
    assert collection.passages[len(plain.passages) :] == ["c1", "T. c2"]
    assert [g.positive_ids for g in collection.groups] == [g.positive_ids for g in plain.groups]


def test_corpus_rows_without_text_are_named(tmp_path: Path) -> None:
    pairs = _write_jsonl(tmp_path / "pairs.jsonl", [{"query": "q", "positive": "p"}])
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", [{"text": "ok"}, {"body": "no text"}])
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl:2: needs a non-empty 'text'"):
        load_collection(DataSpec.parse(f"{pairs},corpus={corpus}"))
    with pytest.raises(DataFormatError, match=r"missing\.jsonl"):
        load_collection(DataSpec.parse(f"{pairs},corpus={tmp_path / 'missing.jsonl'}"))


def test_saved_data_spec_with_corpus_is_rebuilt(tmp_path: Path) -> None:
    spec = DataSpec.parse(f"{tmp_path / 'pairs.jsonl'},weight=2,corpus={tmp_path / 'c.jsonl'}")
    saved = json.loads(json.dumps(asdict(spec), default=str))
    assert _spec_of(saved) == spec
    assert _spec_of({**saved, "corpus": None}).corpus is None


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ("weight=nan", "weight"),
        ("weight=0", "weight"),
        ("weight=-1", "weight"),
        ("weight=abc", "weight"),
        ("limit=0", "limit"),
        ("limit=1.5", "limit"),
        ("name=", "name="),
        ("weight=1,weight=2", "twice"),
    ],
)
def test_data_spec_rejects_bad_values(option: str, named: str) -> None:
    with pytest.raises(DataFormatError, match=named):
        DataSpec.parse(f"pairs.jsonl,{option}")
    with pytest.raises(DataFormatError, match="no path"):
        DataSpec.parse(",weight=1")


@pytest.mark.parametrize(
    ("row", "named"),
    [
        ({"query": "q", "positives": []}, "'positives' is empty"),
        ({"query": 5, "positive": "p"}, "'query' must be a non-empty text"),
        ({"query": " ", "positive": "p"}, "'query' must be a non-empty text"),
        ({"query": "q", "positive": None}, "'positive' must be a non-empty text"),
        ({"query": "q", "positives": "abc"}, "'positives' must be a list"),
        ({"query": "q", "positive": "p", "negatives": "neg"}, "'negatives' must be a list"),
        ({"query": "q", "positive": "p", "negatives": [1]}, "'negatives' must be a list"),
        ({"query": "q", "positive": "p", "negatives": ["p"]}, "both a positive and a negative"),
        (["q", "p"], "got list"),
        # A list under the singular key was told "must be a list", got [['n1', 'n2']].
        ({"query": "q", "positive": "p", "negative": ["n1"]}, "use 'negatives' for a list"),
        ({"query": "q", "positive": "p", "negative": " "}, "'negative' must be a non-empty text"),
    ],
)
def test_pairs_rows_with_bad_values_are_named(tmp_path: Path, row: object, named: str) -> None:
    pairs = _write_jsonl(tmp_path / "pairs.jsonl", [{"query": "ok", "positive": "fine"}, row])  # type: ignore[list-item]
    with pytest.raises(DataFormatError, match=f"pairs\\.jsonl:2.*{named}"):
        load_collection(DataSpec(path=pairs, limit=1))  # rows outside the sample count too


def test_pairs_rows_keep_positive_and_positives_together(tmp_path: Path) -> None:
    row = {"query": "q", "positive": "a", "positives": ["b", "a"], "negatives": None}
    collection = load_collection(DataSpec(path=_write_jsonl(tmp_path / "p.jsonl", [row])))
    assert [collection.passages[i] for i in collection.groups[0].positive_ids] == ["a", "b"]
    assert collection.groups[0].negative_ids == []


def test_a_null_negative_as_pandas_writes_a_missing_one_is_no_negative(tmp_path: Path) -> None:
    # df.to_json(orient="records", lines=True) of triplets, one row without a negative: its NaN
    # is written null, which was refused ('negatives': null already read as none)
    pairs = tmp_path / "triplets.jsonl"
    pairs.write_bytes(
        b'{"query":"what is a flea","positive":"Fleas are insects.","negative":"Paris.",'
        b'"negative_2":null}\n'
        b'{"query":"what is a bee","positive":"Bees make honey.","negative":null,'
        b'"negative_2":null}\n'
    )
    collection = load_collection(DataSpec(path=pairs))
    negatives = [[collection.passages[i] for i in g.negative_ids] for g in collection.groups]
    assert negatives == [["Paris."], []]


def test_unreadable_and_incomplete_sources_are_named(tmp_path: Path) -> None:
    good = b'{"query": "q", "positive": "p"}\n' * 799
    (tmp_path / "latin1.jsonl").write_bytes(good + b'{"query": "caf\xe9", "positive": "p"}\n')
    with pytest.raises(DataFormatError, match=r"latin1\.jsonl:800: not valid UTF-8 \(byte 0xe9"):
        load_collection(DataSpec(path=tmp_path / "latin1.jsonl"))  # the line, not 797
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    _write_jsonl(beir / "queries.jsonl", [{"_id": "q1", "text": "hello"}])
    with pytest.raises(DataFormatError, match=r"no corpus\.jsonl"):
        load_collection(DataSpec(path=beir))
    _write_jsonl(beir / "corpus.jsonl", [{"id": "d1", "text": "body"}])
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl:1: no field '_id'"):
        load_collection(DataSpec(path=beir))


def test_train_config_rejects_nan_budgets_and_an_unknown_val_source(tmp_path: Path) -> None:
    from semrank.train import TrainConfig

    data = (DataSpec(path=tmp_path / "pairs.jsonl", name="mine"),)
    base = {"base": tmp_path, "data": data, "output": tmp_path / "run"}
    with pytest.raises(InvalidInputError, match="max_minutes=nan"):
        TrainConfig(**base, max_minutes=float("nan"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"max_steps=1\.5"):
        TrainConfig(**base, max_steps=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="lr=nan"):
        TrainConfig(**base, max_steps=1, lr=float("nan"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"'mien'.*mine"):
        TrainConfig(**base, max_steps=1, val_source="mien")  # type: ignore[arg-type]


def test_rows_of_one_query_are_one_group_whatever_the_layout(tmp_path: Path, caplog) -> None:
    """One row per judged pair (sentence-transformers' layout) gave one group per row: the same
    query went to training and validation, and its other positives became its negatives."""
    rows = [
        {"query": "copper", "positive": "Copper conducts.", "negative": "Tin is soft."},
        {"query": "copper ", "positive": "Copper is red.", "negatives": ["Copper conducts."]},
        {"query": "tin", "positive": "Tin is soft."},
    ]
    with caplog.at_level("WARNING", logger="semrank.train"):
        collection = load_collection(DataSpec(path=_write_jsonl(tmp_path / "pairs.jsonl", rows)))
    assert [g.query for g in collection.groups] == ["copper", "tin"]
    copper = collection.groups[0]
    texts = collection.passages
    assert [texts[i] for i in copper.positive_ids] == ["Copper conducts.", "Copper is red."]
    assert [texts[i] for i in copper.negative_ids] == ["Tin is soft."]  # the singular column
    assert "1 passages are a negative of a query in one row and its positive" in caplog.text


def test_a_misspelt_label_is_refused_and_lines_are_file_lines(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"query": "q", "positive": "p"}\n\n\n{"query": "r", "positive": "p", "negativs": ["x"]}\n'
    )
    with pytest.raises(DataFormatError, match=r"pairs\.jsonl:4: unknown key 'negativs'"):
        load_collection(DataSpec(path=path))
    path.write_text('{"query": "q", "positive": "p", "id": 7, "score": 0.5}\n')
    assert len(load_collection(DataSpec(path=path)).groups) == 1  # other columns may ride along
    # Labels under other common names were dropped with their passages, silently.
    for key in ("hard_negatives", "neg", "negative_passages"):
        path.write_text(json.dumps({"query": "q", "positive": "p", key: ["x", "y"]}) + "\n")
        with pytest.raises(DataFormatError, match=rf"unknown key '{key}'; did you mean 'negat"):
            load_collection(DataSpec(path=path))
    # sentence-transformers' mined n-tuples: negative_1, negative_2, ... are negatives.
    row = {"query": "q", "positive": "p", "negative_10": "z", "negative_2": "y", "negative_1": "x"}
    metadata = {"pos_tag": "NN", "neg_count": 3, "positive_label": "1", "ce_neg": [0.1]}
    path.write_text(json.dumps({**row, **metadata}) + "\n")  # metadata rides along
    (group,) = load_collection(DataSpec(path=path)).groups
    passages = load_collection(DataSpec(path=path)).passages
    assert sorted(passages[i] for i in group.negative_ids) == ["x", "y", "z"]
    from semrank.train._data import _numbered_negatives

    assert _numbered_negatives(row) == ["negative_1", "negative_2", "negative_10"]


def test_beir_training_data_takes_trec_qrels_and_names_what_it_cannot_use(
    tmp_path: Path, caplog
) -> None:
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    # TREC's four columns; QX has no query text and DMISSING no document.
    (beir / "qrels" / "train.tsv").write_text(
        "QX 0 d1 1\nq1 0 d1 1\nq1 0 DMISSING 1\nq2 0 d2 1\nq3 0 d3 1\n"
    )
    _write_jsonl(
        beir / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in (1, 2, 3)]
    )
    _write_jsonl(beir / "corpus.jsonl", [{"_id": f"d{i}", "text": f"doc {i}"} for i in (1, 2, 3)])
    with caplog.at_level("WARNING", logger="semrank.train"):
        collection = load_collection(DataSpec(path=beir, limit=3))
    assert len(collection.groups) == 3  # the limit counts usable queries, not QX
    assert "1 queries not in queries.jsonl (QX)" in caplog.text
    assert "1 documents not in the corpus (DMISSING)" in caplog.text


def test_id_and_score_columns_ride_along_with_the_labels(tmp_path: Path) -> None:
    row = {
        "query_id": "q1", "query": "q", "positive": "p", "positive_id": "d1",
        "negatives": ["n"], "negative_ids": ["d2"], "neg_scores": [0.1],
    }  # fmt: skip
    collection = load_collection(DataSpec(path=_write_jsonl(tmp_path / "ids.jsonl", [row])))
    assert len(collection.groups) == 1 and len(collection.groups[0].negative_ids) == 1


def _base_refusal(app: typer.Typer, tmp_path: Path, base: str) -> str:
    data = _write_jsonl(tmp_path / "pairs.jsonl", [{"query": "q", "positive": "p"}])
    args = ["train", "--data", str(data), "--output", str(tmp_path / "run"), "--max-steps", "1"]
    result = CliRunner().invoke(app, [*args, "--base", base])
    assert isinstance(result.exception, InvalidInputError), result.exception
    return str(result.exception)


def test_a_cross_encoder_or_blend_as_base_points_to_init_from(
    app: typer.Typer, tmp_path: Path
) -> None:
    """--base with a trained cross-encoder threw its head away (a new one was fitted) and mined
    with it; the bundled blend failed with a traceback after mining."""
    from tiny_models import write_tiny_model

    cross = write_tiny_model(tmp_path / "ce", "bert")
    said = _base_refusal(app, tmp_path, str(cross))
    assert f"--init-from {cross}" in said and "is a cross-encoder" in said
    said = _base_refusal(app, tmp_path, "semrank-minilm-l6")
    assert "is a blend" in said and "--init-from" in said and "cross-encoder" in said
    # A gated model (what --architecture gated exports): a transformers traceback at mining.
    gated = tmp_path / "gated"
    shutil.copytree(cross, gated)
    config = json.loads((gated / "config.json").read_text())
    config.update(model_type="semrank_gated_bert")
    (gated / "config.json").write_text(json.dumps(config))
    said = _base_refusal(app, tmp_path, str(gated))
    assert f"--init-from {gated}" in said and "is a cross-encoder" in said
    run = tmp_path / "a-run"  # a training run's folder: its config.json is the run's record
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data_digest": "x", "lr": 2e-5}))
    said = _base_refusal(app, tmp_path, str(run))
    assert "is a training run's folder" in said and f"--init-from {run / 'best'}" in said


@pytest.mark.parametrize("family", ["roberta", "modernbert"])
def test_a_base_training_cannot_start_from_is_refused_before_mining(
    app: typer.Typer, tmp_path: Path, family: str
) -> None:
    from tiny_models import write_tiny_model

    base = write_tiny_model(tmp_path / family, family, "encoder")
    said = _base_refusal(app, tmp_path, str(base))
    assert "BERT-family encoders" in said and str(base) in said


def test_init_from_and_teacher_model_must_be_model_folders(
    app: typer.Typer, tmp_path: Path
) -> None:
    data = _write_jsonl(tmp_path / "pairs.jsonl", [{"query": "q", "positive": "p"}])
    args = ["train", "--data", str(data), "--output", str(tmp_path / "run"), "--max-steps", "1"]
    for option in ("--init-from", "--teacher-model"):
        result = CliRunner().invoke(app, [*args, option, str(tmp_path / "nope")])
        assert isinstance(result.exception, InvalidInputError), result.exception
        assert f"{option} " in str(result.exception) and "config.json" in str(result.exception)


@pytest.mark.parametrize(
    ("corpus", "queries", "named"),
    [
        # A later text under the same id replaced the judged one, which stayed in the pool as a
        # negative of its own query.
        ([("d1", "judged"), ("d2", "other"), ("d1", "again")], [("q1", "q")], "duplicate document"),
        ([("d1", "a"), ("d2", "b")], [("q1", "q"), ("q1", "another")], "another text here"),
        ([("d1", "a"), ("d2", "b")], [("q1", "  ")], "query 'q1' has no text"),
        ([("d1", ""), ("d2", "b")], [("q1", "q")], "document 'd1', judged relevant"),
    ],
)
def test_beir_training_folders_are_read_as_eval_reads_them(
    tmp_path: Path, corpus: list[tuple[str, str]], queries: list[tuple[str, str]], named: str
) -> None:
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    _write_jsonl(beir / "corpus.jsonl", [{"_id": i, "text": t} for i, t in corpus])
    _write_jsonl(beir / "queries.jsonl", [{"_id": i, "text": t} for i, t in queries])
    with pytest.raises(DataFormatError, match=named):
        load_collection(DataSpec(path=beir))


def test_init_from_needs_a_head_and_frees_the_base_of_the_bert_only_check(
    app: typer.Typer, tmp_path: Path
) -> None:
    """--init-from an encoder trained from a random head (its fit to the teacher is skipped);
    with --init-from, --base only mines and teaches, so any encoder family does."""
    from tiny_models import write_tiny_model

    data = _write_jsonl(tmp_path / "pairs.jsonl", [{"query": "q", "positive": "p"}])
    roberta = write_tiny_model(tmp_path / "roberta", "roberta", "encoder")
    encoder = write_tiny_model(tmp_path / "encoder", "bert", "encoder")
    args = ["train", "--data", str(data), "--output", str(tmp_path / "run"), "--max-steps", "1"]
    result = CliRunner().invoke(app, [*args, "--base", str(roberta), "--init-from", str(encoder)])
    assert isinstance(result.exception, InvalidInputError), result.exception
    said = str(result.exception)
    assert said.startswith(f"--init-from {str(encoder)!r} is not a cross-encoder"), said


def test_teacher_model_needs_a_head(app: typer.Typer, tmp_path: Path) -> None:
    from tiny_models import write_tiny_model

    data = _write_jsonl(tmp_path / "pairs.jsonl", [{"query": "q", "positive": "p"}])
    encoder = write_tiny_model(tmp_path / "encoder", "bert", "encoder")
    args = ["train", "--data", str(data), "--output", str(tmp_path / "run"), "--max-steps", "1"]
    result = CliRunner().invoke(app, [*args, "--teacher-model", f"{encoder}:0.5"])
    assert isinstance(result.exception, InvalidInputError), result.exception
    assert str(result.exception).startswith(f"--teacher-model {str(encoder)!r} is not a cross")


def test_a_beir_training_folder_with_gzipped_queries_is_read(tmp_path: Path) -> None:
    """`semrank eval` reads queries.jsonl.gz; `semrank train --data` could not tell the folder's
    format ("expected ... a BEIR folder with qrels/train.tsv", which it had)."""
    import gzip

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    with gzip.open(beir / "queries.jsonl.gz", "wt") as queries:
        queries.write('{"_id": "q1", "text": "what do fleas eat"}\n')
        queries.write('{"_id": "q2", "text": "capital of france"}\n')
    with gzip.open(beir / "corpus.jsonl.gz", "wt") as corpus:
        corpus.write('{"_id": "d1", "text": "Fleas drink blood."}\n')
        corpus.write('{"_id": "d2", "text": "Paris is the capital of France."}\n')
    collection = load_collection(DataSpec(path=beir))
    assert sorted(g.query for g in collection.groups) == ["capital of france", "what do fleas eat"]
