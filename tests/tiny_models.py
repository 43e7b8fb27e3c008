"""Tiny Hugging Face checkpoints with random weights, built in tests (no downloads).

Each builder writes config.json, model.safetensors and tokenizer.json (a WordPiece tokenizer
over a small vocabulary, with the special-token template of the architecture) into a
directory that both semrank and transformers can load. Needs torch + transformers.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

_WORD_TEXT = (
    "the a of to and in is was for on with as by at from that this it be are an or which "
    "flea insect dog cat animal blood bite jump small body leg wing host pet fur skin itch "
    "paris france city river capital europe tower museum art history people country map "
    "python code program language computer data model search query document rank score "
    "water ocean fish boat sea wave salt deep cold blue sun light day night star moon sky "
    "music song play band guitar piano sound note voice dance film book story write read"
)
WORDS = tuple(_WORD_TEXT.split())
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _vocab(specials: list[str]) -> dict[str, int]:
    tokens = specials + LETTERS + [f"##{c}" for c in LETTERS] + list(WORDS)
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def build_tokenizer(family: str) -> Tokenizer:
    """WordPiece tokenizer with the pair template of ``family`` (bert, roberta, modernbert,
    gated: semrank's segment-gated BERT, which repeats [CLS] before the second text)."""
    specials = ROBERTA_SPECIALS if family == "roberta" else BERT_SPECIALS
    vocab = _vocab(specials)
    unk = "<unk>" if family == "roberta" else "[UNK]"
    tok = Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if family == "roberta":
        cls, sep = "<s>", "</s>"
        single, pair = f"{cls} $A {sep}", f"{cls} $A {sep} {sep} $B {sep}"
    elif family == "gated":
        cls, sep = "[CLS]", "[SEP]"
        single, pair = f"{cls} $A {sep}", f"{cls} $A {sep} {cls}:1 $B:1 {sep}:1"
    else:
        cls, sep = "[CLS]", "[SEP]"
        single, pair = f"{cls} $A {sep}", f"{cls} $A {sep} $B:1 {sep}:1"
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])]
    )
    tok.add_special_tokens(specials)
    return tok


def _tokenizer_config(family: str, max_length: int) -> dict[str, Any]:
    if family == "roberta":
        names = dict(
            bos_token="<s>",
            cls_token="<s>",
            sep_token="</s>",
            eos_token="</s>",
            pad_token="<pad>",
            unk_token="<unk>",
            mask_token="<mask>",
        )
    else:
        names = dict(
            cls_token="[CLS]",
            sep_token="[SEP]",
            pad_token="[PAD]",
            unk_token="[UNK]",
            mask_token="[MASK]",
        )
    return {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length, **names}


def _config(family: str, head: str, vocab_size: int, max_length: int, **overrides: Any) -> Any:
    import transformers

    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=48,
        num_hidden_layers=2,
    )
    if family in ("bert", "gated"):
        config = transformers.BertConfig(
            **common, max_position_embeddings=max_length, type_vocab_size=2, pad_token_id=0
        )
    elif family == "roberta":
        config = transformers.XLMRobertaConfig(
            **common,
            max_position_embeddings=max_length + 2,
            type_vocab_size=1,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
        )
    else:
        common["num_hidden_layers"] = 3
        config = transformers.ModernBertConfig(
            **common,
            max_position_embeddings=max_length,
            global_attn_every_n_layers=2,
            local_attention=8,
            global_rope_theta=1000.0,
            local_rope_theta=100.0,
            pad_token_id=0,
            cls_token_id=2,
            sep_token_id=3,
            bos_token_id=2,
            eos_token_id=3,
        )
    for key, value in overrides.items():
        setattr(config, key, value)
    if head == "sequence-classification":
        config.num_labels = overrides.get("num_labels", 1)
    return config


_CLASSES = {
    ("bert", "sequence-classification"): "BertForSequenceClassification",
    ("bert", "encoder"): "BertModel",
    ("roberta", "sequence-classification"): "XLMRobertaForSequenceClassification",
    ("roberta", "encoder"): "XLMRobertaModel",
    ("modernbert", "sequence-classification"): "ModernBertForSequenceClassification",
    ("modernbert", "encoder"): "ModernBertModel",
    # A checkpoint saved with its pre-training head, as many sentence-transformers folders are.
    ("bert", "masked-lm"): "BertForMaskedLM",
    ("roberta", "masked-lm"): "XLMRobertaForMaskedLM",
    ("modernbert", "masked-lm"): "ModernBertForMaskedLM",
}


def _randomize(model: Any, seed: int) -> None:
    """Weights large enough that attention and scores vary a lot between inputs."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "norm" in name.lower() and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * noise)
            elif param.ndim == 1:
                param.copy_(0.05 * noise)
            else:
                param.copy_(0.15 * noise)


def write_tiny_model(
    directory: Path,
    family: str,
    head: str = "sequence-classification",
    *,
    max_length: int = 64,
    seed: int = 0,
    safe_serialization: bool = True,
    **overrides: Any,
) -> Path:
    """Write a tiny random checkpoint of ``family`` with ``head``; returns ``directory``."""
    import transformers

    tokenizer = build_tokenizer(family)
    config = _config(family, head, tokenizer.get_vocab_size(), max_length, **overrides)
    if family == "gated":
        model = _gated_model(config, seed, gate_init=overrides.get("gate_init"))
    else:
        model = getattr(transformers, _CLASSES[family, head])(config)
        _randomize(model, seed)
    model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    if not safe_serialization:  # a legacy checkpoint: transformers 5 only writes safetensors
        import torch

        torch.save(model.state_dict(), directory / "pytorch_model.bin")
        (directory / "model.safetensors").unlink()
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps(_tokenizer_config(family, max_length)), encoding="utf-8"
    )
    return directory


def _gated_model(config: Any, seed: int, *, gate_init: float | None) -> Any:
    """semrank's gated cross-encoder around a random BERT; random gates unless ``gate_init``."""
    import torch
    import transformers

    from semrank.runtime.torch_gated import wrap_bert

    bert = transformers.BertModel(config, add_pooling_layer=False)
    _randomize(bert, seed)
    model = wrap_bert(bert, gate_init=-4.0 if gate_init is None else gate_init)
    if gate_init is None:  # gates from shut to wide open, so the cross attention is exercised
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            model.cross_gates.copy_(
                torch.rand(model.cross_gates.shape, generator=generator) * 5 - 4
            )
            model.classifier.scale.fill_(7.0)
            model.classifier.bias.fill_(-2.0)
    return model


def random_text(rng: random.Random, n_words: int) -> str:
    """Words from the vocabulary, with some out-of-vocabulary words split into letters."""
    words = []
    for _ in range(n_words):
        if rng.random() < 0.15:
            words.append("".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 7))))
        else:
            words.append(rng.choice(WORDS))
        if rng.random() < 0.1:
            words[-1] += rng.choice([",", ".", "?"])
    return " ".join(words)


def random_pairs(n: int, seed: int = 0, *, max_query_words: int = 6) -> list[tuple[str, str]]:
    """Pairs of mixed lengths: short, long and documents far past a 64-token limit."""
    rng = random.Random(seed)
    lengths = [0, 1, 2, 5, 10, 20, 40, 60, 90, 150]
    pairs = []
    for i in range(n):
        query = random_text(rng, rng.randint(1, max_query_words))
        pairs.append((query, random_text(rng, lengths[i % len(lengths)] + rng.randint(0, 3))))
    return pairs


def tiny_spec(model_dir: Path, kind: str = "cross-encoder", *, max_length: int = 64) -> Any:
    """A ``ResolvedModel`` for a tiny model directory (cross-encoder or bi-encoder)."""
    from semrank.models import ResolvedModel

    bi = kind == "bi-encoder"
    return ResolvedModel(
        name="tiny-bi" if bi else "tiny",
        path=model_dir,
        kind="bi-encoder" if bi else "cross-encoder",
        architecture="BertModel" if bi else "",
        max_length=max_length,
        activation="cosine" if bi else "sigmoid",
    )


TOPICS = [
    "apple", "river", "engine", "violin", "glacier", "tennis", "copper", "tulip", "falcon",
    "desert", "pepper", "comet", "harbor", "quartz", "maple", "cobalt", "walrus", "lantern",
    "saddle", "meadow", "anchor", "canyon", "cactus", "ember",
]  # fmt: skip


def _topic_passage(topic: str, rng: random.Random) -> str:
    filler = rng.sample(["the", "a", "of", "and", "with", "from", "is", "very", "old"], 5)
    return f"{topic} {' '.join(filler)} {topic} facts"


def write_tiny_bert_base(root: Path) -> Path:
    """A random 2-layer BERT encoder plus a whole-word WordPiece vocabulary of the topic words
    (a stand-in for the bi-encoder checkpoint that training starts from)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = [*TOPICS, "tell", "me", "about", "facts", "the", "a", "of", "and", "with", "from"]
    words += ["is", "very", "old"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})
    tokenizer.save_pretrained(str(root))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        initializer_range=0.2,  # the default 0.02 gives near-identical outputs at this size
    )
    BertModel(config).save_pretrained(str(root))
    return root


def write_topic_pairs(path: Path) -> Path:
    """JSONL training rows: "tell me about <topic>" -> a passage on it, two on other topics."""
    rng = random.Random(0)
    rows = []
    for _ in range(6):
        for topic in TOPICS:
            others = rng.sample([t for t in TOPICS if t != topic], 2)
            rows.append(
                {
                    "query": f"tell me about {topic}",
                    "positive": _topic_passage(topic, rng),
                    "negatives": [_topic_passage(o, rng) for o in others],
                }
            )
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


def tiny_train_config(base: Path, data: Path, output: Path, **overrides: Any) -> Any:
    """A ``TrainConfig`` sized for the tiny base and the topic pairs (seconds per run)."""
    from semrank.train import DataSpec, TrainConfig

    settings: dict[str, Any] = dict(
        batch_queries=4, negatives=3, mining_depth=5, max_length=32, lr=2e-3, warmup_steps=2,
        head_probe_queries=16, val_queries=8, val_candidates=6, seed=0, threads=1,
    )  # fmt: skip
    settings.update(overrides)
    return TrainConfig(
        base=base, data=(DataSpec(path=data, name="pairs"),), output=output, **settings
    )


class HashingEmbedder:
    """A deterministic 384-d bag-of-words embedder (no model), the same for every store."""

    dim = 384  # as PostgreSQL stores them

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                digest = hashlib.md5(word.strip(".,;").encode()).digest()
                out[row, int.from_bytes(digest[:4], "little") % self.dim] += 1.0
            out[row] /= max(float(np.linalg.norm(out[row])), 1e-9)
        return out
