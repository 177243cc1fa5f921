"""LoRA adapters on a causal LM (``peft``), and the tensors that train.

θ trains only its LoRA adapters; φ trains its LoRA adapters and its head.
:func:`trainable_tensors` is the dict of those tensors, by name, that the
functional inner update (:mod:`trainattn.core.inner`) works on.
"""

from __future__ import annotations

import torch
from torch import nn


def add_lora(
    model,
    rank: int = 16,
    alpha: int = 32,
    dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
    seed: int = 0,
):
    """Wrap ``model`` with LoRA adapters (``peft``); only the adapters train.

    The adapters' random initialisation is drawn under ``seed``, so two calls
    with the same seed give identical adapters.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, bias="none"
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def trainable_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that require grad, by name (θ's LoRA, or φ's LoRA + head)."""
    return {n: p for n, p in module.named_parameters() if p.requires_grad}
