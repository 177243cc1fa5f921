"""RecAdam (Chen et al. 2020): Adam with an annealed quadratic pull toward θ₀.

The objective is ``λ(t)·task_loss + (1 − λ(t))·(coef/2)·Σ‖θ − θ₀‖²`` with
``λ(t) = sigmoid(k·(t − t0))``. As in the original optimizer, the two parts
are applied differently: the task gradient goes through AdamW and its update
is scaled by λ(t); the penalty's gradient ``(1 − λ)·coef·(θ − θ₀)`` is applied
as a plain gradient step of size lr (Adam's normalisation would otherwise
turn a 5000× penalty into a unit-size step). Here it is implemented as a
subclass of :class:`torch.optim.AdamW`, so λ ≡ 1 *is* AdamW, bit for bit.

The pull factor ``lr·(1 − λ)·coef`` is clamped to 1: beyond that the explicit
step would overshoot θ₀ and diverge (lr 1e-3 × coef 5000 gives 5 while λ is
small; the paper's lr 1e-4 gives 0.5). Clamped, the step returns θ to θ₀ at
most, the limit of a very strong pull.

Differences from the official TAALM code, on purpose:

* the pull acts on the **trainable** tensors (LoRA or adapter weights),
  anchored at their values when the run starts. The official grouping put the
  pull on parameters named "bias"/"norm" only, which LoRA has none of, so
  RecAdam(QLoRA) there was plain Adam;
* ``t0 = t0_fraction × total updates`` of the run (the paper's
  t0 = 250 exceeds LAMA-CKL's ~240 updates, so λ never reached 1/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainattn.core.lora import trainable_tensors
from trainattn.methods.base import Method, RunContext, register


def anneal_lambda(step: int, k: float, t0: float) -> float:
    """``sigmoid(k·(step − t0))``: the task-loss weight at optimizer step ``step`` (1-based)."""
    x = k * (step - t0)
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class RecAdamW(torch.optim.AdamW):
    """AdamW whose update is ``θ ← lerp(θ, θ_AdamW, λ) − min(1, lr·(1 − λ)·coef)·(θ − θ₀)``.

    Args:
        params: the trainable tensors (one group).
        anchors: θ₀, one tensor per parameter, same order.
        k, t0, coef: the annealing slope and midpoint (in steps) and the penalty coefficient.
        anneal: optional ``step -> λ`` override (tests use ``lambda t: 1.0``).

    The step count lives in ``param_groups[0]["recadam_step"]``, so it is saved
    and restored with the optimizer's ``state_dict``; the anchors are not (the
    run rebuilds them from its deterministic start).
    """

    def __init__(self, params, anchors, lr=1e-3, k=0.5, t0=0.0, coef=5000.0, anneal=None, **adamw):
        params = list(params)
        super().__init__(params, lr=lr, **adamw)
        if len(anchors) != len(params):
            raise ValueError(f"{len(anchors)} anchors for {len(params)} parameters")
        self.anchors = [a.detach().clone() for a in anchors]
        self.anneal = anneal
        for group in self.param_groups:
            group.update(recadam_k=k, recadam_t0=float(t0), recadam_coef=coef, recadam_step=0)

    def current_lambda(self, step: int) -> float:
        g = self.param_groups[0]
        if self.anneal is not None:
            return float(self.anneal(step))
        return anneal_lambda(step, g["recadam_k"], g["recadam_t0"])

    @torch.no_grad()
    def step(self, closure=None):
        group = self.param_groups[0]
        group["recadam_step"] += 1
        lam = self.current_lambda(group["recadam_step"])
        params = [p for g in self.param_groups for p in g["params"]]
        before = [p.detach().clone() for p in params]
        loss = super().step(closure)
        if lam == 1.0:
            return loss
        pull = min(1.0, group["lr"] * (1.0 - lam) * group["recadam_coef"])
        for p, p_before, anchor in zip(params, before, self.anchors, strict=True):
            if p.grad is None:  # untouched this step, as in the original optimizer
                continue
            p.copy_(torch.lerp(p_before, p, lam) - pull * (p_before - anchor))
        return loss


@dataclass(frozen=True)
class RecAdamSettings:
    """λ(t) = 1 / (1 + exp(-k (t - t0))) with ``t0 = t0_fraction`` × the run's updates; ``coef`` weighs the pull."""

    k: float = 0.5
    t0_fraction: float = 0.5
    coef: float = 5000.0


@register
class RecAdam(Method):
    """Makes the run's optimizer a :class:`RecAdamW` anchored at θ's initial trainable tensors."""

    name = "recadam"
    addon_order = 2
    Settings = RecAdamSettings

    def __init__(self, anneal=None):
        super().__init__()
        self.anneal = anneal

    def prepare(self, theta, tokenizer, config, context: RunContext) -> None:
        self.anchors = [p.detach().clone() for p in trainable_tensors(theta).values()]

    def make_optimizer(self, theta, config, context: RunContext):
        s = self.settings
        t0 = s.t0_fraction * context.total_updates
        return RecAdamW(
            list(trainable_tensors(theta).values()), self.anchors, lr=config.lr,
            k=s.k, t0=t0, coef=s.coef, anneal=self.anneal,
            weight_decay=config.weight_decay,
        )
