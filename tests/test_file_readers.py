"""Every data file semrank reads, under generated and damaged input: each loads or raises
semrank's own error naming the file (never another exception), and data written by the usual
writers (Python's csv, pandas) reads back unchanged. Found by hypothesis runs; kept as
properties with bounded examples, plus the shrunk cases themselves."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semrank.errors import DataFormatError, SemrankError
from semrank.eval.loaders import load_candidates, load_queries
from semrank.pipeline import parse_retriever
from semrank.rerank.commands import read_numbered_documents
from semrank.store import read_corpus
from semrank.train._data import DataSpec, load_collection

BOUNDED = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
LONG_INTEGER = "7" * 5000  # Python reads at most 4,300 digits


def _fails_cleanly(read: Callable[[], Any]) -> None:
    """``read()`` loads or raises semrank's own error: anything else fails the test."""
    with contextlib.suppress(SemrankError):
        read()


@BOUNDED
@given(text=st.text(min_size=20, max_size=200), at=st.integers(12, 40), flip=st.integers(1, 255))
def test_a_damaged_gzip_file_is_named_by_every_reader(
    tmp_path: Path, text: str, at: int, flip: int
) -> None:
    # zlib.error escaped `rerank --docs` and `train --data` as a traceback
    data = bytearray(gzip.compress((text + "\n").encode()))
    data[min(at, len(data) - 9)] ^= flip
    docs, pairs = tmp_path / "docs.txt.gz", tmp_path / "pairs.jsonl.gz"
    docs.write_bytes(bytes(data))
    pairs.write_bytes(bytes(data))
    _fails_cleanly(lambda: read_numbered_documents(str(docs)))
    _fails_cleanly(lambda: load_collection(DataSpec(path=pairs)))
    _fails_cleanly(lambda: list(read_corpus(docs)))


def test_an_integer_too_long_for_python_is_a_named_format_error(tmp_path: Path) -> None:
    corpus = tmp_path / "d.jsonl"
    corpus.write_text(f'{{"id": 1, "text": "x", "n": {LONG_INTEGER}}}\n')
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(f'{{"query": "q", "positive": "p", "n": {LONG_INTEGER}}}\n')
    candidates = tmp_path / "c.json"
    hit = f'{{"qid": 1, "docid": 1, "rank": 1, "score": {LONG_INTEGER[:400]}, "content": "a"}}'
    candidates.write_text(f'[{{"query": "q", "hits": [{hit}]}}]')
    tree = tmp_path / "tree.json"
    tree.write_text(
        f'{{"standard": {{"query": {{"match": {{"text": "x"}}}}, "n": {LONG_INTEGER}}}}}'
    )
    too_long = "more than 4,300 digits"
    with pytest.raises(DataFormatError, match=rf"d\.jsonl:1: .*{too_long}"):
        list(read_corpus(corpus))
    with pytest.raises(DataFormatError, match=rf"d\.jsonl: JSON that cannot be read: .*{too_long}"):
        read_numbered_documents(str(corpus))
    with pytest.raises(DataFormatError, match=rf"pairs\.jsonl:1: .*{too_long}"):
        load_collection(DataSpec(path=pairs))
    with pytest.raises(DataFormatError, match="bad 'score'"):  # 400 digits: float overflows
        load_candidates(candidates)
    with pytest.raises(SemrankError, match=too_long):
        parse_retriever(tree)


# Texts holding quotes (TSV has no quoting: tabs and line breaks inside a text cannot be read)
TSV_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\t\r\n"),
    min_size=1,
    max_size=20,
).filter(lambda text: bool(text.strip()) and text == text.strip())
RAW_TSV_TEXT = st.text(alphabet='ab "', min_size=1, max_size=8).filter(str.strip)


@BOUNDED
@given(texts=st.lists(TSV_TEXT, min_size=1, max_size=4))
def test_tsv_written_by_pythons_excel_tab_dialect_reads_back_unchanged(
    tmp_path: Path, texts: list[str]
) -> None:
    # pandas' to_csv(sep="\t") writes the same: a text with quotes, quoted, inner quotes doubled
    out = io.StringIO(newline="")
    writer = csv.writer(out, dialect="excel-tab")
    writer.writerow(["id", "text"])
    writer.writerows([[str(i), text] for i, text in enumerate(texts)])
    path = tmp_path / "d.tsv"
    path.write_text(out.getvalue(), encoding="utf-8", newline="")
    assert [document.fields["text"] for document in read_corpus(path)] == texts


@BOUNDED
@given(texts=st.lists(RAW_TSV_TEXT, min_size=1, max_size=8))
def test_a_raw_tsv_with_stray_quotes_reads_line_by_line(tmp_path: Path, texts: list[str]) -> None:
    # Taken for a quoted TSV by its first lines, such a file had rows merged into one
    path = tmp_path / "raw.tsv"
    path.write_text("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(texts)))
    ids = [document.id for document in read_corpus(path)]
    assert ids == [str(i) for i in range(len(texts))]


def test_a_tsv_quoting_a_line_break_is_refused_not_cut(tmp_path: Path) -> None:
    # Read unquoted, the rest of the text became a row of its own, with a made-up id
    path = tmp_path / "quoted.tsv"
    path.write_text('id\ttitle\ttext\nd1\t"Fleas\nA guide"\tFleas bite dogs.\nd2\tTicks\tx\n')
    with pytest.raises(DataFormatError, match=r"quoted\.tsv:2: .*opens a quote.*as CSV or JSONL"):
        list(read_corpus(path))


@pytest.mark.parametrize("header", [",id,text", " ,id,text", ",id,text,"])
def test_text_under_an_unnamed_first_column_is_refused_whatever_the_header(
    tmp_path: Path, header: str
) -> None:
    # A blank name (" ") or a trailing unnamed column as well hid the first column's text
    path = tmp_path / "unnamed.csv"
    path.write_text(f"{header}\nhello,1,foo{',' if header.endswith(',') else ''}\n")
    with pytest.raises(DataFormatError, match=r"text \('hello'\) in column 1"):
        list(read_corpus(path))


def test_a_tsv_quotation_keeps_its_quotes(tmp_path: Path) -> None:
    # TSV has no quoting: only a cell as csv writers quote it (a doubled quote inside) is read so
    path = tmp_path / "raw.tsv"
    path.write_text('id\ttext\n1\t"Fleas bite," said the vet.\n2\t"quoted whole"\n')
    texts = [document.fields["text"] for document in read_corpus(path)]
    assert texts == ['"Fleas bite," said the vet.', '"quoted whole"']


def test_plain_text_lines_that_look_like_json_are_read_with_lines(tmp_path: Path) -> None:
    todo = tmp_path / "todo.txt"
    lines = ["[ ] buy a flea collar", "[x] book the vet", '"Yes."', "Fleas are small."]
    todo.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"if the file is plain text.*pass --lines"):
        read_numbered_documents(str(todo))
    assert read_numbered_documents(str(todo), as_lines=True) == (lines, [1, 2, 3, 4])


def test_a_byte_order_mark_is_skipped_by_training_data_and_retriever_files(
    tmp_path: Path,
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(b'\xef\xbb\xbf{"query": "q", "positive": "p"}\n')
    assert load_collection(DataSpec(path=pairs)).passages == ["p"]
    tree = tmp_path / "tree.json"
    tree.write_bytes(b'\xef\xbb\xbf{"standard": {"query": {"match": {"text": "x"}}}}')
    assert parse_retriever(tree) is not None


def test_files_joined_with_a_byte_order_mark_inside_read_as_their_parts(tmp_path: Path) -> None:
    """`cat a b` where b was saved on Windows: b's mark began a line, so a JSONL document
    was "plain text after JSON lines" and a topic's id was '\ufeffq2' (shown as 'q2')."""
    from semrank.eval import load_queries

    bom = "\ufeff"
    docs = tmp_path / "joined.jsonl"
    docs.write_text('{"text": "fleas"}\n' + bom + '{"text": "ticks"}\n', encoding="utf-8")
    assert read_numbered_documents(str(docs)) == ([{"text": "fleas"}, {"text": "ticks"}], [1, 2])
    topics = tmp_path / "joined.tsv"
    topics.write_text(f"q1\tfleas\n{bom}q2\tticks\n", encoding="utf-8")
    assert load_queries(topics) == {"q1": "fleas", "q2": "ticks"}


def test_a_byte_order_mark_inside_a_csv_value_is_kept(tmp_path: Path) -> None:
    """A mark starting a line inside a quoted value is text, and was dropped; one starting a
    record (files joined with `cat`, each saved as Excel's CSV UTF-8) is not, and must not end
    up in an id that no delete or qrels line then matches."""
    bom = "\ufeff"
    table = tmp_path / "marks.csv"
    table.write_text(f'{bom}id,text\n1,"fleas\n{bom}jump"\n{bom}2,ticks\n', encoding="utf-8")
    expected = [("1", "fleas\n" + bom + "jump"), ("2", "ticks")]
    assert [(d.id, d.fields["text"]) for d in read_corpus(table)] == expected
    documents, _lines = read_numbered_documents(str(table))
    assert [(d["id"], d["text"]) for d in documents] == expected
    joined = tmp_path / "joined.jsonl"  # JSONL: a line is a record, so a mark there is a file's
    joined.write_text(f'{bom}{{"id": 1, "text": "a"}}\n{bom}{{"id": 2, "text": "b"}}\n', "utf-8")
    assert [d.id for d in read_corpus(joined)] == ["1", "2"]
    tsv = tmp_path / "joined.tsv"  # TSV: no quoting, a line is a record
    tsv.write_text(f"{bom}id\ttext\n1\ta\n{bom}2\tb\n", "utf-8")
    assert [d.id for d in read_corpus(tsv)] == ["1", "2"]


def test_gzip_is_told_by_its_bytes_in_training_data(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"  # no .gz in the name
    pairs.write_bytes(gzip.compress(b'{"query": "q", "positive": "p"}\n'))
    assert load_collection(DataSpec(path=pairs)).passages == ["p"]


def test_shared_set_names_with_other_rows_and_corpus_titles_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "wikiqa"
    folder.mkdir()
    (folder / "wikiqa_train.jsonl.gz").write_bytes(gzip.compress(b'{"question": "q"}\n'))
    with pytest.raises(DataFormatError, match=r"named like one of the shared training sets"):
        load_collection(DataSpec(path=folder))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"query": "q", "positive": "p"}\n')
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "Fleas are insects.", "title": ["Fleas"]}\n')
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl:1: 'title' must be a string"):
        load_collection(DataSpec(path=pairs, corpus=corpus))
    # A title that is a number (a year) is its text, as the eval readers take it.
    corpus.write_text('{"text": "A novel.", "title": 1984}\n{"text": "A count.", "title": 0}\n')
    titled = load_collection(DataSpec(path=pairs, corpus=corpus)).passages
    assert [p for p in titled if "novel" in p or "count" in p] == ["1984. A novel.", "0. A count."]


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_line_formats_read_alike_for_every_line_ending(tmp_path: Path, end: str) -> None:
    # Old Mac files end lines in \r alone: read as one line, a query file lost every query
    # but the first (a TSV of topics) or was refused (qrels, JSONL)
    from semrank.eval import load_qrels
    from semrank.eval.loaders import load_queries

    qrels = tmp_path / "qrels.tsv"
    qrels.write_bytes(end.join(["query-id\tcorpus-id\tscore", "1\td1\t1", "1\td2\t0"]).encode())
    topics = tmp_path / "topics.tsv"
    topics.write_bytes(end.join(["1\thello", "2\tworld"]).encode() + end.encode())
    pairs = tmp_path / "pairs.jsonl"
    rows = ['{"query": "q1", "positive": "p1"}', '{"query": "q2", "positive": "p2"}']
    pairs.write_bytes(end.join(rows).encode())
    assert load_qrels(qrels) == {"1": {"d1": 1, "d2": 0}}
    assert load_queries(topics) == {"1": "hello", "2": "world"}
    assert len(load_collection(DataSpec(path=pairs)).groups) == 2


def test_utf16_files_are_named_as_such(tmp_path: Path) -> None:
    """ASCII text in UTF-16 without a byte-order mark is valid UTF-8: `rerank --docs` read a
    2-record file as 3 documents full of NULs; with a mark, the error did not say UTF-16."""
    from typer.testing import CliRunner

    from semrank.cli import app
    from semrank.errors import InvalidInputError

    text = '{"text": "Fleas are small insects."}\n{"text": "Paris is in France."}\n'
    plain = tmp_path / "u16le.jsonl"
    plain.write_bytes(text.encode("utf-16-le"))
    marked = tmp_path / "u16.jsonl"
    marked.write_bytes(text.encode("utf-16"))
    for path in (plain, marked):
        result = CliRunner().invoke(app, ["rerank", "flea", "--docs", str(path)])
        assert isinstance(result.exception, InvalidInputError), result.output
        assert "looks like UTF-16" in str(result.exception)
    created = CliRunner().invoke(
        app, ["index", "create", "u", "--from", str(marked), "--home", str(tmp_path / "h")]
    )
    assert f"{marked} looks like UTF-16" in str(created.exception)


def test_a_utf16_table_without_a_byte_order_mark_is_not_indexed(tmp_path: Path) -> None:
    """SQL Server's bcp -w writes UTF-16LE without a mark: a TSV of 2 records was indexed as 3
    documents with NUL field names (exit 0)."""
    from typer.testing import CliRunner

    from semrank.cli import app

    table = tmp_path / "u16.tsv"
    table.write_bytes("id\ttext\n1\tFleas are insects\n2\tParis\n".encode("utf-16-le"))
    home = tmp_path / "h"
    result = CliRunner().invoke(
        app, ["index", "create", "t", "--from", str(table), "--home", str(home)]
    )
    assert f"{table} looks like UTF-16" in str(result.exception), result.output
    assert not (home / "t").exists()


# The bytes pandas' DataFrame.to_json writes for two documents in its layouts that hold the
# table under labels ('columns' is to_json()'s default), '/' escaped as pandas escapes it.
PANDAS_LAYOUTS = {
    "columns": '{"id":{"0":"007","1":"d\\/2"},"text":{"0":"Fleas bite.","1":"Paris"}}',
    "index": '{"0":{"id":"007","text":"Fleas bite."},"1":{"id":"d\\/2","text":"Paris"}}',
    "split": '{"columns":["id","text"],"index":[0,1],"data":[["007","Fleas bite."],'
    '["d\\/2","Paris"]]}',
}


@pytest.mark.parametrize("orient", sorted(PANDAS_LAYOUTS))
def test_pandas_to_json_layouts_other_than_records_are_named_with_the_fix(
    tmp_path: Path, orient: str
) -> None:
    # `rerank --docs` ranked df.to_json()'s default as ONE document whose 'text' held every
    # row's text; `index create` refused it without saying how to write it
    path = tmp_path / "frame.json"
    path.write_text(PANDAS_LAYOUTS[orient])
    said = rf"pandas' DataFrame\.to_json\(\).*orient='{orient}'.*orient='records', lines=True"
    with pytest.raises(DataFormatError, match=said):
        read_numbered_documents(str(path))
    with pytest.raises(DataFormatError, match=said):
        list(read_corpus(path))


def test_a_document_whose_fields_are_objects_is_no_pandas_layout(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text('{"text": {"en": "Fleas bite.", "fr": "Les puces piquent."}, "id": 1}')
    assert read_numbered_documents(str(path))[0] == [
        {"text": {"en": "Fleas bite.", "fr": "Les puces piquent."}, "id": 1}
    ]


# The first bytes of what df.to_parquet and df.to_excel write (a Parquet file starts and ends
# with PAR1; an .xlsx workbook is a ZIP archive).
PARQUET_START = b"PAR1\x15\x04\x15*\x15.L\x15\x06\x15\x00\x12\x00\x00\x15P\x03\x00\x00\x00007"
XLSX_START = b"PK\x03\x04\x14\x00\x00\x00\x08\x00\x00\x00!\x00[Content_Types].xml\xad\x93\xcbn"


@pytest.mark.parametrize(
    ("name", "data", "said"),
    [
        ("docs.parquet", PARQUET_START, r"a Parquet file, not text.*pd\.read_parquet\(IN\)"),
        ("docs.csv", PARQUET_START, r"a Parquet file, not text.*orient='records', lines=True"),
        ("docs.xlsx", XLSX_START, r"a ZIP archive \(an Excel \.xlsx.*'CSV UTF-8'"),
    ],
)
def test_a_parquet_file_or_a_workbook_is_named_with_how_to_convert_it(
    tmp_path: Path, name: str, data: bytes, said: str
) -> None:
    # Read as text, each was 'not valid UTF-8 ...; save the file as UTF-8' (or, by its name, a
    # format semrank cannot tell): neither said what the file is nor how to convert it
    path = tmp_path / name
    path.write_bytes(data + bytes(range(256)))
    readers: list[Callable[[], Any]] = [
        lambda: read_numbered_documents(str(path)),
        lambda: list(read_corpus(path)),
        lambda: load_queries(path),
        lambda: load_collection(DataSpec(path=path)),
    ]
    for read in readers:
        with pytest.raises(SemrankError, match=rf"{name}'? is {said}"):
            read()


def test_text_that_starts_as_a_binary_table_does_is_read_as_text(tmp_path: Path) -> None:
    # Only the magic bytes were looked at: a qrels file whose first query id is PAR1, and a
    # text file whose first line starts with ARROW1, were refused as Parquet / Arrow files.
    from semrank.eval.loaders import load_qrels

    qrels = tmp_path / "qrels.txt"
    qrels.write_text("PAR1 0 d1 1\nq2 0 d2 0\n", encoding="utf-8")
    assert load_qrels(qrels) == {"PAR1": {"d1": 1}, "q2": {"d2": 0}}
    lines = tmp_path / "docs.txt"
    lines.write_text("ARROW1 is a fletching kit for arrows\nbows and strings\n", encoding="utf-8")
    documents = read_numbered_documents(str(lines))[0]
    assert documents[0] == "ARROW1 is a fletching kit for arrows"
