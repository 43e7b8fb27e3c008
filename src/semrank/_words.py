"""Small wording helpers for messages (they read as sentences)."""

from __future__ import annotations


def count_of(number: int, noun: str, plural: str | None = None) -> str:
    """``1 document``, ``2 documents``; ``plural`` where adding "s" is wrong (queries)."""
    return f"{number} {noun}" if number == 1 else f"{number} {plural or noun + 's'}"
