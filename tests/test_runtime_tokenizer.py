"""Pair encoding and truncation of the tokenizers-based wrapper."""

from __future__ import annotations

from pathlib import Path

import pytest

from semrank.runtime.base import TextTokenizer
from semrank.runtime.tokenizer import HFTokenizer, load_tokenizer
from tiny_models import build_tokenizer


@pytest.fixture()
def bert_tokenizer() -> HFTokenizer:
    return HFTokenizer(build_tokenizer("bert"), max_length=32)


def words(n: int) -> str:
    return " ".join(["flea"] * n)


def test_implements_text_tokenizer_protocol(bert_tokenizer: HFTokenizer) -> None:
    assert isinstance(bert_tokenizer, TextTokenizer)
    text = "Fleas bite, dogs itch"
    offsets = bert_tokenizer.token_offsets(text)
    assert len(offsets) == bert_tokenizer.count_tokens(text)
    assert text[offsets[0][0] : offsets[0][1]] == "Flea"  # "fleas" -> "flea", "##s"
    assert offsets[-1][1] == len(text)


def test_special_token_counts() -> None:
    assert HFTokenizer(build_tokenizer("bert"), 32).special_tokens_pair == 3
    assert HFTokenizer(build_tokenizer("bert"), 32).special_tokens_single == 2
    assert HFTokenizer(build_tokenizer("roberta"), 32).special_tokens_pair == 4


def test_only_the_document_is_truncated_for_a_short_query(bert_tokenizer: HFTokenizer) -> None:
    (enc,) = bert_tokenizer.encode_pairs([(words(5), words(100))])
    assert len(enc) == 32 and enc.truncated
    assert enc.ids.count(bert_tokenizer._tok.token_to_id("flea")) == 32 - 3
    assert enc.type_ids.count(0) == 5 + 2  # [CLS] query [SEP]: the query is whole


def test_document_budget_is_exact(bert_tokenizer: HFTokenizer) -> None:
    query = words(4)
    budget = bert_tokenizer.doc_token_budget(query)
    assert budget == 32 - 3 - 4
    fits, too_long = bert_tokenizer.encode_pairs(
        [(query, words(budget)), (query, words(budget + 1))]
    )
    assert not fits.truncated and len(fits) == 32
    assert too_long.truncated and len(too_long) == 32


def test_a_long_query_is_cut_to_half_the_budget(bert_tokenizer: HFTokenizer) -> None:
    available = 32 - 3
    long_doc, short_doc = bert_tokenizer.encode_pairs(
        [("dog " * 40, words(100)), ("dog " * 40, words(3))]
    )
    assert long_doc.type_ids.count(0) - 2 == available // 2
    assert short_doc.type_ids.count(0) - 2 == available - 3  # the short document is kept whole
    assert bert_tokenizer.doc_token_budget("dog " * 40) == available - available // 2


def test_an_empty_document_is_the_pairs_second_part(bert_tokenizer: HFTokenizer) -> None:
    """As the tokenizers library (TEI) and sentence-transformers' batched CrossEncoder encode
    it: [CLS] q [SEP] [SEP] (it was [CLS] q [SEP], transformers' one-pair call)."""
    (empty,) = bert_tokenizer.encode_pairs([(words(3), "")])
    reference = bert_tokenizer._tok.encode(words(3), "")
    assert empty.ids == reference.ids and empty.type_ids == reference.type_ids
    sep = bert_tokenizer._tok.token_to_id("[SEP]")
    assert empty.ids[-2:] == [sep, sep] and len(empty) == 3 + 3


def test_shared_query_encoding_is_not_mutated(bert_tokenizer: HFTokenizer) -> None:
    query = "dog " * 40
    first, second = bert_tokenizer.encode_pairs([(query, words(100)), (query, words(2))])
    assert first.type_ids.count(0) < second.type_ids.count(0)


def test_single_texts_are_truncated_to_max_length(bert_tokenizer: HFTokenizer) -> None:
    short, long = bert_tokenizer.encode_texts([words(3), words(100)])
    assert len(short) == 5 and not short.truncated
    assert len(long) == 32 and long.truncated


def test_tokenizer_json_settings_do_not_leak(minilm_dir: Path) -> None:
    """The bundled tokenizer.json pads and truncates to 128; neither may apply here."""
    tok = load_tokenizer(minilm_dir, 256)
    (enc,) = tok.encode_texts(["hello world"])
    assert len(enc) == 4
    assert tok.count_tokens("word " * 300) == 300


def test_vocab_txt_fallback_matches_tokenizer_json(minilm_dir: Path, tmp_path: Path) -> None:
    for name in ("vocab.txt", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((minilm_dir / name).read_bytes())
    from_json = load_tokenizer(minilm_dir, 128)
    from_vocab = load_tokenizer(tmp_path, 128)
    pairs = [("What is a Flea?", "Fleas are small insects; they JUMP far. " * 20)]
    assert from_vocab.encode_pairs(pairs) == from_json.encode_pairs(pairs)


def test_missing_tokenizer_files_raise_model_load_error(tmp_path: Path) -> None:
    from semrank.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match=r"tokenizer\.json"):
        load_tokenizer(tmp_path, 128)


@pytest.mark.parametrize("content", ["{not json", "{}"])
def test_corrupt_tokenizer_json_names_the_file(tmp_path: Path, content: str) -> None:
    from semrank.errors import ModelLoadError

    (tmp_path / "tokenizer.json").write_text(content)
    with pytest.raises(ModelLoadError, match=r"cannot read .*tokenizer\.json"):
        load_tokenizer(tmp_path, 128)


def test_a_huge_text_is_read_from_its_start_without_tokenizing_all_of_it(
    bert_tokenizer: HFTokenizer,
) -> None:
    from semrank.runtime.tokenizer import MAX_CHARS_PER_TOKEN

    huge = "dog cat " * 200_000  # 1.6 MB: tokenized whole it took gigabytes at ingest
    start = "dog cat " * 40
    (cut,) = bert_tokenizer.encode_texts([huge])
    (short,) = bert_tokenizer.encode_texts([start])
    assert cut.ids == short.ids and cut.truncated and short.truncated
    # Characters that give no tokens (a run of spaces) or one token for a long run (one [UNK]
    # for a DNA string) do not hide the words after them.
    reference = build_tokenizer("bert")  # the tokenizers library itself, whole text, no cut
    for filler in (" " * (40 * MAX_CHARS_PER_TOKEN), "ACGT" * (10 * MAX_CHARS_PER_TOKEN)):
        text = f"dog {filler} cat dog cat"
        (read,) = bert_tokenizer.encode_texts([text])
        assert read.ids == reference.encode(text).ids and not read.truncated
    # ... up to a bound: past it a text of few huge tokens is left unread (and says so), not
    # tokenized whole (a 4 MB base64 image is one [UNK]).
    from semrank.runtime.tokenizer import MAX_HEAD_CHARS

    image = "dog data:image/png;base64," + "QUJD" * MAX_HEAD_CHARS + " cat"
    (read,) = bert_tokenizer.encode_texts([image])
    assert read.truncated and len(read.ids) < 20
    padded, plain = bert_tokenizer.encode_texts(["dog cat" + " " * (2 * MAX_HEAD_CHARS), "dog cat"])
    assert padded.ids == plain.ids and not padded.truncated
