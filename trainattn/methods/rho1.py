"""RHO-1 selective language modelling (Lin et al. 2024), as a token-weighting method.

Score of a token = excess loss = θ's current NLL − the reference model's NLL,
where the reference is θ as it was at the start of the run (frozen, evaluated
on the fly). Per sequence, the top ``keep`` fraction (``method_settings.rho1.keep``) of real tokens by
score get weight 1, the rest 0.

The official TAALM code kept tokens with ``argsort(score) / L > k``: that
compares *sort indices* (which token sits at each sorted position), not
*ranks* (where each token sits), so the kept set is essentially arbitrary. A
rank needs ``argsort().argsort()``; :func:`top_fraction_mask` does exactly that.
It also scored by probability difference; we use the paper's excess loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.func import functional_call

from trainattn.core.lora import trainable_tensors
from trainattn.core.losses import per_token_nll, target_mask
from trainattn.core.spans import EncodedBatch
from trainattn.methods.base import Method, RunContext, register


def top_fraction_mask(score: torch.Tensor, valid: torch.Tensor, keep: float) -> torch.Tensor:
    """Bool ``[batch, n]``: per row, the ``round(keep × #valid)`` highest-scoring valid entries.

    At least one token is kept in a row with any valid entry. Ties are broken
    by position (stable sort), so the result is deterministic.

    Args:
        score: ``[batch, n]`` (higher = more worth training on).
        valid: ``[batch, n]`` bool or 0/1, the entries that may be kept.
        keep: fraction in (0, 1].
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"method_settings.rho1.keep must be in (0, 1], got {keep}")
    valid = valid.bool()
    count = valid.sum(-1)
    k = torch.tensor([max(1, round(keep * int(c))) if c else 0 for c in count], device=score.device)
    masked = score.masked_fill(~valid, -math.inf)
    order = masked.argsort(dim=-1, descending=True, stable=True)
    rank = order.argsort(dim=-1)  # rank[i, j] = position of token j in the sorted order
    return (rank < k[:, None]) & valid


@dataclass(frozen=True)
class Rho1Settings:
    """``keep``: the fraction of each document's tokens trained on (the paper's 0.6)."""

    keep: float = 0.6


@register
class Rho1(Method):
    """Train only on the tokens with the largest excess loss over the initial θ.

    The reference costs no second model in memory: θ's initial trainable
    tensors (LoRA or adapter weights) are snapshotted in :meth:`prepare`, and
    the reference forward is ``functional_call(theta, initial_tensors, ...)``
    in eval mode under ``no_grad``.
    """

    name = "rho1"
    weighting = True
    Settings = Rho1Settings

    def __init__(self, keep: float | None = None):
        super().__init__()
        self.keep = keep
        self.reference: dict[str, torch.Tensor] = {}

    def prepare(self, theta, tokenizer, config, context: RunContext) -> None:
        if self.keep is None:
            self.keep = self.settings.keep
        self.reference = {n: p.detach().clone() for n, p in trainable_tensors(theta).items()}

    @torch.no_grad()
    def reference_nll(self, theta, batch: EncodedBatch) -> torch.Tensor:
        """``[batch, seq_len - 1]`` token NLL of the initial θ."""
        was_training = theta.training
        theta.eval()
        try:
            out = functional_call(theta, self.reference, (), {
                "input_ids": batch.input_ids,
                "attention_mask": batch.attention_mask,
                "position_ids": batch.position_ids,
            }, strict=False)
        finally:
            theta.train(was_training)
        return per_token_nll(out.logits, batch.input_ids)

    @torch.no_grad()
    def token_weights(self, batch: EncodedBatch, logits, theta) -> torch.Tensor:
        excess = per_token_nll(logits.detach(), batch.input_ids) - self.reference_nll(theta, batch)
        keep = top_fraction_mask(excess, target_mask(batch.attention_mask), self.keep)
        return keep.to(torch.get_default_dtype())
