"""A simple, documented token categoriser: what kind of word does each token belong to?

Used to ask where φ puts its weight. The rules, in order of priority, for each
token (a token belongs to the first word, ``\\w+`` run, its characters overlap):

1. ``answer``   — the token is part of the probe's answer (the object span the
   caller marks, e.g. :attr:`~trainattn.core.spans.EncodedBatch.object_mask`);
2. ``number``   — its word contains a digit;
3. ``function`` — its word, lower-cased, is in :data:`FUNCTION_WORDS`
   (articles, pronouns, prepositions, conjunctions, auxiliaries);
4. ``entity``   — its word starts with a capital letter (a named-entity-like
   test: sentence-initial content words count too — a known limitation);
5. ``relation`` — its word matches a word of the relation's name (``relation_words``,
   e.g. LAMA's ``relation_label``): equal, or sharing the first 5 letters;
6. ``other``    — any other content word; tokens with no word (punctuation,
   spaces) are ``other`` too.

Tokens are given as strings decoded one by one; their concatenation is the
text the rules read, so the result never depends on offset mappings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch

CATEGORIES = ("answer", "entity", "number", "relation", "function", "other")

FUNCTION_WORDS = frozenset("""
a an the this that these those some any each every no
i you he she it we they me him her us them my your his its our their mine yours hers ours theirs
who whom whose which what where when why how
in on at of to for from by with about as into onto through over under after before between
during without within against among along around across behind beyond near off out up down upon
and or but nor so yet if then than because while although though since until unless
is am are was were be been being has have had having do does did done will would shall should
can could may might must not also just only very too there here s
""".split())

_WORD = re.compile(r"\w+")


def _word_category(word: str, relation_words: frozenset) -> str:
    lower = word.lower()
    if any(ch.isdigit() for ch in word):
        return "number"
    if lower in FUNCTION_WORDS:
        return "function"
    if word[0].isupper():
        return "entity"
    if any(lower == r or (len(lower) >= 5 and len(r) >= 5 and lower[:5] == r[:5]) for r in relation_words):
        return "relation"
    return "other"


def relation_word_set(relation: str | Iterable[str] | None) -> frozenset:
    """Lower-cased content words of a relation name (``"place of birth"`` → {place, birth})."""
    if relation is None:
        return frozenset()
    text = relation if isinstance(relation, str) else " ".join(relation)
    return frozenset(w.lower() for w in _WORD.findall(text) if w.lower() not in FUNCTION_WORDS)


def categorise_tokens(tokens: Sequence[str], answer_mask=None, relation: str | Iterable[str] | None = None
                      ) -> list[str]:
    """One category of :data:`CATEGORIES` per token (see the module doc for the rules).

    ``tokens``: token strings, decoded one by one; ``answer_mask``: optional
    bools, True on the answer's tokens; ``relation``: the relation's name or words.
    """
    relation_words = relation_word_set(relation)
    text, starts = "", []
    for t in tokens:
        starts.append(len(text))
        text += t
    words = [(m.start(), m.end(), _word_category(m.group(), relation_words)) for m in _WORD.finditer(text)]
    out, w = [], 0
    for i, t in enumerate(tokens):
        a, b = starts[i], starts[i] + len(t)
        while w < len(words) and words[w][1] <= a:
            w += 1
        category = words[w][2] if w < len(words) and words[w][0] < b else "other"
        if answer_mask is not None and bool(answer_mask[i]):
            category = "answer"
        out.append(category)
    return out


def target_categories(tokenizer, input_ids, answer_mask=None, relation=None) -> list[str]:
    """Categories of the next-token targets of one sequence: index t ↔ ``input_ids[t + 1]``.

    ``input_ids``: ``[seq_len]`` (unpadded); ``answer_mask``: ``[seq_len]`` (e.g.
    an encoded batch's ``object_mask`` row). Aligned with ``token_weights``.
    """
    ids = [int(i) for i in input_ids]
    tokens = [tokenizer.decode([i]) for i in ids]
    cats = categorise_tokens(tokens, None if answer_mask is None else [bool(m) for m in answer_mask], relation)
    return cats[1:]


def category_shares(weights, categories: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per category: its share of the tokens and its share of the total weight.

    ``weights``: ``[n]`` non-negative (e.g. φ's weights on one document's targets);
    ``categories``: ``[n]``. Uniform weights give ``weight == tokens``.
    """
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if len(w) != len(categories):
        raise ValueError(f"{len(w)} weights but {len(categories)} categories")
    total = float(w.sum())
    n = len(categories)
    out = {}
    for c in CATEGORIES:
        mask = torch.tensor([x == c for x in categories], dtype=torch.bool)
        out[c] = {"tokens": float(mask.sum()) / n if n else 0.0,
                  "weight": float(w[mask].sum()) / total if total > 0 else 0.0}
    return out


def mean_shares(per_document: list[dict]) -> dict[str, dict[str, float]]:
    """The mean over documents of :func:`category_shares` (each document counts once, as in
    the per-document normalised loss)."""
    if not per_document:
        raise ValueError("no documents")
    return {c: {k: sum(d[c][k] for d in per_document) / len(per_document) for k in ("tokens", "weight")}
            for c in CATEGORIES}
