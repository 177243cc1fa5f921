"""Per-token NLL and the token-weighted loss (TWL) of the paper.

Alignment convention used everywhere: a tensor of shape ``[batch, seq_len - 1]``
at index t refers to predicting ``input_ids[:, t + 1]`` from
``logits[:, t]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainattn.errors import NonFiniteLossError


def per_token_nll(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Next-token NLL, ``[batch, seq_len - 1]`` (tracked through ``logits``).

    Args:
        logits: ``[batch, seq_len, vocab]``.
        input_ids: ``[batch, seq_len]``.
    """
    logits = logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    targets = input_ids[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    return nll.view_as(targets)


def target_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[batch, seq_len - 1]`` float mask of real next-token targets."""
    return attention_mask[:, 1:].to(torch.get_default_dtype())


def token_weighted_loss(
    nll: torch.Tensor,
    token_weights: torch.Tensor,
    attention_mask: torch.Tensor,
    min_weight_sum: float = 1e-6,
) -> torch.Tensor:
    """The paper's TWL: per sequence ``Σ w·nll / Σ w``, then the mean over sequences.

    Args:
        nll: ``[batch, seq_len - 1]`` from :func:`per_token_nll`.
        token_weights: ``[batch, seq_len - 1]``; gradients flow into it (this
            is the path of the meta-gradient to φ).
        attention_mask: ``[batch, seq_len]``; padded targets get zero weight.
        min_weight_sum: the denominator is clamped from below (not shifted),
            so uniform weights give exactly the per-sequence mean NLL and an
            all-zero row contributes 0 instead of NaN.

    Only the relative weights inside a sequence matter.
    """
    if nll.shape != token_weights.shape:
        raise ValueError(
            f"token_weights has shape {tuple(token_weights.shape)}, expected {tuple(nll.shape)} "
            "([batch, seq_len - 1], aligned with next-token targets)"
        )
    w = token_weights * attention_mask[:, 1:].to(token_weights.dtype)
    per_sequence = (w * nll).sum(-1) / w.sum(-1).clamp_min(min_weight_sum)
    return per_sequence.mean()


def uniform_weights(attention_mask: torch.Tensor) -> torch.Tensor:
    """Plain fine-tuning as TWL: weight 1 on every real target, ``[batch, seq_len - 1]``."""
    return target_mask(attention_mask)


def known_token_mask(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """``[batch, seq_len - 1]`` bool: True where θ's argmax already equals the target."""
    return logits[:, :-1].argmax(-1).eq(input_ids[:, 1:])


def mask_known_tokens(token_weights: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Known-token masking: zero weight where θ already predicts the token."""
    return token_weights * (~known).to(token_weights.dtype)


def oracle_weights(object_mask: torch.Tensor) -> torch.Tensor:
    """1 on the object's tokens in the document, 0 elsewhere: ``[batch, seq_len - 1]``.

    ``object_mask`` is ``[batch, seq_len]`` (from :mod:`trainattn.core.spans`); the
    weight at t is for predicting token t + 1, so it reads ``object_mask[:, 1:]``.
    """
    return object_mask[:, 1:].to(torch.get_default_dtype())


def check_finite(loss: torch.Tensor, where: str) -> torch.Tensor:
    """Raise :class:`NonFiniteLossError` if ``loss`` is NaN or infinite."""
    if not torch.isfinite(loss).all():
        raise NonFiniteLossError(
            f"{where}: loss is {loss.detach().flatten()[:4].tolist()} (not finite); stopping. "
            "Lower the learning rate or check the inputs; the last checkpoint is intact."
        )
    return loss
