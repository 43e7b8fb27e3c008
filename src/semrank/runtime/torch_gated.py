"""A cross-encoder that starts as the bi-encoder: segment-gated cross attention (torch).

The pair is encoded as ``[CLS] query [SEP] [CLS] passage [SEP]``, each segment with its own
position ids, so that with the cross-segment attention closed the network computes exactly what
the bi-encoder computes for the query and for the passage alone; the score is the scaled cosine
of the two segments' mean-pooled states. Each attention head of each layer has a learned
additive bias on the attention logits between the segments (its *gate*): training opens the
gates where reading the query and the passage together pays. A plain cross-encoder built from a
bi-encoder starts with a random head and scores below the bi-encoder for a long time; this one
starts at the bi-encoder's ranking and can only learn from there.

The architecture is ``SemrankGatedBertForSequenceClassification`` (config ``model_type``
"semrank_gated_bert"); :func:`register` makes ``AutoModelForSequenceClassification`` load it.
The ONNX graph with the same arithmetic is built by ``semrank.runtime._arch_gated``
(no torch needed at inference).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertModel,
    BertPreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "semrank_gated_bert"
ARCHITECTURE = "SemrankGatedBertForSequenceClassification"
# A large finite negative: -inf turns fully masked rows into NaN and overflows in bf16 sums.
_MASKED = -10000.0


class SemrankGatedBertConfig(BertConfig):
    model_type = MODEL_TYPE

    def __init__(self, gate_init: float = -4.0, score_scale: float = 20.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.gate_init = gate_init
        self.score_scale = score_scale


class _CosineHead(nn.Module):
    """logit = scale * cosine + bias; named ``classifier`` so it gets the head learning rate."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, query: torch.Tensor, passage: torch.Tensor) -> torch.Tensor:
        cosine = nn.functional.cosine_similarity(query.float(), passage.float(), dim=-1)
        return self.scale * cosine + self.bias


class SemrankGatedBertForSequenceClassification(BertPreTrainedModel):
    config_class = SemrankGatedBertConfig

    def __init__(self, config: SemrankGatedBertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        shape = (config.num_hidden_layers, config.num_attention_heads)
        self.cross_gates = nn.Parameter(torch.full(shape, float(config.gate_init)))
        self.classifier = _CosineHead(config.score_scale)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is self or isinstance(module, _CosineHead):
            return  # gates and head keep their config values; BERT weights come from the base
        super()._init_weights(module)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        **_: Any,
    ) -> SequenceClassifierOutput:
        segment = token_type_ids.long()
        valid = attention_mask.long()
        hidden = self.bert.embeddings(
            input_ids=input_ids,
            position_ids=segment_position_ids(segment, valid),
            token_type_ids=torch.zeros_like(segment),
        )
        cross = (segment[:, :, None] != segment[:, None, :]).to(hidden.dtype)[:, None]
        padding = ((1 - valid).to(hidden.dtype) * _MASKED)[:, None, None, :]
        for layer, gates in zip(self.bert.encoder.layer, self.cross_gates, strict=True):
            mask = padding + cross * gates.to(hidden.dtype)[None, :, None, None]
            out = layer(hidden, attention_mask=mask)
            hidden = out[0] if isinstance(out, tuple) else out
        query = _mean_pool(hidden, (1 - segment) * valid)
        passage = _mean_pool(hidden, segment * valid)
        return SequenceClassifierOutput(logits=self.classifier(query, passage)[:, None])


def segment_position_ids(segment: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Positions restart at 0 where the passage segment starts, as in a lone encoding of it."""
    first = torch.cumsum((1 - segment) * valid, dim=1) - 1
    second = torch.cumsum(segment * valid, dim=1) - 1
    return torch.where(segment == 1, second, first).clamp(min=0)


def _mean_pool(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    w = weights.to(hidden.dtype)[..., None]
    return (hidden * w).sum(1) / w.sum(1).clamp(min=1.0)


def from_bi_encoder(
    path: str, *, gate_init: float = -4.0
) -> SemrankGatedBertForSequenceClassification:
    """The gated model with a BERT bi-encoder's weights: it scores as that bi-encoder does."""
    return wrap_bert(BertModel.from_pretrained(path, add_pooling_layer=False), gate_init=gate_init)


def wrap_bert(
    base: BertModel, *, gate_init: float = -4.0
) -> SemrankGatedBertForSequenceClassification:
    model = SemrankGatedBertForSequenceClassification(
        SemrankGatedBertConfig(gate_init=gate_init, score_scale=20.0, **_bert_settings(base.config))
    )
    model.bert.load_state_dict(base.state_dict())
    model.config.architectures = [ARCHITECTURE]
    return model


def unwrap_bert(model: SemrankGatedBertForSequenceClassification) -> BertModel:
    """The gated model's encoder as a plain ``BertModel`` (the inverse of :func:`wrap_bert`):
    with its gates shut the gated model is a bi-encoder, and this is that bi-encoder."""
    bert = BertModel(BertConfig(**_bert_settings(model.config)), add_pooling_layer=False)
    bert.load_state_dict(model.bert.state_dict())
    bert.config.architectures = ["BertModel"]
    return bert


def _bert_settings(config: BertConfig) -> dict[str, Any]:
    """The plain BERT fields of ``config`` (a gated or a plain one), without type markers."""
    fields = set(BertConfig().to_dict()) - {"model_type", "architectures", "transformers_version"}
    return {k: v for k, v in config.to_dict().items() if k in fields}


def use_pair_template(tokenizer: Any) -> Any:
    """Make a BERT fast tokenizer encode pairs as ``[CLS] a [SEP] [CLS] b [SEP]`` (b: type 1)."""
    from tokenizers.processors import TemplateProcessing

    cls, sep = tokenizer.cls_token, tokenizer.sep_token
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls}:0 $A:0 {sep}:0 {cls}:1 $B:1 {sep}:1",
        special_tokens=[(cls, tokenizer.cls_token_id), (sep, tokenizer.sep_token_id)],
    )
    return tokenizer


def register() -> None:
    """Let ``AutoConfig`` / ``AutoModelForSequenceClassification`` load saved gated models."""
    try:
        AutoConfig.register(MODEL_TYPE, SemrankGatedBertConfig)
        AutoModelForSequenceClassification.register(
            SemrankGatedBertConfig, SemrankGatedBertForSequenceClassification
        )
    except ValueError:  # already registered (a second import path)
        pass


register()
