"""BM25 through bm25s, with English stemming (PyStemmer) and English stop words.

Why bm25s: it is plain numpy/scipy (a sparse matrix of precomputed per-term document scores),
saves as ``.npy`` arrays plus JSON, memory-maps on load, and scores a query in milliseconds. SQLite
FTS5 ships a BM25 too, but with fixed k1=1.2/b=0.75 and no Lucene-variant IDF, so matching the
published Anserini numbers (Lucene BM25, k1=0.9, b=0.4) would need a custom ranking function.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from itertools import chain, islice, pairwise
from pathlib import Path
from typing import Any

import numpy as np

from semrank._checks import is_finite_number
from semrank._files import load_npy
from semrank.errors import InvalidInputError
from semrank.retrieve._bm25_build import build_into, fast_build_applies
from semrank.retrieve._hits import Hits, top_k

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
# How text becomes terms. 1: bm25s's pattern (runs of two or more \w) on the text as given,
# which splits words at every combining mark (Hindi "दिल्ली" gave no term, a decomposed "é" split
# "résumé") and reads a run of Chinese or Thai as one term; 2: text in NFC and a word's
# combining marks kept in it; 3: as 2, and scripts written without spaces read as pairs of
# letters (a CJK ideograph alone too); 4: as 3, and a capital dotted I (U+0130, Turkish and
# Azeri) read as I, whose lowercase is "i": lowercased, it is "i" and a combining dot, which
# split "İstanbul" into "stanbul" in a batch without other marks and kept it whole in one with
# them, so a document's own word missed it. Indexes keep the version they were built with
# (saved settings without one are version 1).
ANALYSIS_VERSIONS = (1, 2, 3, 4)
LEGACY_ANALYSIS = 1
MARKS_ANALYSIS = 2
DOTTED_I_ANALYSIS = 4
VOCAB_FILE = "vocab.index.json"  # written by bm25s; absent when no document had a term


@dataclass(frozen=True, kw_only=True)
class BM25Params:
    """Scoring and analysis settings; the defaults are Anserini's BEIR baseline (Lucene BM25)."""

    method: str = "lucene"
    k1: float = 0.9
    b: float = 0.4
    delta: float = 0.5  # only used by bm25l / bm25+
    stemmer: str | None = "english"
    stopwords: str | None = "en"
    analysis: int = ANALYSIS_VERSIONS[-1]

    def __post_init__(self) -> None:
        if self.analysis not in ANALYSIS_VERSIONS:
            raise InvalidInputError(
                f"unknown BM25 analysis version {self.analysis!r}; this semrank knows "
                f"{', '.join(map(str, ANALYSIS_VERSIONS))} (upgrade semrank to open the index)"
            )
        if self.method not in METHODS:
            raise InvalidInputError(
                f"unknown BM25 method {self.method!r}; choose one of: {', '.join(METHODS)}"
            )
        if not all(is_finite_number(v) for v in (self.k1, self.b, self.delta)):
            raise InvalidInputError(
                f"BM25 k1, b and delta must be finite numbers, got k1={self.k1!r} b={self.b!r} "
                f"delta={self.delta!r}"
            )
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise InvalidInputError(
                f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={self.k1} b={self.b}"
            )
        self._check_absent_term_score()
        self._check_analysis()

    def _check_absent_term_score(self) -> None:
        """BM25+ and BM25L score a term a document lacks, as 0/0 at these values: every score
        was NaN and every search found nothing."""
        if (self.method == "bm25+" and self.k1 == 0) or (
            self.method == "bm25l" and self.k1 + self.delta == 0
        ):
            raise InvalidInputError(
                f"BM25 method {self.method!r} with k1={self.k1} and delta={self.delta} scores "
                "nothing (0/0 for a term a document lacks); give k1 > 0, or another method"
            )

    def _check_analysis(self) -> None:
        """Refused here, when an index is created: found at its first write, a stemmer or
        stop-word list the tokenizer does not know left an index that no search could read.
        Everything the tokenizer takes passes (PyStemmer's ISO codes such as 'en', a list of
        stop words), so indexes created with them still open."""
        if self.stemmer is not None and not _stemmer_exists(self.stemmer):
            raise InvalidInputError(
                f"unknown BM25 stemmer {self.stemmer!r}; choose one of: "
                f"{', '.join(_stemmer_languages())} (or its ISO code), or None for no stemming"
            )
        words = self.stopwords
        if words is None or (
            isinstance(words, list | tuple) and all(isinstance(w, str) for w in words)
        ):
            return
        try:
            if not isinstance(words, str):
                raise TypeError
            _tokenize(["probe"], self, return_ids=False)
        except (KeyError, ValueError, TypeError):
            raise InvalidInputError(
                f"unknown BM25 stop-word list {words!r}; give a language such as 'en', 'de', "
                "'fr', 'es', 'it', 'nl', 'pt', 'ru', 'sv' (bm25s's lists), a list of words, or "
                "None to keep every word"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> BM25Params:
        known = {k: v for k, v in data.items() if k in BM25Params.__dataclass_fields__}
        return BM25Params(**{"analysis": LEGACY_ANALYSIS, **known})


@lru_cache(maxsize=1)
def _stemmer_languages() -> tuple[str, ...]:
    import Stemmer  # PyStemmer

    return tuple(Stemmer.algorithms())


def _stemmer_exists(language: object) -> bool:
    if not isinstance(language, str):
        return False
    try:
        _stemmer(language)
    except KeyError:  # PyStemmer: "Stemming algorithm '...' not found"
        return False
    return True


@lru_cache(maxsize=4)
def _stemmer(language: str | None) -> Any:
    if language is None:
        return None
    import Stemmer  # PyStemmer

    return Stemmer.Stemmer(language)


def _tokenize(texts: list[str], params: BM25Params, *, return_ids: bool, stem: bool = True) -> Any:
    """bm25s's tokenizer with ``params``' analysis: the terms of each text (ids into a
    vocabulary with ``return_ids``); with ``stem`` false, its words before stemming."""
    import bm25s

    pattern = LEGACY_PATTERN
    if params.analysis != LEGACY_ANALYSIS:
        pairs = params.analysis != MARKS_ANALYSIS
        dotted_i = params.analysis >= DOTTED_I_ANALYSIS
        texts = [
            text if text.isascii() else _prepared(text, pairs=pairs, dotted_i=dotted_i)
            for text in texts
        ]
        # The wide pattern costs about twice the narrow one, and gives the same terms for text
        # without marks or unspaced scripts: a batch of such text (most English) keeps the narrow.
        if any(not text.isascii() and _needs_wide_pattern(text) for text in texts):
            pattern = _wide_pattern(ideographs_alone=pairs)
    return bm25s.tokenize(
        texts,
        token_pattern=pattern,
        stopwords=params.stopwords or [],
        stemmer=_stemmer(params.stemmer) if stem else None,
        return_ids=return_ids,
        show_progress=False,
    )


LEGACY_PATTERN = r"(?u)\b\w\w+\b"  # bm25s's own: runs of two or more \w
# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, Hiragana and
# Katakana, CJK ideographs. A run of them is read as its overlapping pairs of characters (a
# character with its marks), as Lucene's CJK bigram filter reads Chinese, and a CJK ideograph
# also alone (its unigrams: 猫 is a word): words of one or two characters match, where the
# whole run was one term (or, split at marks, fragments).
_IDEOGRAPHS = (  # CJK ideographs: unified, extension A, compatibility, extensions B-H, U+3007
    "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
)
_UNSPACED = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"  # Thai and Lao, Myanmar, Khmer
    "\u3005\u3006\u3040-\u30ff\uff66-\uff9f" + _IDEOGRAPHS  # 々, 〆, kana, half-width katakana
)
_IDEOGRAPH = re.compile(f"[{_IDEOGRAPHS}]")
_UNSPACED_RUN = re.compile(f"[{_UNSPACED}]+")


def _prepared(text: str, *, pairs: bool, dotted_i: bool = False) -> str:
    text = text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)
    if dotted_i:  # the one character whose lowercase holds a combining mark
        text = text.replace("\u0130", "I")
    return _UNSPACED_RUN.sub(_bigrams, text) if pairs else text


def _bigrams(run: re.Match[str]) -> str:
    """A run of an unspaced script as its words' pairs of letters or digits (a letter with its
    marks); punctuation in the blocks (・, ။, ។) separates words and is no term."""
    words: list[list[str]] = [[]]
    for char in run[0]:
        kind = unicodedata.category(char)
        if kind.startswith("M") and words[-1]:
            words[-1][-1] += char  # a vowel sign or tone mark belongs to its letter
        elif kind.startswith("L") or kind in ("Nd", "Nl"):  # Thai ๒๕๖๖ is a number to find
            words[-1].append(char)
        elif words[-1]:
            words.append([])
    terms = []
    for letters in words:
        terms += [a + b for a, b in pairwise(letters)] or letters
        if len(letters) > 1:
            terms += [c for c in letters if _IDEOGRAPH.fullmatch(c)]
    return f" {' '.join(terms)} "


def _needs_wide_pattern(text: str) -> bool:
    return _marks_or_unspaced().search(text) is not None


@lru_cache(maxsize=1)
def _mark_ranges() -> str:
    """Every combining mark (categories Mn, Mc, Me) as a regex character-class body."""
    marks = []
    # Marks live in planes 0, 1 and 14 (planes 2-13 hold ideographs or nothing, 15-16 private use).
    for plane_start, plane_end in ((0, 0x20000), (0xE0000, 0xF0000)):
        first = None
        for code in range(plane_start, plane_end + 1):
            is_mark = code < plane_end and unicodedata.category(chr(code)) in ("Mn", "Mc", "Me")
            if is_mark and first is None:
                first = code
            elif not is_mark and first is not None:
                marks.append(f"\\U{first:08x}-\\U{code - 1:08x}")
                first = None
    return "".join(marks)


@lru_cache(maxsize=1)
def _marks_or_unspaced() -> re.Pattern[str]:
    return re.compile(f"[{_mark_ranges()}{_UNSPACED}]")


@lru_cache(maxsize=2)
def _wide_pattern(*, ideographs_alone: bool) -> str:
    """Runs of two or more word characters or combining marks (bm25s's runs of \\w, with the
    marks \\w does not match kept inside words), and with ``ideographs_alone`` one CJK
    ideograph (a one-character word: 猫)."""
    words = f"(?u)[\\w{_mark_ranges()}]{{2,}}"
    return f"{words}|[{_IDEOGRAPHS}]" if ideographs_alone else words


# Texts analysed per step: bm25s returns Python lists of term ids, about 480 MB for 200,000
# documents of 115 words at once, which the process kept (as free memory) once they were freed.
ANALYSIS_STEP = 10_000


def _analyse_in_steps(
    texts: Iterable[str], params: BM25Params
) -> tuple[dict[str, int], list[np.ndarray], np.ndarray]:
    """``(words, pieces, lengths)``: every word before stemming numbered in order of first
    occurrence (bm25s's order), each step's documents' words as those numbers, one after
    another, and each document's number of words. ``texts`` are read a step at a time (an
    index's rows stream from its database rather than all being held at once)."""
    words: dict[str, int] = {}
    pieces, lengths = [], []
    for step in _steps(texts, params):
        tokenized = _tokenize(step, params, return_ids=True, stem=False)
        counts = np.fromiter(map(len, tokenized.ids), np.int64, count=len(tokenized.ids))
        lengths.append(counts)
        renumber = np.empty(len(tokenized.vocab), np.int32)
        for word, number in tokenized.vocab.items():  # in order of first occurrence
            renumber[number] = words.setdefault(word, len(words))
        ids = np.fromiter(chain.from_iterable(tokenized.ids), np.int32, count=int(counts.sum()))
        pieces.append(renumber[ids])
    return words, pieces, np.concatenate(lengths) if lengths else np.zeros(0, np.int64)


def _steps(texts: Iterable[str], params: BM25Params) -> Iterator[list[str]]:
    """``texts`` in lists of ANALYSIS_STEP, none empty."""
    # Analyses 2 and 3 choose their pattern for all the texts analysed together, and the
    # choice changes the terms of "İstanbul" (ANALYSIS_VERSIONS): those keep one step.
    if MARKS_ANALYSIS <= params.analysis < DOTTED_I_ANALYSIS:
        everything = list(texts)
        yield from [everything] if everything else []
        return
    remaining = iter(texts)
    while step := list(islice(remaining, ANALYSIS_STEP)):
        yield step


def _stem_numbering(words: list[str], params: BM25Params) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(term_of_word, vocab)``: the term id of each of ``words`` (in order of first
    occurrence) and the terms, numbered as bm25s's tokenizer numbers them (in the order of a set
    of the stems), so that the index files are those of analysing every text in one step."""
    stemmer = _stemmer(params.stemmer)
    if stemmer is None:
        return np.arange(len(words), dtype=np.int32), tuple(words)
    stems = stemmer.stemWords(words)
    vocab = tuple(set(stems))
    number = {stem: n for n, stem in enumerate(vocab)}
    return np.fromiter((number[stem] for stem in stems), np.int32, count=len(stems)), vocab


@dataclass(frozen=True)
class DocTokens:
    """Every document's analysed terms, as ids into ``vocab``: what an index is built from.

    Kept beside a saved index so that a write analyses only the documents it changed (analysis
    is most of a build: 2.1 s of 3.5 s for 30,000 documents of 80 words)."""

    terms: np.ndarray  # int32: the documents' term ids one after another
    offsets: (
        np.ndarray
    )  # int64, one more than documents: document n is terms[offsets[n]:offsets[n+1]]
    vocab: tuple[str, ...]

    FILES = ("doc_terms.npy", "doc_offsets.npy", "doc_vocab.json")

    @classmethod
    def analyse(cls, texts: Iterable[str], params: BM25Params) -> DocTokens:
        """The terms of ``texts``, read a step at a time (ANALYSIS_STEP)."""
        words, pieces, lengths = _analyse_in_steps(texts, params)
        if not pieces:
            return cls(np.zeros(0, np.int32), np.zeros(1, np.int64), ())
        term_of_word, vocab = _stem_numbering(list(words), params)
        terms = np.concatenate(pieces)
        del pieces
        return cls(term_of_word[terms], np.concatenate(([0], np.cumsum(lengths))), vocab)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def documents(self) -> list[np.ndarray]:
        return np.split(self.terms, self.offsets[1:-1]) if len(self) else []

    @classmethod
    def combine(
        cls, old: DocTokens, new: DocTokens, sources: Sequence[tuple[bool, int]]
    ) -> DocTokens:
        """Documents taken from ``old`` or ``new`` (``(from_new, position)`` each, in order),
        over one vocabulary holding only the terms they use: the tokens a build from the
        texts themselves would give, up to the numbering of terms (which scores ignore)."""
        known = {word: number for number, word in enumerate(old.vocab)}
        vocab = list(old.vocab)
        renumber = np.empty(len(new.vocab), np.int32)
        for number, word in enumerate(new.vocab):
            renumber[number] = known.setdefault(word, len(vocab))
            if renumber[number] == len(vocab):
                vocab.append(word)
        old_docs, new_docs = old.documents(), new.documents()
        pieces = [renumber[new_docs[at]] if fresh else old_docs[at] for fresh, at in sources]
        lengths = np.fromiter(map(len, pieces), np.int64, count=len(pieces))
        joined = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
        # np.unique's numbering (used terms in id order), by marking rather than sorting: the
        # sort of every term took 6 s of a write's 20 s at 200,000 documents.
        present = np.zeros(len(vocab), bool)
        present[joined] = True
        renumber_used = np.cumsum(present, dtype=np.int64) - 1
        return cls(
            renumber_used[joined].astype(np.int32),
            np.concatenate(([0], np.cumsum(lengths))),
            tuple(vocab[number] for number in np.flatnonzero(present)),
        )

    def save(self, directory: Path) -> None:
        np.save(directory / self.FILES[0], self.terms)
        np.save(directory / self.FILES[1], self.offsets)
        (directory / self.FILES[2]).write_text(json.dumps(self.vocab), "utf-8")

    @classmethod
    def load(cls, directory: Path) -> DocTokens:
        terms = load_npy(directory / cls.FILES[0])
        offsets = load_npy(directory / cls.FILES[1])
        vocab = json.loads((directory / cls.FILES[2]).read_text("utf-8"))
        consistent = (
            terms.ndim == 1
            and offsets.ndim == 1
            and len(offsets) >= 1
            and offsets[0] == 0
            and offsets[-1] == len(terms)
            and bool(np.all(np.diff(offsets) >= 0))
            and isinstance(vocab, list)
            and (terms.size == 0 or 0 <= int(terms.min()) <= int(terms.max()) < len(vocab))
        )
        if not consistent:
            raise ValueError(f"damaged term files in {directory}")
        return cls(terms.astype(np.int32), offsets.astype(np.int64), tuple(vocab))


class BM25Index:
    """A BM25 index over a list of texts; results are row positions into that list."""

    def __init__(self, retriever: Any, params: BM25Params, num_docs: int) -> None:
        self._retriever = retriever
        self.params = params
        self.num_docs = num_docs

    @classmethod
    def build(cls, texts: Sequence[str], params: BM25Params | None = None) -> BM25Index:
        params = params or BM25Params()
        odd = next((n for n, text in enumerate(texts) if not isinstance(text, str)), None)
        if odd is not None:
            raise InvalidInputError(
                f"texts[{odd}] is {texts[odd]!r:.60}, not a string; index text (use '' for a "
                "document without any)"
            )
        return cls.from_tokens(DocTokens.analyse(texts, params), params)

    @classmethod
    def from_tokens(cls, tokens: DocTokens, params: BM25Params) -> BM25Index:
        """The index of documents already analysed (with ``params``' analysis)."""
        import bm25s

        if not tokens.vocab:  # no text, or only stop words: nothing matches
            return cls(None, params, len(tokens))
        vocab = {word: number for number, word in enumerate(tokens.vocab)}
        retriever = bm25s.BM25(method=params.method, k1=params.k1, b=params.b, delta=params.delta)
        if fast_build_applies():
            build_into(retriever, tokens.terms, tokens.offsets, vocab)
        else:
            corpus = [document.tolist() for document in tokens.documents()]
            retriever.index((corpus, vocab), show_progress=False)
        return cls(retriever, params, len(tokens))

    def save(self, directory: Path) -> None:
        """Write the index files (``*.npy``, ``vocab.index.json``, ``params.index.json``); an
        index without terms writes none."""
        directory.mkdir(parents=True, exist_ok=True)
        if self._retriever is not None:
            self._retriever.save(str(directory), show_progress=False)

    @classmethod
    def load(
        cls, directory: Path, params: BM25Params, num_docs: int, *, mmap: bool = True
    ) -> BM25Index:
        import bm25s

        if num_docs == 0 or not (directory / VOCAB_FILE).is_file():
            if any(directory.glob("*.index.*")):  # bm25s's other files without its vocabulary
                raise ValueError(f"{directory}: {VOCAB_FILE} is missing; build it again")
            return cls(None, params, num_docs)
        retriever = bm25s.BM25.load(str(directory), mmap=mmap, show_progress=False)
        return cls(retriever, params, num_docs)

    def query_tokens(self, query: str) -> list[str]:
        """The analysed terms of ``query`` that occur in the index vocabulary."""
        if not isinstance(query, str):
            raise InvalidInputError(f"a BM25 query is a string, got {query!r:.60}")
        if self._retriever is None:
            return []
        tokens: list[list[str]] = _tokenize([query], self.params, return_ids=False)
        vocab = self._retriever.vocab_dict
        return [t for t in tokens[0] if t in vocab]

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document (float32, shape ``(num_docs,)``); 0 = no shared term."""
        tokens = self.query_tokens(query)
        if not tokens:
            return np.zeros(self.num_docs, dtype=np.float32)
        # bm25s adds a term's postings once per occurrence in the query: a long pasted query
        # (150,000 words, 7,474 distinct) took 13 s. Each term is scored once, times its count.
        terms_by_count: dict[int, list[str]] = {}
        for term, count in Counter(tokens).items():
            terms_by_count.setdefault(count, []).append(term)
        total = np.zeros(self.num_docs, dtype=np.float32)
        for count, terms in terms_by_count.items():
            total += count * np.asarray(self._retriever.get_scores(terms), dtype=np.float32)
        return total

    def search(self, query: str, k: int) -> Hits:
        """Top ``k`` positions with a positive score, best first."""
        return top_k(self.scores(query), k, positive_only=True)
