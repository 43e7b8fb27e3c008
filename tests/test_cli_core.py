"""The `semrank` command: version, models list, rerank over files, readable errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.serving import stdin_closed
from typer.testing import CliRunner

from semrank import __version__
from semrank.cli import app
from semrank.errors import DataFormatError
from semrank.models import default_spec
from semrank.rerank.commands import read_documents

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"semrank {__version__}"


def test_models_list_json_has_one_default():
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0
    entries = json.loads(result.output)
    assert [e["name"] for e in entries if e["default"]] == [default_spec().name]


@pytest.mark.parametrize("layout", ["jsonl", "json", "lines"])
def test_rerank_reads_every_file_layout(tmp_path, layout):
    docs = ["Paris is in France.", "Fleas are small insects."]
    path = tmp_path / f"docs.{layout}"
    if layout == "jsonl":
        path.write_text("\n".join(json.dumps({"text": d}) for d in docs))
    elif layout == "json":
        path.write_text(json.dumps(docs))
    else:
        path.write_text("\n".join(docs))
    result = runner.invoke(
        app, ["rerank", "what is a flea", "--docs", str(path), "--json", "-n", "1"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert [r["index"] for r in payload["results"]] == [1]


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_rerank_reads_jsonl_that_starts_with_a_byte_order_mark(tmp_path, source):
    # Windows editors write a BOM; before it was stripped, the file was ranked as raw text lines.
    docs = ["Paris is in France.", "Fleas are small insects."]
    text = "\ufeff" + "\n".join(json.dumps({"text": d}) for d in docs) + "\n"
    path = tmp_path / "docs.jsonl"
    path.write_text(text, encoding="utf-8")
    args = ["rerank", "what is a flea", "--docs", str(path) if source == "file" else "-", "--json"]
    result = runner.invoke(app, args, input=text if source == "stdin" else None)
    assert result.exit_code == 0, result.output
    documents = [r["document"] for r in json.loads(result.stdout)["results"]]
    assert sorted(documents, key=str) == sorted(({"text": d} for d in docs), key=str)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"text": "alpha"}', "", "plain beta"], "docs.txt:3: this line is plain text"),
        (["plain alpha", '{"text": "beta"}'], "docs.txt:2: this line is a JSON object"),
    ],
)
def test_rerank_refuses_json_object_lines_mixed_with_plain_lines(tmp_path, lines, message):
    # Ranked as they were, the JSON lines would have been scored as raw '{"text": ...}' text.
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["rerank", "q", "--docs", str(path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, DataFormatError)
    assert str(result.exception).startswith(f"{tmp_path / message}")
    assert "use one format" in str(result.exception)


def test_plain_lines_that_merely_start_with_a_brace_are_still_plain_text(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("{draft} fleas bite\nParis is in France.\n")
    assert read_documents(str(path)) == ["{draft} fleas bite", "Paris is in France."]


def test_rerank_table_output(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("Paris is in France.\nFleas are small insects.\n")
    result = runner.invoke(app, ["rerank", "what is a flea", "--docs", str(path)])
    assert result.exit_code == 0 and "Fleas are small insects." in result.output


def test_tables_show_control_characters_as_escapes_and_text_as_written(tmp_path):
    # A document's ESC [2J cleared the user's terminal; JSON documents showed \uXXXX.
    lines = tmp_path / "docs.txt"
    lines.write_text("Fleas \x1b[2J bite \x1b[31mred\nParis is in France.\n")
    plain = runner.invoke(app, ["rerank", "fleas", "--docs", str(lines)])
    assert plain.exit_code == 0, plain.output
    assert "\x1b" not in plain.output and "\\x1b[2J bite \\x1b[31mred" in plain.output
    objects = tmp_path / "docs.jsonl"
    objects.write_text(json.dumps({"text": "跳蚤 fleas", "n": "é"}) + "\n")
    shown = runner.invoke(app, ["rerank", "fleas", "--docs", str(objects)])
    assert shown.exit_code == 0 and '"跳蚤 fleas", "n": "é"' in shown.output


def test_a_query_in_a_script_the_model_does_not_know_is_warned_of(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("跳蚤是一种小型昆虫\nFleas are small insects.\n")
    result = runner.invoke(app, ["rerank", "跳蚤", "--docs", str(path)])
    assert result.exit_code == 0
    assert "warning: model 'semrank-minilm-l6' reads 2 of the query's 2 tokens as unknown" in (
        result.stderr
    )
    english = runner.invoke(app, ["rerank", "what is a flea", "--docs", str(path)])
    assert "unknown" not in english.stderr


def test_user_error_is_one_line_without_traceback(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("a\n")
    completed = subprocess.run(
        [sys.executable, "-m", "semrank.cli", "rerank", "q", "--docs", str(path), "--top-n", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    # The flag, not the library's parameter (top_n=0).
    assert "error: --top-n 0 must be >= 1; leave it out to print them all" in completed.stderr
    assert "Traceback" not in completed.stderr
    nan = CliRunner().invoke(app, ["rerank", "q", "--docs", str(path), "--min-score", "nan"])
    assert str(nan.exception) == "--min-score nan must be a finite number"


def test_exit_status_tells_the_command_from_the_machine(tmp_path):
    """Every error exited 2: a script could not tell a wrong name (fix the command) from a
    database that is down (retry later)."""

    def status(*args: str) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-m", "semrank.cli", *args], capture_output=True, text=True,
            check=False, env={**os.environ, "SEMRANK_HOME": str(tmp_path)},
        )  # fmt: skip
        assert "Traceback" not in done.stderr
        return done.returncode, done.stderr

    code, stderr = status("index", "info", "missing")
    assert code == 2 and "missing" in stderr  # the command's input
    code, stderr = status("index", "list", "--store", "postgresql://nobody@127.0.0.1:1/none")
    assert code == 3 and "cannot connect" in stderr  # a service this machine cannot reach
    # A path past the system's limit is the command's input, named (it was "[Errno 36]", 3)
    code, stderr = status("rerank", "q", "--docs", "x" * 300)
    assert code == 2 and "a path longer than this system allows" in stderr, stderr
    assert "Errno" not in stderr


def test_a_full_disk_is_named_with_what_to_do():
    """A write that found the disk full printed "[Errno 28] No space left on device" or
    numpy's "153600 requested and 29664 written" alone."""
    import errno

    from semrank.cli import _os_error_text

    full = OSError(errno.ENOSPC, "No space left on device")
    assert _os_error_text(full).endswith("the disk is full; free some space and run it again")
    short = OSError("153600 requested and 29664 written")
    assert "could not be written; check the disk's free space" in _os_error_text(short)


def test_missing_docs_file_is_named(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "semrank.cli",
            "rerank",
            "q",
            "--docs",
            str(tmp_path / "nope.jsonl"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2 and "nope.jsonl" in completed.stderr


def test_a_folder_given_as_docs_file_is_named_a_folder(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "semrank.cli", "rerank", "q", "--docs", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2 and "a folder, not a file" in completed.stderr


def test_a_missing_optional_dependency_names_the_extra_that_installs_it(tmp_path):
    # A bm25s that cannot be imported, first on the path: as if `semrank[search]` was left out.
    (tmp_path / "shadow" / "bm25s").mkdir(parents=True)
    (tmp_path / "shadow" / "bm25s" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'bm25s'\", name='bm25s')\n"
    )
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(json.dumps({"id": "1", "text": "fleas bite cats"}) + "\n")
    command = [sys.executable, "-m", "semrank.cli", "index", "create", "t", "--from", str(corpus)]
    command += ["--no-dense", "--home", str(tmp_path / "home")]
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    assert completed.returncode == 3, completed.stderr  # what the machine lacks
    assert "needs 'bm25s': pip install 'semrank[search]'" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_text_output_shows_documents_and_queries_as_written(tmp_path):
    """Rich read them as markup: '[/]' crashed with a traceback, '[b]' tags vanished, and the
    '[truncated]' / '[chunk ...]' notes were swallowed as unknown tags."""
    path = tmp_path / "markup.txt"
    path.write_text("Use [b]bold[/b] tags.\nClose a tag with [/] in rich markup.\n")
    result = runner.invoke(app, ["rerank", "what does [/] mean", "--docs", str(path)])
    assert result.exit_code == 0, result.output
    assert "[b]bold[/b]" in result.output and "what does [/] mean" in result.output
    long = tmp_path / "long.txt"
    long.write_text("fleas " * 400 + "\n")
    cut = runner.invoke(app, ["rerank", "flea", "--docs", str(long), "--no-chunking"])
    assert cut.exit_code == 0, cut.output
    assert "[truncated]" in cut.output
    # With several fields read, a chunk's offsets are into one field's text: the note names it.
    titled = tmp_path / "titled.jsonl"
    titled.write_text(json.dumps({"title": "Fleas", "text": "fleas bite " * 300}) + "\n")
    fields = ["--rank-field", "title", "--rank-field", "text"]
    wide = {"COLUMNS": "4000"}  # one line per row
    chunked = runner.invoke(app, ["rerank", "flea", "--docs", str(titled), *fields], env=wide)
    assert chunked.exit_code == 0, chunked.output
    assert re.search(r"\[chunk \d+: text \d+-\d+\]", chunked.output), chunked.output


@pytest.mark.parametrize(
    "lines",
    [
        ["[Draft] Fleas are small insects.", "Paris is in France."],
        ['"Fleas bite," said the vet.', '"Paris is lovely," she said.'],
    ],
)
def test_plain_text_lines_that_look_like_json_at_first_are_read_as_text(tmp_path, lines):
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(lines) + "\n")
    assert read_documents(str(path)) == lines


def test_stdin_that_is_not_utf8_is_refused_like_a_file(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "semrank.cli", "rerank", "q", "--docs", "-"],
        input="caf\u00e9 au lait\n".encode("latin-1"),
        capture_output=True,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    stderr = completed.stderr.decode()
    assert completed.returncode == 2, stderr
    assert "not valid UTF-8 (byte 0xe9" in stderr and "Traceback" not in stderr


def test_rank_field_on_plain_text_documents_is_refused(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("Fleas are small insects.\nParis is in France.\n")
    result = runner.invoke(app, ["rerank", "flea", "--docs", str(path), "--rank-field", "title"])
    assert result.exit_code != 0
    assert "--rank-field 'title' picks fields of JSON-object documents" in str(result.exception)


@pytest.mark.parametrize("second", ['{"text": "paris is in france"}', '"paris is in france"'])
def test_a_jsonl_file_with_a_broken_first_line_names_it(tmp_path, second):
    """It crashed with StopIteration, or was ranked as raw text, quotes and braces included."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fleas bite dogs",}\n' + second + "\n")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: not valid JSON"):
        read_documents(str(path))


def test_a_bad_document_is_named_by_its_file_line(tmp_path):
    """The error named documents[2], the third document handed over, where the file had it on
    line 4 after a blank line."""
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "fleas bite"}\n\n{"text": "dogs"}\n{"title": "no text here"}\n')
    result = runner.invoke(app, ["rerank", "flea", "--docs", str(path)])
    assert result.exit_code != 0
    assert f"{path}:4 (documents[2]) has no field 'text'" in str(result.exception)


def test_the_table_marks_pruned_documents_instead_of_showing_their_placeholder(tmp_path):
    """Documents the cascade kept from the re-ranker showed 0.30 scores like any other."""
    path = tmp_path / "docs.txt"
    path.write_text("Fleas are small insects.\nParis is in France.\nDogs can have fleas.\n")
    result = runner.invoke(app, ["rerank", "flea", "--docs", str(path), "--cascade-keep", "1"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "│" in line and "France" in line]
    assert rows and "[pruned" in rows[0] and "│ -" in rows[0]


def test_rerank_takes_a_backend_and_cascade_keep_zero_means_off(tmp_path):
    """`semrank rerank` had no --backend (the README's way to force fp32), and --cascade-keep 0
    was an error there while it means "off" for `semrank serve`."""
    path = tmp_path / "docs.txt"
    path.write_text("fleas bite dogs\nParis is in France\ncats get fleas\n")
    result = runner.invoke(
        app, ["rerank", "flea", "--docs", str(path), "--backend", "onnx", "--cascade-keep", "0",
              "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["results"]) == 3
    bad = runner.invoke(app, ["rerank", "flea", "--docs", str(path), "--cascade-keep", "-1"])
    assert "--cascade-keep must be 0 (off)" in str(bad.exception)
    bad = runner.invoke(app, ["rerank", "flea", "--docs", str(path), "--backend", "tpu"])
    assert "unknown backend 'tpu'" in str(bad.exception)
    from semrank.errors import exit_code_for

    assert exit_code_for(bad.exception) == 2  # a flag the user gave (it was 3: "machine lacks")


def test_help_shows_whole_option_names_in_80_columns():
    """Rich's help tables cut them (--max-request-tok…, --no-return-docu…)."""
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0
    for flag in ("--max-request-tokens", "--batch-token-budget", "--no-return-documents"):
        assert flag in result.output, flag
    assert "…" not in result.output


def test_rerank_lines_end_only_at_newlines(tmp_path):
    """str.splitlines broke lines at U+2028 / U+0085 inside JSON strings (valid JSONL refused)
    and at form feeds in text files (one document became two, later indexes misnumbered)."""
    jsonl = tmp_path / "docs.jsonl"
    rows = [{"text": "Fleas\u2028are insects\u0085that bite."}, {"text": "Paris is in France."}]
    jsonl.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    result = runner.invoke(app, ["rerank", "what is a flea", "--docs", str(jsonl), "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(r["index"] for r in json.loads(result.stdout)["results"]) == [0, 1]
    text = tmp_path / "docs.txt"
    text.write_text("Page one about Paris.\fPage two about Rome.\nFleas are insects.\n")
    result = runner.invoke(app, ["rerank", "what is a flea", "--docs", str(text), "--json"])
    results = json.loads(result.stdout)["results"]
    assert len(results) == 2 and results[0]["index"] == 1
    mac = tmp_path / "mac.txt"  # old Mac line ends: \r alone
    mac.write_bytes(b"Paris is in France.\rFleas are insects.\rThe ocean is deep.\r")
    result = runner.invoke(app, ["rerank", "what is a flea", "--docs", str(mac), "--json"])
    results = json.loads(result.stdout)["results"]
    assert len(results) == 3 and results[0]["index"] == 1


def test_rerank_says_on_stderr_when_the_query_was_cut(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("Fleas are small insects.\nParis is in France.\n")
    long_query = "do fleas " + "really " * 600 + "bite"
    result = runner.invoke(app, ["rerank", long_query, "--docs", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert "warning: the query is 6" in result.stderr and "read its first" in result.stderr
    assert json.loads(result.stdout)["results"]  # stdout stays the results
    short = runner.invoke(app, ["rerank", "do fleas bite", "--docs", str(path), "--json"])
    assert "warning" not in short.stderr


def test_rerank_says_the_query_was_cut_whatever_min_score_leaves(tiny_model, tmp_path):
    # Said of the results shown, a query cut next to a long document that --top-n or
    # --min-score then left out went unsaid (the server says it of every document scored).
    path = tmp_path / "docs.txt"
    path.write_text("flea\n" + "fleas bite dogs and cats " * 60 + "\n")
    query = " ".join(["fleas"] * 20)  # 40 tiny-model tokens: all read next to "flea" alone
    model = str(tiny_model("bert"))
    for flags in (["--min-score", "0.999"], ["--top-n", "1"]):
        args = ["rerank", query, "--docs", str(path), "--model", model, "--json", *flags]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "warning: the query is 40" in result.stderr and "read its first" in result.stderr


@pytest.mark.parametrize(
    "text, documents",
    [
        ('[\n  null,\n  "Fleas are small insects."\n]\n', [None, "Fleas are small insects."]),
        (
            '{\n  "title": "Fleas",\n  "text": "Fleas are small insects."\n}\n',
            [{"title": "Fleas", "text": "Fleas are small insects."}],
        ),
    ],
)
def test_a_whole_json_list_or_object_is_read_as_json_whatever_it_starts_with(
    tmp_path, text, documents
):
    """'[' followed by null or a number, or an object written over several lines, was ranked
    line by line: brackets, keys and commas came back as documents."""
    path = tmp_path / "docs.json"
    path.write_text(text)
    assert read_documents(str(path)) == documents


def test_a_request_body_given_as_the_docs_file_is_refused(tmp_path):
    path = tmp_path / "body.json"
    path.write_text(json.dumps({"query": "fleas", "documents": ["a", "b"]}, indent=2))
    result = runner.invoke(app, ["rerank", "flea", "--docs", str(path)])
    assert isinstance(result.exception, DataFormatError)
    assert "a JSON object with 'query' and 'documents'" in str(result.exception)
    nulls = tmp_path / "nulls.json"
    nulls.write_text('[\n  null,\n  "Fleas are small insects."\n]\n')
    refused = runner.invoke(app, ["rerank", "flea", "--docs", str(nulls)])
    assert refused.exit_code != 0 and "documents[0]" in str(refused.exception)
    # A document that merely has a field called documents, and '[1, 2, 3]' as a line of text.
    record = tmp_path / "one.jsonl"
    record.write_text('{"text": "fleas bite", "documents": "see also"}\n')
    assert read_documents(str(record)) == [{"text": "fleas bite", "documents": "see also"}]
    line = tmp_path / "line.txt"
    line.write_text("[1, 2, 3]\n")
    assert read_documents(str(line)) == ["[1, 2, 3]"]
    # Over several lines it is a JSON list, whatever its items (the library names a bad one).
    mixed = tmp_path / "mixed.json"
    mixed.write_text('[\n  null,\n  1,\n  "Fleas are small insects."\n]\n')
    assert read_documents(str(mixed)) == [None, 1, "Fleas are small insects."]


def test_rerank_says_which_text_fields_of_objects_went_unread(tmp_path):
    """A BEIR corpus.jsonl lost its titles without a word (the server said so)."""
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"_id": "1", "title": "Fleas and their diet", "text": "They drink blood."},
        {"_id": "2", "title": "Dogs at play", "text": "Dogs fetch sticks."},
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(app, ["rerank", "what do fleas eat", "--docs", str(corpus), "--json"])
    assert result.exit_code == 0, result.output
    assert (
        "warning: documents were read by their 'text' field only; their text fields 'title' were "
        "not read: name every field to score in --rank-field (e.g. --rank-field title "
        "--rank-field text)"
    ) in result.stderr
    named = ["--rank-field", "title", "--rank-field", "text"]
    both = runner.invoke(app, ["rerank", "what do fleas eat", "--docs", str(corpus), *named])
    assert both.exit_code == 0 and "warning" not in both.stderr
    # A CSV header with a space: the example is one a shell reads back as one value.
    table = tmp_path / "table.csv"
    table.write_text('id,Doc Title,text\n1,"Fleas and their diet",They drink blood.\n')
    spaced = runner.invoke(app, ["rerank", "what do fleas eat", "--docs", str(table)])
    assert "(e.g. --rank-field 'Doc Title' --rank-field text)" in spaced.stderr


def test_rerank_reads_csv_rows_as_objects_and_gzip_files(tmp_path):
    """A CSV was read as lines: its header was ranked as a document, its ids and commas
    scored as text; a .jsonl.gz was refused as 'not valid UTF-8'."""
    import gzip

    table = tmp_path / "notes.csv"
    table.write_text(
        'id,title,body\n1,Fleas,"Fleas are small insects, they bite."\n2,Paris,A city\n'
    )
    missing = runner.invoke(app, ["rerank", "what is a flea", "--docs", str(table)])
    assert f"{table}:2 (documents[0]) has no field 'text'" in str(missing.exception)
    assert "pass --rank-field naming" in str(missing.exception)  # the flag, not rank_fields
    args = ["rerank", "what is a flea", "--docs", str(table), "--rank-field", "body", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["results"]
    assert [r["document"]["id"] for r in rows] == ["1", "2"]  # no header row among them
    # Errors name the line a row ends on (quoted fields span lines; blank lines are skipped).
    spread = tmp_path / "spread.csv"
    spread.write_text('id,text\n\nd1,"fleas bite\nvery much"\nd2\n')
    broken = runner.invoke(app, ["rerank", "flea", "--docs", str(spread)])  # d2: no text cell
    assert f"{spread}:5: row 2 has 1 field(s), fewer than the header's 2" in str(broken.exception)
    missing = runner.invoke(app, ["rerank", "flea", "--docs", str(tmp_path / "gone.csv")])
    assert "no such file; pass a JSONL, JSON, CSV" in str(missing.exception)
    packed = tmp_path / "docs.jsonl.gz"
    packed.write_bytes(gzip.compress(b'{"text": "fleas bite"}\n{"text": "Paris"}\n'))
    result = runner.invoke(app, ["rerank", "flea", "--docs", str(packed), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["results"][0]["document"] == {"text": "fleas bite"}


def test_rerank_reads_documents_from_a_pipe(tmp_path):
    """--docs <(cmd) names a pipe, which was refused as "no such file"."""
    import os
    import threading

    pipe = tmp_path / "docs.fifo"
    os.mkfifo(pipe)

    def feed() -> None:
        with open(pipe, "w", encoding="utf-8") as writer:
            writer.write("fleas bite dogs\nParis is in France\n")

    writer = threading.Thread(target=feed)
    writer.start()
    result = runner.invoke(app, ["rerank", "flea", "--docs", str(pipe), "--json"])
    writer.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["results"][0]["document"] == "fleas bite dogs"


def test_scripts_get_plain_errors_clear_statuses_and_no_blank_folder(tmp_path):
    """Under cron and pipes: --home "$UNSET" made indexes in the current folder; NO_COLOR
    still coloured the error line; a closed pipe (`| head`) ended with status 1 ("a bug"); a
    misspelt --model went unnoticed when the first stage found nothing."""
    import os

    semrank = [sys.executable, "-m", "semrank.cli"]

    def run(*args, **env):
        return subprocess.run(
            [*semrank, *args], capture_output=True, text=True, check=False, cwd=tmp_path,
            env={**os.environ, **env}, timeout=120,
        )  # fmt: skip

    blank = run("index", "create", "h1", "--home", "", "--no-dense")
    assert blank.returncode == 2 and "'--home': is blank; give a folder" in blank.stderr
    assert not (tmp_path / "h1").exists()
    cases = (
        ({}, True),
        ({"NO_COLOR": "1"}, False),
        ({"TERM": "dumb"}, False),
        ({"NO_COLOR": ""}, True),
    )
    for env, coloured in cases:  # an empty NO_COLOR is unset (no-color.org)
        assert _error_line_on_a_terminal(semrank, tmp_path, env).startswith(
            "\x1b[31merror:" if coloured else "error: --docs 'nope.txt'"
        ), env
    home = str(tmp_path / "home")
    docs = tmp_path / "d.jsonl"
    docs.write_text('{"id": "1", "text": "fleas bite"}\n')
    assert (
        run("index", "create", "i", "--from", str(docs), "--home", home, "--no-dense").returncode
        == 0
    )
    typo = run("search", "i", "zzzz", "--rerank", "--model", "semrank-minilm-l7", "--home", home)
    assert typo.returncode == 2 and "semrank-minilm-l7" in typo.stderr
    # Elasticsearch's default re-ranker ids name the default model, as in a retriever tree.
    es = run("search", "i", "fleas", "--rerank", "--model", ".rerank-v1", "--home", home)
    assert es.returncode == 0, es.stderr
    # The output pipe's reader gone before the first write: status 141, no traceback.
    # click's output and rich's (a search table) alike.
    for args in (["models", "list", "--json"], ["search", "i", "fleas", "--home", home]):
        closed = subprocess.Popen(
            [*semrank, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
        )
        closed.stdout.close()
        assert closed.wait(timeout=120) == 141, args
        assert b"Traceback" not in closed.stderr.read()


def _error_line_on_a_terminal(semrank, folder, env):
    """What `semrank rerank` with a missing file writes to stderr when stderr is a terminal."""
    import os
    import pty

    leader, follower = pty.openpty()
    done = subprocess.run(
        [*semrank, "rerank", "q", "--docs", "nope.txt"], stderr=follower, stdout=subprocess.DEVNULL,
        cwd=folder, env={**os.environ, "TERM": "xterm", **env}, timeout=120, check=False,
    )  # fmt: skip
    os.close(follower)
    assert done.returncode == 2
    return os.read(leader, 4096).decode()


def test_python_dash_m_semrank_runs_the_command() -> None:
    """'semrank' is a package and cannot be directly executed: a venv not activated had no way
    in but the script's full path."""
    completed = subprocess.run(
        [sys.executable, "-m", "semrank", "--version"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("semrank ")


def test_sql_install_reads_the_store_variable_as_the_other_commands_do() -> None:
    """It read only SEMRANK_PG_DSN, named in no doc, and ignored SEMRANK_STORE."""
    result = CliRunner().invoke(
        app, ["sql", "install"], env={"SEMRANK_STORE": "postgresql://nobody@127.0.0.1:9/none"}
    )
    assert result.exit_code != 0
    assert "127.0.0.1:9" in str(result.exception) + result.output
    # "local" (the index commands' value for the embedded store) is passed over, and named.
    result = CliRunner().invoke(
        app,
        ["sql", "install"],
        env={"SEMRANK_STORE": "local", "SEMRANK_PG_DSN": "postgresql://nobody@127.0.0.1:9/x"},
    )
    assert "127.0.0.1:9" in str(result.exception) + result.output
    result = CliRunner().invoke(app, ["sql", "install"], env={"SEMRANK_STORE": "local"})
    assert "$SEMRANK_STORE is 'local', not a PostgreSQL DSN" in str(result.exception)


def test_sql_install_takes_the_api_key_from_stdin() -> None:
    """--api-key took the key only on the command line (seen in `ps`, kept in shell history);
    `--api-key -` reads it from stdin, checked as a given key is, before connecting."""
    command = ["sql", "install", "--dsn", "postgresql://nobody@127.0.0.1:9/none", "--api-key", "-"]
    for piped, said in (("\n", "the API key is empty"), ("two words\n", "cannot carry")):
        result = CliRunner().invoke(app, command, input=piped)
        assert result.exit_code != 0
        assert said in str(result.exception) + result.output
        assert "two words" not in str(result.exception) + result.output  # the key is not shown


def test_output_on_a_stdout_that_is_not_utf8_or_narrow(tmp_path: Path) -> None:
    """A latin-1 or ASCII stdout (a locale, PYTHONIOENCODING, a Windows file) crashed on the
    table's own characters (exit 1, traceback) or wrote JSON no reader takes; COLUMNS=0 printed
    nothing with exit 0."""
    docs = tmp_path / "docs.txt"
    docs.write_text("Fleas are small insects.\nParis is in France — café.\n", encoding="utf-8")

    def rerank(env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "semrank", "rerank", "flea", "--docs", str(docs)]
        return subprocess.run(
            [*command, *flags], env={**os.environ, **env}, capture_output=True, timeout=300
        )

    table = rerank({"PYTHONIOENCODING": "ascii"})
    assert table.returncode == 0, table.stderr
    assert b"Paris is in France ? caf?." in table.stdout
    as_json = rerank({"PYTHONIOENCODING": "latin-1"}, "--json")
    assert as_json.returncode == 0, as_json.stderr
    documents = [r["document"] for r in json.loads(as_json.stdout.decode("utf-8"))["results"]]
    assert "Paris is in France — café." in documents
    narrow = rerank({"COLUMNS": "0"})
    assert narrow.returncode == 0 and b"Fleas" in narrow.stdout
    # stderr keeps Python's backslash escapes: an error names the bad value whole (not '??').
    bad = subprocess.run(
        [sys.executable, "-m", "semrank", "index", "info", "東京"],
        env={**os.environ, "PYTHONIOENCODING": "latin-1"},
        capture_output=True,
        timeout=60,
    )
    assert bad.returncode == 2 and b"'\\u6771\\u4eac'" in bad.stderr


def test_a_large_result_cut_short_by_a_closed_pipe_is_not_a_success(tmp_path: Path) -> None:
    """One large write a pipe (or a full disk) took only in part lost the rest without an
    error: `semrank search ... --json | head -c 10` exited 0 (a full disk likewise, where 3
    is documented)."""
    from semrank.store import create_index

    home = tmp_path / "home"
    with create_index("big", home=home, embedding_model=None) as index:
        index.upsert([{"id": f"d{i}", "text": f"topic words number {i} " * 8} for i in range(3000)])
    command = [sys.executable, "-m", "semrank", "search", "big", "topic", "--top-n", "2000"]
    command += ["--json", "--home", str(home)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.read(10)
    process.stdout.close()  # as `| head -c 10` does
    assert process.wait(timeout=120) == 141


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="a named pipe: POSIX")
def test_ctrl_c_says_in_one_line_that_the_command_was_interrupted(tmp_path: Path) -> None:
    """Ctrl-C ended a command with status 130 and nothing on stderr (typer swallowed the
    KeyboardInterrupt): it read as a command that had ended on its own."""
    import errno
    import signal
    import time

    docs = tmp_path / "docs.txt"
    os.mkfifo(docs)  # the command waits on it for documents that do not come
    command = [sys.executable, "-m", "semrank", "rerank", "fleas", "--docs", str(docs)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = None
    try:
        deadline = time.monotonic() + 60
        while writer is None:  # opens once the command has opened the pipe to read it
            try:
                writer = os.open(docs, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                assert exc.errno == errno.ENXIO and process.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        if writer is not None:
            os.close(writer)
    assert (process.returncode, out, err) == (130, "", "semrank: interrupted\n")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child: POSIX")
def test_ctrl_c_while_the_command_still_imports_says_the_same_line() -> None:
    """Ctrl-C in the half second the CLI spends importing (typer, every stage's commands)
    printed a KeyboardInterrupt traceback: it says "semrank: interrupted" and exits 130, as
    later. Sent after a few delays, from the interpreter's start to the command's end; one
    that comes before the entry point runs (the interpreter's start, the package's own
    __init__ as runpy imports it) is Python's own, which no code of semrank's can answer."""
    import signal
    import time

    interrupted = 0
    for delay in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7):
        command = [sys.executable, "-m", "semrank", "--help"]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        frames = re.findall(r'File "([^"]*)"', err)
        ours = [f for f in frames if f"{os.sep}semrank{os.sep}" in f]
        assert all(f.endswith(f"{os.sep}semrank{os.sep}__init__.py") for f in ours), (delay, err)
        if "Traceback" in err or process.returncode == -signal.SIGINT:
            continue  # before semrank's code ran
        assert process.returncode in (0, 130), (delay, process.returncode, err)
        if process.returncode == 130:
            assert err == "semrank: interrupted\n", (delay, err)
            interrupted += 1
    assert interrupted, "no SIGINT came while the command ran: its delays need adjusting"


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc/self/status: Linux")
def test_running_out_of_memory_is_named_with_what_to_do(tmp_path: Path) -> None:
    """A container's memory limit met while building an index printed numpy's or Python's
    MemoryError as a 40-line traceback, with exit status 1 ("a bug")."""
    corpus = tmp_path / "corpus.jsonl"
    words = (" ".join(f"w{(n * 7 + k) % 5000}" for k in range(100)) for n in range(20000))
    corpus.write_text(
        "".join(json.dumps({"id": str(n), "text": text}) + "\n" for n, text in enumerate(words))
    )
    # Address space capped a little above what the imports took: the BM25 build needs more.
    script = """if True:
        import resource, sys
        import bm25s, Stemmer, semrank.store.commands
        from semrank.cli import main
        status = open("/proc/self/status").read()
        taken = int(status.split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (taken + 48 * 2**20,) * 2)
        sys.argv = ["semrank", *sys.argv[1:]]
        main()
    """
    command = [sys.executable, "-c", script, "index", "create", "big", "--from", str(corpus)]
    command += ["--no-dense", "--home", str(tmp_path / "home")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert "Traceback" not in done.stderr
    assert done.returncode == 3, done.stderr  # the machine's, as a full disk is
    assert "error: out of memory" in done.stderr
    assert "give it more, or ask for less at once" in done.stderr


def test_rerank_from_a_closed_stdin_says_so(tmp_path: Path) -> None:
    """`semrank rerank q --docs - <&-` (a supervisor or script that closed stdin) printed a
    traceback (sys.stdin is None) and exited 1, "a bug"."""
    command = [sys.executable, "-m", "semrank", "rerank", "flea", "--docs", "-", "--json"]
    closed = subprocess.run(stdin_closed(command), capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert "Traceback" not in closed.stderr
    assert closed.returncode == 2, closed.stderr
    assert "--docs - reads the documents from stdin, and stdin is closed" in closed.stderr
    assert closed.stdout == ""
