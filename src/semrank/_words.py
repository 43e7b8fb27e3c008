"""Small wording helpers for messages (they read as sentences)."""

from __future__ import annotations


def count_of(number: int, noun: str) -> str:
    """``1 document``, ``2 documents`` (nouns with a plain plural only)."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
