"""Probe metrics: teacher-forced object-token accuracy and object-token NLL.

The paper scores a probe (e.g. "Libya maintains diplomatic relations with
Brazil .") by feeding the whole sentence and checking, at each of the object's
tokens, whether θ's argmax equals the gold token. A multi-token object gets
partial credit (the fraction of its tokens predicted correctly). The NLL is the
mean over the object's tokens. Both are computed per row; rows whose object
cannot be located are reported as such and excluded from the means.

Positions are passed explicitly (0, 1, … over real tokens), so the scores do
not depend on padding side or batch size beyond float tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from trainattn.core.losses import per_token_nll
from trainattn.core.spans import EncodedBatch, encode_with_objects


def object_token_scores(
    logits: torch.Tensor, input_ids: torch.Tensor, object_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row partial-credit accuracy and mean NLL on the object's tokens.

    Args:
        logits: ``[batch, seq_len, vocab]``.
        input_ids: ``[batch, seq_len]``.
        object_mask: ``[batch, seq_len]`` bool, True on the object's tokens.

    Returns:
        ``(accuracy, nll)``, each ``[batch]``; NaN where a row has no object token.
        ``nll`` is tracked through ``logits`` (usable as an outer loss).
    """
    mask = object_mask[:, 1:].to(logits.dtype if logits.is_floating_point() else torch.float32)
    count = mask.sum(-1)
    correct = logits[:, :-1].argmax(-1).eq(input_ids[:, 1:]).to(mask.dtype)
    nll = per_token_nll(logits, input_ids).to(mask.dtype)
    nan = torch.full_like(count, math.nan)
    safe = count.clamp_min(1)
    accuracy = torch.where(count > 0, (correct * mask).sum(-1) / safe, nan)
    mean_nll = torch.where(count > 0, (nll * mask).sum(-1) / safe, nan)
    return accuracy, mean_nll


def lm_logits(model, batch: EncodedBatch) -> torch.Tensor:
    """θ's logits for a padded batch, with explicit position ids: ``[batch, seq_len, vocab]``."""
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
    )
    return out.logits


@dataclass
class ProbeScores:
    """Per-row probe scores; NaN where the object was not located."""

    accuracy: np.ndarray
    nll: np.ndarray
    located: np.ndarray

    @property
    def n(self) -> int:
        return len(self.accuracy)

    @property
    def n_not_located(self) -> int:
        return int((~self.located).sum())

    @property
    def mean_accuracy(self) -> float:
        return float(np.nanmean(self.accuracy)) if self.located.any() else math.nan

    @property
    def mean_nll(self) -> float:
        return float(np.nanmean(self.nll)) if self.located.any() else math.nan

    @property
    def n_fully_correct(self) -> int:
        return int((self.accuracy[self.located] == 1.0).sum())

    def summary(self) -> dict:
        return {
            "accuracy": self.mean_accuracy,
            "nll": self.mean_nll,
            "n": self.n,
            "n_not_located": self.n_not_located,
            "n_fully_correct": self.n_fully_correct,
        }


@torch.no_grad()
def score_probes(
    model,
    tokenizer,
    probes: list[str],
    objects: list[str],
    batch_size: int = 32,
    max_length: int | None = None,
    padding_side: str = "right",
    progress: bool | str = False,
) -> ProbeScores:
    """Score every probe with θ (teacher-forced, object tokens only).

    Rows are batched in order of length to limit padding; the result is in
    the input order and independent of ``batch_size`` and ``padding_side``.
    """
    if len(probes) != len(objects):
        raise ValueError(f"{len(probes)} probes but {len(objects)} objects")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(probes)), key=lambda i: len(probes[i]))
    accuracy = np.full(len(probes), math.nan)
    nll = np.full(len(probes), math.nan)
    located = np.zeros(len(probes), dtype=bool)
    starts = range(0, len(order), batch_size)
    desc = progress if isinstance(progress, str) else "probes"
    for start in tqdm(starts, desc=desc, disable=not progress, leave=False):
        idx = order[start : start + batch_size]
        batch = encode_with_objects(
            tokenizer, [probes[i] for i in idx], [objects[i] for i in idx], max_length, padding_side
        ).to(device)
        acc, row_nll = object_token_scores(lm_logits(model, batch), batch.input_ids, batch.object_mask)
        accuracy[idx] = acc.double().cpu().numpy()
        nll[idx] = row_nll.double().cpu().numpy()
        located[idx] = batch.located.cpu().numpy()
    model.train(was_training)
    return ProbeScores(accuracy, nll, located)
