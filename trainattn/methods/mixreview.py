"""Mix-review (He et al. 2021): replay review documents alongside every training batch.

Each TO-LEARN batch of size b is extended with
``round(ratio × b × decay ** epoch)`` review rows, drawn from the
review pool with a generator seeded by ``(seed, epoch, step)`` (so a resumed
run draws the same rows without saving RNG state). Review rows are trained
with uniform weights (see :class:`~trainattn.methods.base.CompositeMethod`).

Review pools (the ``pool`` setting, ``method_settings.mixreview.pool``):

* ``"disjoint"`` (default): the candidate rows the caller passes
  (``review_rows``, e.g. other time-invariant facts), minus every row that
  shares a uuid or an evidence text with a TO-LEARN or NOT-TO-FORGET row. The
  forgetting test then measures retention of facts that were never replayed.
* ``"paper"``: the NOT-TO-FORGET rows themselves, as the official code did on
  LAMA-CKL. That replays the very evidence whose facts the forgetting test
  scores, so results are labelled ``review_pool: paper``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainattn.methods.base import Method, RunContext, register

REVIEW_POOLS = ("disjoint", "paper")


def disjoint_pool(candidates: list[dict], *test_sets: list[dict]) -> list[dict]:
    """``candidates`` without any row sharing a uuid or evidence text with a test row."""
    uuids = {r["uuid"] for rows in test_sets for r in rows}
    evidence = {r["evidence"] for rows in test_sets for r in rows}
    return [r for r in candidates if r["uuid"] not in uuids and r["evidence"] not in evidence]


def review_count(ratio: float, batch_size: int, decay: float, epoch: int) -> int:
    """Review rows added to a batch of ``batch_size`` TO-LEARN rows in 0-based training ``epoch``."""
    return int(round(ratio * batch_size * decay**epoch))


@dataclass(frozen=True)
class MixReviewSettings:
    """``ratio``: review rows per TO-LEARN row at epoch 1; ``decay``: its factor per epoch;
    ``pool``: "disjoint" (facts outside the test sets) | "paper" (replays the NOT-TO-FORGET evidence)."""

    ratio: float = 1.0
    decay: float = 1.0
    pool: str = "disjoint"


@register
class MixReview(Method):
    """Replay rows from a review pool with every batch (add-on to a weighting method)."""

    pools = ("review_rows",)

    name = "mixreview"
    addon_order = 1
    Settings = MixReviewSettings

    def __init__(self, pool: str | None = None):
        super().__init__()
        self.pool_kind = pool
        self.pool: list[dict] = []
        self.seed = 0

    def prepare(self, theta, tokenizer, config, context: RunContext) -> None:
        self.pool_kind = self.pool_kind or self.settings.pool
        self.ratio, self.decay, self.seed = self.settings.ratio, self.settings.decay, config.seed
        if self.pool_kind == "paper":
            self.pool = list(context.not_to_forget_rows)
        elif self.pool_kind == "disjoint":
            if not context.review_rows:
                raise ValueError(
                    "mixreview with pool 'disjoint' needs candidate review rows "
                    "(review_rows=...), e.g. time-invariant facts outside the test sets; "
                    "or set method_settings.mixreview.pool=paper to replay the NOT-TO-FORGET evidence as the paper did"
                )
            self.pool = disjoint_pool(
                context.review_rows, context.to_learn_rows, context.not_to_forget_rows
            )
        else:
            raise ValueError(f"unknown review_pool {self.pool_kind!r}; valid: {', '.join(REVIEW_POOLS)}")
        if not self.pool:
            raise ValueError("the Mix-review pool is empty after removing the test facts")
        self.labels = {"review_pool": self.pool_kind, "review_pool_size": len(self.pool)}

    def review_rows(self, epoch: int, step: int, n_to_learn: int) -> list[dict]:
        """Rows to append to the batch at 1-based ``epoch`` and global ``step``."""
        n = review_count(self.ratio, n_to_learn, self.decay, epoch - 1)
        if n <= 0:
            return []
        rng = np.random.default_rng([self.seed, epoch, step])
        idx = rng.choice(len(self.pool), size=n, replace=n > len(self.pool))
        return [self.pool[i] for i in idx]
