"""95 % intervals for LAMA-CKL metrics, bootstrapped over facts and seeds; "above / level / below".

A method's runs (one per seed) share the same facts, so one bootstrap draw resamples

* the seeds, with replacement (a single seed stays that seed), and
* the TO-LEARN and the NOT-TO-FORGET facts, with replacement, the same draw for every seed,

then recomputes the metric from the per-fact accuracies of every epoch: Top Acc is the maximum
over epochs of the mean TO-LEARN accuracy (the paper's test-curve reading), NF Acc the
NOT-TO-FORGET accuracy at the first epoch reaching it, Total Knowledge their sum, averaged over
the drawn seeds. The interval is the 2.5 and 97.5 percentiles of the draws. For the
validation-chosen reading the epoch of each run is fixed (chosen on the validation facts) and
only the other facts count. Each seed draws its own validation slice, so then all TO-LEARN facts
are resampled and each run counts the drawn facts outside its own slice.

Across tailored splits (each with its own facts and φ), :func:`bootstrap_splits` adds a level
above: the splits are resampled too, so the interval counts split-to-split variance.

Two numbers are ``level`` unless their intervals are disjoint (:func:`compare`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
BOOT_SEED = 20241129


@dataclass
class RunFacts:
    """One run's per-fact accuracies: ``to_learn`` ``[epochs + 1, n_to_learn]``, ``not_to_forget``
    ``[epochs + 1, n_not_to_forget]`` (row 0 = before training; NaN = object not located).

    ``chosen_epoch`` fixes the epoch (validation-chosen reading); ``None`` takes the test curve's
    best epoch in every draw. ``facts`` restricts the TO-LEARN columns that count (e.g. the
    facts outside the validation slice).
    """

    to_learn: np.ndarray
    not_to_forget: np.ndarray
    chosen_epoch: int | None = None
    facts: np.ndarray | None = None

    @classmethod
    def from_result(cls, result: dict, reading: str = "test") -> RunFacts | None:
        """From a LAMA-CKL result dict; ``None`` for a result written without per-fact scores.

        ``reading``: ``"test"`` (every TO-LEARN fact, best epoch of the test curve) or ``"val"``
        (the facts outside the validation slice, at the validation-chosen epoch).
        """
        per_fact = result.get("curves", {}).get("per_fact")
        if not per_fact or not per_fact.get("to_learn"):
            return None
        learn = _matrix(per_fact["to_learn"])
        nf = _matrix(per_fact["not_to_forget"])
        if len(learn) != len(result["curves"]["to_learn"]["acc"]):
            return None  # resumed from a checkpoint written before per-fact scores were kept
        if reading == "test":
            return cls(learn, nf)
        if reading != "val":
            raise ValueError(f"reading must be 'test' or 'val', not {reading!r}")
        chosen = (result.get("metrics") or {}).get("val_chosen")
        if not chosen:
            return None
        rest = np.array(sorted(set(range(learn.shape[1])) - set(result.get("val_indices") or [])), dtype=int)
        return cls(learn, nf, chosen_epoch=int(chosen["epoch"]), facts=rest)


def _matrix(rows: list[list]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def run_metrics(run: RunFacts, learn_idx: np.ndarray, nf_idx: np.ndarray) -> tuple[float, float, float]:
    """(Top Acc, NF Acc, Total Knowledge) of one run on the given fact columns (repeats allowed)."""
    learn = np.nanmean(run.to_learn[:, learn_idx], axis=1)  # [epochs + 1]
    nf = np.nanmean(run.not_to_forget[:, nf_idx], axis=1)
    epoch = int(np.nanargmax(learn)) if run.chosen_epoch is None else run.chosen_epoch
    return float(learn[epoch]), float(nf[epoch]), float(learn[epoch] + nf[epoch])


@dataclass
class _SplitFacts:
    """Which facts one split's runs count: ``pool`` ``[n]`` the TO-LEARN columns a draw resamples;
    ``per_run`` each run's counted columns (``None``: every run counts the whole pool);
    ``n_nf`` the number of NOT-TO-FORGET facts."""

    pool: np.ndarray
    per_run: list[np.ndarray] | None
    n_nf: int

    def counted(self, i: int, learn_idx: np.ndarray) -> np.ndarray:
        """The drawn columns ``learn_idx`` that run ``i`` counts (repeats kept; may be empty)."""
        if self.per_run is None:
            return learn_idx
        return learn_idx[np.isin(learn_idx, self.per_run[i])]

    def metrics(self, i: int, run: RunFacts, learn_idx: np.ndarray, nf_idx: np.ndarray) -> np.ndarray:
        """``[3]``: :func:`run_metrics` of run ``i`` on the drawn facts it counts; NaN if it counts none."""
        counted = self.counted(i, learn_idx)
        return np.array(run_metrics(run, counted, nf_idx) if len(counted) else [np.nan] * 3)


def _split_columns(runs: list[RunFacts], where: str = "") -> _SplitFacts:
    """The facts one split's runs count; ``ValueError`` (prefixed by ``where``) unless the runs were
    scored on the same numbers of facts.

    Runs that count the same TO-LEARN columns (the test reading, or one shared validation slice)
    resample those. Runs whose validation slices differ (each seed draws its own) resample all
    TO-LEARN facts, and each run counts the drawn facts outside its own slice.
    """
    if not runs:
        raise ValueError(f"{where}bootstrap needs at least one run")
    n_learn, n_nf = runs[0].to_learn.shape[1], runs[0].not_to_forget.shape[1]
    if any(r.to_learn.shape[1] != n_learn or r.not_to_forget.shape[1] != n_nf for r in runs):
        shapes = ", ".join(f"{r.to_learn.shape[1]} + {r.not_to_forget.shape[1]}" for r in runs)
        raise ValueError(f"{where}the runs were scored on different numbers of facts "
                         f"(TO-LEARN + NOT-TO-FORGET per run: {shapes})")
    learn_cols = [np.arange(n_learn) if r.facts is None else np.asarray(r.facts) for r in runs]
    if all(np.array_equal(c, learn_cols[0]) for c in learn_cols):
        return _SplitFacts(learn_cols[0], None, n_nf)
    return _SplitFacts(np.arange(n_learn), learn_cols, n_nf)


def _split_point(runs: list[RunFacts], facts: _SplitFacts) -> np.ndarray:
    """``[3]``: (Top Acc, NF Acc, Total Knowledge) averaged over the runs, each on its full fact sets."""
    every_nf = np.arange(facts.n_nf)
    return np.mean([facts.metrics(i, r, facts.pool, every_nf) for i, r in enumerate(runs)], axis=0)


def _split_draw(runs: list[RunFacts], facts: _SplitFacts, rng: np.random.Generator) -> np.ndarray:
    """``[3]``: one bootstrap draw of a split: its seeds, its TO-LEARN facts and its NOT-TO-FORGET
    facts resampled with replacement (one fact draw shared by every drawn seed)."""
    while True:
        picked = rng.integers(0, len(runs), len(runs))
        learn_idx = facts.pool[rng.integers(0, len(facts.pool), len(facts.pool))]
        nf_idx = rng.integers(0, facts.n_nf, facts.n_nf)
        values = np.array([facts.metrics(i, runs[i], learn_idx, nf_idx) for i in picked])
        # a drawn run that counts none of the drawn facts (possible only for tiny slices) is left
        # out of this draw; a draw in which no run counts any is drawn again
        if not np.isnan(values[:, 0]).all():
            return np.nanmean(values, axis=0)


def percentile_interval(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 95 % interval of bootstrap ``draws`` ``[n_boot, ...]``: its 2.5 and 97.5 percentiles
    over the first axis, each of shape ``draws.shape[1:]``."""
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return low, high


def _summary(point: np.ndarray, draws: np.ndarray) -> dict:
    """``point`` ``[3]`` and ``draws`` ``[n_boot, 3]`` → the keys :func:`bootstrap` returns."""
    low, high = percentile_interval(draws)
    out = {}
    for i, key in enumerate(("top_acc", "nf_acc", "total_knowledge")):
        out[key] = float(point[i])
        out[f"{key}_ci95"] = [float(low[i]), float(high[i])]
    return out


def bootstrap(runs: list[RunFacts], n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> dict:
    """Point values and 95 % intervals of Top Acc, NF Acc and Total Knowledge over ``runs`` (seeds).

    Returns ``{"top_acc": v, "top_acc_ci95": [lo, hi], "nf_acc": …, "total_knowledge": …, …}``
    where ``v`` is the mean over runs on the full fact sets. All runs must be scored on the same
    facts; they may count different TO-LEARN subsets (their validation slices, see the module).
    """
    facts = _split_columns(runs)
    point = _split_point(runs, facts)
    rng = np.random.default_rng(seed)
    draws = np.empty((n_boot, 3))
    for b in range(n_boot):
        draws[b] = _split_draw(runs, facts, rng)
    return _summary(point, draws)


def bootstrap_splits(groups: list[list[RunFacts]], n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> dict:
    """:func:`bootstrap` pooled over tailored splits, counting split-to-split variance.

    ``groups[i]`` holds one split's runs (its seeds) of one method; the runs of a split share
    its facts (checked as :func:`bootstrap` checks them), while splits may differ in their
    numbers of facts and of seeds. A draw is hierarchical: the splits are resampled with
    replacement; each drawn split (each time it is drawn) has its seeds and its facts resampled
    as in :func:`bootstrap`; the draw's metric is the mean over the drawn splits of the mean over
    each one's drawn seeds. The point value is the mean over splits of each split's mean on its
    full fact sets. Returns :func:`bootstrap`'s keys and ``"splits"`` (their number).

    With a single split nothing is drawn for the splits, so the result (point and intervals)
    is exactly ``bootstrap(groups[0], n_boot, seed)`` plus ``"splits": 1``.
    """
    if not groups:
        raise ValueError("bootstrap_splits needs at least one split")
    facts = [_split_columns(runs, f"split {i}: ") for i, runs in enumerate(groups)]
    point = np.mean([_split_point(runs, f) for runs, f in zip(groups, facts, strict=True)], axis=0)
    rng = np.random.default_rng(seed)
    n = len(groups)
    draws = np.empty((n_boot, 3))
    for b in range(n_boot):
        picked = rng.integers(0, n, n) if n > 1 else [0]  # one split: bootstrap's draws exactly
        draws[b] = np.mean([_split_draw(groups[i], facts[i], rng) for i in picked], axis=0)
    return _summary(point, draws) | {"splits": n}


def mean_interval(samples: list, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> list[float] | None:
    """95 % interval of the mean over ``samples`` of each sample's mean (NaN / ``None`` items left out).

    Each draw resamples every sample's items with replacement, independently of the others (e.g.
    TemporalWiki's Changed and Unchanged probes: Avg is their means' mean). ``None`` when a
    sample has no items, so nothing can be claimed.
    """
    arrays = [np.asarray([np.nan if x is None else x for x in sample], dtype=float) for sample in samples]
    arrays = [a[~np.isnan(a)] for a in arrays]
    if not arrays or any(len(a) == 0 for a in arrays):
        return None
    rng = np.random.default_rng(seed)
    draws = np.zeros(n_boot)
    for a in arrays:
        draws += a[rng.integers(0, len(a), (n_boot, len(a)))].mean(axis=1)
    draws /= len(arrays)
    low, high = percentile_interval(draws)
    return [float(low), float(high)]


def compare(a: list[float] | None, b: list[float] | None) -> str:
    """``"above"`` if interval ``a`` lies wholly above ``b``, ``"below"`` if wholly below, else ``"level"``.

    Touching intervals are level; a missing interval gives ``"level"`` (nothing can be claimed).
    """
    if a is None or b is None:
        return "level"
    if a[0] > b[1]:
        return "above"
    if a[1] < b[0]:
        return "below"
    return "level"
