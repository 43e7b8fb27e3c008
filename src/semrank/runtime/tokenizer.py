"""Tokenization on the Rust ``tokenizers`` library (no transformers, no torch).

Loads tokenizer.json (the fast-tokenizer file every modern checkpoint ships); older BERT
checkpoints with only vocab.txt get an equivalent WordPiece tokenizer. Truncation and padding
stored in tokenizer.json are switched off: truncation is planned here (document first) and
padding is done per batch by the batching code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tokenizers import Encoding, Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from semrank.errors import ModelLoadError

__all__ = ["EncodedInput", "HFTokenizer", "load_tokenizer"]


@dataclass(frozen=True, slots=True)
class EncodedInput:
    """One model input: token ids, type ids and the attention mask (all the same length)."""

    ids: list[int]
    type_ids: list[int]
    attention_mask: list[int]
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.ids)


# More characters than any one token of a real tokenizer spans (a wordpiece or BPE token is a
# word piece, at most a few dozen characters): cutting a text at limit x this keeps its first
# ``limit`` tokens intact.
MAX_CHARS_PER_TOKEN = 100
# How far a head grows past its first cut looking for tokens: a 4 MB base64 image is one [UNK]
# for WordPiece, and was tokenized whole several times per request (seconds of a shared model
# thread) for a document of a few tokens. Past this, the rest is left unread (truncated).
MAX_HEAD_CHARS = 1 << 18

T = TypeVar("T")
_NOT_SPACE = re.compile(r"\S")


def only_space_after(text: str, position: int) -> bool:
    """Whether ``text`` holds nothing but whitespace from ``position`` on (a head cut there
    leaves nothing unread)."""
    return _NOT_SPACE.search(text, position) is None


def enough_of(
    text: str,
    tokens: T,
    cap: int,
    limit: int,
    tokenize: Callable[[str], T],
    size: Callable[[T], int],
) -> tuple[T, int]:
    """``tokens`` (of ``text[:cap]``), or those of a longer head until there are more than
    ``limit`` or it is the whole text: characters that give no tokens (whitespace runs), or one
    token for a long run ([UNK] for a DNA string), would otherwise hide what follows. The head
    grows to ``MAX_HEAD_CHARS`` at most (or ``cap``); returns the tokens and the head's length."""
    ceiling = max(cap, MAX_HEAD_CHARS)
    while size(tokens) <= limit and cap < min(len(text), ceiling):
        cap = min(cap * 4, ceiling)
        tokens = tokenize(text[:cap])
    return tokens, min(cap, len(text))


class HFTokenizer:
    """Implements ``TextTokenizer`` plus model-input encoding of texts and pairs."""

    def __init__(
        self, tokenizer: Tokenizer, max_length: int, *, pad_token: str | None = None
    ) -> None:
        stored_padding = tokenizer.padding  # read before it is switched off
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer
        self.max_length = max_length
        processor = tokenizer.post_processor
        self.special_tokens_pair = processor.num_special_tokens_to_add(True) if processor else 0
        self.special_tokens_single = processor.num_special_tokens_to_add(False) if processor else 0
        if max_length <= self.special_tokens_pair + 1:
            raise ModelLoadError(f"max_length {max_length} leaves no room for text tokens")
        stored = stored_padding["pad_token"] if stored_padding else None
        self.pad_id: int = _pad_id(tokenizer, (pad_token, stored))
        unknown = getattr(tokenizer.model, "unk_token", None)  # WordPiece / BPE name theirs
        self._unknown_id = tokenizer.token_to_id(unknown) if isinstance(unknown, str) else None

    # --- TextTokenizer ----------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def unknown_tokens(self, text: str) -> tuple[int, int]:
        """``(tokens of text the vocabulary does not hold, tokens of text)``: text in a
        language or script the model never saw reads as unknown tokens."""
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return (0 if self._unknown_id is None else ids.count(self._unknown_id)), len(ids)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return [tuple(o) for o in self._tok.encode(text, add_special_tokens=False).offsets]  # type: ignore[misc]

    # --- model inputs -----------------------------------------------------------------

    def pair_budget(self, query_tokens: int) -> tuple[int, int]:
        """(query tokens kept at most, document tokens guaranteed) for a query of this length.

        The document is truncated first; the query only when it alone exceeds half of the
        text budget, and then never below that half.
        """
        available = self.max_length - self.special_tokens_pair
        query_cap = min(query_tokens, available // 2)
        return query_cap, available - query_cap

    def doc_token_budget(self, query: str) -> int:
        return self.pair_budget(self.count_tokens(query))[1]

    def query_token_limit(self, doc_tokens: int | None = None) -> int:
        """Query tokens a pair keeps next to a document piece of ``doc_tokens`` (None: one that
        fills its budget, so every pair keeps this many): see ``_merge_pair``."""
        available = self.max_length - self.special_tokens_pair
        if doc_tokens is None:
            return available // 2
        return max(available // 2, available - doc_tokens)

    def encode_pairs(self, pairs: list[tuple[str, str]]) -> list[EncodedInput]:
        queries = self._encode_raw(sorted({q for q, _ in pairs}))
        lengths = {text: len(query.ids) for text, query in queries.items()}
        available = self.max_length - self.special_tokens_pair
        for text, query in queries.items():
            # No pair keeps more of a query than this: cut it once, so that a very long query
            # is not copied whole for every document it is paired with. Re-encoded from the
            # kept text rather than truncated: truncate() keeps the cut tokens as "overflowing"
            # encodings, which every pair would copy again.
            if len(query.ids) > available:
                queries[text] = self._prefix(text, query, available)
        docs = self._encode_list([d for _, d in pairs])
        return [
            self._merge_pair(queries[q], lengths[q], doc)
            for (q, _), doc in zip(pairs, docs, strict=True)
        ]

    def encode_texts(self, texts: list[str]) -> list[EncodedInput]:
        limit = self.max_length - self.special_tokens_single
        # Only the first ``limit`` tokens are read: a megabytes-long document is tokenized from
        # a head that holds them, not whole (gigabytes of encodings at ingest).
        cap = limit * MAX_CHARS_PER_TOKEN
        encodings = self._encode_list([text[:cap] for text in texts])
        out = []
        for text, enc in zip(texts, encodings, strict=True):
            enc, seen = enough_of(text, enc, cap, limit, self._encode_plain, _token_count)
            truncated = len(enc.ids) > limit or not only_space_after(text, seen)
            if truncated:
                enc.truncate(limit)
            merged = self._tok.post_process(enc, None, add_special_tokens=True)
            out.append(_to_input(merged, truncated))
        return out

    def _encode_plain(self, text: str) -> Encoding:
        return self._tok.encode(text, add_special_tokens=False)

    def _prefix(self, text: str, encoding: Encoding, length: int) -> Encoding:
        """The first ``length`` tokens of ``text`` (encoded as ``encoding``), without overflow."""
        prefix = self._tok.encode(text[: encoding.offsets[length - 1][1]], add_special_tokens=False)
        if len(prefix.ids) > length:  # a word cut at the edge may split differently: a token or two
            prefix.truncate(length)
        return prefix

    def _encode_raw(self, texts: list[str]) -> dict[str, Encoding]:
        return dict(zip(texts, self._encode_list(texts), strict=True))

    def _encode_list(self, texts: list[str]) -> list[Encoding]:
        return list(self._tok.encode_batch(texts, add_special_tokens=False))

    def _merge_pair(self, query: Encoding, query_length: int, doc: Encoding) -> EncodedInput:
        available = self.max_length - self.special_tokens_pair
        n_query, n_doc = len(query.ids), len(doc.ids)
        truncated = query_length + n_doc > available  # the query's length before its cut
        if truncated:
            # Keep as much of the query as the document leaves, but at least half the budget.
            keep_query = min(n_query, max(available // 2, available - n_doc))
            query = _truncated_copy(self._tok, query, keep_query)
            doc = _truncated_copy(self._tok, doc, available - keep_query)
        # An empty document is still the pair's second part ([CLS] q [SEP] [SEP]), as the
        # tokenizers library, TEI and sentence-transformers' batched CrossEncoder encode it
        # (transformers' one-pair call alone drops it: 0.2-0.8 logits off on the default).
        merged = self._tok.post_process(query, doc, add_special_tokens=True)
        return _to_input(merged, truncated)


def _token_count(encoding: Encoding) -> int:
    return len(encoding.ids)


def _truncated_copy(tok: Tokenizer, enc: Encoding, length: int) -> Encoding:
    """Encodings are mutable and shared (one query, many documents): truncate a copy."""
    if len(enc.ids) <= length:
        return enc
    copy = Encoding.merge([enc], growing_offsets=False)
    copy.truncate(length)
    return copy


def _to_input(enc: Encoding, truncated: bool) -> EncodedInput:
    return EncodedInput(
        ids=list(enc.ids),
        type_ids=list(enc.type_ids),
        attention_mask=list(enc.attention_mask),
        truncated=truncated,
    )


def _pad_id(tokenizer: Tokenizer, named: tuple[str | None, ...] = ()) -> int:
    """The id batches are padded with: the pad token the model's files name (as transformers
    pads), else a usual pad token's. A decoder's classifier (Qwen3ForSequenceClassification)
    scores the last token that is not its pad token: padded with another id ("!", id 0) it
    scored a pad, and a pair's score depended on the other pairs in its batch."""
    for token in (*named, "[PAD]", "<pad>", "<|padding|>"):
        token_id = tokenizer.token_to_id(token) if token else None
        if token_id is not None:
            return int(token_id)
    return 0


def load_tokenizer(model_dir: Path, max_length: int) -> HFTokenizer:
    """tokenizer.json if present, else a WordPiece tokenizer from vocab.txt."""
    model_dir = Path(model_dir)
    path = model_dir / "tokenizer.json"
    if path.is_file():
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust library raises a bare Exception
            raise ModelLoadError(
                f"cannot read {path}: {exc}. The file is corrupt or not a tokenizers file; "
                "save the tokenizer again with tokenizer.save_pretrained(dir)"
            ) from exc
        return HFTokenizer(tokenizer, max_length, pad_token=_configured_pad_token(model_dir))
    vocab = model_dir / "vocab.txt"
    if vocab.is_file():
        return HFTokenizer(_wordpiece_from_vocab(model_dir, vocab), max_length)
    raise ModelLoadError(
        f"{model_dir} has neither tokenizer.json nor vocab.txt; save the tokenizer with "
        "tokenizer.save_pretrained(dir)"
    )


def _configured_pad_token(model_dir: Path) -> str | None:
    """tokenizer_config.json's pad token (a string, or {"content": ...} as older transformers
    saved it), or None; a file that cannot be read is named by model loading, not here."""
    try:
        config = json.loads((model_dir / "tokenizer_config.json").read_text("utf-8"))
        token = config.get("pad_token")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) else None


def _wordpiece_from_vocab(model_dir: Path, vocab: Path) -> Tokenizer:
    lowercase = True
    config_path = model_dir / "tokenizer_config.json"
    if config_path.is_file():
        lowercase = bool(json.loads(config_path.read_text("utf-8")).get("do_lower_case", True))
    wordpiece = BertWordPieceTokenizer(str(vocab), lowercase=lowercase)
    return wordpiece._tokenizer  # the underlying Tokenizer, with the BERT template
