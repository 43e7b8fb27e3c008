"""BM25 through bm25s: ranking on a tiny corpus, analysis, persistence, parameters."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.retrieve import BM25Index, BM25Params

CORPUS = [
    "Python is a programming language with dynamic typing.",
    "The cobra and the python are snakes; pythons constrict their prey.",
    "Paris is the capital of France and sits on the Seine.",
    "A solar eclipse happens when the moon passes between the sun and the earth.",
]


def test_obvious_document_ranks_first() -> None:
    index = BM25Index.build(CORPUS)
    assert index.search("when does the moon hide the sun", k=4).ids[0] == 3
    assert index.search("capital of France", k=4).ids.tolist() == [2]


def test_stemming_and_stop_words() -> None:
    index = BM25Index.build(CORPUS)
    # "constricting" and "constrict" share the stem; "the"/"and" are stop words.
    assert index.query_tokens("the snakes and constricting") == ["snake", "constrict"]
    assert index.search("constricting", k=4).ids.tolist() == [1]
    assert len(index.search("the and of", k=4)) == 0  # nothing but stop words


def test_scores_match_lucene_bm25_by_hand() -> None:
    texts = ["apple banana", "apple apple cherry", "cherry date elderberry fig"]
    params = BM25Params(k1=0.9, b=0.4, stemmer=None, stopwords=None)
    scores = BM25Index.build(texts, params).scores("apple")
    lengths = np.array([2, 3, 4])
    avg = lengths.mean()
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # Lucene's IDF, df("apple") = 2
    tf = np.array([1, 2, 0])
    # Lucene (and bm25s's "lucene" method) drops BM25's constant (k1 + 1) numerator factor.
    expected = idf * tf / (tf + 0.9 * (1 - 0.4 + 0.4 * lengths / avg))
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_save_and_load_give_the_same_scores(tmp_path: Path) -> None:
    index = BM25Index.build(CORPUS)
    index.save(tmp_path)
    loaded = BM25Index.load(tmp_path, index.params, len(CORPUS))
    np.testing.assert_array_equal(loaded.scores("python snakes"), index.scores("python snakes"))


def test_empty_corpus_and_bad_parameters() -> None:
    assert len(BM25Index.build([]).search("anything", k=3)) == 0
    with pytest.raises(InvalidInputError, match="method"):
        BM25Params(method="tfidf")
    with pytest.raises(InvalidInputError, match="b <= 1"):
        BM25Params(b=1.5)


def test_texts_without_any_term_give_an_index_that_matches_nothing(tmp_path: Path) -> None:
    texts = ["", "   ", "the and of"]  # blank or stop words only: an empty vocabulary
    index = BM25Index.build(texts)
    index.save(tmp_path)
    loaded = BM25Index.load(tmp_path, index.params, len(texts))
    for bm25 in (index, loaded):
        assert bm25.scores("cats").tolist() == [0.0, 0.0, 0.0]
        assert len(bm25.search("cats", k=3)) == 0


@pytest.mark.parametrize("options", [{"k1": math.nan}, {"k1": "1.2"}, {"delta": math.inf}])
def test_bm25_parameters_must_be_finite_numbers(options) -> None:
    with pytest.raises(InvalidInputError, match="must be finite numbers"):
        BM25Params(**options)


@pytest.mark.parametrize(
    "options", [{"method": "bm25+", "k1": 0}, {"method": "bm25l", "k1": 0, "delta": 0}]
)
def test_parameters_that_score_every_document_nan_are_refused(options) -> None:
    """0/0 for a term a document lacks: every score was NaN and every search found nothing."""
    with pytest.raises(
        InvalidInputError, match=re.escape(f"method '{options['method']}' with k1=0")
    ):
        BM25Params(**options)
    assert BM25Params(**{**options, "k1": 0.1}).k1 == 0.1


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"stemmer": "klingon"}, "stemmer 'klingon'"),
        ({"stemmer": ""}, "stemmer ''"),
        ({"stopwords": "xx"}, "stop-word list 'xx'"),
        ({"stopwords": 5}, "stop-word list 5"),
    ],
)
def test_an_unknown_stemmer_or_stop_word_list_is_refused_before_any_index_holds_it(
    tmp_path: Path, options: dict[str, object], named: str
) -> None:
    """Accepted at creation, it failed the first write with a bare KeyError after the documents
    were stored, and every BM25 search of that index after it."""
    from semrank.store import create_index

    with pytest.raises(InvalidInputError, match=named):
        create_index("x", home=tmp_path, embedding_model=None, bm25=BM25Params(**options))  # type: ignore[arg-type]
    # What the tokenizer takes passes: indexes created with these must still open.
    assert BM25Params(stemmer="en", stopwords=["the", "of"]).stopwords == ["the", "of"]
    assert BM25Params.from_dict({"stemmer": "eng", "stopwords": ("a",)}).stemmer == "eng"
    german = BM25Params(stemmer="german", stopwords="de")
    index = BM25Index.build(["Die Häuser stehen am Fluss", "Ein Hund"], german)
    assert index.search("Haus", k=2).ids.tolist() == [0]


def test_words_keep_their_combining_marks_and_decomposed_text_matches_composed() -> None:
    """bm25s's pattern split words at every combining mark: Hindi "दिल्ली" gave no term at all,
    a Thai word became a fragment shared with others, and NFD "résumé" matched nothing."""
    import unicodedata

    docs = [
        "नई दिल्ली भारत की राजधानी है",  # New Delhi is India's capital
        "मुंबई एक बड़ा शहर है",  # Mumbai is a big city
        unicodedata.normalize("NFD", "a résumé of the café"),
        "ผมชอบกินข้าวผัดมาก",  # I like to eat fried rice (Thai: no spaces between words)
        "ร้านนี้ขายข้าวผัดกุ้งอร่อย",  # this shop sells tasty shrimp fried rice
        "แมวนอนบนโซฟา",  # the cat sleeps on the sofa
        "我喜欢猫",  # I like cats
        "北京是中国的首都",  # Beijing is China's capital
    ]
    index = BM25Index.build(docs, BM25Params(stemmer=None, stopwords=None))
    assert index.search("दिल्ली", 5).ids.tolist() == [0]
    assert index.search("résumé", 5).ids.tolist() == [2]  # composed query, decomposed text
    # A word inside a run of an unspaced script is found by its pairs of characters (and a
    # one-character Chinese word alone).
    assert sorted(index.search("ข้าวผัด", 5).ids.tolist()) == [3, 4]
    assert index.search("แมว", 5).ids.tolist() == [5]
    assert index.search("猫", 5).ids.tolist() == [6]
    assert index.search("首都", 5).ids.tolist() == [7]
    legacy = BM25Index.build(docs, BM25Params(stemmer=None, stopwords=None, analysis=1))
    assert legacy.search("दिल्ली", 5).ids.tolist() == []  # what indexes built before saw


def test_text_without_marks_is_analysed_as_before_and_old_settings_keep_their_analysis() -> None:
    from semrank.retrieve._bm25 import DocTokens

    english = [f"{CORPUS[0]} Vitamin C, hepatitis B; e-mail naïve_user 42x", *CORPUS]
    before = DocTokens.analyse(english, BM25Params(analysis=1))
    for version in (2, 3, 4):
        now = DocTokens.analyse(english, BM25Params(analysis=version))
        assert now.vocab == before.vocab and now.terms.tolist() == before.terms.tolist()
    # Settings saved before analysis versions existed are read as version 1, so an index keeps
    # the terms it was built with; new settings say which they use.
    saved = BM25Params().to_dict()
    del saved["analysis"]
    assert BM25Params.from_dict(saved).analysis == 1
    assert BM25Params.from_dict(BM25Params().to_dict()).analysis == 4
    with pytest.raises(InvalidInputError, match=r"unknown BM25 analysis version 9; .*upgrade"):
        BM25Params(analysis=9)


def test_a_query_repeating_terms_scores_each_occurrence() -> None:
    """Terms are scored once and weighted by their count (a pasted query of 150,000 words
    took 13 s term occurrence by occurrence): the scores are the per-occurrence sums."""
    index = BM25Index.build(CORPUS)
    query = "python python python snakes snakes prey language"
    tokens = index.query_tokens(query)
    assert len(tokens) > len(set(tokens))
    per_occurrence = sum(index.scores(token) for token in tokens)
    np.testing.assert_allclose(index.scores(query), per_occurrence, rtol=1e-6)
    assert index.scores("python python")[0] == pytest.approx(2 * index.scores("python")[0])


def test_each_analysis_version_keeps_its_terms_and_punctuation_is_no_term() -> None:
    """Version 2 (marks kept, no pairs) was changed in place to read unspaced scripts as pairs:
    indexes written with it were then searched with terms their documents lacked. Pairs are
    version 3; and punctuation inside those scripts' blocks (・, ။) was a term of its own."""
    from semrank.retrieve._bm25 import _tokenize

    plain = BM25Params(stemmer=None, stopwords=None, analysis=2)
    assert _tokenize(["北京是中国的首都 दिल्ली"], plain, return_ids=False) == [
        ["北京是中国的首都", "दिल्ली"]
    ]
    pairs = BM25Params(stemmer=None, stopwords=None)
    assert _tokenize(["スター・ウォーズ", "佐々木", "𠮷野家"], pairs, return_ids=False) == [
        ["スタ", "ター", "ウォ", "ォー", "ーズ"],
        ["佐々", "々木", "佐", "木"],
        ["𠮷野", "野家", "𠮷", "野", "家"],
    ]
    index = BM25Index.build(["スター・ウォーズ 新作映画", "ジョン・スミス・ジュニア"], pairs)
    assert index.search("スター・ウォーズ", 5).ids.tolist() == [0]
    # Native digits are terms, as every version kept them (Thai ๒๕๖๖: the year 2566).
    numbers = BM25Index.build(["งบประมาณปี ๒๕๖๖", "ការបោះឆ្នោតឆ្នាំ ២០២៤", "dogs"], pairs)
    assert numbers.search("๒๕๖๖", 5).ids.tolist() == [0]
    assert numbers.search("២០២៤", 5).ids.tolist() == [1]


def test_a_capital_dotted_i_is_found_whatever_else_a_batch_holds() -> None:
    """ "İ".lower() is "i" and a combining dot: a query (or a batch without other marks) split
    "İstanbul" into "stanbul", a batch holding Hindi kept it whole, and the document's own
    word missed it. Version 4 reads İ as I; version 3 keeps the terms it was written with."""
    from semrank.retrieve._bm25 import _tokenize

    docs = ["İstanbul boğazı", "दिल्ली शहर", "İzmir limanı"]  # noqa: RUF001 (Turkish dotless i)
    index = BM25Index.build(docs, BM25Params(stemmer=None, stopwords=None))
    for query in ("İstanbul", "istanbul", "ISTANBUL"):
        assert index.search(query, 5).ids.tolist() == [0], query
    assert index.search("İZMİR", 5).ids.tolist() == [2]
    v3 = BM25Params(stemmer=None, stopwords=None, analysis=3)
    assert _tokenize(["İstanbul दिल्ली"], v3, return_ids=False) == [["i̇stanbul", "दिल्ली"]]


# --- highlighting: fragments of a field holding a query's terms, with BM25's analysis -------
def _highlighted(
    text: str, query: str, params: BM25Params | None = None, **options: object
) -> list[str]:
    from semrank.retrieve import HighlightOptions, highlight_text, query_terms

    params = params or BM25Params()
    return highlight_text(text, query_terms([query], params), params, HighlightOptions(**options))


def test_highlight_marks_words_as_bm25_matched_them() -> None:
    """Stemmed and lowercased as the index reads them: "running" marks "runs" and "RUN";
    stop words and words that only share letters are left alone."""
    text = "The dog runs fast. RUN, said the runner; cells and a cell."
    assert _highlighted(text, "the running cells") == [
        "The dog <em>runs</em> fast. <em>RUN</em>, said the runner; <em>cells</em> and a "
        "<em>cell</em>."
    ]
    unstemmed = BM25Params(stemmer=None)
    assert _highlighted(text, "running cells", unstemmed) == [
        "The dog runs fast. RUN, said the runner; <em>cells</em> and a cell."
    ]
    assert _highlighted(text, "python") == []  # nothing matched, no_match_size 0: no fragment


def test_highlight_fragments_cut_on_word_boundaries_and_ordered() -> None:
    filler = "word " * 30
    text = f"{filler}alpha once here {filler}alpha and beta together {filler}"
    fragments = _highlighted(text, "alpha beta", fragment_size=40)
    assert len(fragments) == 2  # only the pieces holding a term, in document order
    assert "<em>alpha</em> once" in fragments[0] and "beta" not in fragments[0]
    assert "<em>alpha</em> and <em>beta</em>" in fragments[1]
    for fragment in fragments:  # whole words only, none longer than asked
        plain = fragment.replace("<em>", "").replace("</em>", "")
        assert len(plain) <= 40 and plain in text
        assert text[text.index(plain) - 1] == " " and plain == plain.strip()
    by_score = _highlighted(text, "alpha beta", fragment_size=40, order="score")
    assert by_score == fragments[::-1]  # both terms first, then document order
    assert _highlighted(text, "alpha beta", fragment_size=40, number_of_fragments=1) == [
        fragments[1]  # the best one, whatever the order
    ]
    whole = _highlighted(text, "alpha beta", number_of_fragments=0)
    marked = text.strip().replace("alpha", "<em>alpha</em>").replace("beta", "<em>beta</em>")
    assert whole == [marked]


def test_highlight_a_word_longer_than_a_fragment_is_kept_whole() -> None:
    long_word = "x" * 150
    assert _highlighted(f"{long_word} cells", "cells", fragment_size=50) == ["<em>cells</em>"]
    assert _highlighted(f"cells{'y' * 150}b cells", "cells", fragment_size=20) == ["<em>cells</em>"]


def test_highlight_tags_encoder_and_no_match_size() -> None:
    text = 'A <b>cell</b> & "stem" cells'
    assert _highlighted(text, "cells") == ['A <b><em>cell</em></b> & "stem" <em>cells</em>']
    assert _highlighted(text, "cells", encoder="html") == [
        "A &lt;b&gt;<em>cell</em>&lt;/b&gt; &amp; &quot;stem&quot; <em>cells</em>"
    ]
    # Several tags: each query term its own, in the query's order.
    assert _highlighted(text, "stem cell", pre_tags=["[", "{"], post_tags=["]", "}"]) == [
        'A <b>{cell}</b> & "[stem]" {cells}'
    ]
    assert _highlighted("Nothing to see here, move along", "cells", no_match_size=15) == [
        "Nothing to see"
    ]


def test_highlight_unicode_scripts_and_overlapping_pairs() -> None:
    """Offsets are the stored text's (a decomposed é, İ); a run of Japanese marks the places
    of the query's pairs of letters, overlapping pairs as one span."""
    assert _highlighted("私は東京都に住む", "東京都") == ["私は<em>東京都</em>に住む"]
    assert _highlighted("İstanbul'da bir gün", "istanbul") == ["<em>İstanbul</em>'da bir gün"]
    decomposed = "cafe\u0301 latte"
    assert _highlighted(decomposed, "café") == ["<em>cafe\u0301</em> latte"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"fragment_size": 0}, "fragment_size"),
        ({"number_of_fragments": -1}, "number_of_fragments"),
        ({"number_of_fragments": "3"}, "number_of_fragments"),
        ({"order": "best"}, "order"),
        ({"encoder": "xml"}, "encoder"),
        ({"type": "fast"}, "type"),
        ({"pre_tags": []}, "pre_tags"),
        ({"pre_tags": ["<b>", "<i>"]}, "pre_tags and post_tags"),
        ({"require_field_match": "yes"}, "require_field_match"),
        ({"no_match_size": 1.5}, "no_match_size"),
        ({"boundary_scanner": "sentence"}, "boundary_scanner"),
    ],
)
def test_highlight_options_are_checked(options: dict[str, object], named: str) -> None:
    from semrank.retrieve import parse_highlight

    with pytest.raises(InvalidInputError, match=re.escape(named)):
        parse_highlight({"fields": {"text": {}}, **options})
    with pytest.raises(InvalidInputError, match=re.escape(named)):
        parse_highlight({"fields": {"text": options}})


def test_highlight_spec_shapes() -> None:
    from semrank.retrieve import HighlightOptions, parse_highlight

    spec = parse_highlight(
        {"fragment_size": 50, "fields": [{"title": {"number_of_fragments": 0}}, {"text": {}}]}
    )
    assert spec.fields == (
        ("title", HighlightOptions(fragment_size=50, number_of_fragments=0)),
        ("text", HighlightOptions(fragment_size=50)),
    )
    assert parse_highlight("text") == parse_highlight({"fields": {"text": {}}})
    assert parse_highlight(["a", "b"]).fields[1] == ("b", HighlightOptions())
    for bad in ({}, {"fields": {}}, {"fields": [3]}, 7, {"fields": {"text": 3}}):
        with pytest.raises(InvalidInputError, match="highlight"):
            parse_highlight(bad)
