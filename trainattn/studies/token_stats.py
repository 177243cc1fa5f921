"""Where a document's loss sits: per-token loss, object tokens and known tokens.

Used by the book's first chapter to show why uniform token weights waste
updates: the tokens that carry the new fact are few, and many others are
already predicted correctly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainattn.core.evaluate import lm_logits
from trainattn.core.losses import known_token_mask, oracle_weights, per_token_nll
from trainattn.core.spans import encode_with_objects


@dataclass
class TokenView:
    """One document's next-token view, all ``[seq_len - 1]`` (index t: token t + 1)."""

    tokens: list[str]
    nll: torch.Tensor
    on_object: torch.Tensor
    known: torch.Tensor
    located: bool


@torch.no_grad()
def token_view(model, tokenizer, document: str, obj: str, max_length: int | None = None) -> TokenView:
    """Per-token NLL of ``document`` under ``model``, its object tokens and known tokens."""
    device = next(model.parameters()).device
    batch = encode_with_objects(tokenizer, [document], [obj], max_length).to(device)
    logits = lm_logits(model, batch)
    return TokenView(
        tokens=[tokenizer.decode([t]) for t in batch.input_ids[0, 1:].tolist()],
        nll=per_token_nll(logits, batch.input_ids)[0].cpu(),
        on_object=oracle_weights(batch.object_mask)[0].cpu().bool(),
        known=known_token_mask(logits, batch.input_ids)[0].cpu(),
        located=bool(batch.located[0]),
    )


@torch.no_grad()
def pooled_token_stats(model, tokenizer, documents: list[str], objects: list[str],
                       max_length: int | None = None, batch_size: int = 8) -> dict:
    """Loss and known-token shares pooled over documents whose object was located.

    Returns token counts, the object tokens' share of tokens and of the total
    loss, mean NLLs, the share of tokens (and of object tokens) the model already
    predicts by argmax, and the share of documents whose object tokens have a
    higher mean loss than the document as a whole.
    """
    device = next(model.parameters()).device
    totals = torch.zeros(8, dtype=torch.float64)
    for start in range(0, len(documents), batch_size):
        enc = encode_with_objects(tokenizer, documents[start : start + batch_size],
                                  objects[start : start + batch_size], max_length).to(device)
        logits = lm_logits(model, enc)
        real = enc.attention_mask[:, 1:].bool() & enc.located[:, None]
        obj = oracle_weights(enc.object_mask).bool() & real
        nll = per_token_nll(logits, enc.input_ids) * real
        known = known_token_mask(logits, enc.input_ids) & real
        harder = (nll * obj).sum(-1) / obj.sum(-1).clamp_min(1) > nll.sum(-1) / real.sum(-1).clamp_min(1)
        totals += torch.stack([nll.sum(), (nll * obj).sum(), real.sum(), obj.sum(), known.sum(),
                               (known & obj).sum(), enc.located.sum(), (harder & enc.located).sum()]).double().cpu()
    loss_all, loss_obj, n_all, n_obj, n_known, n_obj_known, located, higher = totals.tolist()
    return {
        "n_documents": len(documents), "n_located": int(located), "n_tokens": int(n_all),
        "object_token_share": n_obj / n_all, "object_loss_share": loss_obj / loss_all,
        "mean_nll": loss_all / n_all, "mean_nll_object": loss_obj / n_obj,
        "known_share": n_known / n_all, "object_known_share": n_obj_known / n_obj,
        "share_docs_object_harder": higher / located,
    }


def object_weight_mass(phi, tokenizer, documents: list[str], objects: list[str], max_length: int | None = None,
                       batch_size: int = 16) -> dict:
    """Where φ's weight goes on documents, against the oracle's and uniform weights.

    The token-weighted loss divides by each document's weight sum, so what
    matters is the *share* of a document's weight on its object tokens: 1 for
    the oracle, (object tokens / tokens) for uniform weights. Returns the mean
    over documents (whose object is located) of φ's share and of the uniform
    share, and φ's mean weight on object and on other tokens. φ runs under
    ``torch.no_grad``.
    """
    device = next(phi.parameters()).device
    phi_share, uniform_share, on_object, other = [], [], [], []
    for start in range(0, len(documents), batch_size):
        doc = encode_with_objects(tokenizer, documents[start:start + batch_size], objects[start:start + batch_size],
                                  max_length).to(device)
        with torch.no_grad():
            w = phi(doc.input_ids, doc.attention_mask, doc.position_ids).float()
        real = doc.attention_mask[:, 1:].bool()
        target = doc.target_mask & real
        for i in range(w.shape[0]):
            if not target[i].any():
                continue
            wi = w[i][real[i]]
            phi_share.append(float(w[i][target[i]].sum() / wi.sum().clamp_min(1e-12)))
            uniform_share.append(float(target[i].sum() / real[i].sum()))
            on_object.append(w[i][target[i]])
            other.append(w[i][real[i] & ~target[i]])
    if not phi_share:
        raise ValueError("no document has a located object")
    return {
        "phi_object_share": float(torch.tensor(phi_share).mean()),
        "uniform_object_share": float(torch.tensor(uniform_share).mean()),
        "oracle_object_share": 1.0,
        "phi_mean_weight_object": float(torch.cat(on_object).mean()),
        "phi_mean_weight_other": float(torch.cat(other).mean()),
        "documents": len(phi_share),
    }
