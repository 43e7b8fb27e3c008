"""Parity of embeddings: ONNX ``Embedder`` vs transformers / sentence-transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiny_models import random_pairs

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from semrank.models.spec import ResolvedModel  # noqa: E402
from semrank.runtime import BiEncoderScorer, load_embedder, load_scorer  # noqa: E402

MAX_LENGTH = 64
TEXTS = [text for pair in random_pairs(30, seed=11) for text in pair]


def resolved(model_dir: Path, *, pooling: str = "mean", max_length: int = MAX_LENGTH):
    return ResolvedModel(
        name=model_dir.name,
        path=model_dir,
        kind="bi-encoder",
        architecture="",
        max_length=max_length,
        activation="cosine",
        pooling=pooling,  # type: ignore[arg-type]
    )


def reference_embeddings(model_dir: Path, texts: list[str], pooling: str) -> np.ndarray:
    tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    model = transformers.AutoModel.from_pretrained(str(model_dir)).eval()
    out = []
    for text in texts:
        inputs = tokenizer(text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        inputs.pop("token_type_ids", None)
        with torch.no_grad():
            hidden = model(**inputs).last_hidden_state[0].numpy()
        vector = hidden[0] if pooling == "cls" else hidden.mean(axis=0)
        out.append(vector / np.linalg.norm(vector))
    return np.asarray(out, dtype=np.float32)


@pytest.mark.parametrize(
    ("family", "pooling"), [("bert", "mean"), ("roberta", "cls"), ("modernbert", "mean")]
)
# "masked-lm": saved with its pre-training head (many sentence-transformers folders are, e.g.
# all-distilroberta-v1); transformers' AutoModel, and so sentence-transformers, embed with the
# encoder under it.
@pytest.mark.parametrize("head", ["encoder", "masked-lm"])
def test_tiny_encoder_embeddings_match_transformers(
    tiny_model, family: str, pooling: str, head: str
) -> None:
    model_dir = tiny_model(family, head, max_length=MAX_LENGTH)
    embeddings = load_embedder(resolved(model_dir, pooling=pooling)).embed(TEXTS)
    reference = reference_embeddings(model_dir, TEXTS, pooling)
    assert embeddings.dtype == np.float32
    assert embeddings.shape == reference.shape
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embeddings, reference, atol=1e-4, rtol=0)


def test_bi_encoder_score_is_cosine_of_embeddings(tiny_model) -> None:
    model_dir = tiny_model("bert", "encoder", max_length=MAX_LENGTH)
    pairs = random_pairs(20, seed=5)
    scorer = load_scorer(resolved(model_dir))
    assert isinstance(scorer, BiEncoderScorer)
    assert scorer.kind == "bi-encoder" and scorer.activation == "cosine"
    reference = reference_embeddings(model_dir, [t for pair in pairs for t in pair], "mean")
    expected = np.einsum("ij,ij->i", reference[0::2], reference[1::2])
    np.testing.assert_allclose(scorer.score_pairs(pairs), expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_bundled_minilm_matches_sentence_transformers(minilm_dir: Path) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = [
        "what is a flea",
        "Fleas are small, flightless insects that live on the blood of mammals and birds.",
        "Paris is the capital of France. " * 60,  # past 256 tokens: truncated on both sides
        "",
        "ünïcödé text, with punctuation!? and numbers 12345",
    ]
    st_model = sentence_transformers.SentenceTransformer(str(minilm_dir), device="cpu")
    reference = st_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    embedder = load_embedder(resolved(minilm_dir, max_length=st_model.max_seq_length))
    np.testing.assert_allclose(embedder.embed(texts), reference, atol=1e-4, rtol=0)
