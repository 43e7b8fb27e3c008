"""semrank.store: create / open / upsert / delete / drop, corpus formats, derived snapshots."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import io
import itertools
import json
import logging
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semrank.errors import (
    DataFormatError,
    IndexExistsError,
    IndexNotFoundError,
    IndexVersionError,
    InvalidInputError,
    StorageError,
    http_status_for,
)
from semrank.retrieve import BM25Index, BM25Params, DocTokens, matches, parse_filter
from semrank.store import (
    create_index,
    default_home,
    drop_index,
    list_indexes,
    open_index,
    read_corpus,
)

DOCS = [
    {"id": "cat", "title": "Cats", "text": "The cat sat on the mat and purred."},
    {"id": "dog", "title": "Dogs", "text": "Dogs run and fetch sticks in the park."},
    {"id": "sun", "title": "Eclipses", "text": "The moon hides the sun during a solar eclipse."},
]


def test_round_trip_survives_reopen(tmp_path: Path) -> None:
    with create_index("pets", home=tmp_path, embedding_model=None) as index:
        assert index.upsert(DOCS) == 3
    assert list_indexes(tmp_path) == ["pets"]
    with open_index("pets", home=tmp_path) as index:
        assert len(index) == 3
        assert index.get(["sun", "nope"]) == [
            {"title": "Eclipses", "text": DOCS[2]["text"]},
            None,
        ]
        assert index.search_bm25("purring cats", k=3).ids.tolist() == ["cat"]
        info = index.info()
        assert info.documents == 3 and info.settings.text_fields == ("title", "text")
        assert info.vector_search is None


def test_prepared_tables_are_equal_when_their_arrays_are(tmp_path: Path) -> None:
    with create_index("pets", home=tmp_path, embedding_model=None) as index:
        index.upsert(DOCS)
        index.save_prepared("windows", {"keys": np.arange(6).reshape(3, 2)}, {"model": "m"})
        [table] = index.prepared()
    copied = {name: array.copy() for name, array in table.arrays.items()}
    assert table == dataclasses.replace(table, arrays=copied)  # ValueError (ambiguous) before
    assert table != dataclasses.replace(table, arrays={"keys": np.zeros((3, 2))})


def test_an_index_a_newer_semrank_wrote_is_refused_not_read(tmp_path: Path) -> None:
    # Reading (or writing) a layout this version does not know could return wrong hits or
    # damage the index: the user is told to upgrade, the files stay as they are.
    with create_index("pets", home=tmp_path, embedding_model=None) as index:
        index.upsert(DOCS)
    db_file = tmp_path / "pets" / "documents.sqlite"
    with sqlite3.connect(db_file) as conn:  # a layout this version does not know
        conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
        conn.execute("ALTER TABLE documents RENAME TO documents_v3")
    conn.close()
    newer = r"newer semrank \(index schema 3;.*install the newer"
    with pytest.raises(IndexVersionError, match=newer) as e:
        open_index("pets", home=tmp_path)
    assert http_status_for(e.value) == 409
    with sqlite3.connect(db_file) as conn:
        stored = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    conn.close()
    assert stored == ("3",)
    assert sorted(tables) == [("documents_v3",), ("meta",)]  # no table of this version added
    drop_index("pets", home=tmp_path)  # a newer index can still be dropped
    assert list_indexes(tmp_path) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"layout": 2}, "layout"),  # a setting a newer semrank added
        ({"bm25": {"lowercase": False}}, "bm25.lowercase"),
        ({"bm25": {"analysis": 9}}, "bm25.analysis 9"),  # a newer analysis of the texts
    ],
)
def test_settings_a_newer_semrank_wrote_are_refused_not_dropped(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    # Read without them, the index would be searched (and written) as it was not built.
    with create_index("pets", home=tmp_path, embedding_model=None) as index:
        index.upsert(DOCS)
    db_file = tmp_path / "pets" / "documents.sqlite"
    with sqlite3.connect(db_file) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key='settings'").fetchone()
        settings = json.loads(row[0])
        for key, value in change.items():
            settings[key] = {**settings[key], **value} if isinstance(value, dict) else value
        conn.execute("UPDATE meta SET value=? WHERE key='settings'", (json.dumps(settings),))
    conn.close()
    before = db_file.read_bytes()
    newer = rf"newer semrank .*{named}.*checkout or wheel: pip install -U \.\)"
    with pytest.raises(IndexVersionError, match=newer) as e:
        open_index("pets", home=tmp_path)
    assert http_status_for(e.value) == 409
    assert db_file.read_bytes() == before


def test_a_cross_encoder_is_refused_as_an_embedding_model(tmp_path: Path) -> None:
    """Its encoder's pooled states ranked SciFact at MRR@10 0.09 (the bi-encoder: 0.91), and
    the index was made without a word; the blend folder was refused already."""
    from semrank.models import resolve, resolve_embedding_model

    cross_encoder = Path(resolve("semrank-minilm-l6").path) / "cross-encoder"
    for model in (str(cross_encoder), "semrank-minilm-l6"):
        with pytest.raises(InvalidInputError, match=r"embedding model .* is a|is a blend") as e:
            create_index("ce", home=tmp_path, embedding_model=model)
        assert "all-minilm-l6-v2" in str(e.value)
    # As current sentence-transformers saves a CrossEncoder: with its own files beside it.
    st_cross_encoder = tmp_path / "st-cross-encoder"
    shutil.copytree(cross_encoder, st_cross_encoder)
    (st_cross_encoder / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]'
    )
    (st_cross_encoder / "sentence_bert_config.json").write_text(
        '{"transformer_task": "sequence-classification"}'
    )
    with pytest.raises(InvalidInputError, match="is a cross-encoder"):
        create_index("ce", home=tmp_path, embedding_model=str(st_cross_encoder))
    # An architecture the index's embedder (ONNX Runtime / OpenVINO) cannot run: refused before
    # the index is made (it was made, then every write failed naming a torch backend the
    # index cannot use).
    distil = shutil.copytree(resolve_embedding_model().path, tmp_path / "distil")
    config = json.loads((distil / "config.json").read_text())
    (distil / "config.json").write_text(
        json.dumps({**config, "architectures": ["DistilBertModel"]})
    )
    with pytest.raises(
        InvalidInputError, match="architecture DistilBertModel, which an index"
    ) as e:
        create_index("d", home=tmp_path, embedding_model=str(distil))
    assert "BertModel, BertForMaskedLM" in str(e.value)  # what it can embed with, all of it
    assert list_indexes(tmp_path) == []
    with create_index("bi", home=tmp_path, embedding_model="all-minilm-l6-v2") as index:
        assert index.info().settings.embedding_model == "all-minilm-l6-v2"


def test_bi_encoder_saved_with_its_masked_lm_architecture_embeds_an_index(tmp_path: Path) -> None:
    """A sentence-transformers folder whose config.json names the pre-training class (as
    all-distilroberta-v1's does) embeds on ONNX Runtime / OpenVINO like its encoder: it was
    refused as an architecture only the torch backend runs."""
    from semrank.models import resolve_embedding_model

    masked = shutil.copytree(resolve_embedding_model().path, tmp_path / "masked")
    config = json.loads((masked / "config.json").read_text())
    (masked / "config.json").write_text(
        json.dumps({**config, "architectures": ["BertForMaskedLM"]})
    )
    found = {}
    for name, model in [("plain", "all-minilm-l6-v2"), ("masked", str(masked))]:
        with create_index(name, home=tmp_path / "home", embedding_model=model) as index:
            index.upsert(DOCS)
            query = index.embed_queries(["a pet that chases sticks"])[0]
            hits = index.search_vector(query, k=3)
            found[name] = (hits.ids.tolist(), hits.scores)
    assert found["masked"][0] == found["plain"][0]
    np.testing.assert_allclose(found["masked"][1], found["plain"][1], atol=1e-6)


def test_upsert_replaces_and_delete_removes(tmp_path: Path) -> None:
    index = create_index("pets", home=tmp_path, embedding_model=None)
    index.upsert(DOCS)
    generation = index.generation
    index.upsert([{"id": "dog", "title": "Dogs", "text": "Puppies chase a frisbee."}])
    assert len(index) == 3
    assert index.search_bm25("frisbee", k=3).ids.tolist() == ["dog"]
    assert index.search_bm25("sticks", k=3).ids.tolist() == []
    assert index.generation == generation + 1
    # An unchanged document is not rewritten: no new generation, nothing to rebuild.
    index.upsert([{"id": "dog", "title": "Dogs", "text": "Puppies chase a frisbee."}])
    assert index.generation == generation + 1
    assert index.delete(["cat", "missing"]) == 1
    assert index.get(["cat"]) == [None]
    assert index.search_bm25("cat", k=3).ids.tolist() == []
    assert len(index) == 2
    index.close()


def test_a_slow_bm25_build_is_logged_naming_the_index_and_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each write to an embedded index builds its BM25 again, and its searches wait: at
    500,000 documents a write stalled searches for minutes with nothing in the log."""
    from semrank.store import _local

    index = create_index("pets", home=tmp_path, embedding_model=None)
    index.upsert(DOCS)
    with caplog.at_level(logging.WARNING, logger="semrank.store"):
        index.search_bm25("cat", k=1)  # fast: nothing said
        assert not caplog.records
        monkeypatch.setattr(_local, "SLOW_BUILD_S", 0.0)
        for text in ("Puppies chase a frisbee.", "Puppies chase a ball."):
            index.upsert([{"id": "dog", "title": "Dogs", "text": text}])
            index.search_bm25("cat", k=1)
    (record,) = caplog.records  # once per index, not once per write
    assert "index 'pets': building its BM25 search files took" in record.getMessage()
    assert "(3 documents)" in record.getMessage() and "PostgreSQL (--store)" in record.getMessage()
    index.close()


def test_a_bm25_index_built_after_a_write_is_searched_memory_mapped(tmp_path: Path) -> None:
    """As an index opened later is: the one built stayed in memory while the handle was open
    (130 MB at 200,000 documents, in a server after each write)."""
    index = create_index("pets", home=tmp_path, embedding_model=None)
    index.upsert(DOCS)
    index.upsert([{"id": "dog", "title": "Dogs", "text": "Puppies chase a frisbee."}])
    assert index.search_bm25("frisbee", k=1).ids.tolist() == ["dog"]
    (loaded,) = (held for key, held in index._cache.items() if key.startswith("bm25:"))
    assert isinstance(loaded.index._retriever.scores["data"], np.memmap)
    index.close()


def test_an_id_given_twice_in_one_upsert_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    index = create_index("pets", home=tmp_path, embedding_model=None)
    batch = [
        {"id": "y", "title": "kept", "text": "apart"},
        {"id": "x", "title": "one", "text": "first"},
        {"id": "x", "title": "two", "text": "second"},
    ]
    with pytest.raises(DataFormatError, match="record 3 repeats the id 'x' of record 2"):
        index.upsert(batch, batch_size=1)
    assert len(index) == 0  # a list is checked whole first, even across batches
    index.upsert(batch[:2])
    index.upsert(batch[2:])  # across upserts, a repeated id replaces, as upsert says
    assert index.get(["x", "y"]) == [
        {"title": "two", "text": "second"},
        {"title": "kept", "text": "apart"},
    ]


def test_a_record_without_any_text_field_is_refused(tmp_path: Path) -> None:
    index = create_index("pets", home=tmp_path, embedding_model=None, fields=["title", "text"])
    with pytest.raises(
        DataFormatError,
        match=r"record 2 \(id 'b'\) has none of the index's "
        r"text fields title, text \(it has: body\)",
    ):
        index.upsert([{"id": "a", "text": "fine"}, {"id": "b", "body": "lost"}])
    assert len(index) == 0
    index.upsert([{"id": "a", "text": "fine", "title": None}, {"id": "c", "title": ""}])
    assert len(index) == 2  # one present field is enough, even an empty one


def test_create_open_drop_errors(tmp_path: Path) -> None:
    create_index("pets", home=tmp_path, embedding_model=None).close()
    with pytest.raises(IndexExistsError):
        create_index("pets", home=tmp_path, embedding_model=None)
    with pytest.raises(IndexNotFoundError, match="pets"):
        open_index("other", home=tmp_path)
    with pytest.raises(InvalidInputError, match="invalid index name"):
        create_index("../evil", home=tmp_path)
    drop_index("pets", home=tmp_path)
    assert list_indexes(tmp_path) == []
    with pytest.raises(IndexNotFoundError):
        drop_index("pets", home=tmp_path)


@pytest.mark.parametrize(("umask", "mode"), [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_index_files_get_the_permissions_of_the_umask(
    tmp_path: Path, umask: int, mode: int
) -> None:
    """SQLite made documents.sqlite 0644 whatever the umask (and its -wal/-shm take that mode):
    in a folder a group shares (setgid, umask 002) the other members could not add to an index,
    and a member's search left -wal/-shm files its creator could then not write either."""
    previous = os.umask(umask)
    try:
        create_index("shared", home=tmp_path, embedding_model=None).close()
        with open_index("shared", home=tmp_path) as index:
            index.upsert(DOCS)
            files = [tmp_path / "shared" / f"documents.sqlite{end}" for end in ("", "-wal", "-shm")]
            assert {path.name: path.stat().st_mode & 0o777 for path in files} == {
                path.name: mode for path in files
            }
    finally:
        os.umask(previous)


@contextlib.contextmanager
def _acting_as(uid: int) -> Iterator[None]:
    """Files opened, made and deleted as user id ``uid`` (and its group) for the block; root
    (the real user id) takes itself back after."""
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_a_drop_that_cannot_delete_files_root_wrote_says_where_they_are_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`sudo semrank index add` wrote root's search files into a user's index: that user's drop
    said "dropped" and left them (and their space) in a hidden folder for good, unsaid."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root, to write as root and drop as another user")
    nobody = 65534
    home = Path(tempfile.mkdtemp(prefix="semrank-drop-"))  # not under root's 0700 tmp_path
    try:
        with create_index("pets", home=home, embedding_model=None) as index:
            index.upsert(DOCS)
            index.search_bm25("cat", k=1)  # its search files, in derived/<snapshot>/
        for folder, _, files in os.walk(home):
            for entry in (folder, *(os.path.join(folder, file) for file in files)):
                if len(Path(entry).relative_to(home).parts) <= 2:  # but for the snapshots
                    os.chown(entry, nobody, nobody)
        assert [p.owner() for p in (home / "pets" / "derived").iterdir()] == ["root"]
        with _acting_as(nobody):
            drop_index("pets", home=home)
        assert not (home / "pets").exists()
        (left,) = [entry for entry in home.iterdir() if entry.name.endswith(".trash")]
        assert (
            "index 'pets' is dropped, but some of its files could not be deleted (owned by "
            f"root); they are left in {left}"
        ) in caplog.text
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_an_index_file_another_user_made_read_only_is_named_with_the_fix() -> None:
    """A group's shared index made 0644 by its creator (by semrank before it followed the
    umask): another member was told to check that they "may write there", a folder they could
    write, instead of which file was whose, and how to share it."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root, to make the index as one user and open it as another")
    home = Path(tempfile.mkdtemp(prefix="semrank-shared-"))  # not under root's 0700 tmp_path
    try:
        with create_index("pets", home=home, embedding_model=None) as index:
            index.upsert(DOCS)
        for folder in (home, home / "pets"):
            folder.chmod(0o777)  # the folders are shared, the database is not
        database = home / "pets" / "documents.sqlite"
        database.chmod(0o644)
        with (
            _acting_as(65534),
            pytest.raises(StorageError) as raised,
            open_index("pets", home=home) as index,
        ):
            index.upsert([{"id": "new", "text": "a new document"}])
        assert (
            f"{database} may not be written by this user (owned by root, mode 644); run semrank "
            f"as root, or where a group shares the index have root let it write them: chmod g+w "
            f"{database}"
        ) in str(raised.value)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_drop_in_a_home_this_user_may_not_change_names_its_owner() -> None:
    """A home `sudo semrank index create` made root's: the user's drop failed with a raw
    "[Errno 13] Permission denied: 'a' -> 'b'" naming no fix."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root, to make the home as one user and drop as another")
    home = Path(tempfile.mkdtemp(prefix="semrank-home-"))  # not under root's 0700 tmp_path
    try:
        home.chmod(0o755)
        create_index("pets", home=home, embedding_model=None).close()
        with _acting_as(65534), pytest.raises(StorageError) as raised:
            drop_index("pets", home=home)
        assert str(raised.value) == (
            f"index 'pets' cannot be dropped: this user may not change {home} (Permission "
            "denied; it is owned by root); drop it as root, or let this user write that folder"
        )
        assert list_indexes(home) == ["pets"]
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("trigger", ["list", "create", "drop"])
def test_what_killed_creates_and_drops_leave_is_cleaned_up(tmp_path: Path, trigger: str) -> None:
    create_index("kept", home=tmp_path, embedding_model=None).close()
    hexes = iter(f"{i:032x}" for i in range(4))
    trash, old_tmp, new_tmp = (
        tmp_path / f".x.{next(hexes)}.{end}" for end in ("trash", "tmp", "tmp")
    )
    mine = tmp_path / ".not-ours"  # hidden, but no name a create or drop gives
    for folder in (trash, old_tmp, new_tmp, mine):
        (folder / "derived").mkdir(parents=True)
        (folder / "documents.sqlite").write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(old_tmp, (two_hours_ago, two_hours_ago))
    if trigger == "list":
        assert list_indexes(tmp_path) == ["kept"]
    elif trigger == "create":
        create_index("other", home=tmp_path, embedding_model=None).close()
    else:
        drop_index("kept", home=tmp_path)
    # A drop's folder goes at once; a create's staging folder once an hour old (a create
    # younger than that may still be filling it).
    assert not trash.exists() and not old_tmp.exists()
    assert new_tmp.is_dir() and mine.is_dir()


def test_a_folder_without_documents_is_named_alike_by_create_open_and_drop(
    tmp_path: Path,
) -> None:
    create_index("rest", home=tmp_path, embedding_model=None).close()
    for file in (tmp_path / "rest").glob("documents.sqlite*"):
        file.unlink()  # a partial copy or restore: index.json is left
    leftovers = r"rest has no documents\.sqlite, and nothing but files an index keeps beside it"
    with pytest.raises(IndexExistsError, match=rf"cannot create index 'rest': .*{leftovers}"):
        create_index("rest", home=tmp_path, embedding_model=None)
    with pytest.raises(IndexNotFoundError, match=rf"{leftovers}.*`semrank index drop rest`"):
        open_index("rest", home=tmp_path)
    drop_index("rest", home=tmp_path)  # removes what is of no use without the documents
    assert not (tmp_path / "rest").exists()
    create_index("rest", home=tmp_path, embedding_model=None).close()

    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    theirs = r"notes is a folder with other files, not an index .*move or remove it by hand"
    with pytest.raises(IndexExistsError, match=theirs):
        create_index("notes", home=tmp_path, embedding_model=None)
    for call in (open_index, drop_index):
        with pytest.raises(IndexNotFoundError, match=theirs):
            call("notes", home=tmp_path)
    assert (other / "todo.txt").read_text() == "mine"  # never deleted
    (other / "todo.txt").unlink()
    create_index("notes", home=tmp_path, embedding_model=None).close()  # an empty folder is free
    assert list_indexes(tmp_path) == ["notes", "rest"]


def test_a_lone_string_of_ids_deletes_nothing(tmp_path: Path) -> None:
    index = create_index("digits", home=tmp_path, embedding_model=None)
    index.upsert([{"id": "1", "text": "one"}, {"id": "2", "text": "two"}])
    with pytest.raises(InvalidInputError, match=r"got str \('12'\); wrap a single id"):
        index.delete("12")
    with pytest.raises(InvalidInputError, match="ids must be a list"):
        index.get("12")
    assert len(index) == 2


def test_a_dropped_index_handle_refuses_reads_and_writes(tmp_path: Path) -> None:
    index = create_index("pets", home=tmp_path, embedding_model=None)
    index.upsert(DOCS)
    assert index.search_bm25("cat", k=3).ids.tolist() == ["cat"]  # cached from here on
    drop_index("pets", home=tmp_path)
    for call in (
        lambda: index.search_bm25("cat", k=3),
        lambda: index.upsert(DOCS),
        lambda: index.get(["cat"]),
        lambda: len(index),
    ):
        with pytest.raises(IndexNotFoundError, match="'pets' was dropped since it was opened") as e:
            call()
        # An HTTP client is told its own fix, not the Python API's open_index().
        assert "POST /v1/indexes" in str(e.value.client_message)
    create_index("pets", home=tmp_path, embedding_model=None).close()
    with pytest.raises(IndexNotFoundError, match="was dropped"):
        index.upsert(DOCS)  # the name is back, but as a new, different index
    index.close()
    with pytest.raises(InvalidInputError, match="'pets' is closed"):
        index.search_bm25("cat", k=3)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda ix: ix.upsert("cat"), InvalidInputError, "documents must be a list"),
        (lambda ix: ix.upsert(DOCS[0]), InvalidInputError, "got dict"),
        (lambda ix: ix.upsert([None]), DataFormatError, "record 1 is a NoneType"),
        (lambda ix: ix.upsert(DOCS, batch_size="2"), InvalidInputError, "batch_size must be"),
        (lambda ix: ix.search_bm25(None, k=3), InvalidInputError, "query must be a string"),
        (lambda ix: ix.search_bm25("cat", k=0), InvalidInputError, "k must be a positive"),
        (lambda ix: ix.search_bm25("cat", k=None), InvalidInputError, "k must be a positive"),
        (
            lambda ix: ix.search_bm25_fields("cat", k=3, fields=[]),
            InvalidInputError,
            "fields must be a non-empty list",
        ),
        (
            lambda ix: ix.search_bm25_fields("cat", k=3, fields=[("title", float("nan"))]),
            InvalidInputError,
            "boost of field 'title' must be a finite number from 0 to 1e+06, got nan",
        ),
        (
            lambda ix: ix.search_bm25_fields("cat", k=3, fields=[("title", 1e308)]),
            InvalidInputError,
            "boost of field 'title' must be a finite number from 0 to 1e+06, got 1e+308",
        ),
        (
            lambda ix: ix.search_bm25_fields("cat", k=3, fields=[("title",)]),
            InvalidInputError,
            "each of fields must be a (field, boost) pair",
        ),
    ],
)
def test_bad_index_calls_are_named(tmp_path: Path, call, error, message) -> None:
    index = create_index("pets", home=tmp_path, embedding_model=None)
    index.upsert(DOCS)
    with pytest.raises(error, match=re.escape(message)):
        call(index)
    assert len(index) == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fields": [5]}, "text fields must be non-empty field names"),
        ({"fields": ["title", "*"]}, "which searches use for all text fields together"),
        ({"embedding_max_length": 0}, "embedding_max_length must be a positive integer"),
        ({"ann_threshold": -1}, "ann_threshold must be an integer >= 0"),
    ],
)
def test_bad_index_settings_are_named(tmp_path: Path, options, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        create_index("pets", home=tmp_path, embedding_model=None, **options)
    with pytest.raises(InvalidInputError, match="invalid index name None"):
        create_index(None, home=tmp_path)  # type: ignore[arg-type]


def test_a_single_text_field_string_is_one_field(tmp_path: Path) -> None:
    index = create_index("pets", home=tmp_path, embedding_model=None, fields="title")
    assert index.settings.text_fields == ("title",)


def test_home_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMRANK_HOME", str(tmp_path / "h"))
    assert default_home() == tmp_path / "h"
    create_index("env", embedding_model=None).close()
    assert (tmp_path / "h" / "env" / "documents.sqlite").is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="Windows reads USERPROFILE, not HOME")
def test_an_empty_home_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """`HOME= semrank index list` looked in /.local/share/semrank (Python reads HOME="" as /),
    where an empty SEMRANK_HOME or XDG_DATA_HOME counts as unset: an empty HOME does too."""
    for variable in ("SEMRANK_HOME", "XDG_DATA_HOME", "HOME"):
        monkeypatch.delenv(variable, raising=False)
    unset = default_home()
    monkeypatch.setenv("HOME", "")
    assert default_home() == unset


def test_search_on_an_unknown_field_names_the_known_ones(tmp_path: Path) -> None:
    index = create_index("pets", home=tmp_path, embedding_model=None)
    index.upsert(DOCS)
    assert index.search_bm25("eclipse", k=2, field="title").ids.tolist() == ["sun"]
    with pytest.raises(InvalidInputError, match="title"):
        index.search_bm25("x", k=2, field="colour")


def test_stale_snapshots_are_rebuilt_and_partial_ones_ignored(tmp_path: Path) -> None:
    writer = create_index("pets", home=tmp_path, embedding_model=None)
    writer.upsert(DOCS)
    reader = open_index("pets", home=tmp_path)
    assert reader.search_bm25("frisbee", k=1).ids.tolist() == []
    # A crashed snapshot writer leaves a temporary directory: readers never use it.
    junk = writer.path / "derived" / ".tmp-bm25-all-deadbeef"
    junk.mkdir()
    (junk / "data.csc.index.npy").write_bytes(b"garbage")
    writer.upsert([{"id": "new", "title": "Frisbee", "text": "A frisbee flies."}], refresh=False)
    # The reader sees a newer generation than its snapshot and catches up.
    assert reader.search_bm25("frisbee", k=1).ids.tolist() == ["new"]
    published = sorted(
        p.name for p in (writer.path / "derived").iterdir() if not p.name.startswith(".")
    )
    assert published == [f"bm25-all.g{reader.generation}"]


def test_leftovers_stamped_in_the_future_are_removed_an_hour_after_they_are_seen(
    tmp_path: Path,
) -> None:
    """A killed writer's temporaries stamped a year ahead (its clock ran ahead, or an NFS
    server's does) were never an hour old, so never removed: a snapshot's worth of disk each."""
    with create_index("pets", home=tmp_path, embedding_model=None) as index:
        snapshot = index.path / "derived" / ".tmp-bm25-all-deadbeef"
    staging = tmp_path / f".other.{'0' * 32}.tmp"  # a killed create's
    for leftover in (snapshot, staging):
        leftover.mkdir(parents=True)
        ahead = time.time() + 365 * 86400
        os.utime(leftover, (ahead, ahead))
    open_index("pets", home=tmp_path).close()  # cleans the index's temporaries
    create_index("more", home=tmp_path, embedding_model=None).close()  # and the home's
    for leftover in (snapshot, staging):
        assert leftover.stat().st_mtime <= time.time()  # ages from now on
        an_hour_ago = time.time() - 3600 - 60
        os.utime(leftover, (an_hour_ago, an_hour_ago))
    open_index("pets", home=tmp_path).close()
    create_index("most", home=tmp_path, embedding_model=None).close()
    assert not snapshot.exists() and not staging.exists()


def _write_jsonl_gz(path: Path, records: list[dict]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


def test_read_corpus_detects_beir(tmp_path: Path) -> None:
    records = [{"_id": "d1", "title": "T", "text": "body", "metadata": {}}]
    _write_jsonl_gz(tmp_path / "corpus.jsonl.gz", records)
    corpus = read_corpus(tmp_path)
    assert corpus.is_beir and corpus.id_field == "_id" and corpus.text_fields == ("title", "text")
    assert [(d.id, d.fields["text"]) for d in corpus] == [("d1", "body")]
    assert corpus.count() == 1


def test_text_fields_are_found_past_a_first_record_without_them(tmp_path: Path) -> None:
    """Detection read the first record only: a null title there left every title unindexed."""
    records = [
        {"id": "1", "title": None, "text": "no title here"},
        {"id": "2", "title": "Fleas", "text": "they bite", "year": 2020},
        {"id": "3", "text": "x", "summary": "a later field"},
    ]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    corpus = read_corpus(tmp_path / "c.jsonl")
    assert corpus.text_fields == ("title", "text", "summary")  # as the records name them
    index = create_index(
        "late", home=tmp_path / "home", fields=corpus.text_fields, embedding_model=None
    )
    index.upsert(corpus)
    assert index.search_bm25("fleas", k=3).ids.tolist() == ["2"]


def test_read_corpus_json_csv_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps([{"name": "a", "plot": "x", "year": 1999}]))
    corpus = read_corpus(tmp_path / "m.json")
    assert corpus.id_field is None and corpus.text_fields == ("name", "plot")
    assert [d.id for d in corpus] == ["1"]
    with (tmp_path / "d.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["key", "body", "note"])
        writer.writeheader()
        writer.writerow({"key": "k1", "body": "multi\nline", "note": "n"})
    corpus = read_corpus(tmp_path / "d.csv", id_field="key", fields=["body"])
    assert [(d.id, d.fields["body"]) for d in corpus] == [("k1", "multi\nline")]
    assert corpus.count() == 1
    with pytest.raises(DataFormatError, match="--id-field"):
        read_corpus(tmp_path / "d.csv", id_field="nope")
    with pytest.raises(DataFormatError, match="none of the text fields nope; it has: key, body"):
        read_corpus(tmp_path / "d.csv", fields=["nope"])
    (tmp_path / "bad.jsonl").write_text('{"id": 1, "text": "a"}\nnot json\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2"):
        list(read_corpus(tmp_path / "bad.jsonl", fields=["text"]))


def test_upsert_warns_of_text_in_fields_the_index_does_not_search(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A notebook's ``create_index("movies")`` then ``upsert(read_corpus("movies.json"))``: the
    index searches title and text, the file's text is in overview and director, and a search
    for it found nothing while nothing said why. Said once, naming the fields and the create
    option that chooses them."""
    path = tmp_path / "movies.json"
    movies = [
        {"title": "Interstellar", "overview": "explorers pass a wormhole", "director": "Nolan"},
        {"title": "Minions", "overview": "a super-villain plot", "director": "Balda", "year": 2015},
    ]
    path.write_text(json.dumps(movies))
    index = create_index("movies", home=tmp_path / "home", embedding_model=None)
    with caplog.at_level(logging.WARNING, logger="semrank.store"):
        assert index.upsert(read_corpus(path)) == 2
    (record,) = caplog.records
    said = record.getMessage()
    assert "hold text in overview, which index 'movies' keeps but does not" in said
    assert "(its text fields: title, text)" in said and "create_index(..., fields=[" in said
    assert index.search_bm25("wormhole", k=5).ids.tolist() == []  # what the warning is about
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="semrank.store"):
        counts = index.upsert_counted([{"id": "3", "title": "Up", "overview": "a house flies"}])
        assert index.upsert([{"id": "4", "title": "Cars", "director": "Lasseter"}]) == 1
    assert counts.unread_fields == () and not caplog.records  # said once, not every write


def test_upsert_of_documents_with_the_text_fields_says_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index = create_index("notes", home=tmp_path / "home", embedding_model=None)
    documents = [  # keywords kept to filter on (a tenant, a language, a date) are not text
        {"id": "1", "title": "Fleas", "text": "small insects", "year": 2020, "tags": ["a"],
         "tenant": "acme", "lang": "en", "date": "2024-03-01", "author": "Ada Lovelace"},
        {"id": "2", "text": "Paris is in France", "score": 0.5, "meta": {"url": "x"}},
    ]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="semrank.store"):
        assert index.upsert(documents) == 2
        assert index.upsert_counted(documents).unread_fields == ()
    assert not caplog.records
    assert index.search_bm25("insects", k=1).ids.tolist() == ["1"]


@pytest.mark.parametrize("header_form", ["NFD", "NFC"])
def test_field_names_match_a_header_whether_composed_or_decomposed(
    tmp_path: Path, header_form: str
) -> None:
    """A CSV header saved decomposed (macOS tools write "re\u0301sume\u0301") and fields named
    as typed (composed), or the reverse: the records were refused as having no text field, the
    id column was not found, and a search on the field was told there was no such field. The
    documents keep their own spelling."""
    header, named = (unicodedata.normalize(f, "clé résumé").split() for f in (header_form, "NFC"))
    if header_form == "NFC":
        named = [unicodedata.normalize("NFD", name) for name in named]
    path = tmp_path / "people.csv"
    path.write_text(f"{header[0]},{header[1]}\nada,gardener and botanist\nbob,plumber\n", "utf-8")
    corpus = read_corpus(path, id_field=named[0], fields=[named[1]])
    index = create_index(
        "people", home=tmp_path / "home", fields=[named[1]], id_field=named[0], embedding_model=None
    )
    counts = index.upsert_counted(corpus)
    assert (counts.documents, counts.unread_fields) == (2, ())  # the header's spelling is read
    assert index.search_bm25("botanist", k=1).ids.tolist() == ["ada"]
    assert index.search_bm25("botanist", k=1, field=named[1]).ids.tolist() == ["ada"]
    (stored,) = index.get(["ada"])
    assert stored == {header[1]: "gardener and botanist"}
    assert index.rerank_text_of(stored, named[1]) == "gardener and botanist"
    assert index.upsert([{named[0]: "cy", header[1]: "botanist too"}]) == 1


def test_ingest_a_corpus_into_an_index(tmp_path: Path) -> None:
    _write_jsonl_gz(
        tmp_path / "corpus.jsonl.gz",
        [{"_id": d["id"], "title": d["title"], "text": d["text"]} for d in DOCS],
    )
    corpus = read_corpus(tmp_path / "corpus.jsonl.gz")
    index = create_index(
        "beir",
        home=tmp_path / "home",
        fields=corpus.text_fields,
        id_field=corpus.id_field,
        embedding_model=None,
    )
    seen: list[int] = []
    assert index.upsert(corpus, batch_size=2, progress=seen.append) == 3
    assert seen == [2, 1]
    assert index.search_bm25("solar eclipse", k=1).ids.tolist() == ["sun"]


def test_vectors_switch_to_hnsw_past_the_threshold_and_persist(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from semrank.store import _local

    monkeypatch.setattr(_local, "GRAPH_VECTORS_PER_S", 0.05)  # 3 vectors: a minute's build
    index = create_index("ann", home=tmp_path, ann_threshold=3)
    index.upsert(DOCS)
    with caplog.at_level(logging.WARNING, logger="semrank.store"):
        info = index.info()
    # Minutes for a large index, behind one line on the screen: said before it runs.
    assert [r.getMessage() for r in caplog.records] == [
        "index 'ann': building its vector search graph from 3 vectors, about 1 min on one core "
        "(searches of the index wait meanwhile); later writes update it in place"
    ]
    assert info.vector_search == "hnsw" and info.embedding_dim == 384
    snapshot = tmp_path / "ann" / "derived" / f"vectors.g{index.generation}"
    assert (snapshot / "hnsw.usearch").is_file() and (snapshot / "keys.npy").is_file()
    vector = index.embed_queries(["when does the moon cover the sun"])[0]
    fresh = index.search_vector(vector, k=3)
    index.close()
    with open_index("ann", home=tmp_path) as reopened:  # loads the published graph from disk
        loaded = reopened.search_vector(vector, k=3)
    assert loaded.ids.tolist() == fresh.ids.tolist() and loaded.ids[0] == "sun"


TOPICS = [
    "the moon covers the sun in a solar eclipse",
    "volcanoes erupt molten rock called lava",
    "penguins live in the cold of antarctica",
    "the violin has four strings and a bow",
    "bread rises because yeast makes gas",
    "glaciers carve valleys over thousands of years",
    "honey bees dance to show where flowers are",
    "chess openings control the centre of the board",
]


def _vector_snapshot(index: Any) -> dict[str, Any]:
    folder = index.path / "derived" / f"vectors.g{index.generation}"
    return dict(json.loads((folder / "snapshot.json").read_text("utf-8")))


def _best(index: Any, query: str, k: int = 3) -> list[str]:
    return index.search_vector(index.embed_queries([query])[0], k=k).ids.tolist()


def _exact_best(index: Any, query: str, k: int) -> list[str]:
    """The ``k`` nearest documents by brute force over freshly embedded texts."""
    ids = [str(i) for i in index.document_ids()]
    texts = {i: doc["text"] for i, doc in zip(ids, index.get(ids), strict=True)}
    ids = [i for i in ids if texts[i].strip()]
    matrix = index.embedder.embed([texts[i] for i in ids])
    scores = matrix @ index.embed_queries([query])[0]
    return [ids[n] for n in np.argsort(-scores, kind="stable")[:k]]


def _topics(count: int) -> list[dict[str, str]]:
    return [{"id": f"t{n}", "text": f"{TOPICS[n % 8]} (item {n})"} for n in range(count)]


def test_writes_update_the_hnsw_graph_in_place(tmp_path: Path) -> None:
    """A write into an index past the ANN threshold built the whole graph again (135 s for one
    document into 30k); the graph is now updated by the rows written since it was saved, and
    answers as exact search over the documents does."""
    index = create_index("grow", home=tmp_path, ann_threshold=4)
    index.upsert(_topics(40))
    assert _best(index, "lava from a volcano") == _exact_best(index, "lava from a volcano", 3)
    assert _vector_snapshot(index)["removed"] == 0  # built
    index.upsert(
        [
            {"id": "t1", "text": "a recipe for sourdough bread with a long rise"},  # rewritten
            {"id": "new", "text": "an active volcano spews lava and ash"},  # added
            {"id": "t2", "text": "   "},  # emptied: no longer searched by vector
        ]
    )
    index.delete(["t3"])
    for query in ("lava from a volcano", "baking bread with yeast", "cold birds"):
        assert _best(index, query, k=10) == _exact_best(index, query, 10)
    meta = _vector_snapshot(index)
    assert meta["search"] == "hnsw" and meta["removed"] == 3  # t1, t2, t3 left the graph
    assert meta["count"] == 39 and len(_best(index, "anything", k=100)) == 39
    index.close()
    with open_index("grow", home=tmp_path) as reopened:  # the updated graph as saved
        assert _best(reopened, "lava from a volcano", k=10)[0] == "new"


def test_a_graph_whose_keys_claim_petabytes_is_built_again(tmp_path: Path) -> None:
    """The graph's keys.npy was read in full by the update after a write: a (copied) index
    whose header claimed petabytes failed every write and vector search with a MemoryError."""
    index = create_index("huge", home=tmp_path, ann_threshold=4)
    index.upsert(_topics(12))
    (saved,) = (index.path / "derived").glob("vectors.g*")
    _claiming_petabytes(saved / "keys.npy")
    index.upsert([{"id": "new", "text": "an active volcano spews lava and ash"}])
    assert _best(index, "lava from a volcano", k=5) == _exact_best(index, "lava from a volcano", 5)


def test_a_graph_saved_before_serial_builds_is_built_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Graphs saved by earlier versions were built by concurrent adds, which can leave
    documents unreachable: they are not loaded or updated but built again, once."""
    index = create_index("old", home=tmp_path, ann_threshold=4)
    index.upsert(_topics(40))
    _best(index, "anything")
    folder = index.path / "derived" / f"vectors.g{index.generation}"
    meta = _vector_snapshot(index)
    assert meta["graph"] == "serial"
    del meta["graph"]
    (folder / "snapshot.json").write_text(json.dumps(meta), "utf-8")
    index.close()
    with (
        open_index("old", home=tmp_path) as reopened,
        caplog.at_level(logging.WARNING, logger="semrank"),
    ):
        assert _best(reopened, "lava from a volcano") == _exact_best(
            reopened, "lava from a volcano", 3
        )
        assert _vector_snapshot(reopened)["graph"] == "serial"  # built again and saved
        assert "its vector graph was saved by an earlier semrank" in caplog.text
        reopened.upsert([{"id": "new", "text": "an active volcano spews lava and ash"}])
        assert _best(reopened, "lava from a volcano")[0] == "new"
        assert _vector_snapshot(reopened)["graph"] == "serial"


def test_bm25_files_an_earlier_semrank_saved_are_not_searched_with_another_analysis(
    tmp_path: Path,
) -> None:
    """An earlier semrank writing to an index made by this one saved BM25 files of its own
    analysis (no combining marks kept); they were loaded and searched with this one's: a
    Hindi word found nothing until the next write."""
    index = create_index("mixed", home=tmp_path, embedding_model=None)
    index.upsert([{"id": "hi", "text": "नई दिल्ली भारत की राजधानी है"}, {"id": "en", "text": "cats"}])
    assert index.search_bm25("दिल्ली", k=2).ids.tolist() == ["hi"]
    folder = index.path / "derived" / f"bm25-all.g{index.generation}"
    meta = json.loads((folder / "snapshot.json").read_text("utf-8"))
    earlier = BM25Index.build(["नई दिल्ली भारत की राजधानी है", "cats"], BM25Params(analysis=1))
    earlier.save(folder)  # the files the earlier version wrote, for the same documents
    del meta["bm25"]["analysis"]
    (folder / "snapshot.json").write_text(json.dumps(meta), "utf-8")
    index.close()
    with open_index("mixed", home=tmp_path) as reopened:
        assert reopened.search_bm25("दिल्ली", k=2).ids.tolist() == ["hi"]


def test_a_graph_from_another_history_of_the_documents_is_not_updated(tmp_path: Path) -> None:
    """A restored backup written to again reuses generation numbers: the graph saved after the
    backup was taken holds documents the restored database never had."""
    index = create_index("hist", home=tmp_path, ann_threshold=4)
    index.upsert(_topics(40))
    _best(index, "anything")
    database = index.path / "documents.sqlite"
    source, copy = sqlite3.connect(database), sqlite3.connect(tmp_path / "backup")
    source.backup(copy)
    source.close()
    copy.close()
    index.close()
    with open_index("hist", home=tmp_path) as later:
        later.upsert([{"id": "lost", "text": "an active volcano spews lava and ash"}])
        _best(later, "anything")
        later.upsert([{"id": "lost2", "text": "a volcano erupting lava at night"}])
        assert _best(later, "lava from a volcano")[0] in {"lost", "lost2"}
    for suffix in ("-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    database.write_bytes((tmp_path / "backup").read_bytes())
    with open_index("hist", home=tmp_path) as restored:
        restored.upsert([{"id": "kept", "text": "penguins huddle against antarctic wind"}])
        found = _best(restored, "lava from a volcano", k=50)
        assert "lost" not in found and "lost2" not in found and len(found) == 41
        assert _vector_snapshot(restored)["removed"] == 0  # built from the documents


def test_after_a_restore_the_lost_historys_files_go_and_writes_update_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lost history's newer snapshots stayed on disk after a restore and hid this history's
    own: every write built the graph (87 s at 30k vectors) and analysed every document again
    until the generation numbers passed the stale ones."""
    from semrank.store import _local

    index = create_index("back", home=tmp_path, ann_threshold=4)
    index.upsert(_topics(40))
    _best(index, "anything")
    database = index.path / "documents.sqlite"
    source, copy = sqlite3.connect(database), sqlite3.connect(tmp_path / "backup")
    source.backup(copy)  # as the README says: SQLite's own copy
    source.close()
    copy.close()
    for n in range(5):  # the history the restore throws away runs ahead, its files saved
        index.upsert([{"id": f"lost{n}", "text": "an active volcano spews lava and ash"}])
        _best(index, "anything")
    index.close()
    for suffix in ("-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    database.write_bytes((tmp_path / "backup").read_bytes())
    analysed: list[int] = []
    analyse = _local.DocTokens.analyse  # counted, still run

    def counted(texts: Any, params: Any) -> Any:
        texts = list(texts)  # the rows' texts come as they are read
        analysed.append(len(texts))
        return analyse(texts, params)

    monkeypatch.setattr(_local.DocTokens, "analyse", counted)
    with open_index("back", home=tmp_path) as restored:
        restored.upsert([{"id": "kept", "text": "penguins huddle against antarctic wind"}])
        _best(restored, "anything")  # built from the documents: none saved in this history
        derived = sorted(p.name for p in (restored.path / "derived").iterdir())
        generation = restored.generation
        assert derived == [f"bm25-all.g{generation}", f"vectors.g{generation}"]
        assert restored.info().derived == {"bm25-all": generation, "vectors": generation}
        analysed.clear()
        restored.upsert([{"id": "t1", "text": "a recipe for sourdough bread with a long rise"}])
        query = "baking bread with yeast"
        assert _best(restored, query, k=10) == _exact_best(restored, query, 10)
        assert _vector_snapshot(restored)["removed"] == 1  # updated in place, not built
        assert restored.search_bm25("sourdough", k=3).ids.tolist() == ["t1"]
        assert analysed == [1]  # only the row written since was analysed for BM25
        assert restored.search_bm25("spews", k=50).ids.tolist() == []  # the lost ones


def test_a_graph_with_many_rows_removed_is_built_again(tmp_path: Path) -> None:
    index = create_index("shrink", home=tmp_path, ann_threshold=4)
    index.upsert(_topics(8))
    _best(index, "anything")
    index.delete(["t0"])
    _best(index, "anything")
    assert _vector_snapshot(index)["removed"] == 1  # 1 of 7 live rows: updated in place
    index.delete(["t1", "t2"])
    assert sorted(_best(index, "anything", k=20)) == ["t3", "t4", "t5", "t6", "t7"]
    assert _vector_snapshot(index)["removed"] == 0  # 3 removed of 5 live rows: built again


def test_documents_without_text_are_kept_but_never_found_by_vector(tmp_path: Path) -> None:
    """The embedding of an empty or blank text is close to every query: such documents
    outranked the one holding the query's word in dense search."""
    index = create_index("blanks", home=tmp_path)
    index.upsert(
        [
            {"id": "e", "text": ""},
            {"id": "s", "text": "   \n\t"},
            {"id": "n", "text": "a needle in the haystack"},
            {"id": "o", "text": "fleas bite dogs"},
        ]
    )
    hits = index.search_vector(index.embed_queries(["needle"])[0], k=4)
    assert hits.ids.tolist()[0] == "n" and set(hits.ids.tolist()) == {"n", "o"}
    assert index.get(["e", "s"])[0] is not None and len(index) == 4


def test_names_and_files_refused_say_why(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"names ending in \.tmp or \.trash are kept"):
        create_index("notes.tmp", home=tmp_path)
    lines = tmp_path / "lines.json"
    lines.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n')
    index = create_index("j", home=tmp_path, embedding_model=None)
    from semrank.store import read_corpus

    with pytest.raises(DataFormatError, match=r"name the file \.jsonl"):
        index.upsert(read_corpus(lines))


def _bm25_scores(index: Any, query: str, field: str) -> list[tuple[str, float]]:
    hits = index.search_bm25(query, k=100, field=field)
    return list(zip(hits.ids.tolist(), hits.scores.tolist(), strict=True))


def _fresh_bm25_scores(index: Any, query: str, field: str) -> list[tuple[str, float]]:
    """The same search over an index built now from the stored documents' texts."""
    ids = index.document_ids()
    texts = [index.text_of(doc, field) for doc in index.get(ids)]
    hits = BM25Index.build(texts, index.settings.bm25).search(query, 100)
    return [(ids[n], s) for n, s in zip(hits.ids.tolist(), hits.scores.tolist(), strict=True)]


def test_bm25_builds_read_the_rows_a_step_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BM25 build read every row's text from SQLite before analysing any (a peak of 589 MB
    rather than 460 MB at 200,000 documents); rows are now read a step of analysis at a time, for
    a build from scratch, per field and for the rows a write touched, with the same scores."""
    from semrank.retrieve import _bm25

    monkeypatch.setattr(_bm25, "ANALYSIS_STEP", 4)
    index = create_index("steps", home=tmp_path, embedding_model=None, fields=["title", "text"])
    read, read_when_analysed = [0], []
    iter_rows, tokenize = index.db.iter_rows, _bm25._tokenize

    def counted_rows(*args: Any, **kwargs: Any) -> Iterator[tuple[Any, ...]]:
        read[0] = 0  # the rows of this query
        for row in iter_rows(*args, **kwargs):
            read[0] += 1
            yield row

    def noting_reads(texts: list[str], *args: Any, **kwargs: Any) -> Any:
        read_when_analysed.append(read[0])
        return tokenize(texts, *args, **kwargs)

    monkeypatch.setattr(index.db, "iter_rows", counted_rows)
    monkeypatch.setattr(_bm25, "_tokenize", noting_reads)
    stepped = [4, 8, 12, 16, 20, 24, 28, 30]  # rows read at each step (not 30: all first)
    index.upsert([{**doc, "title": f"topic {n % 3}"} for n, doc in enumerate(_topics(30))])
    assert read_when_analysed == stepped  # the all-fields index, built by the write
    read_when_analysed.clear()
    assert _bm25_scores(index, "lava", "title") == _fresh_bm25_scores(index, "lava", "title")
    assert read_when_analysed[: len(stepped)] == stepped  # then the query and the fresh build
    read_when_analysed.clear()
    index.upsert([{"id": f"t{n}", "title": "fire", "text": TOPICS[1]} for n in range(10)])
    assert read_when_analysed == [4, 8, 10, 4, 8, 10]  # the rows written, for each field
    for field in ("*", "title"):
        assert _bm25_scores(index, "lava", field) == _fresh_bm25_scores(index, "lava", field)
    index.close()


def test_a_write_analyses_only_the_documents_it_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BM25 was built again from every text after each write (3.7 s for one document into
    30,000, 60% of it analysis); the terms of untouched documents now come from the saved
    index, and the scores stay those of a build from the texts."""
    analysed: list[int] = []
    analyse = DocTokens.analyse.__func__  # type: ignore[attr-defined]

    def counting(cls: type[DocTokens], texts: Any, params: Any) -> DocTokens:
        texts = list(texts)  # the rows' texts come as they are read
        analysed.append(len(texts))
        return analyse(cls, texts, params)  # type: ignore[no-any-return]

    monkeypatch.setattr(DocTokens, "analyse", classmethod(counting))
    index = create_index("words", home=tmp_path, embedding_model=None)
    index.upsert(
        [{"id": f"t{n}", "title": f"topic {n % 3}", "text": TOPICS[n % 8]} for n in range(30)]
    )
    queries = ("lava from a volcano", "sourdough bread yeast", "topic 2", "the of and")
    for field in ("*", "title"):
        assert _bm25_scores(index, "lava", field) == _fresh_bm25_scores(index, "lava", field)
    analysed.clear()
    index.upsert(
        [
            {"id": "t1", "title": "baking", "text": "a recipe for sourdough bread"},  # rewritten
            {"id": "new", "title": "fire", "text": "an active volcano spews lava and ash"},
            {"id": "t2", "title": "", "text": "the and of"},  # stop words only now
        ]
    )
    index.delete(["t3", "t4"])
    index.search_bm25("warm", k=1, field="*"), index.search_bm25("warm", k=1, field="title")
    # The upsert brings both fields' indexes up to date (its three rows), the searches after the
    # delete too (no row to analyse).
    assert analysed == [3, 3, 0, 0]
    for field in ("*", "title"):
        for query in queries:
            got, fresh = _bm25_scores(index, query, field), _fresh_bm25_scores(index, query, field)
            assert [i for i, _ in got] == [i for i, _ in fresh], (field, query)
            assert [s for _, s in got] == pytest.approx([s for _, s in fresh], rel=1e-6)
    assert _bm25_scores(index, "sourdough", "*")[0][0] == "t1"
    index.close()
    analysed.clear()
    with open_index("words", home=tmp_path) as reopened:  # the saved index, analysed before
        assert _bm25_scores(reopened, "volcano lava", "*")[0][0] == "new"
        reopened.delete(["new"])
        after_delete = _bm25_scores(reopened, "volcano lava", "*")
        assert analysed == [0]  # a delete analyses nothing
        fresh = _fresh_bm25_scores(reopened, "volcano lava", "*")
        assert [i for i, _ in after_delete] == [i for i, _ in fresh] != []


def _shortened(path: Path) -> None:
    np.save(path, np.load(path)[:-2])


def _claiming_petabytes(path: Path) -> None:
    """The file's .npy header rewritten to claim 10**15 values; its data left as it was."""
    with path.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        _, _, dtype = np.lib.format.read_array_header_1_0(handle)
        assert version == (1, 0)
        data = handle.read()
    header = io.BytesIO()
    claimed = {"descr": dtype.str, "fortran_order": False, "shape": (10**15,)}
    np.lib.format.write_array_header_1_0(header, claimed)
    path.write_bytes(header.getvalue() + data)


@pytest.mark.parametrize(
    "damage",
    [
        lambda saved: (saved / "doc_terms.npy").write_bytes(b"\x93NUMPY garbage"),
        lambda saved: (saved / "doc_vocab.json").write_bytes(b"\x93NUMPY garbage"),
        lambda saved: (saved / "keys.npy").write_bytes(b"\x93NUMPY garbage"),
        # Each file readable, together inconsistent: a KeyError on every write and search.
        lambda saved: _shortened(saved / "keys.npy"),
        lambda saved: _shortened(saved / "doc_offsets.npy"),
        lambda saved: np.save(saved / "keys.npy", np.load(saved / "keys.npy").reshape(-1, 1)),
        lambda saved: (saved / "doc_vocab.json").write_text('["x"]'),
        # A header claiming petabytes: np.load allocated them, a MemoryError on every write.
        lambda saved: _claiming_petabytes(saved / "keys.npy"),
        lambda saved: _claiming_petabytes(saved / "doc_terms.npy"),
    ],
)
def test_damaged_saved_terms_mean_a_build_from_the_texts(tmp_path: Path, damage: Any) -> None:
    index = create_index("words", home=tmp_path, embedding_model=None)
    index.upsert([{"id": f"t{n}", "text": TOPICS[n % 8]} for n in range(12)])
    (saved,) = (index.path / "derived").glob("bm25-all.g*")
    damage(saved)
    index.upsert([{"id": "t0", "text": "an active volcano spews lava"}])
    got, fresh = _bm25_scores(index, "lava", "*"), _fresh_bm25_scores(index, "lava", "*")
    assert [i for i, _ in got] == [i for i, _ in fresh] and got[0][0] == "t0"
    assert len(got) == 3  # t0 and the two volcano topics (t1, t9)


def test_an_embedding_model_changed_in_place_is_refused(tmp_path: Path) -> None:
    """Stored vectors kept only their dimension: a model folder retrained in place gave
    queries from the new model against documents from the old one, silently."""
    from semrank.errors import IndexModelChangedError, exit_code_for
    from tiny_models import write_tiny_model

    model = write_tiny_model(tmp_path / "embedder", "bert", "encoder", seed=0)
    with create_index("probed", home=tmp_path, embedding_model=str(model)) as index:
        index.upsert(DOCS)
        assert len(index.search_vector(index.embed_queries(["cats"])[0], k=3)) == 3
    with open_index("probed", home=tmp_path) as same:  # the same model: searches as before
        assert len(same.search_vector(same.embed_queries(["cats"])[0], k=3)) == 3
    write_tiny_model(model, "bert", "encoder", seed=1)  # retrained in place
    with open_index("probed", home=tmp_path) as changed:
        with pytest.raises(
            IndexModelChangedError, match="no longer embeds text as it did"
        ) as refused:
            changed.embed_queries(["cats"])
        assert "build the index again" in str(refused.value)
        # A remote client is not told the server's folder.
        assert str(tmp_path) not in str(refused.value.client_message)
        assert "index 'probed'" in str(refused.value.client_message)
    # The CLI refuses an ingest before marking the index (a mark no retry could clear).
    from typer.testing import CliRunner

    from semrank.cli import app

    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "owl", "text": "owls hunt at night"}\n')
    added = CliRunner().invoke(app, ["index", "add", "probed", str(more), "--home", str(tmp_path)])
    assert isinstance(added.exception, IndexModelChangedError)
    assert exit_code_for(added.exception) == 2  # the user's to fix, not a bug (1)
    with open_index("probed", home=tmp_path) as after:
        assert after.unfinished_note() is None and len(after) == len(DOCS)


def test_a_stored_field_is_read_as_the_rerank_api_reads_it(tmp_path: Path) -> None:
    # A search re-ranking on a stored field must score the text /v1/rerank would for the same
    # document: objects and lists as their JSON (they were read as Python's str(), "True" etc.).
    from semrank.rerank._documents import document_texts

    meta = {"topic": "fleas bite dögs", "verified": True, "note": None}
    record = {"id": "1", "text": "flea", "meta": meta, "tags": ["fleas", "bite"], "n": 3}
    with create_index("odd", home=tmp_path, embedding_model=None, fields=["text"]) as index:
        index.upsert([record])
        stored = index.get(["1"])[0]
        for field in ("meta", "tags", "n", "text"):
            assert index.rerank_text_of(stored, field) == document_texts([record], [field])[0]


def test_every_word_of_a_list_field_is_indexed(tmp_path: Path) -> None:
    # Indexed as JSON, a line break in a list's text was written "\n": "\nBites" hid "bites"
    record = {"id": "1", "text": ["Fleas feed on blood.\nBites itch\tfor days."]}
    with create_index("l", home=tmp_path, embedding_model=None, fields=["text"]) as index:
        index.upsert([record, {"id": "2", "text": "Bites from mosquitoes itch too."}])
        assert sorted(index.search_bm25("bites", k=5).ids.tolist()) == ["1", "2"]
        assert index.search_bm25("for", k=5).ids.tolist() == []  # a stop word, as ever
        assert index.search_bm25("days", k=5).ids.tolist() == ["1"]


@pytest.mark.parametrize("lost", ["vocab.index.json", "snapshot.json"])
def test_a_search_file_lost_from_the_current_snapshot_is_built_again_and_saved(
    tmp_path: Path, lost: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without its vocabulary a BM25 snapshot read as "no document has a term" (every search
    empty, no error); without snapshot.json the rebuilt one could never be saved over it."""
    with create_index("words", home=tmp_path, embedding_model=None) as index:
        index.upsert([{"id": f"t{n}", "text": TOPICS[n % 8]} for n in range(12)])
        expected = _bm25_scores(index, "lava", "*")
        (saved,) = (index.path / "derived").glob("bm25-all.g*")
    (saved / lost).unlink()
    for _ in range(2):  # the second open reads what the first saved
        with caplog.at_level(logging.WARNING), open_index("words", home=tmp_path) as reopened:
            assert _bm25_scores(reopened, "lava", "*") == expected
    assert (saved / "snapshot.json").is_file() and (saved / "vocab.index.json").is_file()
    assert "could not save" not in caplog.text


@pytest.mark.parametrize("probe", [True, False])
def test_an_index_made_before_prompts_were_read_is_read_as_it_was_made(
    tmp_path: Path, probe: bool
) -> None:
    """An index of an e5-style model made before semrank read sentence-transformers prompts
    was refused ("put the model back", though nothing had changed, and no command rebuilds an
    index); one from before probes were kept got prompted queries against unprompted vectors,
    and prompted documents added among them."""
    from semrank.models import resolve_embedding_model
    from semrank.store import open_index
    from semrank.store._local import PROBE_KEY

    model = shutil.copytree(resolve_embedding_model().path, tmp_path / "e5")
    home = tmp_path / "home"
    with create_index("e5", home=home, embedding_model=str(model)) as index:
        index.upsert(DOCS)  # vectors made as before: no prompt in the model's files yet
        query = index.embed_queries(["sticks in the park"])[0]
        owl = index.embedder.embed(["Owls hunt at night."])[0]
        if not probe:  # an index from before probes were kept
            with index.db.transaction() as conn:
                index.db.set_meta(conn, PROBE_KEY, None)
    prompts = {"query": "query: ", "document": "passage: "}
    (model / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    with open_index("e5", home=home) as index:
        np.testing.assert_allclose(index.embed_queries(["sticks in the park"])[0], query, atol=1e-4)
        index.upsert([{"id": "owl", "text": "Owls hunt at night."}])
        hit = index.search_vector(owl, k=1)  # written as the index was made: no prompt
        assert list(hit.ids) == ["owl"] and float(hit.scores[0]) > 0.999


def test_an_index_a_callers_prompted_embedder_wrote_is_read_with_the_prompts(
    tmp_path: Path,
) -> None:
    """create_index(embedder=load_embedder(model)) kept no probe, so the index read as made
    before prompts and was searched without them."""
    from semrank.models import resolve_embedding_model
    from semrank.runtime import load_embedder
    from semrank.store import open_index

    model = shutil.copytree(resolve_embedding_model().path, tmp_path / "e5")
    prompts = {"query": "query: ", "document": "passage: "}
    (model / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    home = tmp_path / "home"
    mine = load_embedder(resolve_embedding_model(str(model)))
    assert mine.query_prompt == "query: "  # type: ignore[attr-defined]
    with create_index("own", home=home, embedding_model=str(model), embedder=mine) as own:
        own.upsert(DOCS)
    with open_index("own", home=home) as own:  # bf16 here, fp32 there: cosine, not equality
        assert float(own.embed_queries(["sticks"])[0] @ mine.embed_queries(["sticks"])[0]) > 0.999


# --- filters: documents a search may return, applied before its top k -------------------------
class GaussianEmbedder:
    """Each word a fixed random direction, a text their sum: no model, and no tied cosines."""

    def embed(self, texts: Any) -> np.ndarray:
        rows = []
        for text in texts:
            total = np.zeros(32)
            for word in text.split():
                seed = int.from_bytes(word.encode()[:8].ljust(8, b"_"), "little") + len(word)
                total += np.random.default_rng(seed).normal(size=32)
            rows.append(total / max(float(np.linalg.norm(total)), 1e-9))
        return np.array(rows, dtype=np.float32)


def _tagged(count: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    words = ["moon", "sun", "tide", "lava", "bread", "yeast", "chess", "bee", "ice", "rock"]
    return [
        {
            "id": f"d{n}",
            "text": " ".join(rng.choice(words, size=5)) + f" w{n}",
            "meta": {"tenant": f"t{n % 10}"},
            "year": 2000 + n % 25,
            "tags": ["odd" if n % 2 else "even", "tens" if n % 10 == 0 else "other"],
        }
        for n in range(count)
    ]


FILTERS = [
    {"term": {"meta.tenant": "t3"}},
    {"terms": {"tags.keyword": ["tens", "odd"]}},
    [{"range": {"year": {"gte": 2010, "lt": 2015}}},
     {"bool": {"must_not": {"ids": {"values": ["d12"]}}}}],
]  # fmt: skip


def _passing(ranked: Any, flt: Any, documents: dict[str, dict[str, Any]], k: int) -> list[str]:
    """The reference: the unfiltered ranking of every document, kept where the filter passes."""
    return [i for i in ranked.ids.tolist() if matches(flt, i, documents[i])][:k]


@pytest.mark.parametrize("spec", FILTERS)
def test_filtered_searches_return_the_k_best_passing_documents(tmp_path: Path, spec: Any) -> None:
    corpus = _tagged(80)
    documents = {d["id"]: {k: v for k, v in d.items() if k != "id"} for d in corpus}
    index = create_index("f", home=tmp_path, fields=("text",), embedder=GaussianEmbedder())
    index.upsert(corpus)
    flt = parse_filter(spec)
    vector = index.embed_queries(["moon tide ice"])[0]
    every = index.search_vector(vector, k=80)
    filtered = index.search_vector(vector, k=5, filter=flt)
    assert filtered.ids.tolist() == _passing(every, flt, documents, 5)
    everything_bm25 = index.search_bm25("moon tide ice", k=80)
    hits = index.search_bm25("moon tide ice", k=5, filter=flt)
    # Not the top 5, then the passing ones among them: 5 passing ones.
    assert hits.ids.tolist() == _passing(everything_bm25, flt, documents, 5) and len(hits) == 5
    fields = [("text", 2.0)]
    both = index.search_bm25_fields("moon tide ice", k=80, fields=fields)
    assert index.search_bm25_fields(
        "moon tide ice", k=5, fields=fields, filter=flt
    ).ids.tolist() == (_passing(both, flt, documents, 5))


def test_store_searches_take_a_filter_as_json_as_delete_matching_does(tmp_path: Path) -> None:
    """A filter given as Elasticsearch JSON reached the mask as it was: a bare 'TypeError: not
    a filter: dict'. It is parsed as delete_matching's is, and a bad one is named."""
    index = create_index("f", home=tmp_path, fields=("text",), embedder=GaussianEmbedder())
    index.upsert(_tagged(40))
    spec = [{"term": {"meta.tenant": "t3"}}, {"range": {"year": {"gte": 2010}}}]
    vector = index.embed_queries(["moon tide ice"])[0]
    searches = {
        "bm25": lambda flt: index.search_bm25("moon tide ice", k=5, filter=flt),
        "fields": lambda flt: index.search_bm25_fields(
            "moon tide ice", k=5, fields=[("text", 2.0)], filter=flt
        ),
        "vector": lambda flt: index.search_vector(vector, k=5, filter=flt),
    }
    for name, run in searches.items():
        parsed = run(parse_filter(spec))
        assert len(parsed) > 0, name
        assert run(spec).ids.tolist() == parsed.ids.tolist(), name
        with pytest.raises(InvalidInputError, match="filter: 'match' is not a supported filter"):
            run({"match": {"text": "moon"}})


def test_date_math_filters_are_resolved_when_the_store_searches_and_deletes(
    tmp_path: Path,
) -> None:
    """A bound of "now-30d/d" was compared as that string ("n" sorts after every digit): gte
    passed nothing, lt every date. It is resolved at each search and delete (a tree built once and
    reused means now each time): a date three days old passes, one sixty days old does not."""
    from datetime import UTC, datetime, timedelta

    from semrank.pipeline import BM25, Knn, search

    today = datetime.now(UTC)
    index = create_index("f", home=tmp_path, fields=("text",), embedder=GaussianEmbedder())
    index.upsert([
        {"id": "recent", "text": "moon", "published": f"{today - timedelta(days=3):%Y-%m-%d}"},
        {"id": "old", "text": "moon", "published": f"{today - timedelta(days=60):%FT%TZ}"},
    ])  # fmt: skip
    last_month = {"range": {"published": {"gte": "now-30d/d"}}}
    vector = index.embed_queries(["moon"])[0]
    assert index.search_bm25("moon", k=5, filter=last_month).ids.tolist() == ["recent"]
    assert index.search_vector(vector, k=5, filter=last_month).ids.tolist() == ["recent"]
    fields = [("text", 1.0)]
    found = index.search_bm25_fields("moon", k=5, fields=fields, filter=last_month)
    assert found.ids.tolist() == ["recent"]
    for tree in (BM25(filter=last_month), Knn(filter=last_month)):
        assert search(index, "moon", retriever=tree, k=5).ids == ["recent"]
    older = {"range": {"published": {"lt": "now-30d/d"}}}
    assert index.ids_matching(older) == ["old"]
    assert index.delete_matching(older) == 1
    assert [doc.id for doc in index.iter_documents()] == ["recent"]


def test_a_filtered_export_resolves_date_math_once_for_every_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """iter_documents(filter=) (semrank index export --filter) on the embedded store resolved
    "now" anew for each document it tested, so an export running past midnight kept a day's
    first documents and not its last (and resolving took 2-3x the time of a plain filter);
    PostgreSQL's page queries resolve it once. Here the clock moves an hour at each read."""
    from datetime import UTC, datetime, timedelta

    from semrank.retrieve import _filter

    start = datetime(2024, 3, 1, 12, tzinfo=UTC)
    reads = itertools.count()
    monkeypatch.setattr(_filter, "_utc_now", lambda: start + next(reads) * timedelta(hours=1))
    index = create_index("f", home=tmp_path, embedding_model=None)
    index.upsert([{"id": f"d{i}", "text": "moon", "published": "2024-03-01"} for i in range(40)])
    today = {"range": {"published": {"gte": "now/d"}}}
    exported = [doc.id for doc in index.iter_documents(filter=today, batch_size=7)]
    assert exported == [f"d{i}" for i in range(40)]
    assert next(reads) == 1  # the present was read once


def test_a_filter_reads_the_documents_as_they_are_now(tmp_path: Path) -> None:
    index = create_index("f", home=tmp_path, embedding_model=None)
    index.upsert(_tagged(20))
    flt = parse_filter({"term": {"meta.tenant": "t3"}})
    assert sorted(index.search_bm25("moon sun tide lava bread", k=9, filter=flt).ids) == [
        "d13",
        "d3",
    ]
    index.upsert([{"id": "d4", "text": "moon", "meta": {"tenant": "t3"}}])
    index.delete(["d13"])
    assert sorted(index.search_bm25("moon sun tide lava bread", k=9, filter=flt).ids) == [
        "d3",
        "d4",
    ]


def test_a_filter_reads_its_field_without_holding_every_document(tmp_path: Path) -> None:
    """The first filtered search read every document whole and held them all parsed at once
    (a 240 MB corpus peaked at 620 MB to read one short field); one at a time, its peak is
    the values kept. A filter reading no field (ids) reads no document."""
    import tracemalloc

    index = create_index("f", home=tmp_path, embedding_model=None)
    filler = " ".join(f"word{n}" for n in range(2_000))  # ~17 kB a document, 400 of them
    index.upsert([{"id": f"d{n}", "text": f"{filler} n{n}", "lang": "en"} for n in range(400)])
    index.search_bm25("word1", k=1)  # the BM25 files loaded before measuring
    corpus = sum(len(doc["text"]) for doc in index.get([f"d{n}" for n in range(400)]) if doc)
    for step, spec in enumerate(({"term": {"lang": "en"}}, {"ids": {"values": ["d3"]}})):
        index.upsert([{"id": "d0", "text": f"{filler} n0", "lang": "en", "step": step}])
        index.search_bm25("word1", k=1)  # the new state's BM25 files built before measuring
        tracemalloc.start()
        try:
            assert len(index.search_bm25("n3", k=5, filter=parse_filter(spec))) == 1
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < corpus / 4, (spec, peak, corpus)


def _reads_of_documents(index: Any, gate: Any = None) -> list[int]:
    """Counts, in a list, the documents the store's database hands out with their JSON (in
    pages or in one pass); ``gate(thread)`` runs before each such read (to hold one up)."""
    counted: list[int] = []
    db = index.db
    pages, rows = db.documents_after, db.iter_rows

    def documents_after(*args: Any, **kwargs: Any) -> Any:
        if gate is not None:
            gate(threading.current_thread())
        found = pages(*args, **kwargs)
        counted.append(len(found))
        return found

    def iter_rows(conn: Any, columns: str, **kwargs: Any) -> Any:
        if "doc" in columns and gate is not None:
            gate(threading.current_thread())
        for row in rows(conn, columns, **kwargs):
            counted.append(int("doc" in columns))
            yield row

    db.documents_after, db.iter_rows = documents_after, iter_rows
    return counted


def test_a_search_on_a_read_field_does_not_wait_for_another_reading_a_new_field(
    tmp_path: Path,
) -> None:
    """A filter on a new field read every document holding the filter lock and the read
    connection: every filtered search of the process (a server shares the store) waited
    seconds for it. The documents are read in pages with neither held."""
    index = create_index("f", home=tmp_path, embedding_model=None)
    index.upsert(_tagged(60))
    by_year = parse_filter({"range": {"year": {"gte": 2010}}})
    expected = index.search_bm25("moon", k=60, filter=by_year).ids.tolist()  # year: read
    reading, release = threading.Event(), threading.Event()
    by_tenant = parse_filter({"term": {"meta.tenant": "t3"}})  # not read yet
    reader = threading.Thread(
        target=index.search_bm25, args=("moon",), kwargs={"k": 5, "filter": by_tenant}
    )

    def gate(thread: threading.Thread) -> None:
        if thread is reader:
            reading.set()
            release.wait(30)

    _reads_of_documents(index, gate)
    found: list[list[str]] = []
    searcher = threading.Thread(
        target=lambda: found.append(index.search_bm25("moon", k=60, filter=by_year).ids.tolist())
    )
    reader.start()
    try:
        assert reading.wait(10)
        searcher.start()
        searcher.join(10)
        assert found == [expected]  # done while the other search is still reading
    finally:
        release.set()
        reader.join(30)
        searcher.join(30)
    tenant_3 = [i for i in index.search_bm25("moon", k=60).ids.tolist() if int(i[1:]) % 10 == 3]
    assert index.search_bm25("moon", k=60, filter=by_tenant).ids.tolist() == tenant_3


def test_a_filter_after_a_write_reads_only_the_rows_written_since(tmp_path: Path) -> None:
    """After every write, the next filtered search read every document again (1.5 s per
    50,000); it now reads the rows written since, and its masks are the reference's."""
    corpus = _tagged(60)
    index = create_index("f", home=tmp_path, embedding_model=None)
    index.upsert(corpus)
    flts = [parse_filter(spec) for spec in (*FILTERS, {"exists": {"field": "extra"}})]
    for flt in flts:  # every field read
        index.search_bm25("moon", k=5, filter=flt)
    counted = _reads_of_documents(index)
    index.upsert([dict(corpus[3], meta={"tenant": "t4"}, extra=1), dict(corpus[0], id="new")])
    index.upsert([dict(corpus[60 - 1], year=1999)])
    index.delete(["d13", "d40"])
    documents = {doc_id: doc for doc_id, doc in zip(
        index.document_ids(), index.get(index.document_ids()), strict=True) if doc}  # fmt: skip
    every = index.search_bm25("moon sun tide lava bread chess bee ice rock yeast", k=100)
    assert len(every) == len(documents) == 59
    for flt in flts:
        hits = index.search_bm25("moon sun tide lava bread chess bee ice rock yeast", k=100,
                                 filter=flt)  # fmt: skip
        assert hits.ids.tolist() == _passing(every, flt, documents, 100), flt
    assert sum(counted) == 3  # "d3", "new" and "d59": not the 59 documents


def _sqlite_steps(index: Any, action: Any) -> int:
    """How many SQLite virtual-machine steps (in hundreds) the store's reads take in
    ``action``: what a query costs in rows visited, whatever the machine's speed."""
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0

    index.db._reader.set_progress_handler(step, 100)
    try:
        action()
    finally:
        index.db._reader.set_progress_handler(None, 100)
    return steps[0]


def test_a_filter_after_a_small_write_reads_the_rows_it_wrote_not_every_row(
    tmp_path: Path,
) -> None:
    """The next filtered search after a one-document upsert listed every row's key and
    generation, and found the written rows by reading every row (no index on gen): 0.2 s per
    write at 200,000 documents. The written rows are found by an index on gen, and deletes
    by the count of rows."""
    index = create_index("f", home=tmp_path, embedding_model=None)
    index.upsert(_tagged(3000))
    flt = parse_filter({"term": {"meta.tenant": "t3"}})
    every_row = _sqlite_steps(index, lambda: index.count_matching(flt))
    for changed in (
        {"id": "d7", "meta": {"tenant": "t3"}},
        {"id": "new", "meta": {"tenant": "t3"}},
    ):
        index.upsert([dict(changed, text="moon")])
        assert _sqlite_steps(index, lambda: index.count_matching(flt)) < every_row / 20
    assert index.count_matching(flt) == 302
    index.delete(["d13"])  # every key listed, no document read
    assert _sqlite_steps(index, lambda: index.count_matching(flt)) < every_row / 2
    assert index.count_matching(flt) == 301 == len(index.ids_matching(flt))


def test_a_field_table_kept_up_to_date_equals_one_read_from_scratch(tmp_path: Path) -> None:
    """Random upserts, rewrites, deletes, deleted-and-added-again documents and a new row
    taking a deleted last row's pk: after each, the filtered results of the index kept up
    to date write by write are those of the same index opened afresh (every row read) and
    of the reference (``ids_matching``, each document tested)."""
    from semrank.store import LocalStore

    rng = np.random.default_rng(5)
    index = create_index("f", home=tmp_path, embedding_model=None)

    def doc(doc_id: str) -> dict[str, Any]:
        on = f"2024-02-{1 + int(rng.integers(0, 28)):02d}"
        at = [on, f"{on}T12:00:00Z", 7][int(rng.integers(0, 3))]
        return {"id": doc_id, "text": "moon", "tenant": f"t{rng.integers(0, 4)}", "on": at}

    specs = [
        {"term": {"tenant": "t1"}},
        {"range": {"on": {"gte": "2024-02-10", "lt": "2024-02-20"}}},
        {"bool": {"must_not": {"range": {"on": {"lte": "now"}}}}},
        {"exists": {"field": "on"}},
    ]
    index.upsert([doc(f"d{n}") for n in range(40)])
    for step in range(40):
        [index.count_matching(spec) for spec in specs]  # each state's table read, dates parsed
        ids = index.document_ids()
        action = step % 5
        if action == 0:
            index.upsert([doc(str(i)) for i in rng.choice(ids, 2, replace=False)])  # rewrites
        elif action == 1:
            index.delete([str(rng.choice(ids))])
        elif action == 2:  # the last row deleted, its pk taken again by a new document
            index.delete([ids[-1]])
            index.upsert([doc(f"n{step}")])
        elif action == 3:
            gone = str(rng.choice(ids))
            index.delete([gone])
            index.upsert([doc(gone), doc(f"m{step}")])
        else:
            index.upsert([doc(f"d{n}") for n in rng.choice(60, 3, replace=False)])
        afresh = LocalStore(index.path)
        try:
            for spec in specs:
                expected = index.ids_matching(spec)
                assert index.first_matching(spec, 1000) == expected, (step, spec)
                assert afresh.first_matching(spec, 1000) == expected, (step, spec)
        finally:
            afresh.close()


def test_an_index_gets_its_gen_index_at_open_without_waiting_for_a_writer(
    tmp_path: Path,
) -> None:
    """An index written before the index on gen gets it when opened, unless another
    connection holds the write lock (an ingest): the open does not wait for it then, and the
    index is read as before. A read of every row is not sorted through it."""
    from semrank.store import LocalStore

    index = create_index("f", home=tmp_path, embedding_model=None)
    index.upsert(_tagged(500))
    db_path = index.path / "documents.sqlite"
    index.close()
    named = "SELECT count(*) FROM sqlite_master WHERE name='documents_gen'"
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as older:
        older.execute("DROP INDEX documents_gen")  # as an earlier semrank wrote it
        older.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        store = LocalStore(index.path)
        assert time.monotonic() - started < 5  # not the 60 s busy timeout
        assert older.execute(named).fetchone() == (0,)
        older.execute("COMMIT")
    flt = parse_filter({"term": {"meta.tenant": "t3"}})
    assert store.count_matching(flt) == 50
    store.close()
    store = LocalStore(index.path)
    with contextlib.closing(sqlite3.connect(db_path)) as reader:
        assert reader.execute(named).fetchone() == (1,)
    generation = store.generation
    every_row = _sqlite_steps(store, lambda: store.db.documents_after(None, 500))
    first_page = _sqlite_steps(
        store, lambda: store.db.documents_after(None, 5, written=(-1, generation))
    )
    assert first_page < every_row / 20
    store.upsert([{"id": "d3", "text": "moon", "meta": {"tenant": "t4"}}])
    assert store.count_matching(flt) == 49
    store.close()


@pytest.mark.parametrize("share", ["t1", ["t1", "t2", "t3", "t4"]])  # exact, then widened
def test_a_filtered_hnsw_search_returns_the_exact_filtered_top_k(
    tmp_path: Path, share: Any
) -> None:
    """Few allowed rows (at most the ANN threshold) are searched exactly; more, the graph is
    searched wider until k of its hits pass. Either way, the top k of exact filtered search,
    and no deleted or rewritten-away document."""
    corpus = [dict(d, meta={"tenant": f"t{n % 20}"}) for n, d in enumerate(_tagged(400))]
    documents = {d["id"]: d for d in corpus}
    options = {"fields": ("text",), "embedder": GaussianEmbedder()}
    graph = create_index("g", home=tmp_path, ann_threshold=30, **options)  # type: ignore[arg-type]
    exact = create_index("e", home=tmp_path, **options)  # type: ignore[arg-type]
    for index in (graph, exact):
        index.upsert(corpus)
        index.delete(["d1", "d22"])
        index.upsert([{"id": "d41", "text": "moon tide", "meta": {"tenant": "t0"}}])
    assert graph.info().vector_search == "hnsw" and exact.info().vector_search == "exact"
    flt = parse_filter({"terms": {"meta.tenant": share if isinstance(share, list) else [share]}})
    for query in ("moon tide ice", "lava rock", "chess bee bread"):
        vector = graph.embed_queries([query])[0]
        found = graph.search_vector(vector, k=10, filter=flt)
        expected = exact.search_vector(vector, k=10, filter=flt)
        assert found.ids.tolist() == expected.ids.tolist()
        np.testing.assert_allclose(found.scores, expected.scores, atol=1e-5)
        assert not {"d1", "d22", "d41"} & set(found.ids.tolist())
        assert all(matches(flt, i, documents[i]) for i in found.ids.tolist())


# --- deleting by filter ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", FILTERS)
def test_delete_matching_removes_exactly_the_passing_documents(tmp_path: Path, spec: Any) -> None:
    """The documents the reference passes go, every other stays; the searches right after
    (BM25, an updated HNSW graph, filtered) rank the rest as an index holding only them."""
    corpus = _tagged(120)
    documents = {d["id"]: {k: v for k, v in d.items() if k != "id"} for d in corpus}
    flt = parse_filter(spec)
    doomed = [i for i, doc in documents.items() if matches(flt, i, doc)]
    kept = [d for d in corpus if d["id"] not in doomed]
    options: Any = {"fields": ("text",), "embedder": GaussianEmbedder(), "ann_threshold": 30}
    index = create_index("f", home=tmp_path, **options)
    fresh = create_index("fresh", home=tmp_path, **options)
    index.upsert(corpus)
    fresh.upsert(kept)
    vector = index.embed_queries(["moon tide ice"])[0]
    tenant = parse_filter({"terms": {"meta.tenant": ["t0", "t3", "t4"]}})
    for warm in (index, fresh):  # derived indexes and filter tables built before the delete
        warm.search_bm25("moon", k=5, filter=tenant)
        warm.search_vector(vector, k=5, filter=tenant)
    assert index.ids_matching(spec) == doomed  # what a dry run lists, in storage order
    assert 0 < index.delete_matching(spec) == len(doomed) < len(corpus)
    assert len(index) == len(kept) and index.get(doomed) == [None] * len(doomed)
    assert [d.id for d in index.iter_documents()] == [d["id"] for d in kept]
    for k, with_filter in ((120, None), (8, tenant)):
        got = index.search_bm25("moon tide ice", k=k, filter=with_filter)
        want = fresh.search_bm25("moon tide ice", k=k, filter=with_filter)
        assert got.ids.tolist() == want.ids.tolist()
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
        got = index.search_vector(vector, k=k, filter=with_filter)
        want = fresh.search_vector(vector, k=k, filter=with_filter)
        assert got.ids.tolist() == want.ids.tolist() and not set(doomed) & set(got.ids)
    assert index.delete_matching(spec) == 0 and index.ids_matching(spec) == []


@pytest.mark.parametrize(
    "spec",
    [
        {"match_all": {}},
        [],
        {"bool": {}},
        {"bool": {"must": [{"match_all": {}}], "should": [{"match_all": {}}]}},
        [{"match_all": {"boost": 2}}, {"bool": {"filter": {"match_all": {}}}}],
    ],
)
def test_delete_matching_refuses_a_filter_passing_every_document(tmp_path: Path, spec: Any) -> None:
    index = create_index("f", home=tmp_path, embedding_model=None)
    index.upsert(_tagged(10))
    with pytest.raises(InvalidInputError, match="passes every document, so deleting by it"):
        index.delete_matching(spec)
    assert len(index) == 10
    # Filters that may pass every document of this index, but not by their shape, are taken.
    assert index.delete_matching({"exists": {"field": "year"}}) == 10


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"match": {"text": "moon"}}, "'match' is not a supported filter"),
        ({"term": {"year": [2001]}}, "filter.term.year must be a string, number or boolean"),
        (None, "filter must be one query object"),
        ('{"term": {"tags": "odd"}}', "filter must be one query object"),
    ],
)
def test_a_bad_delete_filter_deletes_nothing_and_names_the_problem(
    tmp_path: Path, spec: Any, named: str
) -> None:
    index = create_index("f", home=tmp_path, embedding_model=None)
    index.upsert(_tagged(10))
    generation = index.generation
    with pytest.raises(InvalidInputError, match=re.escape(named)):
        index.delete_matching(spec)
    assert len(index) == 10 and index.generation == generation


def test_delete_matching_finds_the_documents_under_the_write_lock(tmp_path: Path) -> None:
    """A write committed while the delete waited for the lock (another process's ingest) is
    read by it: finding the documents before taking the lock left that one behind."""
    import threading

    from semrank.store import LocalStore
    from semrank.store._sqlite import DocumentDB

    index = create_index("f", home=tmp_path, embedding_model=None)
    index.upsert(_tagged(20))
    other = LocalStore(index.path)  # its own connections, as another process has
    deleted: list[int] = []
    with other.db.transaction() as conn:
        worker = threading.Thread(target=lambda: deleted.append(index.delete_matching(
            {"term": {"meta.tenant": "t3"}}
        )))  # fmt: skip
        worker.start()
        time.sleep(0.5)  # the delete is waiting for this transaction's lock
        doc = {"text": "moon", "meta": {"tenant": "t3"}}
        other.db.write_rows(conn, [("late", json.dumps(doc), "moon", None)], 1)
        DocumentDB.bump_generation(conn)
    worker.join(timeout=60)
    assert deleted == [3]  # d3, d13 and the late one
    assert index.get(["d3", "d13", "late", "d4"])[:3] == [None] * 3
    other.close()


# --- aliases ----------------------------------------------------------------------------------
def _two_indexes(home: Path) -> None:
    for name, doc_id in (("v1", "old"), ("v2", "new")):
        with create_index(name, home=home, embedding_model=None) as index:
            index.upsert([{"id": doc_id, "text": f"fleas bite the {doc_id} cat"}])


SWAP = [{"remove": {"index": "v1", "alias": "live"}}, {"add": {"index": "v2", "alias": "live"}}]


def test_a_search_through_an_alias_follows_its_swap_to_the_new_index(tmp_path: Path) -> None:
    from semrank.pipeline import search
    from semrank.store import list_aliases, update_aliases

    _two_indexes(tmp_path)
    update_aliases([{"add": {"index": "v1", "alias": "live"}}], home=tmp_path)
    before = search("live", "fleas", retriever="bm25", home=tmp_path)  # held open by the pipeline
    update_aliases(SWAP, home=tmp_path)
    after = search("live", "fleas", retriever="bm25", home=tmp_path)
    assert [hit.id for hit in before.hits] == ["old"]
    assert [hit.id for hit in after.hits] == ["new"]
    assert list_aliases(tmp_path) == {"live": "v2"}
    with open_index("live", home=tmp_path) as index:  # writes through the alias reach v2
        assert index.name == "v2"
        index.upsert([{"id": "newer", "text": "dogs"}])
    with open_index("v2", home=tmp_path) as index:
        assert len(index) == 2


@pytest.mark.parametrize(
    ("actions", "error", "said"),
    [
        (
            [{"add": {"index": "v2", "alias": "live"}}],
            InvalidInputError,
            "alias 'live' already names index 'v1'",
        ),
        ([{"add": {"index": "v2", "alias": "v1"}}], InvalidInputError, "is the name of an index"),
        ([{"add": {"index": "live", "alias": "x"}}], InvalidInputError, "name the index itself"),
        ([{"add": {"index": "nope", "alias": "x"}}], IndexNotFoundError, "index 'nope' not found"),
        ([{"remove": {"index": "v2", "alias": "live"}}], IndexNotFoundError, "must_exist"),
        ([{"add": {"index": "v2", "alias": "x", "filter": {}}}], InvalidInputError, "'filter'"),
        ([{"remove_index": {"index": "v1"}}], InvalidInputError, "remove_index"),
        ([{"add": {"index": "v2"}}], InvalidInputError, "needs 'alias'"),
        ([{"add": {"index": "v2", "alias": "bad/name"}}], InvalidInputError, "invalid alias name"),
        (["add"], InvalidInputError, "must be an object with one key"),
    ],
)
def test_bad_alias_actions_are_named_and_change_nothing(
    tmp_path: Path, actions: list[Any], error: type[Exception], said: str
) -> None:
    from semrank.store import list_aliases, update_aliases

    _two_indexes(tmp_path)
    update_aliases([{"add": {"index": "v1", "alias": "live"}}], home=tmp_path)
    first = [{"add": {"index": "v2", "alias": "other"}}]  # applied only with all that follow
    with pytest.raises(error, match=re.escape(said)):
        update_aliases(first + actions, home=tmp_path)
    assert list_aliases(tmp_path) == {"live": "v1"}


def test_an_alias_name_is_no_index_name_and_goes_with_its_index(tmp_path: Path) -> None:
    from semrank.store import list_aliases, update_aliases

    _two_indexes(tmp_path)
    update_aliases([{"add": {"index": "v1", "aliases": ["live", "also"]}}], home=tmp_path)
    with pytest.raises(InvalidInputError, match="'live' is an alias of index 'v1'"):
        create_index("live", home=tmp_path, embedding_model=None)
    # The fix said is dropping the index it names (or removing the alias), not another name.
    with pytest.raises(InvalidInputError, match=r"alias of index 'v1'.*drop index 'v1'") as drop:
        drop_index("live", home=tmp_path)
    assert "choose another name" not in str(drop.value)
    missing_passes = {"remove": {"index": "*", "alias": "gone", "must_exist": False}}
    update_aliases([missing_passes], home=tmp_path)
    with pytest.raises(InvalidInputError, match="non-empty list"):
        update_aliases([], home=tmp_path)
    drop_index("v1", home=tmp_path)  # as Elasticsearch: its aliases are removed with it
    assert list_aliases(tmp_path) == {}
    with pytest.raises(IndexNotFoundError):
        open_index("live", home=tmp_path)


def test_a_damaged_alias_file_is_named_with_the_fix(tmp_path: Path) -> None:
    _two_indexes(tmp_path)
    (tmp_path / ".aliases.json").write_text("{not json")
    with pytest.raises(StorageError, match=r"alias file .*\.aliases\.json cannot be read"):
        open_index("live", home=tmp_path)
    # An index opened by its own name does not need the alias file (no alias takes its name).
    assert len(open_index("v1", home=tmp_path)) > 0


def test_a_drop_refused_for_a_damaged_alias_file_leaves_the_index(tmp_path: Path) -> None:
    """The drop read the alias file after renaming the index away: it failed naming the file,
    and the index was gone all the same (in a .trash folder, deleted an hour later)."""
    _two_indexes(tmp_path)
    (tmp_path / ".aliases.json").write_text("{not json")
    with pytest.raises(StorageError, match=r"alias file .*\.aliases\.json cannot be read"):
        drop_index("v1", home=tmp_path)
    assert list_indexes(tmp_path) == ["v1", "v2"]
    assert len(open_index("v1", home=tmp_path)) == 1
    (tmp_path / ".aliases.json").unlink()  # the fix the error names: the drop goes ahead
    drop_index("v1", home=tmp_path)
    assert list_indexes(tmp_path) == ["v2"]
