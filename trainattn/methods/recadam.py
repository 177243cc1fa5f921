"""RecAdam (Chen et al. 2020, "Recall and Learn"): Adam with an annealed quadratic pull toward θ₀.

The objective is ``λ(t)·task_loss + (1 − λ(t))·(γ/2)·Σ‖θ − θ₀‖²`` with
``λ(t) = sigmoid(k·(t − t0))``: early on ("recall") the pull toward the
starting weights dominates, then ("learn") the task loss takes over and the
pull fades. As in the original optimizer (``RecAdam.py`` of
github.com/Sanyuan-Chen/RecAdam), the two parts are applied differently: the
task gradient goes through AdamW and its update is scaled by λ(t); the
penalty's gradient ``(1 − λ)·γ·(θ − θ₀)`` is a plain gradient step (Adam's
normalisation would otherwise turn a 5000× penalty into a unit-size step).
Here it is a subclass of :class:`torch.optim.AdamW`, so λ ≡ 1 *is* AdamW, bit
for bit. Per step, with θ the weights before the step:

    θ ← θ + λ·Δ_AdamW − min(1, pull_lr·(1 − λ)·γ)·(θ − θ₀)

Paper values followed (the original code's defaults, ``run_glue_with_RecAdam.py``:
sigmoid annealing, ``k = 0.5``, ``t0 = 250``, ``γ = 5000``, at BERT-base's
learning rate 2e-5 in its README): ``k = 0.5`` and ``γ = 5000`` as they are.

Transferred to our runs (~100–250 updates at lr 3e-4 … 3e-3), keeping the
paper's intent (a short recall phase, then learning under a pull that never
resets θ):

* ``t0 = t0_fraction × total updates`` with ``t0_fraction = 0.1``. The paper's
  250 steps are a small part of GLUE fine-tuning runs of thousands of steps;
  on LAMA-CKL 250 would exceed the whole run, and half the run (our former
  0.5) leaves λ ≈ 0 for half of it.
* The pull uses its own step size ``pull_lr = 2e-5``, the paper's learning
  rate, so its per-step strength ``pull_lr·γ = 0.1`` is the paper's. The
  original optimizer multiplies γ by the *task* learning rate; at our rates
  that factor is 0.5–15 per step, so ``θ`` was reset to θ₀ at every step
  while λ was small (our former clamp at 1), and the task update, scaled by
  λ ≈ 0, could not move it: TO-LEARN NLL stayed exactly at its initial value
  for the first half of every run. ``pull_lr=None`` restores the original
  coupling (pull step = task lr), the clamp at 1 keeping it from overshooting θ₀.

Differences from the official TAALM code, on purpose:

* the pull acts on the **trainable** tensors (LoRA or adapter weights),
  anchored at their values when the run starts. The official grouping put the
  pull on parameters named "bias"/"norm" only, which LoRA has none of, so
  RecAdam(QLoRA) there was plain Adam;
* the schedule above instead of ``t0 = 250`` updates with the task lr.
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
    """AdamW whose update is ``θ ← lerp(θ, θ_AdamW, λ) − min(1, pull_lr·(1 − λ)·coef)·(θ − θ₀)``.

    Args:
        params: the trainable tensors (one group).
        anchors: θ₀, one tensor per parameter, same order (detached copies are kept).
        k, t0, coef: the annealing slope and midpoint (in steps) and the penalty coefficient γ.
        pull_lr: the step size of the penalty's gradient step; ``None``: the task ``lr``
            (the original optimizer's coupling).
        anneal: optional ``step -> λ`` override (tests use ``lambda t: 1.0``).

    The step count lives in ``param_groups[0]["recadam_step"]``, so it is saved
    and restored with the optimizer's ``state_dict``; the anchors are not (the
    run rebuilds them from its deterministic start).
    """

    def __init__(self, params, anchors, lr=1e-3, k=0.5, t0=0.0, coef=5000.0, pull_lr=None, anneal=None, **adamw):
        params = list(params)
        super().__init__(params, lr=lr, **adamw)
        if len(anchors) != len(params):
            raise ValueError(f"{len(anchors)} anchors for {len(params)} parameters")
        self.anchors = [a.detach().clone() for a in anchors]
        self.anneal = anneal
        for group in self.param_groups:
            group.update(recadam_k=k, recadam_t0=float(t0), recadam_coef=coef, recadam_step=0,
                         recadam_pull_lr=None if pull_lr is None else float(pull_lr))

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
        pull_lr = group["lr"] if group.get("recadam_pull_lr") is None else group["recadam_pull_lr"]
        pull = min(1.0, pull_lr * (1.0 - lam) * group["recadam_coef"])
        for p, p_before, anchor in zip(params, before, self.anchors, strict=True):
            if p.grad is None:  # untouched this step, as in the original optimizer
                continue
            p.copy_(torch.lerp(p_before, p, lam) - pull * (p_before - anchor))
        return loss


@dataclass(frozen=True)
class RecAdamSettings:
    """λ(t) = 1 / (1 + exp(-k (t - t0))) with ``t0 = t0_fraction`` × the run's updates.

    ``coef`` is γ, the pull's weight; ``pull_lr`` the pull's step size (``None``: the task lr).
    """

    k: float = 0.5
    t0_fraction: float = 0.1
    coef: float = 5000.0
    pull_lr: float | None = 2e-5


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
            k=s.k, t0=t0, coef=s.coef, pull_lr=s.pull_lr, anneal=self.anneal,
            weight_decay=config.weight_decay,
        )
