"""RHO-1 as the official TAALM LAMA-CKL baseline scores it: the probability gain over the initial θ.

This is the ``rho1`` method, labelled ``rho1_variant = "official-lama-ckl"``.
The RHO-1 paper's own definition (excess loss against a reference model
trained on clean in-domain text) is the ``rho1-paper`` method in
:mod:`trainattn.methods.rho1_paper`; the two are kept apart on purpose.

What the official code does (``evaluation_run.py`` of github.com/ybseo-academy/TAALM,
commit 74fdd44, ``mode0 == 'rho_train'`` and ``origin_prob``; run by
``scripts/eval/lamackl/rho.sh`` with ``--rho_k=0.6``):

1. Before training, every TO-LEARN document's target-token probabilities under
   the initial θ are stored (``original_prob``, eval mode).
2. Each step, the score of target token i is ``p_θ(x_i) − p_θ₀(x_i)``: the
   probability *gain* since the start. High score = a token θ is learning.
   (This is the opposite direction to the RHO-1 paper, whose excess loss
   ``L_θ − L_ref`` is high where θ is *worse* than the reference.)
3. Tokens are kept where ``argsort(score) / L > rho_k``. ``argsort`` returns
   sort indices, not ranks; a rank is ``argsort().argsort()``. Read with true
   ranks the rule keeps tokens whose rank is above 60 %, the top 40 %, and
   that is what this method does (:func:`top_fraction_mask`; default
   ``keep = 0.4``).
4. The loss is ``Σ_kept nll / (rho_k × #valid tokens)`` per sequence, then the
   mean over sequences; a commented-out line beside it divides by the kept
   count instead.

Deviations, labelled:

* **Normalisation.** The training loop normalises each sequence by its weight
  sum (:func:`~trainattn.core.losses.token_weighted_loss`), so the loss here is
  the mean NLL over kept tokens, ``Σ_kept nll / round(0.4·n)``. The official
  divisor ``0.6·n`` makes that loss about ⅔ as large, a near-constant factor
  (rounding aside) that Adam's update ignores. It matters only beside rows
  normalised otherwise in the same batch: with Mix-review (a combination the
  official code never ran) RHO-1 rows weigh ~1.5× more against the review
  rows than the official divisor would give. Note that ``0.6·n`` equals the
  kept count only if 60 % were kept, so the authors may have meant to keep
  60 % (the RHO-1 paper's ratio for a 1B model) and flipped the inequality;
  ``keep`` is a setting (``method_settings.rho1.keep=0.6``) for that reading.
* **Ranks over real tokens.** The official threshold divides by the padded
  length ``L`` and ranks padding too, so a padded row keeps another fraction
  of its real tokens; we rank real targets only and keep exactly
  ``round(keep × n)`` of them (at least one).
* **The initial probabilities** are recomputed each step from a snapshot of
  θ's initial trainable tensors (same values as storing them once; no
  per-document cache keyed to a padding layout).

Step 1 and ties. At the first update θ equals θ₀, so with LoRA dropout 0 (our
default) every score is exactly 0 and ties are broken by position: the
first ``keep`` fraction of each document's targets is trained on. The
official code has no tie-break either; there the LoRA dropout (0.1, train
mode) and bf16 noise decide the step-1 selection at random, and its sort
index rule does the rest. After one update the gains are continuous and ties
vanish. With dropout in θ (``theta.lora_dropout > 0`` or K-Adapter blocks)
the current forward is noisy here too, as officially.
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
    by position (stable sort: the earlier entry wins), so the result is deterministic.

    Args:
        score: ``[batch, n]`` (higher = more worth training on).
        valid: ``[batch, n]`` bool or 0/1, the entries that may be kept.
        keep: fraction in (0, 1].
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"RHO-1 keep must be in (0, 1], got {keep}")
    valid = valid.bool()
    count = valid.sum(-1)
    k = torch.tensor([max(1, round(keep * int(c))) if c else 0 for c in count], device=score.device)
    masked = score.masked_fill(~valid, -math.inf)
    order = masked.argsort(dim=-1, descending=True, stable=True)
    rank = order.argsort(dim=-1)  # rank[i, j] = position of token j in the sorted order
    return (rank < k[:, None]) & valid


def reference_forward_nll(theta, tensors: dict[str, torch.Tensor], batch: EncodedBatch) -> torch.Tensor:
    """``[batch, seq_len - 1]`` token NLL of θ with its trainable tensors replaced by ``tensors``.

    Runs in eval mode (no dropout) under ``no_grad``; θ's own tensors and
    train/eval mode are left as they were.
    """
    was_training = theta.training
    theta.eval()
    try:
        with torch.no_grad():
            out = functional_call(theta, tensors, (), {
                "input_ids": batch.input_ids,
                "attention_mask": batch.attention_mask,
                "position_ids": batch.position_ids,
            }, strict=False)
    finally:
        theta.train(was_training)
    return per_token_nll(out.logits, batch.input_ids)


@dataclass(frozen=True)
class Rho1Settings:
    """``keep``: the fraction of each document's real targets trained on.

    0.4: the official ``rho_k = 0.6`` rank threshold read with true ranks (module docstring).
    """

    keep: float = 0.4


@register
class Rho1(Method):
    """Train only on the tokens whose probability rose most since the start (official LAMA-CKL RHO-1).

    The initial θ costs no second model in memory: its trainable tensors
    (LoRA or adapter weights) are snapshotted in :meth:`prepare`, and the
    reference forward is ``functional_call(theta, initial_tensors, ...)`` in
    eval mode under ``no_grad``.
    """

    name = "rho1"
    weighting = True
    Settings = Rho1Settings
    variant = "official-lama-ckl"

    def __init__(self, keep: float | None = None):
        super().__init__()
        self.keep = keep
        self.reference: dict[str, torch.Tensor] = {}

    def prepare(self, theta, tokenizer, config, context: RunContext) -> None:
        if self.keep is None:
            self.keep = self.settings.keep
        self.reference = {n: p.detach().clone() for n, p in trainable_tensors(theta).items()}
        self.labels = {"rho1_variant": self.variant, "rho1_score": "probability gain over the initial theta",
                       "rho1_keep": self.keep}

    def reference_nll(self, theta, batch: EncodedBatch) -> torch.Tensor:
        """``[batch, seq_len - 1]`` token NLL of the reference (here: the initial θ), untracked."""
        return reference_forward_nll(theta, self.reference, batch)

    @torch.no_grad()
    def score(self, batch: EncodedBatch, logits: torch.Tensor, theta) -> torch.Tensor:
        """``[batch, seq_len - 1]``: ``p_θ(target) − p_θ₀(target)``, untracked."""
        current = per_token_nll(logits.detach(), batch.input_ids)
        return torch.exp(-current) - torch.exp(-self.reference_nll(theta, batch))

    @torch.no_grad()
    def token_weights(self, batch: EncodedBatch, logits, theta) -> torch.Tensor:
        """``[batch, seq_len - 1]`` 0/1, detached: the top ``keep`` of each row's real targets by :meth:`score`."""
        keep = top_fraction_mask(self.score(batch, logits, theta), target_mask(batch.attention_mask), self.keep)
        return keep.to(torch.get_default_dtype())
