"""Unit tests of the scoring logic's pure parts: documents, chunk planning, aggregation."""

from __future__ import annotations

import itertools
import re
import unicodedata

import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.rerank import ChunkingConfig, document_texts
from semrank.rerank._aggregate import aggregate
from semrank.rerank._chunking import plan_document
from semrank.rerank._documents import (
    field_spans,
    validate_min_score,
    validate_query,
    validate_top_n,
)


def whitespace_offsets(text: str) -> list[tuple[int, int]]:
    offsets, position = [], 0
    for word in text.split(" "):
        offsets.append((position, position + len(word)))
        position += len(word) + 1
    return offsets


def test_strings_pass_through_and_dicts_use_text_field():
    assert document_texts(["a", {"text": "b", "title": "t"}]) == ["a", "b"]


def test_rank_fields_pick_and_order_fields():
    doc = {"title": "Fleas", "text": "small insects", "year": 2020}
    assert document_texts([doc], ["text"]) == ["small insects"]
    assert document_texts([doc], ["title", "year"]) == ["title: Fleas\nyear: 2020"]


def test_dict_missing_rank_field_names_field_and_index():
    with pytest.raises(InvalidInputError, match=r"documents\[1\] has no field 'body'"):
        document_texts([{"body": "x"}, {"text": "y"}], ["body"])


def test_dict_without_text_and_no_rank_fields_says_to_pass_rank_fields():
    with pytest.raises(InvalidInputError, match=r"no field 'text'.*rank_fields"):
        document_texts([{"title": "x"}])


COMPOSED, DECOMPOSED = (unicodedata.normalize(form, "résumé") for form in ("NFC", "NFD"))


@pytest.mark.parametrize(("key", "asked"), [(DECOMPOSED, COMPOSED), (COMPOSED, DECOMPOSED)])
def test_field_names_match_whether_composed_or_decomposed(key: str, asked: str) -> None:
    """macOS tools save headers decomposed ("re\u0301sume\u0301"), a keyboard types them
    composed: the same name was "no such field". The document's own spelling is what is read
    (its label) and what chunk offsets name."""
    doc = {"title": "Ada", key: "gardener and botanist"}
    assert document_texts([doc], [asked]) == ["gardener and botanist"]
    assert document_texts([doc], ["title", asked]) == document_texts([doc], ["title", key])
    assert document_texts([doc], ["title", asked]) == [f"title: Ada\n{key}: gardener and botanist"]
    assert field_spans([doc], ["title", asked]) == field_spans([doc], ["title", key])
    assert field_spans([doc], ["title", asked])[0][1][0] == key  # type: ignore[index]
    with pytest.raises(InvalidInputError, match="names a field twice"):
        document_texts([doc], [key, asked])


def test_non_string_document_is_named():
    with pytest.raises(InvalidInputError, match=r"documents\[1\] is a int \(42\)"):
        document_texts(["ok", 42])


def test_empty_documents_and_query_errors():
    with pytest.raises(InvalidInputError, match="documents is empty"):
        document_texts([])
    with pytest.raises(InvalidInputError, match="query is empty"):
        validate_query("   ")
    # Tokenizers drop these, so the model read no query and ranked empty documents first.
    for invisible in ("\u200b", "\ufeff ", "\x00", "\u0301"):
        with pytest.raises(InvalidInputError, match="query is blank"):
            validate_query(invisible)
    assert validate_query("\u200bfleas") == "\u200bfleas"
    with pytest.raises(InvalidInputError, match="query must be a string, got int"):
        validate_query(3)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_top_n_must_be_positive_int(bad):
    with pytest.raises(InvalidInputError, match="top_n"):
        validate_top_n(bad)


def test_min_score_must_be_finite_number():
    assert validate_min_score(0.5) == 0.5
    with pytest.raises(InvalidInputError, match="min_score must be finite"):
        validate_min_score(float("nan"))


def test_short_document_is_one_piece():
    text = "one two three"
    plan = plan_document(text, whitespace_offsets(text), 10, ChunkingConfig())
    assert len(plan.pieces) == 1 and not plan.truncated
    assert (plan.pieces[0].start, plan.pieces[0].end, plan.pieces[0].tokens) == (0, 13, 3)


def test_truncation_keeps_the_first_budget_tokens():
    text = "w0 w1 w2 w3 w4 w5"
    plan = plan_document(text, whitespace_offsets(text), 4, ChunkingConfig(enabled=False))
    assert plan.truncated and plan.total_tokens == 6
    piece = plan.pieces[0]
    assert text[piece.start : piece.end] == "w0 w1 w2 w3"


def test_chunks_overlap_and_cover_the_whole_document():
    words = [f"w{i}" for i in range(10)]
    text = " ".join(words)
    plan = plan_document(text, whitespace_offsets(text), 4, ChunkingConfig(overlap_tokens=1))
    chunks = [text[p.start : p.end].strip().split(" ") for p in plan.pieces]
    assert chunks == [words[0:4], words[3:7], words[6:10]]
    assert not plan.truncated


def test_max_chunks_caps_and_reports_truncation():
    text = " ".join(f"w{i}" for i in range(20))
    plan = plan_document(
        text, whitespace_offsets(text), 4, ChunkingConfig(overlap_tokens=0, max_chunks=2)
    )
    assert len(plan.pieces) == 2 and plan.truncated


def word_offsets(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def test_overlapping_chunks_capped_by_max_chunks_report_truncation():
    # 2 chunks of 4 with overlap 2 read 6 of 7 tokens although their token counts sum to 8.
    text = " ".join(f"w{i}" for i in range(7))
    plan = plan_document(
        text, whitespace_offsets(text), 4, ChunkingConfig(overlap_tokens=2, max_chunks=2)
    )
    assert len(plan.pieces) == 2 and plan.truncated and plan.read_tokens == 6


def test_heading_is_read_again_before_every_later_chunk():
    body = " ".join(f"w{i}" for i in range(10))
    text = "Big title\n" + body
    plan = plan_document(text, word_offsets(text), 6, ChunkingConfig(overlap_tokens=0))
    read = [p.text_in(text) for p in plan.pieces]
    assert read == ["Big title\nw0 w1 w2 w3", "Big title\nw4 w5 w6 w7", "Big title\nw8 w9"]
    # Provenance is the document's own span; the heading is counted in what the model read.
    second = plan.pieces[1]
    assert text[second.start : second.end] == "w4 w5 w6 w7" and second.tokens == 6
    assert not plan.truncated


def test_heading_off_long_or_missing_gives_plain_windows():
    body = " ".join(f"w{i}" for i in range(10))
    plain = plan_document(body, word_offsets(body), 6, ChunkingConfig(overlap_tokens=0))
    assert [p.heading_end for p in plain.pieces] == [0, 0]
    titled = "Big title\n" + body
    off = plan_document(
        titled, word_offsets(titled), 6, ChunkingConfig(overlap_tokens=0, heading_tokens=0)
    )
    assert [p.text_in(titled) for p in off.pieces] == [
        "Big title\nw0 w1 w2 w3",
        "w4 w5 w6 w7 w8 w9",
    ]
    # A first line over half the window is text, not a heading.
    long_first = "a b c d\n" + body
    plan = plan_document(long_first, word_offsets(long_first), 6, ChunkingConfig(overlap_tokens=0))
    assert all(p.heading_end == 0 for p in plan.pieces)
    with pytest.raises(InvalidInputError, match="heading_tokens=-1"):
        ChunkingConfig(heading_tokens=-1)


def test_aggregation_modes():
    scores = np.array([0.2, 0.9, 0.5], dtype=np.float32)
    assert aggregate(scores, ChunkingConfig(aggregation="max")) == (pytest.approx(0.9), 1)
    assert aggregate(scores, ChunkingConfig(aggregation="mean"))[0] == pytest.approx(1.6 / 3)
    assert aggregate(scores, ChunkingConfig(aggregation="topk_mean", top_k=2))[0] == pytest.approx(
        0.7
    )


def test_unknown_aggregation_is_an_error():
    with pytest.raises(InvalidInputError, match="'median' is unknown"):
        ChunkingConfig(aggregation="median")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"enabled": "no"}, "enabled must be True or False, got 'no'"),
        ({"overlap_tokens": 2.5}, "overlap_tokens must be an integer, got 2.5"),
        ({"max_chunks": "3"}, "max_chunks must be an integer, got '3'"),
        ({"top_k": None}, "top_k must be an integer, got None"),
        ({"heading_tokens": float("nan")}, "heading_tokens must be an integer, got nan"),
    ],
)
def test_chunking_config_rejects_non_integer_values(options, message):
    with pytest.raises(InvalidInputError, match=message):
        ChunkingConfig(**options)


def test_numpy_scalars_count_as_numbers_and_bools_do_not():
    top_n = validate_top_n(np.int64(3))
    assert top_n == 3 and type(top_n) is int
    assert validate_min_score(np.float32(0.5)) == 0.5
    assert ChunkingConfig(max_chunks=np.int64(4), overlap_tokens=np.int32(8)).max_chunks == 4
    for bad in (True, np.float64(2.0), "3"):
        with pytest.raises(InvalidInputError, match="top_n"):
            validate_top_n(bad)
    with pytest.raises(InvalidInputError, match="min_score"):
        validate_min_score(np.float32("nan"))


def test_later_chunks_start_at_a_word_not_inside_one() -> None:
    """Windows started on word pieces: "cocoons" was read as "ons"."""
    from semrank import Reranker
    from semrank.rerank import ChunkingConfig
    from semrank.rerank._chunking import plan_document

    tokenizer = Reranker().scorer.tokenizer
    text = " ".join(["unbelievably", "cocoons", "photosynthesis", "x"] * 80)
    offsets = tokenizer.token_offsets(text)
    plan = plan_document(text, offsets, 40, ChunkingConfig(overlap_tokens=8, heading_tokens=0))
    assert len(plan.pieces) > 3
    for piece in plan.pieces[1:]:
        assert text[piece.start - 1] == " ", text[piece.start - 5 : piece.start + 10]


def test_windows_without_overlap_start_at_a_word_too() -> None:
    """With overlap 0 there was no room to look forward, and windows began inside words."""
    from semrank import Reranker
    from semrank.rerank import ChunkingConfig
    from semrank.rerank._chunking import plan_document

    tokenizer = Reranker().scorer.tokenizer
    text = " ".join(["unbelievably", "cocoons", "photosynthesis", "x"] * 30)
    offsets = tokenizer.token_offsets(text)
    plan = plan_document(text, offsets, 40, ChunkingConfig(overlap_tokens=0, heading_tokens=0))
    assert len(plan.pieces) > 3 and not plan.truncated
    for before, piece in zip(plan.pieces, plan.pieces[1:], strict=False):
        assert text[piece.start - 1] == " ", text[piece.start - 5 : piece.start + 10]
        assert before.start < piece.start  # advances
        assert not text[before.end : piece.start].strip()  # and leaves no text unread


def test_windows_start_at_a_word_in_scripts_with_vowel_signs() -> None:
    """Devanagari's vowel signs (category Mc) are not alphanumeric: windows began on one,
    inside a word ("ि" of "पिस्सू")."""
    from semrank import Reranker
    from semrank.rerank import ChunkingConfig
    from semrank.rerank._chunking import plan_document

    tokenizer = Reranker().scorer.tokenizer
    text = "पिस्सू छोटे कीड़े होते हैं जो कूदते हैं। " * 20
    plan = plan_document(text, tokenizer.token_offsets(text), 40, ChunkingConfig(heading_tokens=0))
    assert len(plan.pieces) > 3
    for piece in plan.pieces[1:]:  # at a word, or at the danda after one (a token of its own)
        starts_word = text[piece.start - 1] == " " or text[piece.start] == "।"
        assert starts_word, text[piece.start - 3 : piece.start + 5]


def test_windows_keep_words_joined_by_invisible_characters_and_accents_whole() -> None:
    """A soft hyphen or zero-width space inside a word (dropped by the tokenizer) made the
    next piece count as a word start ("Bundes\u00adtag" read as "tag"), and a window ending
    on a decomposed accent left the mark outside its span."""
    import unicodedata

    from semrank import Reranker
    from semrank.rerank import ChunkingConfig
    from semrank.rerank._chunking import plan_document

    tokenizer = Reranker().scorer.tokenizer
    config = ChunkingConfig(overlap_tokens=8, heading_tokens=0)
    joined = " ".join(["Bundes\u00adtag", "zero\u200bwidth", "cocoons", "x"] * 80)
    plan = plan_document(joined, tokenizer.token_offsets(joined), 40, config)
    assert len(plan.pieces) > 3
    for piece in plan.pieces[1:]:
        assert joined[piece.start - 1] == " ", joined[piece.start - 5 : piece.start + 10]
    accented = unicodedata.normalize("NFD", " ".join(["élevé café résumé"] * 120))
    plan = plan_document(accented, tokenizer.token_offsets(accented), 40, config)
    ends = [piece.end for piece in plan.pieces]
    assert len(ends) > 3
    assert not any(unicodedata.combining(accented[end]) for end in ends if end < len(accented))


@pytest.mark.parametrize("overlap", [8, 0])
def test_korean_windows_re_tokenize_to_the_tokens_planned(overlap: int) -> None:
    """The bundled (uncased) tokenizer reads a Hangul syllable as 2-3 jamo tokens, all with the
    syllable's offsets: a window cut between them re-tokenized to the whole syllable, a token
    or two over its budget (and over max_tokens_per_doc, cut at such a token)."""
    from semrank import Reranker
    from semrank.rerank import ChunkingConfig
    from semrank.rerank._chunking import plan_document
    from semrank.rerank._reranker import _plan_head

    tokenizer = Reranker().scorer.tokenizer
    text = "대한민국의 수도는 서울이며 한강이 도시를 가로질러 흐른다. 벼룩은 피를 먹고 산다. " * 20
    offsets = tokenizer.token_offsets(text)
    configs = (
        ChunkingConfig(overlap_tokens=overlap, heading_tokens=0),
        ChunkingConfig(enabled=False),
    )
    for budget in range(20, 60, 3):
        plans = [plan_document(text, offsets, budget, config) for config in configs]
        plans.append(_plan_head(text, tokenizer, budget, 128, configs[0]))  # max_tokens_per_doc
        for plan in plans:
            for piece in plan.pieces:
                assert tokenizer.count_tokens(piece.text_in(text)) == piece.tokens <= budget
        windows = plans[0].pieces
        assert len(windows) > 3
        for before, piece in itertools.pairwise(windows):
            assert before.start < piece.start and not text[before.end : piece.start].strip()


def test_list_like_inputs_that_are_not_lists_name_the_fix():
    """A numpy array of documents was refused without its value or the fix; of queries, with
    the hint "use rerank() for one query" for two of them."""
    import numpy as np

    from semrank.rerank import ChunkingConfig
    from semrank.rerank._documents import validate_queries

    with pytest.raises(InvalidInputError, match=r"ndarray \(array\(.*\.tolist\(\)"):
        document_texts(np.array(["fleas", "paris"]))
    with pytest.raises(InvalidInputError, match=r"ndarray to a list with \.tolist\(\)$"):
        validate_queries(np.array(["fleas", "paris"]))
    with pytest.raises(InvalidInputError, match=r"^top_k=-3 must be >= 1$"):
        ChunkingConfig(top_k=-3)
    with pytest.raises(InvalidInputError, match=r"^max_chunks=0 must be >= 1$"):
        ChunkingConfig(max_chunks=0)


def test_a_scorer_without_the_pair_scorer_members_is_refused_at_construction():
    from semrank import Reranker

    class OnlyScores:
        def score_pairs(self, pairs):
            return [0.0] * len(pairs)

    with pytest.raises(InvalidInputError, match="without doc_token_budget, tokenizer"):
        Reranker(scorer=OnlyScores())  # type: ignore[arg-type]


def test_the_package_lists_its_public_names():
    import semrank

    assert {"Reranker", "BatchingConfig", "ChunkingConfig"} <= set(dir(semrank))
    from semrank import BatchingConfig

    assert BatchingConfig(max_batch_size=8).max_batch_size == 8
