"""The differentiable inner update θ' = θ − α·step(∇L_TW(θ; D, W)).

Everything here is a pure function of a ``dict[str, Tensor]`` of θ's trainable
(LoRA) tensors: the model is called with ``torch.func.functional_call`` and
never mutated, no module is patched and nothing is written into
``_parameters``. The optimizers are functional too: ``step`` returns new
tensors and a new state, and with ``create_graph=True`` gradients keep their
graph, so the meta-gradient flows through Adam's moments and normalisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Params = dict[str, torch.Tensor]


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` with gradient 0 (not ∞ → NaN) at ``x == 0``; exact elsewhere.

    An entry whose gradient is exactly 0 (e.g. LoRA's A matrices while B is
    still 0) has Adam second moment 0, and d sqrt(v)/dv = ∞ there would turn the
    meta-gradient into NaN. Adding a constant inside the sqrt (the official
    code's 1e-8) also works but shifts every step slightly.
    """
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


@dataclass
class OptimizerState:
    """Explicit optimizer state: step count and per-tensor buffers by name."""

    step: int = 0
    buffers: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def detached(self) -> OptimizerState:
        return OptimizerState(
            self.step, {k: {n: t.detach() for n, t in b.items()} for k, b in self.buffers.items()}
        )


@dataclass(frozen=True)
class FunctionalAdamW:
    """AdamW as in ``torch.optim.AdamW`` (amsgrad off), out of place."""

    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01

    def init(self, params: Params) -> OptimizerState:
        zeros = {n: torch.zeros_like(p).detach() for n, p in params.items()}
        return OptimizerState(0, {"exp_avg": dict(zeros), "exp_avg_sq": dict(zeros)})

    def step(self, params: Params, grads: Params, state: OptimizerState) -> tuple[Params, OptimizerState]:
        beta1, beta2 = self.betas
        t = state.step + 1
        bias1, bias2 = 1 - beta1**t, 1 - beta2**t
        new_params, exp_avg, exp_avg_sq = {}, {}, {}
        for name, p in params.items():
            g = grads[name]
            m = state.buffers["exp_avg"][name] * beta1 + g * (1 - beta1)
            v = state.buffers["exp_avg_sq"][name] * beta2 + g * g * (1 - beta2)
            denom = safe_sqrt(v) / bias2**0.5 + self.eps
            decayed = p * (1 - self.lr * self.weight_decay)
            new_params[name] = decayed - (self.lr / bias1) * m / denom
            exp_avg[name], exp_avg_sq[name] = m, v
        return new_params, OptimizerState(t, {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq})


@dataclass(frozen=True)
class FunctionalSGD:
    """SGD as in ``torch.optim.SGD`` (dampening 0, no Nesterov), out of place."""

    lr: float = 1e-2
    momentum: float = 0.0
    weight_decay: float = 0.0

    def init(self, params: Params) -> OptimizerState:
        return OptimizerState(0, {})

    def step(self, params: Params, grads: Params, state: OptimizerState) -> tuple[Params, OptimizerState]:
        new_params, buffers = {}, {}
        for name, p in params.items():
            d = grads[name] + self.weight_decay * p if self.weight_decay else grads[name]
            if self.momentum:
                previous = state.buffers.get("momentum", {}).get(name)
                d = d if previous is None else previous * self.momentum + d
                buffers[name] = d
            new_params[name] = p - self.lr * d
        return new_params, OptimizerState(state.step + 1, {"momentum": buffers} if buffers else {})


def make_inner_optimizer(name: str, lr: float, weight_decay: float = 0.01):
    """``"adamw"`` (the paper's) or ``"sgd"``."""
    if name == "adamw":
        return FunctionalAdamW(lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return FunctionalSGD(lr=lr)
    raise ValueError(f"inner optimizer must be 'adamw' or 'sgd', got {name!r}")


@dataclass
class InnerResult:
    """θ' after the inner update, the optimizer state and each step's loss (floats)."""

    params: Params
    state: OptimizerState
    losses: list[float]


LossFn = Callable[[Params, bool], torch.Tensor]


def inner_update(
    loss_fn: LossFn,
    params: Params,
    optimizer,
    untracked_steps: int = 1,
    tracked_steps: int = 1,
    state: OptimizerState | None = None,
) -> InnerResult:
    """Run ``untracked_steps`` detached steps, then ``tracked_steps`` differentiable ones.

    Args:
        loss_fn: ``loss_fn(params, tracked) -> scalar``, θ's token-weighted loss
            with ``params`` substituted. When ``tracked`` is False it should use
            detached token weights (it is not required: untracked steps are
            detached here regardless).
        params: θ's trainable tensors at the start (e.g. the reset LoRA); not
            modified.
        optimizer: :class:`FunctionalAdamW` or :class:`FunctionalSGD`.

    Untracked steps (the paper's dummy loop) use ``create_graph=False`` and
    detach their results, so no gradient reaches φ through them. Tracked steps
    use ``create_graph=True``: the returned params depend on ``loss_fn``'s
    tracked inputs (φ's ``token_weights``), ready for an outer loss.
    """
    if untracked_steps < 0 or tracked_steps < 0:
        raise ValueError("step counts must be >= 0")
    state = optimizer.init(params) if state is None else state
    current = {n: p.detach() for n, p in params.items()}
    losses = []
    for _ in range(untracked_steps):
        leaves = {n: p.detach().requires_grad_(True) for n, p in current.items()}
        with torch.enable_grad():
            loss = loss_fn(leaves, False)
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        grads = {n: _zero_if_none(g, leaves[n]).detach() for n, g in zip(leaves, grads, strict=False)}
        current, state = optimizer.step(leaves, grads, state)
        current, state = {n: p.detach() for n, p in current.items()}, state.detached()
        losses.append(loss.item())
    for i in range(tracked_steps):
        if i == 0:
            current = {n: p.detach().requires_grad_(True) for n, p in current.items()}
        with torch.enable_grad():
            loss = loss_fn(current, True)
            grads = torch.autograd.grad(loss, list(current.values()), create_graph=True, allow_unused=True)
        grads = {n: _zero_if_none(g, current[n]) for n, g in zip(current, grads, strict=False)}
        current, state = optimizer.step(current, grads, state)
        losses.append(loss.item())
    return InnerResult(current, state, losses)


def _zero_if_none(grad, like):
    return torch.zeros_like(like) if grad is None else grad
