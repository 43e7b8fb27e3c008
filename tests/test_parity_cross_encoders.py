"""Parity: semrank's ONNX export and torch backend vs the transformers reference.

The reference tokenizes with transformers' PreTrainedTokenizerFast (document-only truncation)
and runs each pair alone, unpadded, through AutoModelForSequenceClassification.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tiny_models import random_pairs

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from semrank.models.spec import ResolvedModel  # noqa: E402
from semrank.runtime import torch_gated  # noqa: E402

torch_gated.register()  # the reference loads semrank's gated model through the Auto classes
from semrank.runtime import load_scorer  # noqa: E402

MAX_LENGTH = 64
PAIRS = random_pairs(60, seed=7)

CASES = {
    "bert": ("bert", {}),
    "bert-2-labels": ("bert", {"num_labels": 2}),
    "xlm-roberta": ("roberta", {}),
    "modernbert-cls": ("modernbert", {}),
    "modernbert-mean": ("modernbert", {"classifier_pooling": "mean"}),
    "semrank-gated-bert": ("gated", {}),
    # One segment type: the gated model still reads the segment ids (query vs passage).
    "semrank-gated-bert-1-type": ("gated", {"type_vocab_size": 1}),
}


def reference_scores(
    model_dir: Path, pairs: list[tuple[str, str]], family: str, model: Any = None
) -> np.ndarray:
    tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    if model is None:
        auto = transformers.AutoModelForSequenceClassification
        model = auto.from_pretrained(str(model_dir)).eval()
    scores = []
    for query, doc in pairs:
        # Batched, as sentence-transformers' CrossEncoder calls it: an empty document stays the
        # pair's second part ([SEP] [SEP]); transformers' one-pair call drops it.
        inputs = tokenizer(
            [query],
            [doc],
            truncation="only_second",
            max_length=MAX_LENGTH,
            return_tensors="pt",
            return_token_type_ids=family in ("bert", "gated"),
        )
        with torch.no_grad():
            logits = model(**inputs).logits[0].numpy()
        scores.append(logits[1] - logits[0] if logits.shape[0] == 2 else logits[0])
    return np.asarray(scores, dtype=np.float32)


def resolved(model_dir: Path) -> ResolvedModel:
    return ResolvedModel(
        name=model_dir.name,
        path=model_dir,
        kind="cross-encoder",
        architecture="",
        max_length=MAX_LENGTH,
        activation="sigmoid",
    )


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest, tiny_model) -> tuple[str, Path, np.ndarray]:
    family, options = CASES[request.param]
    model_dir = tiny_model(family, max_length=MAX_LENGTH, **options)
    return family, model_dir, reference_scores(model_dir, PAIRS, family)


def test_pairs_cover_truncation_and_scores_vary(case) -> None:
    _, model_dir, reference = case
    scorer = load_scorer(resolved(model_dir))
    encoded = scorer.hf_tokenizer.encode_pairs(PAIRS)  # type: ignore[attr-defined]
    assert sum(e.truncated for e in encoded) >= 10
    assert max(len(e) for e in encoded) == MAX_LENGTH
    # A constant model would make parity meaningless.
    assert reference.std() > 0.01


def test_onnx_matches_transformers(case) -> None:
    _, model_dir, reference = case
    scores = load_scorer(resolved(model_dir), backend="onnx").score_pairs(PAIRS)
    assert scores.dtype == np.float32
    assert scores.shape == (len(PAIRS),)
    np.testing.assert_allclose(scores, reference, atol=1e-4, rtol=0)


def test_torch_backend_matches_transformers(case) -> None:
    _, model_dir, reference = case
    scores = load_scorer(resolved(model_dir), backend="torch", device="cpu").score_pairs(PAIRS)
    np.testing.assert_allclose(scores, reference, atol=1e-4, rtol=0)


def test_modernbert_sliding_window_is_exercised(tiny_model, tmp_path: Path) -> None:
    """With a window as wide as the input the scores change: the local layers really are local."""
    import json
    import shutil

    model_dir = tiny_model("modernbert", max_length=MAX_LENGTH)
    wide = shutil.copytree(model_dir, tmp_path / "wide")
    config = json.loads((wide / "config.json").read_text())
    config["local_attention"] = 4 * MAX_LENGTH
    (wide / "config.json").write_text(json.dumps(config))
    long_pairs = [p for p in PAIRS if len(p[1].split()) > 20]
    narrow_scores = load_scorer(resolved(model_dir)).score_pairs(long_pairs)
    wide_scores = load_scorer(resolved(wide)).score_pairs(long_pairs)
    assert np.abs(narrow_scores - wide_scores).max() > 1e-3
    np.testing.assert_allclose(
        wide_scores, reference_scores(wide, long_pairs, "modernbert"), atol=1e-4, rtol=0
    )


def test_pytorch_bin_checkpoint_exports(tiny_model, tmp_path: Path) -> None:
    model_dir = tiny_model("bert", max_length=MAX_LENGTH, safe_serialization=False, seed=3)
    assert (model_dir / "pytorch_model.bin").is_file()
    assert not (model_dir / "model.safetensors").exists()
    scores = load_scorer(resolved(model_dir)).score_pairs(PAIRS[:12])
    np.testing.assert_allclose(
        scores, reference_scores(model_dir, PAIRS[:12], "bert"), atol=1e-4, rtol=0
    )


def test_torch_backend_reads_electra_segments_and_16_bit_checkpoints_in_fp32(
    tmp_path: Path,
) -> None:
    """The torch backend passed token_type_ids to BERT only (ELECTRA scored 0.4 off) and ran a
    bf16 checkpoint in bf16 on the CPU (0.008 off the fp32 reference)."""
    import json

    from tiny_models import _randomize, build_tokenizer

    tokenizer = build_tokenizer("bert")
    config = transformers.ElectraConfig(
        vocab_size=tokenizer.get_vocab_size(), embedding_size=32, hidden_size=32,
        num_attention_heads=4, intermediate_size=48, num_hidden_layers=2,
        max_position_embeddings=MAX_LENGTH, type_vocab_size=2, num_labels=1,
    )  # fmt: skip
    model = transformers.ElectraForSequenceClassification(config)
    _randomize(model, 3)
    model.eval()
    model.save_pretrained(tmp_path / "electra")
    bf16 = tmp_path / "electra-bf16"
    model.to(torch.bfloat16).save_pretrained(bf16)
    for folder in (tmp_path / "electra", bf16):
        tokenizer.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(
            json.dumps({"tokenizer_class": "BertTokenizerFast", "model_max_length": MAX_LENGTH})
        )
    reference = reference_scores(tmp_path / "electra", PAIRS, "bert")
    for folder, tolerance in ((tmp_path / "electra", 1e-4), (bf16, 2e-2)):
        scores = load_scorer(resolved(folder), backend="torch", device="cpu").score_pairs(PAIRS)
        np.testing.assert_allclose(scores, reference, atol=tolerance, rtol=0)
    # bf16 weights in fp32 arithmetic: the bf16 model's own fp32 forward, to float precision.
    widened = transformers.AutoModelForSequenceClassification.from_pretrained(str(bf16))
    assert next(widened.parameters()).dtype == torch.bfloat16  # transformers keeps bf16
    scores = load_scorer(resolved(bf16), backend="torch", device="cpu").score_pairs(PAIRS)
    fp32_reference = reference_scores(bf16, PAIRS, "bert", model=widened.float().eval())
    np.testing.assert_allclose(scores, fp32_reference, atol=1e-4, rtol=0)


def test_a_decoder_classifier_is_padded_with_its_own_pad_token(tmp_path: Path) -> None:
    """Qwen3ForSequenceClassification (Qwen3-Reranker's seq-cls conversions) scores a pair's last
    token that is not its pad token. Batches were padded with [PAD] (id 0), not the pad token
    tokenizer_config.json names, so a padded pair scored a pad: its score depended on the
    other pairs in its batch (1.5 off the reference)."""
    import json

    from tiny_models import _randomize, build_tokenizer

    tokenizer = build_tokenizer("bert")
    tokenizer.add_special_tokens(["<|endoftext|>"])
    pad_id = tokenizer.token_to_id("<|endoftext|>")
    config = transformers.Qwen3Config(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, intermediate_size=48, num_hidden_layers=2,
        max_position_embeddings=MAX_LENGTH, pad_token_id=pad_id, num_labels=1,
    )  # fmt: skip
    model = transformers.Qwen3ForSequenceClassification(config)
    _randomize(model, 5)
    model.eval().save_pretrained(tmp_path)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": MAX_LENGTH, "pad_token": "<|endoftext|>"})
    )
    reference = reference_scores(tmp_path, PAIRS, "qwen3")
    scorer = load_scorer(resolved(tmp_path), backend="torch", device="cpu")
    np.testing.assert_allclose(scorer.score_pairs(PAIRS), reference, atol=1e-4, rtol=0)
    assert scorer.hf_tokenizer.pad_id == pad_id  # type: ignore[attr-defined]
