"""Planning what the model reads of each document: whole, truncated, or in windows."""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from dataclasses import dataclass

from semrank.rerank._config import ChunkingConfig


@dataclass(frozen=True, kw_only=True)
class Piece:
    """A span of one document's text that becomes one model input.

    ``heading_end`` > 0: the model reads the document's heading (``text[:heading_end]``)
    before the span; ``tokens`` counts both.
    """

    chunk_index: int
    start: int
    end: int
    tokens: int
    heading_end: int = 0

    def text_in(self, text: str) -> str:
        """What the model reads of ``text`` (the document this piece was planned on)."""
        span = text[self.start : self.end]
        return f"{text[: self.heading_end]}\n{span}" if self.heading_end else span


@dataclass(frozen=True, kw_only=True)
class ReadPlan:
    """What the model reads of one document; ``read_tokens``: how far into it the pieces reach."""

    pieces: tuple[Piece, ...]
    total_tokens: int
    read_tokens: int

    @property
    def truncated(self) -> bool:
        return self.read_tokens < self.total_tokens

    @property
    def chunked(self) -> bool:
        return len(self.pieces) > 1


def plan_document(
    text: str,
    offsets: list[tuple[int, int]],
    budget: int,
    chunking: ChunkingConfig,
) -> ReadPlan:
    """Split ``text`` (tokenized as ``offsets``) into pieces of at most ``budget`` tokens."""
    total = len(offsets)
    if total <= budget:
        whole = Piece(chunk_index=0, start=0, end=len(text), tokens=total)
        return ReadPlan(pieces=(whole,), total_tokens=total, read_tokens=total)
    if not chunking.enabled:
        read = character_end(offsets, budget, floor=1)
        return ReadPlan(
            pieces=(_piece(text, offsets, 0, 0, read),), total_tokens=total, read_tokens=read
        )
    heading = _heading_tokens(text, offsets, budget, chunking)
    heading_end = offsets[heading - 1][1] if heading else 0
    window = budget - heading
    stride = max(1, window - min(chunking.overlap_tokens, window // 2))
    # The first piece starts at token 0 and so reads the heading where it stands.
    last = character_end(offsets, budget, floor=1)
    pieces, first = [_piece(text, offsets, 0, 0, last)], heading
    while last < total and len(pieces) < chunking.window_limit():
        # Never past the last window's end (which may stand a token or two short of a
        # window): the tokens between would be read by neither.
        first = _word_start(text, offsets, min(first + stride, last), floor=first + 1, limit=last)
        last = character_end(offsets, min(first + window, total), floor=first + 1)
        pieces.append(_piece(text, offsets, len(pieces), first, last, heading, heading_end))
    return ReadPlan(pieces=tuple(pieces), total_tokens=total, read_tokens=last)


def _heading_tokens(
    text: str, offsets: list[tuple[int, int]], budget: int, chunking: ChunkingConfig
) -> int:
    """Tokens of the first line when it is a heading worth repeating (else 0)."""
    newline = text.find("\n")
    if newline < 0 or chunking.heading_tokens == 0:
        return 0
    count = bisect_right([end for _, end in offsets], newline)
    # A heading leaves at least half of every window to the document's own text.
    return count if 0 < count <= min(chunking.heading_tokens, budget // 2) else 0


def _word_start(
    text: str, offsets: list[tuple[int, int]], index: int, *, floor: int, limit: int
) -> int:
    """``index``, or the nearest token that begins a word: a window starting on a word piece
    ("##ons" of "cocoons") reads another word than the text has. Forward first, within the
    window's overlap; then back, above ``floor`` (with no overlap to move into, the window
    reads a few of the last one's tokens again rather than start inside a word). A word longer
    than that keeps the cut, so windows still advance."""
    forward = range(index, max(index + 1, min(limit, index + 16)))
    backward = range(index - 1, max(floor, index - 16) - 1, -1)
    candidates = (*forward, *backward)
    for candidate in candidates:
        if not _continues_word(text, offsets, candidate):
            return candidate
    # Inside the word, then, but between characters (see ``_shares_a_character``).
    return next((c for c in candidates if not _shares_a_character(offsets, c)), index)


def _shares_a_character(offsets: list[tuple[int, int]], index: int) -> bool:
    """Whether token ``index`` was read from the character token ``index - 1`` ends in: an
    uncased BERT tokenizer reads a Hangul syllable as its 2-3 letters (jamo), each a token with
    the whole syllable's offsets. A span of text cannot start or end between those tokens: a
    window cut there re-tokenized to the whole syllable, a token or two over its budget."""
    return offsets[index][0] < offsets[index - 1][1]


def character_end(offsets: list[tuple[int, int]], last: int, *, floor: int) -> int:
    """``last`` (the token a window ends before), moved back, no lower than ``floor``, to a
    cut between characters (the text's end is one)."""
    last = min(last, len(offsets))
    while floor < last < len(offsets) and _shares_a_character(offsets, last):
        last -= 1
    return last


def _continues_word(text: str, offsets: list[tuple[int, int]], index: int) -> bool:
    start = offsets[index][0]
    previous_end = offsets[index - 1][1]
    return _shares_a_character(offsets, index) or (
        _all_dropped(text[previous_end:start])
        and _in_word(text[previous_end - 1 : previous_end])
        and _in_word(text[start : start + 1])
    )


def _in_word(char: str) -> bool:
    """A letter, digit or mark: Devanagari's vowel signs (category Mc) are not alphanumeric,
    and windows began on them, inside a word."""
    return char.isalnum() or unicodedata.category(char[:1] or " ").startswith("M")


# What a tokenizer drops inside a word without splitting it: format characters (a soft hyphen,
# a zero-width space or joiner), controls other than whitespace (NUL), and combining marks
# (an uncased model strips accents): a token after them may still continue the word.
_DROPPED_IN_WORDS = frozenset({"Cf", "Cc", "Mn", "Me"})


def _all_dropped(gap: str) -> bool:
    return all(unicodedata.category(c) in _DROPPED_IN_WORDS and not c.isspace() for c in gap)


def _piece(
    text: str,
    offsets: list[tuple[int, int]],
    index: int,
    first: int,
    last: int,
    heading: int = 0,
    heading_end: int = 0,
) -> Piece:
    # Spans run from the first token's start to the last token's end, so the text between
    # tokens (spaces) stays inside and the piece re-tokenizes to the same tokens.
    start = 0 if first == 0 else offsets[first][0]
    return Piece(
        chunk_index=index,
        start=start,
        end=_end_past_marks(text, offsets, last),
        tokens=last - first + heading,
        heading_end=heading_end,
    )


def _end_past_marks(text: str, offsets: list[tuple[int, int]], last: int) -> int:
    """The end of token ``last - 1``, moved past combining marks no token covers (an uncased
    model drops the accent of a decomposed "é"; ending before it would split the letter)."""
    end = offsets[last - 1][1]
    limit = offsets[last][0] if last < len(offsets) else len(text)
    while end < limit and unicodedata.category(text[end]) in ("Mn", "Me"):
        end += 1
    return end
