"""φ, Train-Attention: a causal-LM body (optionally its first k layers), LoRA and a hidden→1 head.

``sigmoid`` of the head gives one weight per token (the paper's W); see
:meth:`TrainAttention.forward` for how index t lines up with the targets.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from trainattn.core.lora import add_lora
from trainattn.core.spans import encode_texts


def _decoder(lm: nn.Module) -> nn.Module:
    """The transformer body of a causal LM (embeddings + layers + final norm)."""
    if hasattr(lm, "get_decoder"):
        return lm.get_decoder()
    return lm.model


class TrainAttention(nn.Module):
    """φ: a causal-LM body, LoRA, and a hidden→1 head giving token weights.

    The head's bias starts at ``bias_init`` (4.0, sigmoid ≈ 0.982) and its
    weight near zero, so training starts close to uniform weights.
    """

    def __init__(
        self,
        lm: nn.Module,
        num_layers: int | None = None,
        lora_rank: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.0,
        bias_init: float = 4.0,
        head_std: float = 1e-3,
        seed: int = 0,
    ):
        super().__init__()
        body = copy.deepcopy(_decoder(lm))
        total = len(body.layers)
        if num_layers is not None:
            if not 1 <= num_layers <= total:
                raise ValueError(f"num_layers must be in 1..{total}, got {num_layers}")
            body.layers = nn.ModuleList(list(body.layers)[:num_layers])
            body.config = copy.deepcopy(body.config)
            body.config.num_hidden_layers = num_layers
        for p in body.parameters():
            p.requires_grad_(False)
        self.num_layers = len(body.layers)
        self.body = add_lora(body, lora_rank, lora_alpha, lora_dropout, seed=seed)
        self.head = nn.Linear(body.config.hidden_size, 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nn.init.normal_(self.head.weight, std=head_std)
        nn.init.constant_(self.head.bias, bias_init)
        self.head.to(next(body.parameters()).dtype)

    def trained_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors meta-training trains (LoRA + head), by name; requires_grad or not.

        A meta-training run saves exactly these (``phi.safetensors``), so their
        fingerprint identifies a trained φ (:func:`~trainattn.protocols.store.phi_fingerprint`).
        """
        return {n: p for n, p in self.named_parameters() if "lora_" in n or n.startswith("head.")}

    def logits(self, input_ids, attention_mask, position_ids=None) -> torch.Tensor:
        """Pre-sigmoid head output at every position: ``[batch, seq_len]``."""
        if position_ids is None:
            position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
        hidden = self.body(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state
        return self.head(hidden).squeeze(-1)

    def forward(self, input_ids, attention_mask, position_ids=None) -> torch.Tensor:
        """``token_weights`` in (0, 1), ``[batch, seq_len - 1]``; 0 on padded targets.

        Index t weighs predicting ``input_ids[:, t + 1]`` and is read from φ's
        output at position t + 1, so φ sees the token it weighs.
        """
        weights = torch.sigmoid(self.logits(input_ids, attention_mask, position_ids))[:, 1:]
        return weights * attention_mask[:, 1:].to(weights.dtype)


@torch.no_grad()
def text_token_weights(phi: TrainAttention, tokenizer, text: str, max_length: int | None = None):
    """φ's weight for every token of ``text``: ``(tokens, weights)``.

    ``tokens[t]`` is the decoded token t + 1 (the first token is never a target) and
    ``weights`` is a ``[seq_len - 1]`` CPU tensor, detached; φ runs in eval mode.
    """
    if not text.strip():
        raise ValueError("the text to weigh is empty")
    was_training = phi.training
    phi.eval()
    try:
        device = next(phi.parameters()).device
        enc = encode_texts(tokenizer, [text], max_length).to(device)
        weights = phi(enc.input_ids, enc.attention_mask, enc.position_ids)[0].float().cpu()
    finally:
        phi.train(was_training)
    tokens = [tokenizer.decode([t]) for t in enc.input_ids[0, 1:].tolist()]
    return tokens, weights
