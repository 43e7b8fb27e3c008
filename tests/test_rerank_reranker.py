"""Re-ranking semantics through the real default model (bundled, offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semrank import Reranker
from semrank.errors import InvalidInputError
from semrank.rerank import ChunkingConfig

FLEA_DOCS = ["Paris is in France.", "Fleas are small insects.", "Dogs can get fleas from grass."]


@pytest.fixture(scope="module")
def reranker() -> Reranker:
    return Reranker()


def test_flea_sentence_first_with_top_n(reranker):
    results = reranker.rerank(
        "what is a flea", ["Fleas are small insects.", "Paris is in France."], top_n=1
    )
    assert len(results) == 1
    assert results[0].index == 0 and results[0].document == "Fleas are small insects."
    assert 0.0 <= results[0].relevance_score <= 1.0


@pytest.mark.parametrize("module", ["semrank", "semrank.rerank._reranker"])
def test_the_docstring_examples_run_as_written(module):
    # help(semrank) and help(Reranker) show these first: they printed a list where none was
    # written, so a user checking them (python -m doctest) saw them fail.
    import doctest
    import importlib

    outcome = doctest.testmod(importlib.import_module(module))
    assert outcome.attempted >= 3 and outcome.failed == 0


def test_results_sorted_and_match_score(reranker):
    results = reranker.rerank("what is a flea", FLEA_DOCS)
    scores = reranker.score("what is a flea", FLEA_DOCS)
    assert scores.dtype == np.float32 and scores.shape == (3,)
    assert [r.index for r in results] == list(np.argsort(-scores, kind="stable"))
    for result in results:
        assert result.relevance_score == pytest.approx(float(scores[result.index]), abs=1e-7)


def test_score_does_not_depend_on_other_documents(reranker):
    alone = reranker.score("what is a flea", ["Fleas are small insects."])[0]
    many = reranker.score("what is a flea", [*FLEA_DOCS, "x " * 200, "short"])
    assert many[1] == pytest.approx(alone, abs=1e-5)


def test_min_score_filters(reranker):
    scores = reranker.score("what is a flea", FLEA_DOCS)
    threshold = float(np.median(scores))
    kept = reranker.rerank("what is a flea", FLEA_DOCS, min_score=threshold)
    assert {r.index for r in kept} == {i for i, s in enumerate(scores) if s >= threshold}


def test_raw_scores_are_the_untransformed_values(reranker):
    raw = reranker.score("what is a flea", FLEA_DOCS, raw=True)
    mapped = reranker.score("what is a flea", FLEA_DOCS)
    if reranker.scorer.activation == "cosine":  # a bi-encoder maps cosine c to (c + 1) / 2
        expected = (raw + 1) / 2
    else:  # a cross-encoder (or blend) maps its logit through the sigmoid
        expected = 1 / (1 + np.exp(-raw.astype(np.float64)))
    np.testing.assert_allclose(mapped, expected, atol=1e-6)


def test_dict_documents_with_rank_fields_return_originals(reranker):
    docs = [
        {"title": "Paris", "body": "capital of France"},
        {"title": "Flea", "body": "a small insect"},
    ]
    results = reranker.rerank("what is a flea", docs, rank_fields=["title", "body"])
    assert results[0].document is docs[1]
    no_docs = reranker.rerank("what is a flea", docs, rank_fields=["body"], return_documents=False)
    assert all(r.document is None for r in no_docs)


def test_long_document_is_chunked_with_provenance(reranker):
    filler = "The city council discussed parking fees and road repairs. " * 60
    doc = filler + "Fleas are small wingless insects that feed on blood. " + filler
    result = reranker.rerank("what is a flea", [doc])[0]
    assert result.num_chunks > 1 and not result.truncated
    assert result.chunk is not None
    assert "Fleas are small" in doc[result.chunk.start : result.chunk.end]
    truncated = reranker.rerank("what is a flea", [doc], chunking=False)[0]
    assert truncated.truncated and truncated.chunk is None
    assert truncated.tokens < result.tokens
    assert result.relevance_score > truncated.relevance_score
    # Each window's span and score (a search's semantic highlight orders them): the best is
    # the chunk reported, its score the document's under max aggregation.
    assert len(result.window_scores) == result.num_chunks
    best = max(result.window_scores, key=lambda window: window[2])
    assert best[:2] == (result.chunk.start, result.chunk.end)
    assert best[2] == pytest.approx(result.relevance_score)
    assert [w[0] for w in result.window_scores] == sorted(w[0] for w in result.window_scores)
    (whole,) = truncated.window_scores
    assert whole[2] == pytest.approx(truncated.relevance_score)


def test_later_chunks_read_the_title_again(reranker):
    filler = "The city council discussed parking fees and road repairs. " * 30
    doc = "Fleas\n" + filler + "They are wingless insects that feed on blood. " + filler
    query = "what do fleas eat"
    result = reranker.rerank(query, [doc])[0]
    assert result.chunk is not None and result.chunk.index > 0
    span = doc[result.chunk.start : result.chunk.end]
    assert "feed on blood" in span and not span.startswith("Fleas")
    # The best chunk was scored as the title followed by the chunk.
    alone = reranker.score(query, ["Fleas\n" + span], chunking=False)[0]
    assert result.relevance_score == pytest.approx(float(alone), abs=0.02)
    without = reranker.rerank(query, [doc], chunking=ChunkingConfig(heading_tokens=0))[0]
    assert result.relevance_score > without.relevance_score


def test_mean_aggregation_is_not_above_max(reranker):
    doc = "Fleas bite. " * 10 + "Taxes are due in April. " * 200
    best = reranker.rerank("flea bites", [doc])[0].relevance_score
    mean = reranker.rerank("flea bites", [doc], chunking=ChunkingConfig(aggregation="mean"))[0]
    assert mean.relevance_score < best


def test_max_tokens_per_doc_truncates_and_reports(reranker):
    result = reranker.rerank(
        "flea", ["one two three four five six seven eight"], max_tokens_per_doc=3, chunking=False
    )[0]
    assert result.tokens == 3 and result.truncated


def test_rerank_many_equals_single_calls(reranker):
    queries = ["what is a flea", "capital of France"]
    batched = reranker.rerank_many(queries, [FLEA_DOCS, FLEA_DOCS])
    for query, group in zip(queries, batched, strict=True):
        single = reranker.rerank(query, FLEA_DOCS)
        assert [r.index for r in group] == [r.index for r in single]
        assert [r.relevance_score for r in group] == pytest.approx(
            [r.relevance_score for r in single], abs=1e-6
        )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.rerank("", ["a"]), "query is empty"),
        (lambda r: r.rerank("q", []), "documents is empty"),
        (lambda r: r.rerank("q", ["a"], top_n=0), "top_n=0 must be >= 1"),
        (lambda r: r.rerank("q", ["a", None]), r"documents\[1\] is a NoneType"),
        (lambda r: r.rerank("q", "just a string"), "documents must be a list"),
        (
            lambda r: r.rerank("q", ["a"], max_tokens_per_doc=0),
            "max_tokens_per_doc must be a positive",
        ),
        (lambda r: r.rerank_many(["q"], [["a"], ["b"]]), "1 queries but 2 document lists"),
        (lambda r: r.rerank_many("ab", [["a"], ["b"]]), "queries must be a list of strings"),
        (lambda r: r.rerank_many(None, None), "queries must be a list of strings"),
        (lambda r: r.rerank_many(["q"], None), "documents must be a list of document lists"),
        (lambda r: r.rerank("q", [{"text": "a"}], rank_fields=5), "rank_fields must be a list"),
        (lambda r: r.rerank("q", ["a"], chunking="no"), "chunking must be a ChunkingConfig"),
        (lambda r: r.score("q", ["a"], chunking={"enabled": False}), "chunking must be a Chunk"),
        # A null text was ranked as an empty document.
        (lambda r: r.rerank("q", ["a", {"text": None}]), r"documents\[1\]\.text is null"),
        (
            lambda r: r.rerank("q", [{"t": None, "b": None}], rank_fields=["t", "b"]),
            r"\['t', 'b'\] are all null",
        ),
    ],
)
def test_bad_input_raises_named_errors(reranker, call, message):
    with pytest.raises(InvalidInputError, match=message):
        call(reranker)


def test_constructor_chunking_false_turns_chunking_off(reranker):
    plain = Reranker(scorer=reranker.scorer, chunking=False)
    result = plain.rerank("what is a flea", ["flea " * 2000])[0]
    assert result.num_chunks == 1 and result.truncated


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"chunking": {"max_chunks": 2}}, "chunking must be a ChunkingConfig"),
        ({"cascade": 5}, "cascade must be a CascadeConfig"),
        ({"threads": 0}, "threads must be a positive integer"),
        ({"threads": 1.5}, "threads must be a positive integer"),
        # ONNX Runtime started 300 threads per network: requests ran 30-100x slower.
        ({"threads": 100_000}, r"threads must be a positive integer, at most \d+ \(twice the"),
    ],
)
def test_bad_constructor_options_are_named(reranker, options, message):
    with pytest.raises(InvalidInputError, match=message):
        Reranker(scorer=reranker.scorer, **options)


def test_unknown_model_kind_is_named():
    with pytest.raises(InvalidInputError, match="unknown model kind 'bogus'"):
        Reranker(kind="bogus")  # type: ignore[arg-type]


def test_max_tokens_per_doc_caps_what_is_read_with_chunking_on(reranker):
    """Cohere's meaning: at most that many tokens of each document are read (in the model's
    windows); it used to set the window size, so 10 read a long document in 10-token pieces."""
    doc = " ".join(f"w{i}" for i in range(400))  # about 800 tokens
    capped = reranker.rerank("flea", [doc], max_tokens_per_doc=10)[0]
    assert capped.truncated and capped.num_chunks == 1 and capped.tokens <= 10
    wide = reranker.rerank("flea", [doc], max_tokens_per_doc=300)[0]
    assert wide.truncated and 1 < wide.num_chunks <= 3
    assert wide.chunk is not None and doc[: wide.chunk.end].count(" ") < 150  # within 300 tokens
    whole = reranker.rerank("flea", [doc], max_tokens_per_doc=4096)[0]
    assert not whole.truncated and whole.num_chunks > wide.num_chunks


class _CountingTokenizer:
    """The model's tokenizer, recording the longest text it was asked to split."""

    def __init__(self, inner) -> None:
        self.inner, self.longest = inner, 0

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        self.longest = max(self.longest, len(text))
        return list(self.inner.token_offsets(text))


class _CountingScorer:
    """The model's scorer behind a ``_CountingTokenizer``, recording the longest document text
    it was given to score."""

    def __init__(self, reranker: Reranker) -> None:
        inner = reranker.scorer
        self.inner, self.tokenizer = inner, _CountingTokenizer(inner.tokenizer)
        self.kind, self.activation, self.max_length = inner.kind, inner.activation, inner.max_length
        self.longest_pair = 0

    def doc_token_budget(self, query: str) -> int:
        return int(self.inner.doc_token_budget(query))

    def score_pairs(self, pairs):
        self.longest_pair = max(self.longest_pair, *(len(d) for _, d in pairs))
        return self.inner.score_pairs(pairs)


def test_a_huge_document_is_tokenized_only_as_far_as_it_can_be_read(reranker):
    scorer = _CountingScorer(reranker)
    counted = Reranker("counted", scorer=scorer, feedback=False)
    huge = "fleas eat blood. " * 200_000  # 3.4 MB
    result = counted.rerank("what do fleas eat", [huge], chunking=ChunkingConfig(max_chunks=2))[0]
    assert result.truncated and result.num_chunks == 2
    assert scorer.tokenizer.longest < len(huge) // 10
    assert result.chunk is not None and huge[result.chunk.start : result.chunk.end].strip()


def test_a_document_of_few_huge_tokens_is_read_from_a_bounded_head(reranker):
    """A 4 MB base64 image is one [UNK] for WordPiece: the head grew to the whole text, and the
    model thread tokenized all of it again (seconds per request, shared by every client)."""
    from semrank.runtime.tokenizer import MAX_HEAD_CHARS

    scorer = _CountingScorer(reranker)
    counted = Reranker("counted", scorer=scorer, feedback=False)
    image = "Fleas feed on blood. data:image/png;base64," + "QUJD" * 1_000_000
    (result,) = counted.rerank("what do fleas eat", [image])
    assert result.truncated and 0 < result.tokens < 50
    assert scorer.tokenizer.longest <= MAX_HEAD_CHARS
    assert scorer.longest_pair <= MAX_HEAD_CHARS
    # Whitespace past the head is nothing unread: the last word stays and nothing is cut.
    text = "fleas feed on blood"
    padded, plain = counted.rerank("what do fleas eat", [text + " " * (4 * MAX_HEAD_CHARS), text])
    assert not padded.truncated and padded.tokens == plain.tokens
    assert padded.relevance_score == pytest.approx(plain.relevance_score, abs=1e-6)


def test_chunk_offsets_of_a_multi_field_document_point_into_its_own_field(reranker):
    """Offsets pointed into the internal "title: ...\\ntext: ..." string, shifted by the labels
    from anything the caller holds."""
    body = "Cats sleep most of the day. " * 60 + "Fleas feed on the blood of mammals. " * 3
    doc = {"title": "Fleas", "text": body}
    result = reranker.rerank("what do fleas eat", [doc], rank_fields=["title", "text"])[0]
    assert result.num_chunks > 1 and result.chunk is not None
    assert result.chunk.field == "text"
    shown = body[result.chunk.start : result.chunk.end]
    assert "Fleas feed on the blood" in shown and 0 < len(shown) < len(body)
    single = reranker.rerank("what do fleas eat", [body])[0]
    assert single.chunk is not None and single.chunk.field is None
    # A first window reads the title, then mostly text: it names the text.
    first = {"title": "Fleas", "text": "Fleas feed on blood. " + "Cats nap. " * 200}
    opening = reranker.rerank("what do fleas eat", [first], rank_fields=["title", "text"])[0]
    assert opening.chunk is not None and opening.chunk.index == 0
    assert opening.chunk.field == "text" and opening.chunk.start == 0


def test_max_tokens_per_doc_is_how_far_a_document_is_read(reranker: Reranker) -> None:
    """16 overlapping windows stopped at ~1,568 tokens: a 1,700-token document sent with
    max_tokens_per_doc 1,800 was cut (and refused where truncation was not allowed)."""
    words = [f"w{n % 97}" for n in range(2600)]
    document = " ".join([*words[:-1], "aardvark"])  # the word that matters is the last one
    total = reranker.scorer.tokenizer.count_tokens(document)
    (default,) = reranker.rerank("aardvark", [document])
    assert default.truncated  # read to its 16 windows' end, as documented
    (asked,) = reranker.rerank("aardvark", [document], max_tokens_per_doc=total + 10)
    assert not asked.truncated and asked.num_chunks > default.num_chunks
    assert asked.chunk is not None and asked.chunk.end == len(document)
    (short,) = reranker.rerank("aardvark", [document], max_tokens_per_doc=300)
    assert short.truncated and short.num_chunks < default.num_chunks
    # A max_chunks given is a bound (a client's cost limit), 16 too.
    for bound in (2, 16):
        (capped,) = reranker.rerank(
            "aardvark",
            [document],
            max_tokens_per_doc=total,
            chunking=ChunkingConfig(max_chunks=bound),
        )
        assert capped.truncated and capped.num_chunks == bound
    # A ChunkingConfig without one reads as far as asked, as HTTP's `chunking: {}` does (its
    # default 16 bound the library and semrank.client while the server read on: rankings
    # differed between the surfaces).
    (configured,) = reranker.rerank(
        "aardvark",
        [document],
        max_tokens_per_doc=total + 10,
        chunking=ChunkingConfig(overlap_tokens=32),
    )
    assert (configured.num_chunks, configured.truncated) == (asked.num_chunks, False)
    assert configured.relevance_score == asked.relevance_score


def test_a_query_cut_next_to_the_long_window_is_said_whatever_the_short_last_one() -> None:
    """The longest window was taken as the mean of a document's windows: a short last one hid
    that a long query was cut next to the first (no warning, and no 413 over HTTP)."""
    from semrank.models import resolve

    cross_encoder = Reranker(str(Path(resolve("semrank-minilm-l6").path) / "cross-encoder"))
    query = " ".join(["how do fleas find a host animal to feed on"] * 30)  # about 330 tokens
    document = " ".join(["Fleas sense warmth, vibration and carbon dioxide from hosts."] * 25)
    (result,) = cross_encoder.rerank(query, [document])
    assert result.num_chunks == 2 and result.longest_piece > result.tokens / 2
    count, read = cross_encoder.query_read(query, [result])
    assert read < count
    warning = cross_encoder.query_cut_warning(query, [result])
    assert warning is not None and f"read its first {read}" in warning


def test_documents_past_float32s_sigmoid_keep_the_models_order(tiny_model, tmp_path) -> None:
    """A float32 sigmoid is 1.0 for every logit above ~17: such documents tied in 0..1 and came
    back in input order (the first stage's), not the model's; ties now fall to the logits."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "saturated"
    shutil.copytree(tiny_model("bert"), folder)
    weights = load_file(folder / "model.safetensors")
    weights["classifier.bias"] += 20.0  # every logit ~20, as a large reranker's can be
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    reranker = Reranker(str(folder))
    docs = ["paris city", "the flea bite", "a dog", "music song", "fish boat"]
    raw = reranker.rerank("flea", docs, raw_scores=True)
    unit = reranker.rerank("flea", docs)
    assert {result.relevance_score for result in unit} == {1.0}  # saturated: all tie in 0..1
    assert len({result.relevance_score for result in raw}) == len(docs)
    assert [result.index for result in unit] == [result.index for result in raw]
    assert reranker.rerank("flea", docs, top_n=1)[0].index == raw[0].index


def test_the_public_query_warnings_name_bad_input(reranker):
    """They raised the tokenizer's TypeError ("TextInputSequence must be str") and a bare
    "'NoneType' object is not iterable"; Reranker(backend=3) an AttributeError."""
    from semrank.errors import InvalidInputError, SemrankError

    with pytest.raises(InvalidInputError, match="query must be a string, got NoneType"):
        reranker.query_unknown_warning(None)
    with pytest.raises(InvalidInputError, match="results must be a list of RerankResult"):
        reranker.query_warnings("q", None)
    with pytest.raises(SemrankError, match=r"backend must be a name, got int \(3\)"):
        Reranker(backend=3)


@pytest.mark.parametrize("aggregation", ["mean", "topk_mean"])
def test_raw_scores_show_the_same_ranking_on_another_scale(aggregation: str) -> None:
    """A mean of windows' logits orders documents otherwise than a mean of their 0..1 scores:
    raw_scores=True put B (every window mildly relevant) above A (one window very relevant)."""
    from semrank import ChunkingConfig

    reranker = Reranker(feedback=False)
    query = "what do flea larvae eat"
    a = "Flea larvae eat organic debris and adult flea feces containing dried blood. " + " ".join(
        "Paris museum wine cheese bridge king history train." for _ in range(50)
    )
    b = " ".join("flea larva egg cocoon pupa insect host." for _ in range(60))
    chunking = ChunkingConfig(aggregation=aggregation)  # type: ignore[arg-type]
    scaled = reranker.rerank(query, [a, b], chunking=chunking)
    raw = reranker.rerank(query, [a, b], chunking=chunking, raw_scores=True)
    assert [r.index for r in raw] == [r.index for r in scaled]
    assert scaled[0].relevance_score > scaled[1].relevance_score
    # Shown on the logit scale, the scores need not fall in that order: min_score keeps every
    # document at or above it (it stopped at the first below, dropping B).
    threshold = max(r.relevance_score for r in raw) - 0.01
    kept = reranker.rerank(query, [a, b], chunking=chunking, raw_scores=True, min_score=threshold)
    assert [r.index for r in kept] == [r.index for r in raw if r.relevance_score >= threshold]
