"""Small wording helpers for messages (they read as sentences)."""

from __future__ import annotations


def count_of(number: int, noun: str, plural: str | None = None) -> str:
    """``1 document``, ``2 documents``; ``plural`` where adding "s" is wrong (queries)."""
    return f"{number} {noun}" if number == 1 else f"{number} {plural or noun + 's'}"


# Control characters other than tab and newline (C0, DEL, C1): a document's ESC [2J would clear
# the user's terminal, so tables show them as escapes (JSON output keeps the text as it is).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c not in (9, 10)}


def for_terminal(text: str) -> str:
    """``text`` with its control characters (but tab and newline) shown as ``\\xNN``."""
    return text.translate(_CONTROLS)
