"""Listwise losses over each query's candidate list (column 0 is the positive)."""

from __future__ import annotations

from typing import Any


def listwise_loss(
    scores: Any, teacher: Any, *, distill_weight: float, label_weight: float = 1.0
) -> tuple[Any, dict[str, float]]:
    """Softmax cross-entropy on the label plus KL toward the teacher's distribution.

    ``scores`` and ``teacher`` are (queries, candidates) logits; the caller scales teacher
    cosines the way the bi-encoder was trained (MultipleNegativesRanking uses 20) so that their
    softmax has the teacher's own sharpness.
    """
    import torch
    import torch.nn.functional as F

    scores = scores.float()
    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    label_loss = F.cross_entropy(scores, target)
    log_probs = F.log_softmax(scores, dim=-1)
    teacher_probs = F.softmax(teacher.float(), dim=-1)
    distill_loss = F.kl_div(log_probs, teacher_probs, reduction="batchmean")
    loss = label_weight * label_loss + distill_weight * distill_loss
    return loss, {"ce": label_loss.item(), "kd": distill_loss.item()}
