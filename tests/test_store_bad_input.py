"""Bad corpora, ids files, index names and documents: one clear semrank error, nothing half made."""

from __future__ import annotations

import decimal
import gzip
import json
import re
import uuid
from pathlib import Path

import pytest

from semrank.errors import DataFormatError, InvalidInputError
from semrank.store import Document, create_index, list_indexes, read_corpus
from test_store_cli import run  # the CLI through typer's runner, exceptions re-raised


def test_tsv_field_starting_with_a_quote_stays_in_its_row(tmp_path: Path) -> None:
    corpus = tmp_path / "q2.tsv"
    corpus.write_text('id\tbody\n1\t"quoted start of text\n2\tbaz\n3\tqux\n', "utf-8")
    home = str(tmp_path / "home")
    assert "3 documents" in run(
        "index", "create", "c4", "--from", str(corpus), "--no-dense", "--home", home
    )
    documents = list(read_corpus(corpus))
    assert [d.fields["body"] for d in documents] == ['"quoted start of text', "baz", "qux"]


def test_csv_keeps_its_quoting(tmp_path: Path) -> None:
    corpus = tmp_path / "c.csv"
    corpus.write_text('id,body\n1,"a, quoted\nfield"\n2,plain\n', "utf-8")
    assert [d.fields["body"] for d in read_corpus(corpus)] == ["a, quoted\nfield", "plain"]


def test_a_csv_quote_that_never_closes_is_refused_not_merged(tmp_path: Path) -> None:
    """The row with an unclosed quote swallowed every later row as one field: an index of 2
    documents from 5 rows, with no error."""
    corpus = tmp_path / "open.csv"
    corpus.write_text(
        'id,title,text\n1,Fleas,Fleas bite.\n2,Quote,"He said hi\n3,Paris,Paris.\n4,D,Dogs.\n'
    )
    home = str(tmp_path / "home")
    with pytest.raises(DataFormatError, match=r"open\.csv:3: a quoted field in the row starting"):
        run("index", "create", "q", "--from", str(corpus), "--no-dense", "--home", home)
    assert list_indexes(home) == []
    # What the lenient reader has always read stays read: text after a closing quote, a quote
    # inside an unquoted field, quoted fields spanning lines.
    lenient = tmp_path / "lenient.csv"
    lenient.write_text('id,text\n1,"A title" \n2,12" screen\n3,"two\nlines"\n4,"Dune" by F\n')
    texts = [d.fields["text"] for d in read_corpus(lenient)]
    assert texts == ["A title ", '12" screen', "two\nlines", "Dune by F"]


def test_csv_row_with_more_fields_than_the_header(tmp_path: Path) -> None:
    corpus = tmp_path / "wide.csv"
    corpus.write_text("id,body\n1,fine\n2,one, two\n", "utf-8")
    with pytest.raises(InvalidInputError, match=r"wide\.csv: row 2 \(line 3\).*quote the field"):
        run("index", "create", "w", "--from", str(corpus), "--no-dense", "--home", str(tmp_path))
    assert list_indexes(tmp_path) == []


@pytest.mark.parametrize(("name", "sep"), [("split.tsv", "\t"), ("split.csv", ",")])
def test_a_row_with_fewer_fields_than_the_header_is_refused_not_split(
    tmp_path: Path, name: str, sep: str
) -> None:
    """A raw line break inside a field made two records of one: the first cut short, the rest
    of the field a record of its own with a made-up id ('very high'), exit 0."""
    from semrank.rerank.commands import read_numbered_documents

    corpus = tmp_path / name
    rows = [["id", "text", "title"], ["1", "fleas jump\nvery high", "Fleas"], ["2", "dogs", "D"]]
    corpus.write_text("".join(sep.join(row) + "\n" for row in rows), "utf-8")
    home = str(tmp_path / "home")
    short = rf"{re.escape(name)}:2: row 1 has 2 field\(s\), fewer than the header's 3: a line break"
    with pytest.raises(DataFormatError, match=short):
        run("index", "create", "sp", "--from", str(corpus), "--no-dense", "--home", home)
    assert list_indexes(home) == []
    with pytest.raises(DataFormatError, match=short):  # `semrank rerank -d` reads it so too
        read_numbered_documents(str(corpus))
    # Every cell written, as csv writers and pandas write them, reads as before
    corpus.write_text(f"id{sep}text{sep}title\n1{sep}fleas{sep}\n2{sep}{sep}Dogs\n", "utf-8")
    assert [d.fields for d in read_corpus(corpus)] == [
        {"text": "fleas", "title": ""},
        {"text": "", "title": "Dogs"},
    ]
    # A header's trailing unnamed column (a stray separator) is no field: rows may leave it out.
    corpus.write_text(f"id{sep}text{sep}\n1{sep}fleas\n2{sep}dogs{sep}\n", "utf-8")
    assert [d.fields for d in read_corpus(corpus)] == [{"text": "fleas"}, {"text": "dogs"}]


def test_a_key_given_twice_in_a_json_record_is_refused_not_dropped(tmp_path: Path) -> None:
    """JSON readers keep a repeated key's last value: one of the two was lost, exit 0 (a
    CSV header naming a column twice was already refused)."""
    from semrank.rerank.commands import read_numbered_documents

    lines = '{"id": 1, "text": "fleas"}\n{"id": 2, "text": "ticks", "meta": {"n": 1, "n": 2}}\n'
    corpus = tmp_path / "dup.jsonl"
    corpus.write_text(lines, "utf-8")
    home = str(tmp_path / "home")
    twice = r"dup\.jsonl:2: .*an object with the key 'n' twice, .*give each key once"
    with pytest.raises(DataFormatError, match=twice):
        run("index", "create", "d", "--from", str(corpus), "--no-dense", "--home", home)
    assert list_indexes(home) == []
    with pytest.raises(DataFormatError, match=twice):  # `semrank rerank -d`
        read_numbered_documents(str(corpus))
    listed = tmp_path / "dup.json"
    listed.write_text('[{"id": 1, "text": "fleas", "text": "ticks"}]', "utf-8")
    with pytest.raises(
        DataFormatError,
        match=r"dup\.json: not valid JSON \(an object with the key 'text' twice, [^)]*once\)$",
    ):
        list(read_corpus(listed))


@pytest.mark.parametrize(
    ("name", "data", "line"),
    [
        ("mac.csv", "id,title,body\r1,a,first\r2,b,second\r", 1),  # old Mac line endings
        ("stray.csv", "id,title,body\n1,a,old mac\rline\n2,b,ok\n", 2),
        ("stray.tsv", "id\ttitle\n1\tok\n2\told mac\rline\n", 3),
    ],
)
def test_a_carriage_return_outside_quotes_is_located(
    tmp_path: Path, name: str, data: str, line: int
) -> None:
    corpus = tmp_path / name
    corpus.write_bytes(data.encode())
    home = str(tmp_path / "home")
    fix = r"a carriage return \(\\r\) outside quotes: .*convert them to LF"
    with pytest.raises(DataFormatError, match=rf"{re.escape(name)}:{line}: {fix}"):
        run("index", "create", "cr", "--from", str(corpus), "--no-dense", "--home", home)
    assert list_indexes(home) == []


def test_a_quoted_carriage_return_and_crlf_line_endings_are_read(tmp_path: Path) -> None:
    corpus = tmp_path / "crlf.csv"
    corpus.write_bytes(b'id,body\r\n1,"two\rlines"\r\n2,plain\r\n')
    assert [d.fields["body"] for d in read_corpus(corpus)] == ["two\rlines", "plain"]


def test_field_names_must_be_strings(tmp_path: Path) -> None:
    with create_index("n", home=tmp_path, embedding_model=None) as index:
        with pytest.raises(InvalidInputError, match=r"field name 5 is a int; field names must"):
            index.upsert([{"id": "c", "text": "x", 5: "y"}])
        assert len(index) == 0


@pytest.mark.parametrize("name", ["bad.jsonl", "bad.csv", "bad.tsv", "bad.json"])
def test_corpus_that_is_not_utf8(tmp_path: Path, name: str) -> None:
    corpus = tmp_path / name
    good = {"bad.json": b'[{"id": "1",\n "text": "caf', "bad.jsonl": b'{"id": "1", "text": "ok"}\n'}
    head = good.get(name, b"id\ttext\n" if name.endswith("tsv") else b"id,text\n")
    tail = b'\xe9"}]\n' if name.endswith(".json") else b'{"id": "2", "text": "caf\xe9"}\n'
    if name.endswith(("csv", "tsv")):
        tail = b"2\tcaf\xe9\n" if name.endswith("tsv") else b"2,caf\xe9\n"
    corpus.write_bytes(head + tail)
    with pytest.raises(InvalidInputError, match=rf"{name}:2: not valid UTF-8 \(byte 0xe9.*UTF-8"):
        list(read_corpus(corpus))


def test_corrupt_gzip_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl.gz"
    lines = b"".join(f'{{"id": "{i}", "text": "x"}}\n'.encode() for i in range(1000))
    corpus.write_bytes(gzip.compress(lines)[:-40])  # truncated
    with pytest.raises(InvalidInputError, match=r"corpus\.jsonl\.gz: a damaged or cut-short gzip"):
        read_corpus(corpus).count()
    # gzip is told by its bytes, as eval and rerank --docs tell it: not by the file's name
    corpus.write_bytes(b'{"id": "1", "text": "plain"}\n')
    named = tmp_path / "corpus.jsonl"
    named.write_bytes(gzip.compress(b'{"id": "1", "text": "zipped"}\n'))
    assert [d.fields["text"] for d in read_corpus(corpus)] == ["plain"]
    assert [d.fields["text"] for d in read_corpus(named)] == ["zipped"]


def test_ids_file_that_is_not_utf8(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    create_index("i", home=home, embedding_model=None).close()
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"a\nb\xe9\n")
    with pytest.raises(InvalidInputError, match=r"ids\.txt:2: not valid UTF-8"):
        run("index", "delete", "i", "--ids-file", str(ids), "--home", home)


def test_decode_error_deep_in_the_corpus_creates_no_index(tmp_path: Path) -> None:
    corpus = tmp_path / "late.jsonl"
    lines = [json.dumps({"id": str(i), "text": f"document number {i} " * 3}) for i in range(300)]
    corpus.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "x", "text": "\xe9"}\n')
    assert corpus.stat().st_size > 16_000  # past the first read chunk
    home = tmp_path / "home"
    with pytest.raises(InvalidInputError, match=r"late\.jsonl:301: not valid UTF-8"):
        run("index", "create", "late", "--from", str(corpus), "--no-dense", "--home", str(home))
    assert list_indexes(home) == [] and not (home / "late").exists()


def test_list_marks_an_unreadable_index(tmp_path: Path) -> None:
    home = tmp_path / "home"
    create_index("good", home=home, embedding_model=None).close()
    create_index("bad", home=home, embedding_model=None).close()
    for leftover in (home / "bad").glob("documents.sqlite-*"):
        leftover.unlink()
    garbage = b"this is not a sqlite database " * 100
    (home / "bad" / "documents.sqlite").write_bytes(garbage)
    out = run("index", "list", "--home", str(home))
    assert out.splitlines()[0].startswith("bad\tunreadable: ")
    assert "not a readable SQLite database" in out and "semrank index drop bad" in out
    assert out.splitlines()[1].startswith("good\t0 documents")
    rows = json.loads(run("index", "list", "--json", "--home", str(home)))
    assert rows[0]["name"] == "bad" and "error" in rows[0] and rows[1]["documents"] == 0
    assert (home / "bad" / "documents.sqlite").read_bytes() == garbage  # left as it was


@pytest.mark.parametrize("name", ["abc\n", "\nabc", "a\nb"])
def test_index_name_with_a_newline(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid index name"):
        create_index(name, home=tmp_path, embedding_model=None)
    assert list(tmp_path.iterdir()) == []


def test_a_non_ascii_index_name_is_told_the_letters_are_ascii(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"invalid index name '跳蚤': use ASCII letters"):
        create_index("跳蚤", home=tmp_path, embedding_model=None)


def test_lone_surrogates_are_rejected(tmp_path: Path) -> None:
    with create_index("s", home=tmp_path, embedding_model=None) as index:
        # The character it holds and where (it named \ud800 whatever the text held).
        lone = r"document 'e': field 'text' holds a lone surrogate \('\\udbff' at character 2\)"
        with pytest.raises(InvalidInputError, match=lone):
            index.upsert([{"id": "e", "text": "ab\udbff"}])
        with pytest.raises(InvalidInputError, match=r"field 'tags'\[1\] holds a lone surrogate"):
            index.upsert([{"id": "e", "text": "ok", "tags": ["fine", "\udfff"]}])
        # A byte that was not UTF-8, as Python keeps it (surrogateescape): named as that byte.
        latin1 = b"caf\xe9".decode("utf-8", "surrogateescape")
        deep: object = "\ud800"
        for _ in range(2000):  # deeper than Python's recursion limit: a RecursionError before
            deep = [deep]
        with pytest.raises(InvalidInputError, match=r"field 'meta'\[0\]\[0\].*… holds a lone"):
            index.upsert([{"id": "e", "text": "ok", "meta": deep}])
        with pytest.raises(InvalidInputError, match=r"\), or the byte 0xe9 of text that is not"):
            index.upsert([{"id": "e", "text": latin1}])
        with pytest.raises(InvalidInputError, match=r"document id '\\ud800' is not valid Unicode"):
            index.upsert([{"id": "\ud800", "text": "x"}])
        for call in (index.delete, index.get):
            with pytest.raises(InvalidInputError, match=r"id '\\ud800' is not valid Unicode"):
                call(["ok", "\ud800"])
        assert len(index) == 0


def test_non_finite_numbers_and_ids_that_are_not_strings_or_numbers_are_refused(
    tmp_path: Path,
) -> None:
    """NaN was stored (and indexed as the word "nan"), came back as JSON no parser reads, and
    the Reranker refused the same document; a tuple became the id "(1, 2)", and looking up None
    found the id "None"."""
    with create_index("n", home=tmp_path, embedding_model=None) as index:
        index.upsert([{"id": 7, "text": "seven", "score": 0.5}, {"id": "None", "text": "x"}])
        with pytest.raises(InvalidInputError, match=r"field 'text' holds nan"):
            index.upsert([{"id": "a", "text": float("nan")}])
        with pytest.raises(InvalidInputError, match=r"field 'scores' holds \[1, inf\]"):
            index.upsert([{"id": "a", "text": "ok", "scores": [1, float("inf")]}])
        for bad in (float("nan"), (1, 2), {"k": 1}):
            with pytest.raises(DataFormatError, match="not a string or a finite number"):
                index.upsert([{"id": bad, "text": "x"}])
        for call in (index.delete, index.get):
            for bad in (None, float("inf"), (1, 2)):
                with pytest.raises(InvalidInputError, match=r"is not a string or a finite number"):
                    call(["7", bad])
        assert index.get([7, "None"]) == [{"text": "seven", "score": 0.5}, {"text": "x"}]
        assert len(index) == 2
        # Ids as database drivers and big integers give them are ids, as before.
        big = 10**400
        index.upsert(
            [
                {"id": decimal.Decimal("8"), "text": "eight"},
                {"id": uuid.UUID(int=1), "text": "uuid"},
                {"id": big, "text": "huge"},
            ]
        )
        assert index.get([decimal.Decimal("8"), uuid.UUID(int=1), big]) == [
            {"text": "eight"},
            {"text": "uuid"},
            {"text": "huge"},
        ]
        with pytest.raises(DataFormatError, match="not a string or a finite number"):
            index.upsert([{"id": decimal.Decimal("NaN"), "text": "x"}])
        # Python will not write an integer of over 4,300 digits as text (str() raised).
        too_long = r"an integer of over 4,300 digits is too long to write as text; write the id"
        with pytest.raises(DataFormatError, match=too_long):
            index.upsert([{"id": 10**5000, "text": "x"}])
        with pytest.raises(InvalidInputError, match=too_long):
            index.upsert([Document(10**5000, {"text": "x"})])  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match=too_long):
            index.get([10**5000])
        assert len(index) == 5


def test_lone_surrogate_escape_in_a_jsonl_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "esc.jsonl"
    corpus.write_text('{"id": "1", "text": "fine"}\n{"id": "2", "text": "\\ud800"}\n', "utf-8")
    with (
        create_index("j", home=tmp_path, embedding_model=None) as index,
        pytest.raises(InvalidInputError, match=r"document '2': field 'text'"),
    ):
        index.upsert(read_corpus(corpus))


def test_index_home_and_fields_of_the_wrong_kind_are_named(tmp_path: Path) -> None:
    afile = tmp_path / "homefile"
    afile.write_text("not a folder")
    with pytest.raises(InvalidInputError, match="is a file"):
        create_index("x1", home=afile, embedding_model=None)
    with pytest.raises(InvalidInputError, match="home must be a folder path"):
        create_index("x1", home=5, embedding_model=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="fields must be a list"):
        create_index("x1", home=tmp_path, fields=None, embedding_model=None)  # type: ignore[arg-type]
    assert list_indexes(tmp_path) == []


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--model", "nope"], "--model names the re-ranking model; add --rerank"),
        (["--min-score", "0.5"], "--min-score filters re-ranked scores; add --rerank"),
        (["--bm25", "--dense"], "choose one of --bm25, --dense, --hybrid"),
    ],
)
def test_search_flags_that_would_be_ignored_are_refused(
    tmp_path: Path, flags: list[str], named: str
) -> None:
    home = tmp_path / "home"
    create_index("d1", home=home, embedding_model=None).close()
    with pytest.raises(InvalidInputError, match=re.escape(named)):
        run("search", "d1", "fleas", "--home", str(home), *flags)


def test_a_document_whose_fields_are_not_a_dict_is_named(tmp_path: Path) -> None:
    from semrank.store import Document

    index = create_index("d2", home=tmp_path, embedding_model=None)
    with pytest.raises(InvalidInputError, match="fields must be a dict"):
        index.upsert([Document("z", "notadict")])  # type: ignore[arg-type]
    assert len(index) == 0
    index.close()


def test_a_create_that_fails_on_the_disk_leaves_nothing_and_names_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk the staging folder stayed behind (taking space on that disk) and the
    error named it ('.full.39ce….tmp') instead of the index."""
    from semrank.errors import StorageError
    from semrank.store import _registry

    def full_disk(path: Path, *args: object, **kwargs: object) -> None:
        path.mkdir(parents=True)
        (path / "documents.sqlite").write_bytes(b"half")
        raise StorageError(f"index {path.name!r} cannot be used here (database or disk is full)")

    monkeypatch.setattr(_registry.LocalStore, "initialize", full_disk)  # the disk, not the code
    with pytest.raises(StorageError, match=r"index 'full' cannot be created in .*disk is full"):
        create_index("full", home=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("id,text,text", "names 'text' more than once"),
        ("id;title;text", "seems separated by ';'"),
    ],
)
def test_a_csv_header_that_would_lose_columns_is_refused(
    tmp_path: Path, header: str, named: str
) -> None:
    """A repeated name kept only its last column (the first column's words were not found), and
    a semicolon-separated file was one column: ids and titles in the searched text."""
    path = tmp_path / "docs.csv"
    path.write_text(f"{header}\n1{header[2]}first words{header[2]}second words\n")
    with pytest.raises(DataFormatError, match=rf"docs\.csv:1: .*{re.escape(named)}"):
        read_corpus(path)


def test_an_id_column_in_capitals_is_the_id_field(tmp_path: Path) -> None:
    """'ID' was read as a text column and the documents numbered 1, 2, ...: no later add or
    delete could reach them by their ids."""
    path = tmp_path / "upper.csv"
    path.write_text("ID,Title,Body\nA-17,Hello,world body\nB-22,Second,other text\n")
    corpus = read_corpus(path)
    assert corpus.id_field == "ID" and corpus.text_fields == ("Title", "Body")
    repeated = tmp_path / "repeated.csv"  # an "ID" column that is no id: said how to go on
    repeated.write_text("ID,text\n1,fleas\n1,cats\n")
    with pytest.raises(DataFormatError, match=r"'ID' was guessed .* --id-field"):
        read_corpus(repeated).count()
    both = tmp_path / "both.csv"
    both.write_text("ID,id,text\nX,1,words\n")
    assert read_corpus(both).id_field == "id"  # the exact spelling first, as before
    home = str(tmp_path / "home")
    run("index", "create", "upper", "--from", str(path), "--home", home, "--no-dense")
    assert "deleted 1 of 1" in run("index", "delete", "upper", "A-17", "--home", home)


def test_unnamed_csv_columns_are_left_out(tmp_path: Path) -> None:
    """pandas' to_csv() writes its index as an unnamed first column, spreadsheets a trailing
    comma: both files were refused for a header cell without a name."""
    pandas_csv = tmp_path / "pandas.csv"
    pandas_csv.write_text(",id,title,text\n0,a,Fleas,fleas bite dogs\n1,b,Cats,cats purr\n")
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("id,title,text,\na,Fleas,fleas bite dogs,\n")
    for path in (pandas_csv, trailing):
        corpus = read_corpus(path)
        assert corpus.id_field == "id" and corpus.text_fields == ("title", "text")
        assert next(iter(corpus)).fields == {"title": "Fleas", "text": "fleas bite dogs"}
    one_column = tmp_path / "notes.tsv"
    one_column.write_text("text, notes\nfleas bite, often\n")  # a comma in a TSV header: fine
    assert read_corpus(one_column, id_field=None).text_fields == ("text, notes",)
    # ... but a TSV whose header is comma-separated names, or a CSV of pipes, is refused.
    for name, header in (("commas.tsv", "id,title,text"), ("pipes.csv", "id|title|text")):
        (tmp_path / name).write_text(f"{header}\n1{header[2]}Fleas{header[2]}fleas bite\n")
        with pytest.raises(DataFormatError, match="the file seems separated by"):
            read_corpus(tmp_path / name)
    # Text under an unnamed column other than the first would be lost: refused, named.
    lost = tmp_path / "lost.csv"
    lost.write_text("id,title,text,\na,Fleas,fleas bite,extra notes\n")
    with pytest.raises(DataFormatError, match=r"row 1 has text \('extra notes'\) in column 4"):
        read_corpus(lost).count()
    # ... and so would text under an unnamed first column (pandas' index holds integers)
    first = tmp_path / "first.csv"
    first.write_text(",id,text\n0,a,fleas\nFleas are small wingless insects,b,ticks\n")
    with pytest.raises(DataFormatError, match=r"row 2 has text \('Fleas are small.*in column 1"):
        read_corpus(first).count()


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:s3cret@h/db",
        "postgresql+psycopg://u:s3cret@h/db",
        "postgresql://u@h/db?password=s3cret",
        "host=db user=app password=s3cret dbname=rank",
        "host=db user=app password = s3cret dbname=rank",
        "host=db password='s3 cret' dbname=rank",
        "host=db password='s3\\'cret' dbname=rank",
        "host=db user=app password=s3&cret!k dbname=rank",  # libpq: to whitespace
        "host=db password=s3\\ cret dbname=rank",
        "postgresql://u@h/db?sslmode=disable&password=s3 cret#x",
        # Left unencoded, as generated passwords often are: libpq misreads them (and quotes
        # them in its errors).
        "postgresql://u:s3+c/cret=@h:5432/db",
        "postgresql://u:s3 cret@h/db",
        "postgresql://u:s3?cret@h/db",
        "postgresql://u:s3?c=ret@h/db",  # '?' then '=': not a query string before the host
        "postgresql://u:s3#cr@et@h/db",
        "postgresql://u@h/db?sslmode=require&sslpassword=s3cret",
    ],
)
def test_a_dsn_is_shown_without_its_password_in_every_form(dsn: str) -> None:
    """Spaces around '=' and quoted values (libpq allows both) showed the password whole or
    in part; a driver's error quoting the DSN's parts showed it whole."""
    from semrank.sql._install import _connect
    from semrank.store._dsn import redact_dsn, redact_in

    shown = redact_dsn(dsn)
    assert "s3" not in shown and "cret" not in shown and "***" in shown
    said = redact_in(f'invalid token in "{dsn}"', dsn)
    assert "s3" not in said and "cret" not in said
    # libpq quotes a bad part of a URL by itself ("invalid percent-encoded token: ...").
    assert "s3cret" not in redact_in('invalid token: "p%zzs3cret"', "postgresql://u:p%zzs3cret@h/d")
    # ... and the redaction keeps what is not a password (a port, an '@' in a query value).
    kept = "postgresql://h:5432/db?application_name=me@work"
    assert redact_dsn(kept) == kept
    if "s3+c/" in dsn:  # libpq reads host "u": its error quoted the password's head
        from semrank.store.postgres._pool import unreachable

        said = str(unreachable(dsn, OSError("failed to resolve host 'u:s3+c'")))
        assert "s3" not in said and "percent-encode the password's special characters" in said
    if not dsn.startswith("postgresql://"):
        with pytest.raises(InvalidInputError) as refused:
            _connect(dsn)  # semrank sql install's check
        assert "s3" not in str(refused.value)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:pw@host/db@prod", "postgresql://u:***@host/db@prod"),
        ("postgresql://host/my@db", "postgresql://host/my@db"),
        ("postgresql://h1,h2/db@prod", "postgresql://h1,h2/db@prod"),
        ("postgresql://host/my:db@prod", "postgresql://host/my:db@prod"),
    ],
)
def test_an_at_sign_in_the_database_name_is_not_taken_for_a_password(dsn: str, shown: str) -> None:
    """The authority ends at the first '/': an '@' after it (in the database name) hid the
    port and database ("postgresql://host:***@db") as if they were a password, and the error
    asked to percent-encode a password the DSN does not have."""
    from semrank.store._dsn import redact_dsn, redact_in, unencoded_password

    assert redact_dsn(dsn) == shown
    assert redact_in(f'invalid token in "{dsn}"', dsn) == f'invalid token in "{shown}"'
    assert not unencoded_password(dsn)


def test_a_short_piece_of_a_password_misread_as_the_host_is_hidden() -> None:
    """libpq reads "s3cret@PW@127.0.0.1" as password "s3cret", host "PW@127.0.0.1", and quotes
    that host in its error: the "PW" (too short to replace everywhere) was shown."""
    from semrank.store._dsn import redact_in

    dsn = "postgresql://alice:s3cret@PW@127.0.0.1:1/db"
    said = redact_in("failed to resolve host 'PW@127.0.0.1': unknown", dsn)
    assert said == "failed to resolve host '***@127.0.0.1': unknown"


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:1234/x@h/db",
        "postgresql://u:1234/x@h:5432/db?sslmode=require",
        "postgresql://u:1234/x@h:5432",
        "postgresql://u:1234/x@h",
        "postgresql://u:1234/x@h?sslmode=require",
    ],
)
def test_a_password_holding_a_slash_after_digits_is_hidden(dsn: str) -> None:
    """Unencoded, "u:1234/x" reads like a host and port, as "h:5432/my@db" (a database name
    holding '@') reads like a user and password: both are hidden, since a shown one leaks."""
    from semrank.store._dsn import redact_dsn, unencoded_password

    assert redact_dsn(dsn).startswith("postgresql://u:***@h")
    assert "1234" not in redact_dsn(dsn) and unencoded_password(dsn)
    assert redact_dsn("postgresql://h:5432/my@db") == "postgresql://h:***@db"
    pytest.importorskip("psycopg")
    from semrank.store.postgres._pool import unreachable

    # Hidden all the same, but the advice does not take the port for a password.
    said = str(unreachable("postgresql://h:5432/my@db", OSError("connection refused")))
    assert "if what comes before the first '/' is a user and a password, not a host" in said


def test_semrank_sql_names_a_dsn_that_does_not_parse_without_its_password() -> None:
    """libpq's ProgrammingError (a '%' in a URL's password) was a traceback quoting it."""
    pytest.importorskip("psycopg")
    from semrank.sql._install import _connect

    with pytest.raises(InvalidInputError, match="does not parse") as refused:
        _connect("postgresql://u:p%zzs3cret@h/d")
    assert "s3cret" not in str(refused.value) and "%25" in str(refused.value)


def test_docs_that_are_neither_a_file_nor_a_pipe_are_named(tmp_path: Path) -> None:
    """A socket got a raw errno message (exit 3); /dev/zero was read until memory ran out."""
    import socket

    from semrank.rerank.commands import read_documents

    path = tmp_path / "docs.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(InvalidInputError, match="not a file or pipe"):
            read_documents(str(path))
    with pytest.raises(InvalidInputError, match="not a file or pipe"):
        read_documents("/dev/zero")


def test_a_document_objects_id_is_checked_as_a_records_id(tmp_path: Path) -> None:
    """Document(b"k1", ...) was written, then every search failed on it (and nothing could
    delete it); None and NaN were raw SQLite errors, True replaced document "1", "" was kept."""
    import uuid

    from semrank.store import Document

    with create_index("d", home=tmp_path, embedding_model=None) as index:
        index.upsert([{"id": "1", "text": "fleas bite"}])
        for bad in (b"k1", None, float("nan"), True, "", "  "):
            with pytest.raises(InvalidInputError, match="a Document's id"):
                index.upsert([Document(bad, {"text": "x"})])  # type: ignore[arg-type]
        index.upsert([Document(uuid.UUID(int=5), {"text": "uuid"}), Document(7, {"text": "7"})])  # type: ignore[arg-type]
        assert len(index) == 3 and index.get(["1"]) == [{"text": "fleas bite"}]
        assert index.search_bm25("fleas", k=3).ids.tolist() == ["1"]
        assert index.get([str(uuid.UUID(int=5)), "7"]) == [{"text": "uuid"}, {"text": "7"}]
