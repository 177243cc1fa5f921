"""Where φ's weight goes on free-form documents (:mod:`trainattn.data.freeform`), by style, with intervals.

φ is never told which tokens carry a document's fact. These functions read φ's weights on
free-form documents of several styles (prose, news, biography, product, dialogue) and ask:

* :func:`focus_rows` — per document, φ's mean weight on the answer's tokens against the other
  tokens, and the answer tokens' share of the document's weight against their share of the
  tokens (the share uniform weights would give);
* :func:`focus_by_style` — per style and over all documents, the means of those numbers with 95 %
  bootstrap intervals over documents, and a verdict: is the answer's weight share above, level
  with, or below the uniform share?
* :func:`top_weighted_tokens` — the tokens φ weighs most, averaged over their occurrences;
* :func:`category_shares` — per token category (:mod:`trainattn.data.token_categories`), its
  share of φ's weight against its share of tokens: does φ weigh entity-like or relation-like
  words (words shared with the probe) rather than the fact?

The input is one :class:`DocWeights` per document, built from what
:func:`trainattn.studies.open_questions.document_weights` returns
(:meth:`DocWeights.from_document_weights`, or :func:`measure_documents` for φ on documents).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trainattn.core.intervals import BOOT_SEED, N_BOOT, compare, percentile_interval
from trainattn.data.freeform import FREEFORM_STYLES
from trainattn.data.token_categories import CATEGORIES, mean_shares
from trainattn.data.token_categories import category_shares as _document_category_shares

ZERO_BAND = 1e-9
# A share gain within ±FLAT_LIFT × the uniform share (a lift between 0.95 and 1.05) is "level":
# a nearly untrained φ moves shares by 1e-5 consistently across documents, which an interval
# alone would call a direction, and which other CPU kernels can flip.
FLAT_LIFT = 0.05
"""Half-width of the band around 0 that :func:`focus_by_style`'s verdict compares the paired
difference's interval with: a flat φ's share differences are 0 up to rounding (~1e-17), not above."""


@dataclass
class DocWeights:
    """φ's weights on one document's next-token targets; every per-token field is ``[n]``.

    ``tokens``: the decoded target tokens (index t ↔ input token t + 1); ``weights``: φ's weight
    per target (float64, non-negative); ``answer``: bool, True on the answer's tokens (all False
    where the answer was not located within the kept tokens); ``categories``: one of
    :data:`~trainattn.data.token_categories.CATEGORIES` per target; ``style``: the document's
    style; ``id``: its id.
    """

    id: str
    style: str
    tokens: list[str]
    weights: np.ndarray
    answer: np.ndarray
    categories: list[str]

    def __post_init__(self):
        self.tokens = list(self.tokens)
        self.categories = list(self.categories)
        self.weights = _numpy(self.weights, np.float64)
        self.answer = _numpy(self.answer, bool)
        n = len(self.tokens)
        if not (len(self.weights) == len(self.answer) == len(self.categories) == n):
            raise ValueError(f"{self.id}: {n} tokens, {len(self.weights)} weights, {len(self.answer)} answer "
                             f"flags and {len(self.categories)} categories; they must match")

    @classmethod
    def from_document_weights(cls, result, id: str, style: str) -> DocWeights:
        """From :func:`~trainattn.studies.open_questions.document_weights`'s
        ``(tokens, weights, categories, answer_mask)``: tokens ``list[str]`` ``[n]``, weights a
        ``[n]`` tensor, categories ``list[str]`` ``[n]``, answer_mask a ``[n]`` bool tensor."""
        tokens, weights, categories, answer = result
        return cls(id, style, tokens, weights, answer, categories)


def _numpy(values, dtype) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor (possibly on an accelerator, possibly bf16)
        values = values.detach().cpu().double().numpy() if dtype is np.float64 else values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).reshape(-1)


def measure_documents(phi, tokenizer, docs: list[dict], max_length: int | None) -> list[DocWeights]:
    """φ's :class:`DocWeights` on free-form documents (rows of
    :func:`~trainattn.data.freeform.freeform_documents`: ``id``, ``style``, ``document``, ``probe``,
    ``answer``), through :func:`~trainattn.studies.open_questions.corpus_documents` ``("freeform")``
    and :func:`~trainattn.studies.open_questions.document_weights` (relation words = the probe's
    words other than the answer)."""
    from trainattn.studies.open_questions import corpus_documents, document_weights

    corpus = corpus_documents("freeform", docs)
    return [DocWeights.from_document_weights(document_weights(phi, tokenizer, c, max_length), d["id"],
                                             d.get("style", "prose"))
            for d, c in zip(docs, corpus, strict=True)]


# ---------------------------------------------------------------- per document


def focus_rows(per_doc: Sequence[DocWeights]) -> list[dict]:
    """One row per document: where φ's weight sits relative to the answer.

    Keys: ``id``, ``style``, ``n_tokens`` and ``n_answer`` (targets; answer targets),
    ``answer_weight`` (mean weight on the answer's tokens), ``other_weight`` (mean weight on
    the other tokens), ``ratio`` (``answer_weight / other_weight``), ``answer_share`` (the answer
    tokens' share of the document's total weight), ``uniform_share`` (their share of the tokens,
    ``n_answer / n_tokens``: what uniform weights give) and ``lift``
    (``answer_share / uniform_share``). ``located`` is False where no answer token was kept; then
    ``answer_weight``, ``ratio``, ``answer_share``, ``uniform_share`` and ``lift`` are ``None``
    (``ratio`` and ``answer_share`` also where the other tokens' or the whole weight is 0).
    """
    rows = []
    for d in per_doc:
        w, a = d.weights, d.answer
        n, n_answer = len(w), int(a.sum())
        total = float(w.sum())
        answer_weight = float(w[a].mean()) if n_answer else None
        other_weight = float(w[~a].mean()) if n_answer < n else None
        located = n_answer > 0
        row = {"id": d.id, "style": d.style, "n_tokens": n, "n_answer": n_answer, "located": located,
               "answer_weight": answer_weight, "other_weight": other_weight, "ratio": None,
               "answer_share": None, "uniform_share": n_answer / n if located else None, "lift": None}
        if located and other_weight:
            row["ratio"] = answer_weight / other_weight
        if located and total > 0:
            row["answer_share"] = float(w[a].sum()) / total
            row["lift"] = row["answer_share"] / row["uniform_share"]
        rows.append(row)
    return rows


# ---------------------------------------------------------------- by style, with intervals

_MEASURES = ("ratio", "answer_share", "uniform_share", "share_gain")


def _usable(row: dict) -> bool:
    return row.get("ratio") is not None and row.get("answer_share") is not None


def _group_summary(rows: list[dict], n_boot: int, seed: int) -> dict:
    """Means and 95 % bootstrap intervals (documents resampled with replacement) of one group."""
    out = {"n": len(rows)}
    if not rows:
        for m in _MEASURES:
            out[m], out[f"{m}_ci95"] = None, None
        out["verdict"] = "level"
        return out
    values = np.array([[r["ratio"], r["answer_share"], r["uniform_share"], r["answer_share"] - r["uniform_share"]]
                       for r in rows], dtype=np.float64)  # [n_docs, 4]
    point = values.mean(axis=0)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(rows), size=(n_boot, len(rows)))  # [n_boot, n_docs]
    draws = values[picks].mean(axis=1)  # [n_boot, 4]
    low, high = percentile_interval(draws)
    for i, m in enumerate(_MEASURES):
        out[m] = float(point[i])
        # a draw's mean can differ from the point in the last bit; the interval holds the point
        out[f"{m}_ci95"] = [float(min(low[i], point[i])), float(max(high[i], point[i]))]
    band = max(ZERO_BAND, FLAT_LIFT * out["uniform_share"])
    out["verdict"] = compare(out["share_gain_ci95"], [-band, band])
    return out


def focus_by_style(rows: Sequence[dict], n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> dict[str, dict]:
    """Per style (in :data:`~trainattn.data.freeform.FREEFORM_STYLES` order, then any other styles
    sorted) and ``"all"``: the mean over documents of :func:`focus_rows`'s ``ratio``,
    ``answer_share`` and ``uniform_share``, and of ``share_gain`` (the paired difference
    ``answer_share - uniform_share``), each with a 95 % bootstrap interval (``<key>_ci95``:
    the 2.5 and 97.5 percentiles of ``n_boot`` means of documents drawn with replacement within
    the group, widened if needed to hold the point), and ``n`` (the documents counted: those
    with both a ratio and an answer share, i.e. located answers).

    ``verdict``: ``"above"`` / ``"level"`` / ``"below"`` for the answer's weight share against the
    uniform share, judged on the interval of the PAIRED difference ``share_gain``: it is
    :func:`~trainattn.core.intervals.compare` of that interval with ``±FLAT_LIFT × uniform_share``
    (:data:`FLAT_LIFT`: a lift within 1 ± 0.05 is too small to call a direction, so a nearly flat φ
    is "level"; at least :data:`ZERO_BAND`). A group without documents has
    ``None`` values and verdict ``"level"``.

    Each group draws with its own generator seeded by ``seed``, so a group's intervals do not
    depend on which other groups are present; the same ``seed`` gives the same intervals.
    """
    usable = [r for r in rows if _usable(r)]
    present = {r["style"] for r in rows}
    styles = [s for s in FREEFORM_STYLES if s in present] + sorted(present - set(FREEFORM_STYLES))
    out = {s: _group_summary([r for r in usable if r["style"] == s], n_boot, seed) for s in styles}
    out["all"] = _group_summary(usable, n_boot, seed)
    return out


# ---------------------------------------------------------------- which tokens, which categories


def top_weighted_tokens(per_doc: Sequence[DocWeights], k: int = 20, min_count: int = 2
                        ) -> list[tuple[str, float, int]]:
    """The ``k`` tokens with the highest mean weight over all their occurrences in ``per_doc``.

    Tokens are grouped by their text with surrounding whitespace stripped (``" the"`` and
    ``"the"`` are one token); whitespace-only tokens are skipped, and so are tokens seen fewer
    than ``min_count`` times. Returns ``(text, mean weight, count)``, by mean weight (highest
    first), then count (highest first), then text.
    """
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for d in per_doc:
        for token, weight in zip(d.tokens, d.weights, strict=True):
            text = token.strip()
            if text:
                sums[text] += float(weight)
                counts[text] += 1
    ranked = sorted(((t, sums[t] / counts[t], counts[t]) for t in sums if counts[t] >= min_count),
                    key=lambda x: (-x[1], -x[2], x[0]))
    return ranked[:k]


def category_shares(per_doc: Sequence[DocWeights]) -> dict[str, dict[str, float | None]]:
    """Per token category of :data:`~trainattn.data.token_categories.CATEGORIES`: its share of
    φ's weight against its share of tokens, averaged over documents (each document counts once,
    as :func:`~trainattn.data.token_categories.mean_shares` does).

    Returns ``{category: {"tokens": share of tokens, "weight": share of weight, "lift":
    weight / tokens (None where the category has no tokens)}}``. Uniform weights give
    ``weight == tokens`` (lift 1); a lift above 1 means φ weighs that kind of token more than
    its numbers alone would (e.g. ``"relation"``: words the probe shares with the document,
    ``"entity"``: capitalised words, against ``"answer"``: the fact).
    """
    if not per_doc:
        raise ValueError("no documents")
    shares = mean_shares([_document_category_shares(d.weights, d.categories) for d in per_doc])
    return {c: {**shares[c], "lift": shares[c]["weight"] / shares[c]["tokens"] if shares[c]["tokens"] else None}
            for c in CATEGORIES}
