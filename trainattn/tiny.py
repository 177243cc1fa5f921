"""Tiny random models and a tiny tokenizer, built in-process for tests and demos.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on a fixed
corpus (deterministic), the model a randomly initialised Llama under a seed.
"""

from __future__ import annotations

import torch

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
    """A random ``LlamaForCausalLM`` with eager attention (double backward works)."""
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
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(dtype)
