"""Meta-training of φ (Train-Attention), one example at a time.

For each example (document D, probe T_D, object):

1. reset θ's LoRA to its initial tensors θ₀;
2. φ predicts ``token_weights`` W for D (tracked: this is what φ learns);
3. ``untracked_steps`` detached TWL steps of θ on D, then ``tracked_steps``
   differentiable ones (:func:`trainattn.core.inner.inner_update`), giving θ'(W);
4. the outer loss on T_D under θ' (object-token NLL by default) is
   back-propagated through the tracked step(s) into W and φ.

A meta-step averages φ's gradient over ``meta_batch`` examples and takes one
AdamW step on φ's trainable tensors (LoRA + head). θ itself never changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call

from trainattn.config import MetaConfig
from trainattn.core.evaluate import object_token_scores
from trainattn.core.inner import inner_update, make_inner_optimizer
from trainattn.core.lora import trainable_tensors
from trainattn.core.losses import check_finite, per_token_nll, token_weighted_loss
from trainattn.core.spans import EncodedBatch, encode_with_objects

OBJECTIVES = ("nll", "change3", "change2")


@dataclass(frozen=True)
class MetaExample:
    """A document D, a probe T_D about it, and the probe's object string."""

    document: str
    probe: str
    object: str
    uuid: str = ""


def examples_from_rows(rows, probe_form: str = "schematic") -> list[MetaExample]:
    """LAMA-CKL rows → meta-examples (evidence as D, the chosen probe form as T_D)."""
    key = {"descriptive": "task_descriptive", "schematic": "task_schematic"}[probe_form]
    return [MetaExample(r["evidence"], r[key], r["object"], r.get("uuid", "")) for r in rows]


def theta_logits(theta, params: dict, batch: EncodedBatch) -> torch.Tensor:
    """θ's logits with ``params`` substituted for its trainable tensors (θ is not mutated)."""
    kwargs = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "position_ids": batch.position_ids,
    }
    return functional_call(theta, params, args=(), kwargs=kwargs, strict=False).logits


def outer_objective(name: str, nll_after: torch.Tensor, nll_before: torch.Tensor | None) -> torch.Tensor:
    """The outer loss from the probe's per-object-token NLL after (tracked) and before.

    ``nll``: mean NLL after the update (the paper's default). ``change3``: mean
    cubed change (after − before). ``change2``: mean signed squared change.
    Shapes: ``[n_object_tokens]``.
    """
    if name == "nll":
        return nll_after.mean()
    if nll_before is None:
        raise ValueError(f"objective {name!r} needs the NLL before the update")
    change = nll_after - nll_before
    if name == "change3":
        return (change**3).mean()
    if name == "change2":
        return (change.abs() * change).mean()
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {name!r}")


class MetaLearner:
    """Holds θ (frozen base + LoRA, used functionally), φ and φ's optimizer.

    Args:
        config: :class:`~trainattn.config.MetaConfig`.
        theta: θ with LoRA adapters (``add_lora``); its current LoRA tensors are θ₀.
        phi: :class:`~trainattn.core.train_attention.TrainAttention`.
        tokenizer: shared by θ and φ.
    """

    def __init__(self, config: MetaConfig, theta, phi, tokenizer):
        if config.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {config.objective!r}")
        self.config, self.theta, self.phi, self.tokenizer = config, theta, phi, tokenizer
        self.theta0 = {n: p.detach().clone() for n, p in trainable_tensors(theta).items()}
        for p in theta.parameters():
            p.requires_grad_(False)
        self.inner_optimizer = make_inner_optimizer(config.inner_optimizer, config.inner_lr)
        self.phi_params = trainable_tensors(phi)
        # a frozen φ (loaded for validation only) has nothing to optimise
        self.phi_optimizer = (
            torch.optim.AdamW(self.phi_params.values(), lr=config.outer_lr) if self.phi_params else None
        )
        self.theta.eval()  # no dropout: the inner update is deterministic

    def encode(self, example: MetaExample) -> tuple[EncodedBatch, EncodedBatch]:
        """(document with its object marked, probe with its object marked), batch of 1."""
        max_length = self.config.theta.max_length
        doc = encode_with_objects(self.tokenizer, [example.document], [example.object], max_length)
        probe = encode_with_objects(self.tokenizer, [example.probe], [example.object])
        device = next(self.theta.parameters()).device
        return doc.to(device), probe.to(device)

    def example_loss(self, example: MetaExample, drift: MetaExample | None = None):
        """Outer loss for one example, tracked back to φ; plus floats for logging.

        Returns ``(loss, info)`` where ``info`` has the probe NLL before and
        after the update, the inner losses and φ's mean weight on the
        document's object tokens and on the other tokens.
        """
        doc, probe = self.encode(example)
        token_weights = self.phi(doc.input_ids, doc.attention_mask, doc.position_ids)
        loss, info = self.loss_given_weights(doc, probe, token_weights, drift)
        on_object = doc.target_mask[0] & doc.attention_mask[0, 1:].bool()
        other = ~doc.target_mask[0] & doc.attention_mask[0, 1:].bool()
        w = token_weights.detach()[0]
        info["weight_object"] = w[on_object].mean().item() if on_object.any() else float("nan")
        info["weight_other"] = w[other].mean().item() if other.any() else float("nan")
        return loss, info

    def loss_given_weights(
        self,
        doc: EncodedBatch,
        probe: EncodedBatch,
        token_weights: torch.Tensor,
        drift: MetaExample | None = None,
        untracked_weights: torch.Tensor | None = None,
    ):
        """The outer loss as a function of ``token_weights`` ``[1, doc_len - 1]`` (tracked).

        The untracked (dummy) steps use ``untracked_weights``, by default
        ``token_weights.detach()``: they move θ but are constants to φ.
        """
        if untracked_weights is None:
            untracked_weights = token_weights.detach()
        mask = probe.target_mask[0]
        if not mask.any():
            raise ValueError("the probe's object tokens were not found")

        def loss_fn(params, tracked: bool):
            weights = token_weights if tracked else untracked_weights
            nll = per_token_nll(theta_logits(self.theta, params, doc), doc.input_ids)
            return token_weighted_loss(nll, weights, doc.attention_mask)

        with torch.no_grad():
            before = per_token_nll(theta_logits(self.theta, self.theta0, probe), probe.input_ids)[0, mask]
        inner = inner_update(
            loss_fn, self.theta0, self.inner_optimizer,
            self.config.untracked_steps, self.config.tracked_steps,
        )
        after = per_token_nll(theta_logits(self.theta, inner.params, probe), probe.input_ids)[0, mask]
        loss = outer_objective(self.config.objective, after, before)
        if drift is not None and self.config.drift_coef:
            loss = loss + self.config.drift_coef * self._drift(drift, inner.params)
        info = {
            "probe_nll_before": before.mean().item(),
            "probe_nll_after": after.detach().mean().item(),
            "inner_losses": inner.losses,
        }
        return loss, info

    def _drift(self, example: MetaExample, params) -> torch.Tensor:
        """|ΔNLL| of an unrelated probe's object tokens (a stability term)."""
        _, probe = self.encode(example)
        with torch.no_grad():
            before = object_token_scores(
                theta_logits(self.theta, self.theta0, probe), probe.input_ids, probe.object_mask
            )[1]
        after = object_token_scores(theta_logits(self.theta, params, probe), probe.input_ids, probe.object_mask)[1]
        return (after - before).abs().nan_to_num(0.0).mean()

    def meta_step(self, examples: list[MetaExample], drift: list[MetaExample] | None = None) -> dict:
        """One φ update from the mean gradient over ``examples``; returns averaged logs."""
        if self.phi_optimizer is None:
            raise ValueError("φ has no trainable tensors (a frozen, loaded φ cannot be meta-trained)")
        self.phi.train()
        self.phi_optimizer.zero_grad(set_to_none=True)
        infos = []
        for i, example in enumerate(examples):
            loss, info = self.example_loss(example, drift[i] if drift else None)
            check_finite(loss, f"meta-example {example.uuid or example.object!r}")
            (loss / len(examples)).backward()
            info["outer_loss"] = loss.item()
            infos.append(info)
        grads = [p.grad for p in self.phi_params.values() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item() if grads else 0.0
        if grads and not torch.isfinite(torch.tensor(grad_norm)):
            raise FloatingPointError("φ's meta-gradient is not finite; stopping before the update")
        self.phi_optimizer.step()
        keys = ("outer_loss", "probe_nll_before", "probe_nll_after", "weight_object", "weight_other")
        summary = {k: float(torch.tensor([inf[k] for inf in infos]).nanmean()) for k in keys}
        summary["phi_grad_norm"] = grad_norm
        return summary
