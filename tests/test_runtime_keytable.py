"""KeyTable: rows found by 16-byte digests through binary search, checked against a dict."""

from __future__ import annotations

import numpy as np
import pytest

from semrank.runtime._keytable import KeyTable


def random_keys(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [bytes(row) for row in rng.integers(0, 256, size=(count, 16), dtype=np.uint8)]


@pytest.mark.parametrize("sort", [True, False])
def test_rows_match_a_dict_of_the_same_keys(sort: bool) -> None:
    keys = random_keys(500, seed=1)
    shared = bytes(8)  # keys that agree on their first 8 bytes: the full key must decide
    keys += [shared + bytes([i]) * 8 for i in range(1, 6)]
    if sort:
        keys.sort()
    vectors = np.arange(len(keys), dtype=np.float32)[:, None]
    table = KeyTable(np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 16), vectors)
    absent = [*random_keys(50, seed=2), shared + bytes([9]) * 8]
    wanted = keys[::7] + absent + keys[-5:]
    reference = {key: row for row, key in enumerate(keys)}
    expected = [reference.get(key, -1) for key in wanted]
    assert table.rows(wanted).tolist() == expected
    assert (table.order is None) == sort


def test_empty_tables_and_empty_questions_find_nothing() -> None:
    empty = KeyTable(np.zeros((0, 16), dtype=np.uint8), np.zeros((0, 4), dtype=np.float32))
    assert empty.rows(random_keys(3, seed=3)).tolist() == [-1, -1, -1]
    assert empty.rows([]).tolist() == []


def test_mismatched_keys_and_vectors_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(n, 16\) uint8 keys and n vectors"):
        KeyTable(np.zeros((3, 16), dtype=np.uint8), np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(n, 16\)"):
        KeyTable(np.zeros((3, 8), dtype=np.uint8), np.zeros((3, 4), dtype=np.float32))
