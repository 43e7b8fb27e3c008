"""The cross-encoder being trained: built from a bi-encoder checkpoint, head fitted, exported."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from semrank.errors import InvalidInputError, StorageError
from semrank.train._evaluate import cpu_autocast, encode_pairs
from semrank.train._sampling import GroupSampler

log = logging.getLogger("semrank.train")


def build_cross_encoder(base: Path, *, architecture: str = "cross") -> tuple[Any, Any]:
    """The model to train and its tokenizer.

    ``architecture="cross"``: ``BertForSequenceClassification`` (1 logit, new head) on the base
    encoder's weights, or a trained cross-encoder as saved. ``"gated"``: the segment-gated
    cross-encoder (``semrank.runtime.torch_gated``) on a bi-encoder's weights, scoring as that
    bi-encoder does at step 0; a saved gated model loads as itself (for "bi" its gates shut and
    frozen). ``"bi"``:
    that gated model with every gate shut and frozen, i.e. the bi-encoder itself being trained
    (each text still encoded alone); it is exported as a sentence-transformers bi-encoder.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertModel
    from transformers.utils import logging as hf_logging

    from semrank.runtime import torch_gated
    from semrank.runtime.torch_backend import load_checkpoint

    hf_logging.set_verbosity_error()  # "newly initialized classifier" is expected here
    hf_logging.disable_progress_bar()  # its "\r" bars filled the logs of runs off a terminal
    saved = json.loads((Path(base) / "config.json").read_text())
    tokenizer = _with_segments(AutoTokenizer.from_pretrained(str(base)), saved)
    if saved.get("model_type") == torch_gated.MODEL_TYPE:
        model = load_checkpoint("AutoModelForSequenceClassification", Path(base))
        if architecture == "bi":  # trained (and kept by validation) as the bi-encoder exported
            with torch.no_grad():
                model.cross_gates.fill_(SHUT_GATE)
            model.cross_gates.requires_grad_(False)
        return model, torch_gated.use_pair_template(tokenizer)
    classifier = any(
        str(a).endswith("ForSequenceClassification") for a in saved.get("architectures") or []
    )
    if classifier:
        # A trained cross-encoder (--init-from, --teacher-model): every weight its own, semrank's
        # int8 ones widened (transformers left them random: training started from noise).
        model = load_checkpoint("AutoModelForSequenceClassification", Path(base))
        check_one_logit(Path(base), saved)
        if architecture == "cross":
            return model, tokenizer
        return _gated(
            _bert_encoder(model, Path(base)), architecture
        ), torch_gated.use_pair_template(tokenizer)
    if architecture in ("gated", "bi"):
        encoder = BertModel.from_pretrained(str(base), add_pooling_layer=False)
        return _gated(encoder, architecture), torch_gated.use_pair_template(tokenizer)
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1)
    return model, tokenizer


def _with_segments(tokenizer: Any, config: dict[str, Any]) -> Any:
    """The tokenizer, giving segment ids where the model has segments: one saved as a plain
    PreTrainedTokenizerFast gave none, so training read every passage token as segment 0 while
    the runtime reads them as segment 1 (and the gated model needs them)."""
    if int(config.get("type_vocab_size", 1)) > 1 and "token_type_ids" not in (
        tokenizer.model_input_names
    ):
        tokenizer.model_input_names = [*tokenizer.model_input_names, "token_type_ids"]
    return tokenizer


def check_one_logit(folder: Path, config: dict[str, Any]) -> None:
    """Training reads logit 0: a 2-label classifier's relevance is logit 1 - logit 0."""
    # As transformers reads config.json: id2label, else num_labels, else its default of 2.
    labels = len(config["id2label"]) if config.get("id2label") else config.get("num_labels", 2)
    if int(labels) != 1:
        raise InvalidInputError(
            f"{folder} is a {labels}-label classifier; semrank trains and distils one-logit "
            "cross-encoders (give a semrank-trained or 1-label model)"
        )


def _bert_encoder(classifier: Any, folder: Path) -> Any:
    """A BERT classifier's encoder as a pooler-less ``BertModel`` (what the gated model wraps)."""
    from transformers import BertModel

    if classifier.config.model_type != "bert":
        raise InvalidInputError(
            f"{folder} is a {classifier.config.model_type!r} cross-encoder; the gated and bi "
            "architectures are BERT's (continue it with --architecture cross)"
        )
    encoder = BertModel(classifier.config, add_pooling_layer=False)
    weights = classifier.bert.state_dict()
    encoder.load_state_dict({k: v for k, v in weights.items() if not k.startswith("pooler.")})
    return encoder


def _gated(encoder: Any, architecture: str) -> Any:
    """The gated model on ``encoder``; for "bi" its gates shut and frozen."""
    from semrank.runtime import torch_gated

    shut = architecture == "bi"
    model = torch_gated.wrap_bert(encoder, **({"gate_init": SHUT_GATE} if shut else {}))
    model.cross_gates.requires_grad_(not shut)
    return model


ARCHITECTURES = ("cross", "gated", "bi")
# A gate's logit bias that no attention score overcomes: the segments never see each other.
SHUT_GATE = -10000.0


def check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise InvalidInputError(
            f"architecture={architecture!r}: use one of {', '.join(ARCHITECTURES)}"
        )


def load_encoder(base: Path) -> tuple[Any, Any]:
    """The base checkpoint as a plain encoder (the bi-encoder teacher), and its tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(str(base)), AutoTokenizer.from_pretrained(str(base))


# RoBERTa-family position tables start after the padding index: two entries are not tokens.
_POSITION_OFFSETS = {"roberta": 2, "xlm-roberta": 2, "camembert": 2}
MIN_MAX_LENGTH = 16  # a query, a passage and the special tokens need at least this many


def check_max_length(base: Path, encoder: Any, max_length: int) -> int:
    """Tokens the base model can read (its position table); a --max-length outside
    [MIN_MAX_LENGTH, that] is refused before mining, not met as a tensor-size traceback."""
    config = encoder.config
    positions = int(getattr(config, "max_position_embeddings", 0) or 0)
    limit = positions - _POSITION_OFFSETS.get(getattr(config, "model_type", ""), 0)
    if positions and max_length > limit:
        raise InvalidInputError(
            f"--max-length {max_length} is more than base model {str(base)!r} reads ({limit} "
            f"tokens); give --max-length {limit} or less"
        )
    if max_length < MIN_MAX_LENGTH:
        raise InvalidInputError(
            f"--max-length {max_length} leaves no room for a query and a passage; give at "
            f"least {MIN_MAX_LENGTH}"
        )
    return limit if positions else max_length


def fit_head_to_teacher(
    model: Any,
    tokenizer: Any,
    sampler: GroupSampler,
    *,
    queries: int,
    max_length: int,
    scale: float,
) -> float:
    """Least-squares fit of the classifier to the teacher's within-query score differences.

    The frozen pooled [CLS] features of (query, passage) pairs are regressed on the scaled
    bi-encoder cosine, both centred per query (only differences within a list matter to a
    re-ranker), so that the first training steps start from scores that already rank.
    Returns the fit's correlation. The sampler's state is restored: the probe costs no data.
    """
    import torch

    state = sampler.state()
    features, targets = [], []
    model.eval()
    with torch.inference_mode(), cpu_autocast():
        for _ in range(max(1, queries // 16)):
            batch = sampler.next_batch(16)
            pairs = [
                (q, p) for q, ps in zip(batch.queries, batch.passages, strict=True) for p in ps
            ]
            encoded = encode_pairs(tokenizer, pairs, max_length=max_length)
            pooled = model.bert(**encoded).pooler_output.float().numpy()
            pooled = pooled.reshape(len(batch.queries), -1, pooled.shape[-1])
            features.append(pooled - pooled.mean(1, keepdims=True))
            teacher = batch.teacher * scale
            targets.append(teacher - teacher.mean(1, keepdims=True))
    sampler.restore(state)
    model.train()
    y = np.concatenate(targets)
    if float(y.std()) < 1e-6:  # a teacher that cannot tell candidates apart has nothing to teach
        log.warning("teacher scores are constant; classifier head left at its random init")
        return 0.0
    w, held_out = _ridge_with_held_out_lambda(np.concatenate(features), y)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(w).float().unsqueeze(0))
        model.classifier.bias.zero_()
    return held_out


def _ridge_with_held_out_lambda(
    features: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, float]:
    """Ridge weights; the penalty is picked on the last quarter of the queries (held out)."""
    x = features.reshape(-1, features.shape[-1]).astype(np.float64)
    y = targets.reshape(-1).astype(np.float64)
    cut = (len(features) * 3 // 4) * features.shape[1]
    scale = np.trace(x.T @ x) / x.shape[1]

    def solve(xs: np.ndarray, ys: np.ndarray, lam: float) -> np.ndarray:
        return np.linalg.solve(xs.T @ xs + lam * scale * np.eye(xs.shape[1]), xs.T @ ys)

    scores = {}
    for lam in (1e-3, 1e-2, 1e-1, 1.0, 10.0):
        w = solve(x[:cut], y[:cut], lam)
        scores[lam] = float(np.nan_to_num(np.corrcoef(x[cut:] @ w, y[cut:])[0, 1]))
    best = max(scores, key=lambda k: scores[k])
    log.info("head probe held-out correlation by ridge penalty: %s", scores)
    w = solve(x, y, best)
    # Match the target's spread, shrunk by the fit's quality, so the first logits are sane.
    predicted = x @ w
    w *= max(scores[best], 0.0) * y.std() / max(predicted.std(), 1e-9)
    return w, scores[best]


def export_model(
    model: Any, tokenizer: Any, target: Path, *, metadata: dict[str, Any], onnx: bool = False
) -> Path:
    """Hugging Face layout (config.json, model.safetensors, tokenizer), optionally + model.onnx,
    and ``semrank_training.json`` (``metadata``: how it was trained, and its calibration)."""
    target.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    (target / "semrank_training.json").write_text(json.dumps(metadata, indent=2, default=str))
    if onnx:
        _export_onnx(target)
    return target


def export_bi_encoder(
    model: Any, target: Path, *, base: Path, max_seq_length: int, metadata: dict[str, Any]
) -> Path:
    """A bi-encoder student (gates shut) as a sentence-transformers folder: its BERT weights,
    the base's tokenizer, mean pooling and normalisation, as the model it was built from."""
    from transformers import AutoTokenizer

    from semrank.runtime import torch_gated

    target.mkdir(parents=True, exist_ok=True)
    torch_gated.unwrap_bert(model).save_pretrained(str(target), safe_serialization=True)
    # The base's tokenizer, not the training one: that one carries the pair template.
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(target))
    hidden = int(model.config.hidden_size)
    files: dict[str, Any] = {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": _ST_POOLING},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": _ST_NORMALIZE},
        ],
        "sentence_bert_config.json": {"max_seq_length": max_seq_length, "do_lower_case": False},
        "1_Pooling/config.json": {
            "word_embedding_dimension": hidden,
            "pooling_mode_mean_tokens": True,
        },
        "semrank_training.json": metadata,
    }
    for name, content in files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(json.dumps(content, indent=2, default=str))
    (target / "2_Normalize").mkdir(exist_ok=True)
    return target


_ST_POOLING = "sentence_transformers.models.Pooling"
_ST_NORMALIZE = "sentence_transformers.models.Normalize"


def bi_encoder_max_seq_length(base: Path, fallback: int) -> int:
    """The base bi-encoder's sequence length (sentence-transformers config), else ``fallback``."""
    config = Path(base) / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length", fallback))
    return fallback


def _export_onnx(target: Path) -> None:
    """``target/model.onnx``, whole or not at all: a full disk left a truncated graph that
    every later load of the folder failed to parse."""
    import onnx

    from semrank.runtime.onnx_export import GRAPH_SOURCE, export_onnx, graph_source

    partial = target / "model.onnx.partial"
    try:
        onnx.save(export_onnx(target, "sequence-classification"), str(partial))
        os.replace(partial, target / "model.onnx")
        # What it was made from, so that weights copied in later are told from these by
        # content, not by file times (which copies may keep).
        made_from = json.dumps(graph_source(target))
        (target / GRAPH_SOURCE).write_text(made_from, encoding="utf-8")
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StorageError(
            f"cannot write {target / 'model.onnx'} ({exc}); is the disk full? the model itself "
            "is saved: the same command with --resume writes the ONNX file"
        ) from None
