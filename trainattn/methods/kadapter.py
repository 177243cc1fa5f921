"""K-Adapter (Wang et al. 2021) as used by TAALM: a frozen θ plus chained adapter blocks.

The base LM is frozen entirely (no LoRA). Three adapter blocks read the base
hidden states of layer 1, the middle layer and the last layer; block i's input
is that layer's hidden state plus block i−1's output. The final hidden state
given to the (frozen) LM head is ``base_final + scale × LayerNorm(adapter_out)``
with ``scale = 0.1`` and a default LayerNorm (gain 1, bias 0), as in the
official code (``AdapterModel`` in ``utils/kadapter/Llama2_Model_Kadapter.py``
of github.com/ybseo-academy/TAALM: ``nn.LayerNorm(embed_dim)``,
``scale_factor = 0.1``). Its LAMA-CKL script (``scripts/eval/lamackl/kadapter.sh``)
passes no ``--kadapter_checkpoint``, so the adapter starts from its random
initialisation there as here. A fresh adapter therefore already shifts θ's
final hidden state by ``0.1 × LayerNorm(·)``: epoch-0 predictions differ a
little from the base model's, as officially.

Choices that differ from the official code, on purpose:

* dropout defaults to 0.1. The official configuration sets 0.9 (keep 10%),
  which looks like a typo for 0.1 (GPT-2's default);
* each block is a standard pre-LayerNorm GPT-2 block (the official one drops
  the MLP residual).

``zero_init`` (``method_settings.kadapter.zero_init``, off by default) starts
the output LayerNorm's gain at 0 instead, so a fresh adapter leaves θ
unchanged; then no gradient reaches the blocks until the gain has moved, and
the adapter barely learns in a short run (measured in an earlier run of ours:
training loss 3.82 → 3.70 in 104 AdamW updates, against 3.62 → 0.51 for
fine-tuning). It stays a setting for comparison, and so that runs made with
it (this module's former default) have another run identity than runs without.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import CausalLMOutput

from trainattn.methods.base import Method, RunContext, register

KADAPTER_DROPOUT = 0.1
KADAPTER_SCALE = 0.1


class AdapterBlock(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln1(x))`` then ``+ mlp(ln2(x))``; causal, padding-aware."""

    def __init__(self, hidden: int, num_heads: int, dropout: float):
        super().__init__()
        if hidden % num_heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {num_heads} heads")
        self.num_heads, self.dropout = num_heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv, self.proj = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x``: ``[batch, seq_len, hidden]``; ``allowed``: ``[batch, 1, seq_len, seq_len]`` bool."""
        b, n, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.num_heads, h // self.num_heads).unbind(2)
        attn = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=allowed,
            dropout_p=self.dropout if self.training else 0.0,
        )
        x = x + self.drop(self.proj(attn.transpose(1, 2).reshape(b, n, h)))
        return x + self.drop(self.mlp(self.ln2(x)))


def attention_allowed(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[batch, 1, seq_len, seq_len]`` bool: causal, real keys only, and always the diagonal.

    The diagonal keeps padded query rows from having no key at all (NaN).
    """
    n = attention_mask.size(-1)
    causal = torch.ones(n, n, dtype=torch.bool, device=attention_mask.device).tril()
    real_keys = attention_mask.bool()[:, None, None, :]
    diagonal = torch.eye(n, dtype=torch.bool, device=attention_mask.device)
    return (causal & real_keys) | diagonal


class KAdapterLM(nn.Module):
    """A frozen causal LM with three chained adapter blocks; returns ``.logits`` like the LM.

    Args:
        base: a ``transformers`` causal LM (frozen here, kept in eval mode).
        layers: indices into ``hidden_states`` (0 = embeddings, i = after layer
            i, the last one is after the final norm); default ``(1, L // 2, L)``.
        dropout, scale: see the module docstring.
        zero_init: start the output LayerNorm's gain at 0 (off; see the module docstring).
    """

    def __init__(self, base, layers=None, dropout=KADAPTER_DROPOUT, scale=KADAPTER_SCALE,
                 zero_init=False, num_heads=None):
        super().__init__()
        cfg = base.config
        depth = cfg.num_hidden_layers
        self.layers = tuple(layers) if layers is not None else (1, max(1, depth // 2), depth)
        if any(not 0 <= i <= depth for i in self.layers):
            raise ValueError(f"adapter layers {self.layers} must lie in 0..{depth}")
        self.base = base.requires_grad_(False).eval()
        self.config = cfg
        hidden, heads = cfg.hidden_size, num_heads or cfg.num_attention_heads
        self.blocks = nn.ModuleList(AdapterBlock(hidden, heads, dropout) for _ in self.layers)
        self.out_norm = nn.LayerNorm(hidden)
        if zero_init:
            nn.init.zeros_(self.out_norm.weight)
        self.scale = scale
        dtype = next(base.parameters()).dtype
        device = next(base.parameters()).device
        self.blocks.to(device, dtype)
        self.out_norm.to(device, dtype)

    def train(self, mode: bool = True):
        super().train(mode)
        self.base.eval()  # the base is frozen: no dropout in it, ever
        return self

    def forward(self, input_ids, attention_mask=None, position_ids=None, **_) -> CausalLMOutput:
        """``.logits``: ``[batch, seq_len, vocab]``; gradients reach the adapter only."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        with torch.no_grad():
            hidden = self.base.get_decoder()(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                output_hidden_states=True, use_cache=False,
            ).hidden_states
        allowed = attention_allowed(attention_mask)
        out = torch.zeros_like(hidden[-1])
        for block, layer in zip(self.blocks, self.layers, strict=True):
            out = block(hidden[layer] + out, allowed)
        final = hidden[-1] + self.scale * self.out_norm(out)
        return CausalLMOutput(logits=self.base.get_output_embeddings()(final))


@dataclass(frozen=True)
class KAdapterSettings:
    """``dropout`` inside the adapter blocks (the paper's 0.9 looks like a typo for 0.1).

    ``zero_init``: start the output LayerNorm's gain at 0 (module docstring; off, as officially).
    """

    dropout: float = KADAPTER_DROPOUT
    zero_init: bool = False


@register
class KAdapter(Method):
    """Replaces θ's LoRA by a :class:`KAdapterLM` around the frozen base (add-on)."""

    name = "kadapter"
    addon_order = 3
    Settings = KAdapterSettings

    def __init__(self, dropout: float | None = None, scale: float = KADAPTER_SCALE, layers=None):
        super().__init__()
        self.dropout_override, self.scale, self.layers = dropout, scale, layers

    @property
    def dropout(self) -> float:
        return self.settings.dropout if self.dropout_override is None else self.dropout_override

    def build_model(self, model):
        return KAdapterLM(model, self.layers, self.dropout, self.scale, zero_init=self.settings.zero_init)

    def prepare(self, theta, tokenizer, config, context: RunContext) -> None:
        self.labels = {"kadapter_dropout": self.dropout, "kadapter_out_gain_init": 0.0 if self.settings.zero_init else 1.0}
