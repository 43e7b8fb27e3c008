"""Parity of embeddings: ONNX ``Embedder`` vs transformers / sentence-transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tiny_models import random_pairs

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from semrank.errors import ModelLoadError  # noqa: E402
from semrank.models import resolve  # noqa: E402
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


def _st_folder_lowercasing(model_dir: Path, target: Path) -> Path:
    """``model_dir`` as a sentence-transformers folder with ``do_lower_case: true`` and a
    tokenizer that keeps case (the tiny vocabulary is lowercase: capitals read as [UNK])."""
    import shutil

    shutil.copytree(model_dir, target)
    tokenizer = json.loads((target / "tokenizer.json").read_text())
    tokenizer["normalizer"]["lowercase"] = False
    (target / "tokenizer.json").write_text(json.dumps(tokenizer))
    modules = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(
            [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
        )
    ]
    (target / "modules.json").write_text(json.dumps(modules))
    (target / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": MAX_LENGTH, "do_lower_case": True})
    )
    (target / "1_Pooling").mkdir()
    (target / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    )
    (target / "2_Normalize").mkdir()
    return target


def test_do_lower_case_lowercases_texts_as_sentence_transformers_does(
    tiny_model, tmp_path: Path
) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    folder = _st_folder_lowercasing(tiny_model("bert", "encoder"), tmp_path / "lowercasing")
    texts = [text.title() for text in TEXTS[:12]] + ["ÉCOLE Straße İstanbul", ""]
    model = resolve(folder, kind="bi-encoder")
    assert model.lowercase
    embeddings = load_embedder(model, backend="onnx").embed(texts)
    st_model = sentence_transformers.SentenceTransformer(str(folder), device="cpu")
    reference = st_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(embeddings, reference, atol=1e-4, rtol=0)
    (folder / "sentence_bert_config.json").write_text('{"do_lower_case": "yes"}')
    with pytest.raises(ModelLoadError, match=r"do_lower_case is 'yes'; expected true or false"):
        resolve(folder, kind="bi-encoder")


def test_prompts_are_put_before_queries_and_documents_as_sentence_transformers_does(
    tiny_model, tmp_path: Path
) -> None:
    """e5/bge-style models read "query: " before a query and "passage: " before a document
    (config_sentence_transformers.json): semrank read neither, and retrieval lost recall."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from semrank import Reranker
    from semrank.store import create_index

    folder = _st_folder_lowercasing(tiny_model("bert", "encoder"), tmp_path / "prompted")
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_LENGTH}))
    # ("document": sentence-transformers 6 puts an empty "document" prompt before "passage".)
    prompts = {"query": "query: ", "document": "passage: "}
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    pairs = random_pairs(8, seed=3)
    st_model = sentence_transformers.SentenceTransformer(str(folder), device="cpu")
    queries = st_model.encode_query([q for q, _ in pairs], normalize_embeddings=True)
    reranker = Reranker(str(folder), kind="bi-encoder", backend="onnx", feedback=False)
    # One window, as sentence-transformers reads a document: the prompt's tokens are kept out
    # of the window, so its end is read too.
    scored = [reranker.score(q, [d[:120]], raw=True)[0] for q, d in pairs]
    expected = np.einsum(
        "ij,ij->i",
        queries,
        st_model.encode_document([d[:120] for _, d in pairs], normalize_embeddings=True),
    )
    np.testing.assert_allclose(scored, expected, atol=1e-4, rtol=0)
    with create_index("p", home=tmp_path / "home", embedding_model=str(folder)) as index:
        stored = index.embed_queries([pairs[3][0]])[0]  # the index's backend may run bf16
    unprompted = st_model.encode([pairs[3][0]], normalize_embeddings=True)[0]
    assert float(stored @ queries[3]) > 0.999 > float(stored @ unprompted)


def test_a_document_cannot_take_the_place_of_a_prompted_query_in_the_memory(
    tiny_model, tmp_path: Path
) -> None:
    """A query read with its own prompt was remembered under the key of "\\x00query\\x00" and
    its text: a document beginning so (one request may send it) had that key, and its vector
    then served as the query's vector in every later request, moving their scores."""
    folder = _st_folder_lowercasing(tiny_model("bert", "encoder"), tmp_path / "prompted")
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_LENGTH}))
    prompts = {"query": "query: ", "document": "passage: "}
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    scorer = load_scorer(resolve(folder, kind="bi-encoder"), backend="onnx")
    pairs = random_pairs(4, seed=7)
    query = pairs[0][0]
    alone = scorer.score_pairs([(query, document) for _, document in pairs])
    scorer.forget()
    scorer.score_pairs([("another request", "\x00query\x00" + query)])
    after = scorer.score_pairs([(query, document) for _, document in pairs])
    np.testing.assert_allclose(after, alone, atol=1e-6, rtol=0)
