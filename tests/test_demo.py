"""`semrank demo`: the standard-library corpus and an end-to-end run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from semrank.demo import stdlib_documents


def test_stdlib_corpus_is_sizeable_and_well_formed() -> None:
    documents = stdlib_documents()
    assert 300 <= len(documents) <= 2000
    ids = [d["id"] for d in documents]
    assert len(ids) == len(set(ids))
    by_id = {d["id"]: d for d in documents}
    assert "json.dumps" in by_id and "JSON" in by_id["json.dumps"]["text"]
    assert all(d["text"] and len(d["text"]) <= 600 for d in documents)


def test_a_module_that_fails_to_import_is_skipped() -> None:
    documents = stdlib_documents(("json", "no_such_module_xyz"))
    assert documents and all(d["id"].startswith("json") for d in documents)


@pytest.mark.slow
def test_demo_runs_offline_end_to_end(tmp_path: Path) -> None:
    from semrank.cli import app

    args = ["demo", "--home", str(tmp_path), "--top", "3", "-q", "serialize an object to JSON text"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for column in ("BM25", "dense", "hybrid (RRF)", "re-rank"):
        assert column in result.output
    assert "json.dump" in result.output
    # The index it leaves in the user's index home is named, with how to remove it.
    assert "index drop demo-stdlib" in " ".join(result.output.split())
    # A second run reuses the index: nothing is re-embedded, same output.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "json.dump" in again.output


# What `make demo` does not install (its runtime is '.[search]' + the bundled weights, no deps;
# typer brings pydantic, huggingface_hub brings httpx2, not httpx).
NOT_IN_THE_RUNTIME = (
    "torch", "transformers", "sentence_transformers", "sklearn", "scipy", "matplotlib",
    "ir_measures", "pytrec_eval", "fastapi", "uvicorn", "httpx",
    "prometheus_client", "openvino", "nncf", "psycopg", "psycopg_pool", "cohere",
)  # fmt: skip


@pytest.mark.slow
def test_demo_runs_with_only_the_runtime_installed(tmp_path: Path) -> None:
    """The README's first command on a fresh machine: no extra may be imported on its path."""
    script = textwrap.dedent(
        f"""
        import sys
        for name in {NOT_IN_THE_RUNTIME!r}:
            sys.modules[name] = None  # "import name" fails as if it were not installed
        from semrank.cli import main
        sys.argv = ["semrank", "demo", "--home", {str(tmp_path)!r}, "--top", "2",
                    "-q", "serialize an object to JSON text"]
        main()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "json.dump" in result.stdout and "re-rank" in result.stdout
