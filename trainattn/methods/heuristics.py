"""Token weights from simple importance scores, no meta-learning: is φ needed?

Each method scores every target token of a TO-LEARN document from θ's current
state (or from the text alone) and returns detached ``[batch, seq_len - 1]``
weights (index t weighs predicting ``input_ids[:, t + 1]``), scaled per row
to a maximum of 1 (the loss is normalised per sequence, so only the relative
weights inside a document matter):

* ``heuristic-loss``: θ's per-token NLL — low confidence = worth learning;
* ``heuristic-gradnorm``: the norm of the per-token loss gradient with respect
  to θ's last hidden state, ``‖(softmax(z_t) − e_{x_{t+1}}) W_out‖`` (closed form,
  no backward pass: ``W_out`` is θ's output embedding);
* ``heuristic-attention``: the attention the token receives inside θ, averaged
  over layers, heads and the query positions that can see it;
* ``heuristic-entity``: 1 on tokens of capitalised words and numbers
  (:mod:`trainattn.data.token_categories` without the answer), 0 elsewhere.

RHO-1's excess loss is the existing ``rho1`` method. A row with no real
target (or an all-zero score) falls back to uniform weights.
"""

from __future__ import annotations

import torch

from trainattn.core.losses import per_token_nll, target_mask, uniform_weights
from trainattn.core.spans import EncodedBatch
from trainattn.data.token_categories import categorise_tokens
from trainattn.methods.base import Method, RunContext, register


def scale_rows(score: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``score`` ``[batch, seq_len - 1]`` ≥ 0 → weights in [0, 1], row max 1, 0 on padding.

    Rows whose real targets all score 0 get uniform weights.
    """
    valid = target_mask(attention_mask).bool()
    score = score.clamp_min(0) * valid
    peak = score.amax(-1, keepdim=True)
    uniform = uniform_weights(attention_mask).to(score.dtype)
    return torch.where(peak > 0, score / peak.clamp_min(torch.finfo(score.dtype).tiny), uniform)


@register
class HeuristicLoss(Method):
    """Weights ∝ θ's current per-token NLL."""

    name = "heuristic-loss"
    weighting = True

    @torch.no_grad()
    def token_weights(self, batch: EncodedBatch, logits, theta) -> torch.Tensor:
        return scale_rows(per_token_nll(logits.detach(), batch.input_ids), batch.attention_mask)


def hidden_gradient_norm(logits: torch.Tensor, input_ids: torch.Tensor, output_weight: torch.Tensor
                         ) -> torch.Tensor:
    """``[batch, seq_len - 1]``: ‖∂NLL_t/∂h_t‖ = ‖(softmax(z_t) − onehot(x_{t+1})) W_out‖.

    ``logits``: ``[batch, seq_len, vocab]``; ``output_weight``: ``[vocab, hidden]``.
    Computed one row at a time to bound memory.
    """
    out = []
    for z, ids in zip(logits[:, :-1].float(), input_ids[:, 1:], strict=True):
        delta = torch.softmax(z, dim=-1)
        delta[torch.arange(len(ids)), ids] -= 1.0
        out.append((delta @ output_weight.float()).norm(dim=-1))
    return torch.stack(out).to(logits.dtype)


@register
class HeuristicGradNorm(Method):
    """Weights ∝ the per-token gradient norm at θ's last hidden state."""

    name = "heuristic-gradnorm"
    weighting = True

    @torch.no_grad()
    def token_weights(self, batch: EncodedBatch, logits, theta) -> torch.Tensor:
        weight = theta.get_output_embeddings().weight.detach()
        return scale_rows(hidden_gradient_norm(logits.detach(), batch.input_ids, weight), batch.attention_mask)


def attention_received(attentions, attention_mask: torch.Tensor) -> torch.Tensor:
    """``[batch, seq_len]``: mean attention each key position receives.

    ``attentions``: per layer ``[batch, heads, seq_len, seq_len]`` (query × key).
    The mean runs over layers, heads and the real query positions at or after
    the key (those that can attend to it), so late tokens are not penalised for
    having fewer readers.
    """
    total = torch.stack([a.float().sum(1) for a in attentions]).sum(0)  # [batch, query, key]
    n_layers_heads = len(attentions) * attentions[0].shape[1]
    real = attention_mask.float()
    received = (total * real[:, :, None]).sum(1) / n_layers_heads  # sum over real queries
    seq = attention_mask.shape[1]
    causal = torch.ones(seq, seq, device=real.device).tril()  # [query, key]: query >= key
    readers = torch.einsum("bq,qk->bk", real, causal)
    return received / readers.clamp_min(1) * real


@register
class HeuristicAttention(Method):
    """Weights ∝ the attention the token receives inside θ (an extra forward with attentions)."""

    name = "heuristic-attention"
    weighting = True

    @torch.no_grad()
    def token_weights(self, batch: EncodedBatch, logits, theta) -> torch.Tensor:
        was_training = theta.training
        theta.eval()
        try:
            out = theta(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                        position_ids=batch.position_ids, output_attentions=True)
        finally:
            theta.train(was_training)
        if not out.attentions or out.attentions[0] is None:
            raise ValueError("θ returned no attention maps: load it with attn_implementation='eager'")
        received = attention_received(out.attentions, batch.attention_mask)
        return scale_rows(received[:, 1:], batch.attention_mask)


@register
class HeuristicEntity(Method):
    """1 on tokens of capitalised words and numbers, 0 elsewhere (the text alone decides)."""

    name = "heuristic-entity"
    weighting = True

    def __init__(self):
        super().__init__()
        self.tokenizer = None

    def prepare(self, theta, tokenizer, config, context: RunContext) -> None:
        self.tokenizer = tokenizer

    def mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[batch, seq_len - 1]`` float: 1 where the target token is an entity or number."""
        if self.tokenizer is None:
            raise ValueError("heuristic-entity needs the tokenizer: call prepare() first")
        out = torch.zeros(input_ids.shape[0], input_ids.shape[1] - 1)
        for row, (ids, real) in enumerate(zip(input_ids.tolist(), attention_mask.tolist(), strict=True)):
            n = sum(real)
            start = real.index(1) if n else 0
            tokens = [self.tokenizer.decode([i]) for i in ids[start:start + n]]
            cats = categorise_tokens(tokens)
            for k, c in enumerate(cats[1:]):
                out[row, start + k] = float(c in ("entity", "number"))
        return out

    @torch.no_grad()
    def token_weights(self, batch: EncodedBatch, logits, theta) -> torch.Tensor:
        mask = self.mask(batch.input_ids.cpu(), batch.attention_mask.cpu()).to(batch.input_ids.device)
        return scale_rows(mask, batch.attention_mask)


HEURISTICS = {m.name: m for m in (HeuristicLoss, HeuristicGradNorm, HeuristicAttention, HeuristicEntity)}
SIMPLE_SCORES = (*HEURISTICS, "rho1")
"""Every φ-free score chapter 07's question 3 can set against φ: the four heuristics and RHO-1."""
