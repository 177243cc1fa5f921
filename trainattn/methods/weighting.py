"""Token-weighting methods: plain fine-tuning, the oracle, and TAALM (a frozen φ).

Each returns ``token_weights`` of shape ``[batch, seq_len - 1]`` (index t
weighs predicting ``input_ids[:, t + 1]``), detached: θ's loss is weighted by
them, nothing flows back into φ during CKL.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from trainattn.core.losses import (
    known_token_mask,
    mask_known_tokens,
    oracle_weights,
    uniform_weights,
)
from trainattn.core.spans import EncodedBatch
from trainattn.methods.base import Method, RunContext, register


@register
class Finetune(Method):
    """Uniform weights: the standard causal-LM loss on every real token."""

    name = "finetune"
    weighting = True

    def token_weights(self, batch: EncodedBatch, logits, theta) -> torch.Tensor:
        return uniform_weights(batch.attention_mask)


@register
class Oracle(Method):
    """Ground-truth weights: 1 on the object's tokens inside the evidence, 0 elsewhere.

    The loop encodes each document with its row's object
    (:func:`~trainattn.core.spans.encode_with_objects`), so ``batch.object_mask``
    marks the object's last occurrence, as the paper's code does. A document
    whose object is not located (or was truncated away) gets all-zero weights,
    i.e. contributes no loss.
    """

    name = "oracle"
    weighting = True

    def token_weights(self, batch: EncodedBatch, logits, theta) -> torch.Tensor:
        return oracle_weights(batch.object_mask) * batch.attention_mask[:, 1:]


@register
class TAALM(Method):
    """Weights from a frozen, meta-trained φ (:class:`~trainattn.core.train_attention.TrainAttention`).

    Args:
        phi: φ itself, or ``None`` to build it in :meth:`prepare` with
            ``load_phi(config.phi_checkpoint)`` (a callable the caller supplies,
            so this module does not decide how checkpoints are stored).
        known_masking: ``None`` follows ``config.known_masking``; when on,
            tokens θ already predicts (argmax = target) get weight 0. The paper
            runs CKL with it off.

    φ runs under ``torch.no_grad`` in eval mode; its parameters are frozen.
    """

    name = "taalm"
    weighting = True
    uses_phi = True

    def __init__(self, phi=None, load_phi: Callable | None = None, known_masking: bool | None = None):
        super().__init__()
        self.phi, self.load_phi, self.known_masking = phi, load_phi, known_masking

    def prepare(self, theta, tokenizer, config, context: RunContext) -> None:
        if self.phi is None:
            if self.load_phi is None:
                raise ValueError("taalm needs φ: pass phi=... or load_phi=callable(path) to make_method")
            self.phi = self.load_phi(config.phi_checkpoint)
        if self.known_masking is None:
            self.known_masking = config.known_masking
        self.phi.requires_grad_(False)
        self.phi.eval()
        self.phi.to(next(theta.parameters()).device)

    @torch.no_grad()
    def token_weights(self, batch: EncodedBatch, logits, theta) -> torch.Tensor:
        weights = self.phi(batch.input_ids, batch.attention_mask, batch.position_ids)
        if self.known_masking:
            weights = mask_known_tokens(weights, known_token_mask(logits.detach(), batch.input_ids))
        return weights.detach()
