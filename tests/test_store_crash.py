"""Crash safety: SIGKILL an ingest mid-way; the index opens, answers, and keeps every
document of the batches it had committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from semrank.store import create_index, open_index

BATCH = 20
TOTAL = 2000  # far more than the child gets through before it is killed
KILL_AFTER = 3  # committed batches

CHILD = textwrap.dedent(
    """
    import sys
    from semrank.store import open_index

    home, batch, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    docs = ({"id": f"doc-{i}", "title": f"title {i}", "text": f"alpha beta word{i} gamma"}
            for i in range(total))
    index = open_index("crash", home=home)
    committed = 0

    def report(n):
        global committed
        committed += n
        print(f"committed {committed}", flush=True)

    index.upsert(docs, batch_size=batch, progress=report)
    print("finished", flush=True)
    """
)


def _doc(i: int) -> dict[str, str]:
    return {"id": f"doc-{i}", "title": f"title {i}", "text": f"alpha beta word{i} gamma"}


@pytest.mark.parametrize("dense", [False, True], ids=["bm25-only", "with-embeddings"])
def test_killed_ingest_keeps_committed_batches(tmp_path: Path, dense: bool) -> None:
    create_index("crash", home=tmp_path, embedding_model="default" if dense else None).close()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(BATCH), str(TOTAL)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    committed = 0
    for line in child.stdout:
        if line.startswith("committed"):
            committed = int(line.split()[1])
            if committed >= KILL_AFTER * BATCH:
                break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert committed >= KILL_AFTER * BATCH, "the child died before committing"

    index = open_index("crash", home=tmp_path)
    count = len(index)
    assert committed <= count < TOTAL
    assert count % BATCH == 0, "a batch was committed partly"
    wanted = [f"doc-{i}" for i in range(committed)]
    assert all(doc is not None for doc in index.get(wanted))
    # The derived BM25 index was never written by the child: it is rebuilt on first use.
    assert index.search_bm25("word7", k=3).ids.tolist() == ["doc-7"]
    if dense:
        vector = index.embed_queries(["title 5 alpha beta word5 gamma"])[0]
        hits = index.search_vector(vector, k=count)
        assert len(hits) == count and hits.ids[0] == "doc-5"
        assert np.all(np.diff(hits.scores) <= 1e-6)

    # Re-running the ingest completes it; already committed documents are skipped.
    index.upsert((_doc(i) for i in range(count + 40)), batch_size=BATCH)
    assert len(index) == count + 40
    assert index.search_bm25(f"word{count + 39}", k=1).ids.tolist() == [f"doc-{count + 39}"]
    index.close()
