"""RHO-1 as its paper defines it: Selective Language Modeling against a trained reference model.

This is the ``rho1-paper`` method, labelled ``rho1_variant = "paper-slm"``;
the official TAALM LAMA-CKL baseline is ``rho1`` (:mod:`trainattn.methods.rho1`).

The paper (Lin et al. 2024, "Rho-1: Not All Tokens Are What You Need",
arXiv 2404.07965, read in the stored paper text):

* §2.2 Eq. 3: the score of token x_i is the excess loss
  ``L_Δ(x_i) = L_θ(x_i) − L_RM(x_i)``, θ's current NLL minus the NLL of a
  reference model (RM) trained with plain cross-entropy on curated,
  high-quality text of the desired distribution.
* Eq. 4–5: the loss is the NLL of the tokens in the top k % by excess loss,
  divided by ``N × k%``, the number of selected tokens.
* §3.1: RM and the trained model start from the same base model; RM is
  trained 3 epochs (lr 5e-5 for 1B models, cosine decay); the token
  selection ratio is 60 % for TinyLlama-1.1B and 70 % for Mistral-7B. We
  take ``keep = 0.6``: our θs are ≤ 1.1B.

Here, per run:

* The reference is θ's initial model with its own copy of θ's trainable
  tensors (LoRA, or K-Adapter weights) fine-tuned with the uniform LM loss on
  ``reference_docs`` evidence documents of the meta-training pool
  (``RunContext.reference_rows``; the pool is cleaned of the tested facts).
  The documents are drawn with ``random.Random(seed)``, their order per epoch
  too, and dropout masks come from a generator forked and seeded with the run
  seed, so a resumed run rebuilds the same reference (bit for bit on CPU; on
  a GPU up to non-deterministic kernels). θ itself is untouched: training
  goes through ``torch.func.functional_call`` with a separate tensor dict
  and its own ``torch.optim.AdamW`` (weight decay 0), freed afterwards.
* Each step: ``excess = nll_θ − nll_ref`` per target token (untracked; the
  reference forward is in eval mode), and per document the top ``keep`` of
  the real targets get weight 1, the rest 0.

Deviations, labelled:

* **Per document, not per batch.** The paper ranks the tokens of a batch
  ("ranking the tokens in a batch according to their excess loss", §2.2);
  we rank within each document, keep exactly ``round(keep × n)`` (at least
  one) per document, and the loop's per-sequence normalisation gives each
  document the mean NLL over its kept tokens (Eq. 4 normalised per row
  instead of over the batch).
* **Reference budget.** The paper's RM saw 0.5B–1.9B curated tokens for 3
  epochs at lr 5e-5 on the full model; ours is a LoRA (or adapter) update on
  a few hundred pool documents, 1 epoch at lr 1e-3 by default (LoRA takes
  larger learning rates than full fine-tuning). Settings change all four.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch.func import functional_call

from trainattn.core.lora import trainable_tensors
from trainattn.core.losses import per_token_nll, token_weighted_loss, uniform_weights
from trainattn.core.spans import EncodedBatch, encode_texts
from trainattn.methods.base import RunContext, register
from trainattn.methods.rho1 import Rho1


@dataclass(frozen=True)
class Rho1PaperSettings:
    """``keep``: fraction of each document's targets trained on (the paper's 60 % for a 1B model).

    ``reference_docs`` pool documents train the reference for ``reference_epochs``
    epochs of batches of ``reference_batch`` documents, AdamW at ``reference_lr``.
    """

    keep: float = 0.6
    reference_docs: int = 256
    reference_epochs: int = 1
    reference_lr: float = 1e-3
    reference_batch: int = 8


def reference_documents(rows: list[dict] | None, count: int, seed: int) -> list[str]:
    """``count`` evidence texts drawn from ``rows`` under ``seed`` (all of them if fewer)."""
    if not rows:
        raise ValueError(
            "rho1-paper needs in-domain reference documents: RunContext.reference_rows is empty. "
            "Pass the meta-training pool as run_lama_ckl(..., reference_rows=...)."
        )
    if count < 1:
        raise ValueError(f"method_settings.rho1-paper.reference_docs must be >= 1, got {count}")
    picked = random.Random(seed).sample(range(len(rows)), min(count, len(rows)))
    return [rows[i]["evidence"] for i in picked]


def train_reference(theta, tokenizer, texts: list[str], *, epochs: int, lr: float, batch_size: int,
                    max_length: int | None, seed: int) -> tuple[dict[str, torch.Tensor], float]:
    """A copy of θ's trainable tensors, fine-tuned with the uniform LM loss on ``texts``.

    Returns the detached tensors (same names, dtypes and devices as θ's) and
    the mean training loss of the last epoch. θ's tensors, its mode and the
    global RNG are left as they were.
    """
    tensors = {n: p.detach().clone().requires_grad_(True) for n, p in trainable_tensors(theta).items()}
    if not tensors:
        raise ValueError("rho1-paper: θ has no trainable tensors to fine-tune a reference from")
    device = next(iter(tensors.values())).device
    optimizer = torch.optim.AdamW(tensors.values(), lr=lr, weight_decay=0.0)
    order_rng = random.Random(seed)
    was_training = theta.training
    last_epoch: list[float] = []
    devices = [device] if device.type == "cuda" else []
    try:
        theta.train()
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for _ in range(epochs):
                order = list(range(len(texts)))
                order_rng.shuffle(order)
                last_epoch = []
                for start in range(0, len(order), batch_size):
                    batch = encode_texts(tokenizer, [texts[i] for i in order[start:start + batch_size]],
                                         max_length).to(device)
                    out = functional_call(theta, tensors, (), {
                        "input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                        "position_ids": batch.position_ids,
                    }, strict=False)
                    nll = per_token_nll(out.logits, batch.input_ids)
                    loss = token_weighted_loss(nll, uniform_weights(batch.attention_mask), batch.attention_mask)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    last_epoch.append(float(loss.detach()))
    finally:
        theta.train(was_training)
    final = sum(last_epoch) / len(last_epoch) if last_epoch else float("nan")
    return {n: t.detach() for n, t in tensors.items()}, final


@register
class Rho1Paper(Rho1):
    """Train only on the tokens with the largest excess loss over a reference trained on pool documents."""

    pools = ("reference_rows",)

    name = "rho1-paper"
    weighting = True
    Settings = Rho1PaperSettings
    variant = "paper-slm"

    def prepare(self, theta, tokenizer, config, context: RunContext) -> None:
        s = self.settings
        if self.keep is None:
            self.keep = s.keep
        if s.reference_epochs < 1 or s.reference_batch < 1:
            raise ValueError("method_settings.rho1-paper: reference_epochs and reference_batch must be >= 1")
        texts = reference_documents(context.reference_rows, s.reference_docs, context.seed)
        self.reference, final_loss = train_reference(
            theta, tokenizer, texts, epochs=s.reference_epochs, lr=s.reference_lr, batch_size=s.reference_batch,
            max_length=config.theta.max_length, seed=context.seed,
        )
        self.labels = {
            "rho1_variant": self.variant, "rho1_score": "excess loss over a reference trained on the meta pool",
            "rho1_keep": self.keep, "rho1_reference_docs": len(texts),
            "rho1_reference_final_loss": round(final_loss, 6),
        }

    @torch.no_grad()
    def score(self, batch: EncodedBatch, logits: torch.Tensor, theta) -> torch.Tensor:
        """``[batch, seq_len - 1]``: excess loss ``nll_θ − nll_ref``, untracked."""
        return per_token_nll(logits.detach(), batch.input_ids) - self.reference_nll(theta, batch)
