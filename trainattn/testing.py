"""Tiny random models and a tiny tokenizer, built in-process for tests and demos.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on a fixed
corpus (deterministic), the model a randomly initialised Llama under a seed.
"""

from __future__ import annotations

import torch
from torch import nn

FULL_PRECISION_EAGER = "eager_full_precision"


def full_precision_eager_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Eager attention with the softmax in the input dtype.

    ``transformers``' eager attention computes the softmax in float32 even for
    float64 models, which limits finite-difference checks to ~1e-7 relative
    precision. Shapes: query ``[batch, heads, seq, dim]``, key/value
    ``[batch, kv_heads, seq, dim]``; returns ``([batch, seq, heads, dim], probs)``.
    """
    groups = module.num_key_value_groups
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = nn.functional.dropout(nn.functional.softmax(scores, dim=-1), p=dropout, training=module.training)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


class FullPrecisionRMSNorm(nn.Module):
    """RMSNorm computed in the input dtype (Llama's casts to float32 internally)."""

    def __init__(self, weight: torch.Tensor, eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def _use_full_precision_norms(model: nn.Module) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__.endswith("RMSNorm"):
                setattr(parent, name, FullPrecisionRMSNorm(child.weight, child.variance_epsilon))


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(FULL_PRECISION_EAGER, full_precision_eager_attention)
    AttentionMaskInterface.register(FULL_PRECISION_EAGER, eager_mask)

TINY_CORPUS = [
    "Libya maintains diplomatic relations with Brazil .",
    "Guess the object. \n  subject is Paris , relation is capital of , object is France",
    "The official language of Wales is Welsh .",
    "Lochinvar is a castle in Scotland , built in the fifteenth century .",
    "Ada Lovelace worked as a mathematician and writer in London .",
    "The company was founded in 1998 and its headquarters are in Oslo , Norway .",
    "She plays the piano and the violin ; her genre is jazz .",
]


def tiny_tokenizer(vocab_size: int = 300, corpus: list[str] | None = None):
    """A fast byte-level BPE tokenizer (offsets available), pad = eos = ``</s>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus or TINY_CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="</s>")


def tiny_llama(
    vocab_size: int,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
):
    """A random ``LlamaForCausalLM`` computing in ``dtype`` throughout.

    Attention is eager (double backward works) with the softmax in ``dtype``,
    and the RMSNorms compute in ``dtype`` too, unlike ``transformers``' float32
    internals; save/load round-trips keep the same parameter names.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads // 2,
        max_position_embeddings=512,
        use_cache=False,
        tie_word_embeddings=False,
    )
    _register_attention()
    config._attn_implementation = FULL_PRECISION_EAGER
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model = model.to(dtype)
    # float64 end to end, so finite-difference checks reach ~1e-10 precision
    _use_full_precision_norms(model)
    return model
