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


def json_for_stdout(payload: object, indent: int | None = None) -> str:
    """``payload`` as JSON for standard output: text as it is on a UTF-8 stdout, escaped as
    \\uXXXX on any other (latin-1 locales, PYTHONIOENCODING, a Windows file), where it crashed
    or was written in that encoding, which no JSON reader takes."""
    import json

    return json.dumps(payload, ensure_ascii=not stdout_is_utf8(), indent=indent)


def stdout_is_utf8() -> bool:
    """Whether standard output is written in a UTF encoding (what it cannot hold fails or is
    replaced otherwise)."""
    import sys

    return "utf" in (getattr(sys.stdout, "encoding", None) or "").lower()
