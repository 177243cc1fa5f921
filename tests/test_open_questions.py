"""Notebook 07's library: token categories, heuristic weights, relation split, probe-free data,
staged φ shares, peak memory, and answers worded from the numbers."""

import math
import re
from pathlib import Path

import pytest
import torch
from test_methods import CONFIG, NOT_TO_FORGET, TO_LEARN, context

from trainattn.config import CKLConfig, MetaConfig, PhiConfig, ThetaConfig
from trainattn.core.lora import add_lora
from trainattn.core.losses import per_token_nll
from trainattn.core.meta import MetaExample, MetaLearner
from trainattn.core.train_attention import TrainAttention
from trainattn.data.freeform import freeform_documents
from trainattn.data.token_categories import (
    CATEGORIES,
    categorise_tokens,
    category_shares,
    target_categories,
)
from trainattn.methods import HEURISTICS, canonical_method_name, make_method
from trainattn.methods.heuristics import attention_received, hidden_gradient_norm, scale_rows
from trainattn.protocols.lama_ckl import make_train_batch, run_lama_ckl
from trainattn.report.answers import (
    accuracy_tolerance,
    answer_attention,
    answer_freeform,
    answer_generalisation,
    answer_heuristics,
    answer_scaling,
    answer_unpaired,
    compare,
    settings_choice,
    verdict,
)
from trainattn.report.tables import markdown_table
from trainattn.studies.open_questions import (
    OpenQuestionRuns,
    chapter_record_files,
    corpus_documents,
    document_probe_examples,
    generalisation_data,
    kept_text,
    measured,
    phi_shares,
    relation_split,
    require_chapter_records,
    scaling_variants,
    self_probe,
    self_probe_examples,
    staged_shares,
)
from trainattn.testing import tiny_llama

# ------------------------------------------------------------- token categories


def test_categories_follow_the_documented_priority():
    tokens = ["The", " bridge", " was", " designed", " by", " Tavi", " Ok", "onkwo", " in", " 2031", "."]
    answer = [False] * 5 + [True, True, True] + [False] * 3
    cats = categorise_tokens(tokens, answer, relation="designer")
    assert cats == ["function", "other", "function", "relation", "function", "answer", "answer", "answer",
                    "function", "number", "other"]
    # without the answer mask the name is an entity, and a word split over tokens keeps one category
    assert categorise_tokens(tokens)[5:8] == ["entity"] * 3


def test_category_shares_uniform_weights_equal_token_shares_and_sum_to_one():
    cats = ["answer", "entity", "function", "function", "other"]
    shares = category_shares(torch.ones(5), cats)
    assert all(shares[c]["weight"] == pytest.approx(shares[c]["tokens"]) for c in CATEGORIES)
    assert sum(s["weight"] for s in shares.values()) == pytest.approx(1.0)
    focused = category_shares(torch.tensor([1.0, 0, 0, 0, 0]), cats)
    assert focused["answer"]["weight"] == 1.0 and focused["answer"]["tokens"] == 0.2


def test_target_categories_align_with_token_weights(tokenizer):
    batch = make_train_batch(tokenizer, TO_LEARN[:1], 1, 64)
    cats = target_categories(tokenizer, batch.encoded.input_ids[0], batch.encoded.object_mask[0], "relation")
    assert len(cats) == batch.encoded.input_ids.shape[1] - 1
    answer = torch.tensor([c == "answer" for c in cats])
    assert torch.equal(answer, batch.encoded.target_mask[0])  # the object "Brazil"


# ------------------------------------------------------------- heuristic weighting methods


def _batch(tokenizer):
    return make_train_batch(tokenizer, TO_LEARN, 3, 64).encoded  # right-padded, 3 rows


def test_simple_scores_are_the_heuristics_and_rho1_all_registered():
    from trainattn.methods.heuristics import SIMPLE_SCORES

    assert SIMPLE_SCORES == ("heuristic-loss", "heuristic-gradnorm", "heuristic-attention", "heuristic-entity", "rho1")
    assert all(canonical_method_name(name) == name for name in SIMPLE_SCORES)


@pytest.mark.parametrize("name", sorted(HEURISTICS))
def test_heuristics_are_methods_with_row_scaled_weights(name, tokenizer, model):
    assert canonical_method_name(name) == name
    theta = add_lora(model, 4, 8)
    method = make_method(name)
    method.prepare(theta, tokenizer, CONFIG, context())
    batch = _batch(tokenizer)
    logits = theta(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    w = method.token_weights(batch, logits, theta)
    assert w.shape == (3, batch.input_ids.shape[1] - 1) and not w.requires_grad
    real = batch.attention_mask[:, 1:].bool()
    assert (w[~real] == 0).all() and (w >= 0).all()
    assert torch.allclose(w.amax(-1), torch.ones(3))


def test_heuristic_loss_weights_are_proportional_to_the_token_loss(tokenizer, model):
    batch = _batch(tokenizer)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    w = make_method("heuristic-loss").token_weights(batch, logits, model)
    nll = per_token_nll(logits, batch.input_ids)[0]
    n = int(batch.attention_mask[0].sum()) - 1
    assert torch.allclose(w[0, :n], nll[:n] / nll[:n].max(), atol=1e-6)


def test_gradnorm_equals_autograd_gradient_at_the_last_hidden_state(tokenizer, model):
    batch = _batch(tokenizer)
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    hidden = out.hidden_states[-1].detach().requires_grad_(True)
    logits = model.lm_head(hidden)
    nll = per_token_nll(logits, batch.input_ids)
    t = 3
    (grad,) = torch.autograd.grad(nll[0, t], hidden)
    norms = hidden_gradient_norm(logits.detach(), batch.input_ids, model.lm_head.weight.detach())
    assert norms[0, t].item() == pytest.approx(grad[0, t].norm().item(), rel=1e-4)


def test_attention_received_averages_over_the_queries_that_can_see_the_key():
    # one layer, one head, 3 real tokens + 1 pad; every query attends only to token 0
    att = torch.zeros(1, 1, 4, 4)
    att[0, 0, :, 0] = 1.0
    mask = torch.tensor([[1, 1, 1, 0]])
    got = attention_received([att], mask)
    assert torch.allclose(got, torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    # uniform causal attention: key j gets 1/(q+1) from each query q >= j
    att = torch.tril(torch.ones(3, 3)) / torch.arange(1, 4)[:, None]
    got = attention_received([att[None, None]], torch.ones(1, 3, dtype=torch.long))
    expected = torch.tensor([(1 + 1 / 2 + 1 / 3) / 3, (1 / 2 + 1 / 3) / 2, 1 / 3])
    assert torch.allclose(got[0], expected)


def test_entity_heuristic_marks_capitalised_and_numeric_tokens(tokenizer, model):
    method = make_method("heuristic-entity")
    method.prepare(model, tokenizer, CONFIG, context())
    batch = _batch(tokenizer)
    w = method.token_weights(batch, None, model)
    ids = batch.input_ids[2].tolist()  # "The company headquarters are in Oslo , Norway ."
    marked = "".join(tokenizer.decode([ids[t + 1]]) for t in range(len(ids) - 1) if w[2, t] > 0)
    assert "Oslo" in marked and "Norway" in marked and "company" not in marked


def test_scale_rows_falls_back_to_uniform_on_all_zero_rows():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    w = scale_rows(torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 4.0]]), mask)
    assert torch.allclose(w, torch.tensor([[1.0, 1.0, 0.0], [0.25, 0.5, 1.0]]))


def test_run_lama_ckl_runs_a_heuristic_like_any_method(tokenizer, tmp_path):
    config = CKLConfig(theta=ThetaConfig(lora_rank=4, lora_alpha=8, max_length=32), batch_size=2, epochs=1,
                       method="heuristic-gradnorm", n_to_learn=3, n_not_to_forget=2)
    result = run_lama_ckl(config, tiny_llama(len(tokenizer), seed=0), tokenizer, TO_LEARN, NOT_TO_FORGET,
                          "heuristic-gradnorm", out_dir=tmp_path, progress=False)
    assert result["method"] == "heuristic-gradnorm"
    assert len(result["curves"]["to_learn"]["acc"]) == 2


# ------------------------------------------------------------- held-out relations


def _row(uuid, code, invariant=False):
    return {"uuid": uuid, "relation_code": code, "relation_label": "r", "evidence": f"doc {uuid} X{uuid}",
            "task_schematic": f"probe X{uuid}", "task_descriptive": f"probe X{uuid}", "object": f"X{uuid}",
            "subject": "s", "invariant": invariant}


class _Splits:
    def __init__(self):
        codes = ["P1"] * 4 + ["P2"] * 3 + ["P3"] * 2 + ["P4"]
        self.to_learn = [_row(f"t{i}", c) for i, c in enumerate(codes)]
        self.meta_pool = [_row(f"m{i}", f"P{1 + i % 5}") for i in range(30)]
        self.not_to_forget = [_row(f"n{i}", "P9", True) for i in range(3)]


def test_relation_split_alternates_down_the_frequency_ranking():
    assert relation_split(_Splits().to_learn) == ["P1", "P3"]


def test_generalisation_data_keeps_held_out_relations_out_of_phi_training():
    data = generalisation_data(_Splits(), n_to_learn=5, n_not_to_forget=2, n_train=8, val_size=3)
    assert {r["relation_code"] for r in data.to_learn} <= {"P1", "P3"} and len(data.to_learn) == 5
    seen = [e.uuid.split("|")[0] for e in data.train_seen + data.val]
    assert not set(seen) & {"P1", "P3"}
    assert {e.uuid.split("|")[0] for e in data.train_all} & {"P1", "P3"}  # all relations
    assert len(data.train_seen) == len(data.train_all) == 8
    assert not {e.uuid for e in data.val} & {e.uuid for e in data.train_all + data.train_seen}
    with pytest.raises(ValueError, match="tailor a larger split"):
        generalisation_data(_Splits(), n_to_learn=50, n_not_to_forget=2, n_train=8, val_size=3)


# ------------------------------------------------------------- probe-free meta-training data


def test_self_probe_cuts_the_sentence_at_its_last_capitalised_span():
    text = "Ada Lovelace was a writer. Later she moved to the city of New York with her family."
    assert self_probe(text) == ("Later she moved to the city of New York", "New York")
    assert self_probe("The Hague is big.") is None  # no context before the only span
    assert self_probe("It opened to visitors in 1998 after a decade.") == ("It opened to visitors in 1998", "1998")


def test_self_probe_examples_use_only_the_text_kept_after_truncation(tokenizer):
    doc = "Ada Lovelace worked as a mathematician and writer in London . " * 3 + "Late text in Oslo ."
    short = kept_text(tokenizer, doc, 40)
    assert doc.startswith(short) and len(tokenizer(short)["input_ids"]) <= 40 and len(short) < len(doc)
    (example,) = self_probe_examples([MetaExample(doc, "p", "o", "u")], tokenizer, 40)
    assert example.object in short and example.probe.endswith(example.object) and example.uuid == "u"
    (whole,) = document_probe_examples([MetaExample(doc, "p", "o", "u")], tokenizer, 40)
    assert whole.document == whole.probe == whole.object == short


def test_freeform_documents_hold_their_answer_and_end_their_probe():
    docs = freeform_documents()
    assert len(docs) >= 6 and len({d["id"] for d in docs}) == len(docs)
    for d in docs:
        assert d["answer"] in d["document"] and d["probe"].endswith(d["answer"])
    corpus = corpus_documents("freeform", docs)
    assert corpus[0]["answer"] == docs[0]["answer"] and docs[0]["answer"] not in corpus[0]["relation"]


# ------------------------------------------------------------- φ's weight shares, staged


def _learner(tokenizer, steps=2):
    config = MetaConfig(theta=ThetaConfig(lora_rank=4, lora_alpha=8, max_length=32),
                        phi=PhiConfig(num_layers=1, lora_rank=4, lora_alpha=8), meta_batch=1, meta_steps=steps,
                        val_every=0, checkpoint_every=1, outer_lr=1e-2)
    theta = add_lora(tiny_llama(len(tokenizer), seed=0), 4, 8)
    phi = TrainAttention(tiny_llama(len(tokenizer), seed=1), 1, 4, 8)
    return config, MetaLearner(config, theta, phi, tokenizer)


def test_untrained_phi_weight_shares_equal_token_shares(tokenizer):
    _, learner = _learner(tokenizer)
    docs = corpus_documents("lama", TO_LEARN)
    shares = phi_shares(learner.phi, tokenizer, docs, 32)
    for c in CATEGORIES:  # the head starts at bias 4 with weights ~0: near-uniform weights
        assert shares[c]["weight"] == pytest.approx(shares[c]["tokens"], abs=1e-3)
    assert shares["answer"]["tokens"] > 0


def test_staged_shares_resume_and_match_an_uninterrupted_run(tokenizer, tmp_path):
    train = [MetaExample(r["evidence"], r["evidence"], r["object"], r["uuid"]) for r in TO_LEARN]
    corpora = {"lama": corpus_documents("lama", TO_LEARN)}
    config, learner = _learner(tokenizer)
    full = staged_shares(config, learner, train, tmp_path / "a", [0, 1, 2], corpora, 32)
    assert sorted(full) == [0, 1, 2] and full[0] != full[2]
    config, learner = _learner(tokenizer)
    part = staged_shares(config, learner, train, tmp_path / "b", [0, 1], corpora, 32)
    config, learner = _learner(tokenizer)  # a new session: stages 0 and 1 are read back
    rest = staged_shares(config, learner, train, tmp_path / "b", [0, 1, 2], corpora, 32)
    assert rest[0] == part[0] == full[0]
    assert rest[2]["lama"]["answer"]["weight"] == pytest.approx(full[2]["lama"]["answer"]["weight"], abs=1e-6)


PEAK_SNIPPET = """
import torch
from trainattn.studies.open_questions import PeakMemory
with PeakMemory() as peak:
    block = torch.ones(64 * 2**20 // 4)  # 64 MB
    block += 1
    del block
print(peak.seconds, peak.extra_rss_mb)
"""


def test_peak_memory_sees_a_large_allocation_and_measured_reads_back(tmp_path):
    import subprocess
    import sys

    # a fresh interpreter: in this one, memory freed by earlier tests may stay resident and be reused
    done = subprocess.run([sys.executable, "-c", PEAK_SNIPPET], capture_output=True, text=True, check=True)
    seconds, extra = done.stdout.split()
    assert float(seconds) >= 0
    if extra != "None":
        assert float(extra) > 40
    calls = []
    out, res = measured(tmp_path, lambda: calls.append(1) or 7)
    again, res2 = measured(tmp_path, lambda: 7)
    assert out == again == 7 and res == res2 and (tmp_path / "resources.json").is_file()


# ------------------------------------------------------------- answers worded from numbers


def _r(top, nf=0.5):
    return {"top_acc": top, "nf_acc": nf}


def test_compare_uses_a_one_probe_tolerance():
    assert compare(0.5, 0.4, 0.05) == "above" and compare(0.4, 0.5, 0.05) == "below"
    assert compare(0.42, 0.4, 0.05) == "level with"


def test_accuracy_tolerance_is_one_probe_or_two_standard_errors():
    assert accuracy_tolerance(0.0, 0.0, 20) == 1 / 20
    assert math.isclose(accuracy_tolerance(0.5, 0.5, 100), 2 * math.sqrt(0.5 / 100))
    # 2 of 32 facts against 0.5 of 32: noise at this size, worded as level
    assert compare(0.062, 0.016, accuracy_tolerance(0.062, 0.016, 32)) == "level with"


def test_answers_change_with_the_numbers():
    n = 200
    good = answer_generalisation({"phi_seen": _r(0.3), "phi_all": _r(0.3), "finetune": _r(0.05),
                                  "oracle": _r(0.4)}, n, ["P1"])
    bad = answer_generalisation({"phi_seen": _r(0.1), "phi_all": _r(0.3), "finetune": _r(0.05),
                                 "oracle": _r(0.4)}, n, ["P1"])
    assert "transfers to relations" in good and "only partly" in bad and "14%" in bad
    small = answer_generalisation({"phi_seen": _r(0.06), "phi_all": _r(0.03), "finetune": _r(0.03),
                                   "oracle": _r(0.4), "phi_03": _r(0.4)}, 32, ["P1"])
    assert "too small" in small and "0.400 on the same facts, above the all-relations φ here" in small
    assert "that gap comes from the pool or the chosen step" in small
    rows = {"finetune": _r(0.0), "oracle": _r(0.5), "taalm": _r(0.3), "heuristic-loss": _r(0.1),
            "heuristic-entity": _r(0.45)}
    text = answer_heuristics(rows, "taalm", n)
    assert "heuristic-entity did better than φ" in text and "heuristic-loss 0.100 (NF 0.500), below taalm" in text
    rows["heuristic-entity"] = _r(0.1)
    assert "earns its cost: every heuristic is below taalm" in answer_heuristics(rows, "taalm", n)
    rows["heuristic-entity"] = _r(0.29)
    assert "heuristic-entity did as well as φ" in answer_heuristics(rows, "taalm", n)
    # the conclusion is against the first φ (the chapter's budget); a further φ is only described
    rows.update({"taalm": _r(0.02), "phi_long": _r(0.3)})
    both = answer_heuristics(rows, ["taalm", "phi_long"], n)
    assert "phi_long reached 0.300, above taalm" in both and "did better than φ" in both
    tiny = {"finetune": _r(0.0), "oracle": _r(0.4), "taalm": _r(0.03), "heuristic-entity": _r(0.06)}
    assert "too small to tell" in answer_heuristics(tiny, "taalm", 32)
    assert "fall short" in answer_unpaired({"paired": _r(0.3), "self": _r(0.1)}, "paired", _r(0.0), n)
    assert "did as well" in answer_unpaired({"paired": _r(0.3), "self": _r(0.3)}, "paired", _r(0.0), n)
    stuck = answer_unpaired({"paired": _r(0.0), "self": _r(0.0)}, "paired", _r(0.0), 32, oracle=_r(0.4))
    assert "too little trained" in stuck and "oracle included" not in stuck
    scaling = [{"variant": "base", "meta_seconds": 10.0, "peak_mb": 100.0, "phi_trainable": 4, "top_acc": 0.3},
               {"variant": "depth_2", "meta_seconds": 5.0, "peak_mb": 50.0, "phi_trainable": 2, "top_acc": 0.3},
               {"variant": "rank_64", "meta_seconds": 20.0, "peak_mb": 100.0, "phi_trainable": 16, "top_acc": 0.6}]
    text = answer_scaling(scaling, "base", n)
    assert "fewer trainable parameters (depth_2) lost nothing" in text and "0.5× the peak memory" in text and "Above the base φ: rank_64" in text


def test_answers_and_verdicts_use_the_intervals_when_rows_have_them():
    def ci(top, lo, hi):
        return {"top_acc": top, "nf_acc": 0.5, "top_acc_ci95": [lo, hi]}

    rows = {"phi_seen": ci(0.30, 0.20, 0.40), "phi_all": ci(0.45, 0.38, 0.52), "finetune": ci(0.05, 0.0, 0.10),
            "oracle": ci(0.6, 0.5, 0.7)}
    # 0.30 vs 0.45 at n = 32 is within the tolerance fallback (level) but the intervals overlap too;
    # disjoint intervals decide "below" even where the tolerance would say level
    assert "only partly" not in answer_generalisation(rows, 32, ["P1"])
    rows["phi_all"] = ci(0.45, 0.41, 0.52)
    assert "only partly" in answer_generalisation(rows, 32, ["P1"])
    v = verdict(rows["phi_seen"], rows["phi_all"], 32, "φ without", "φ all", "more held-out facts")
    assert v["verdict"] == "below" and v["compared"] == "φ without vs φ all" and v["rule"].startswith("95 %")
    assert v["a"] == {"top_acc": 0.30, "top_acc_ci95": [0.20, 0.40]} and v["would_change"] == "more held-out facts"
    assert verdict(rows["phi_seen"], ci(0.35, 0.30, 0.45), 32, "a", "b", "")["verdict"] == "level"
    fallback = verdict(_r(0.5), _r(0.1), 200, "a", "b", "")
    assert fallback["verdict"] == "above" and fallback["rule"].startswith("difference beyond")


def test_freeform_and_attention_answers_call_flat_weights_flat():
    flat = [{"answer_weight": 0.92, "other_weight": 0.91}] * 6 + [{"answer_weight": 0.9, "other_weight": 0.92}] * 2
    assert "nearly flat" in answer_freeform(flat)
    sharp = [{"answer_weight": 0.5, "other_weight": 0.1}] * 5 + [{"answer_weight": 0.1, "other_weight": 0.1}]
    assert "still finds the new fact" in answer_freeform(sharp)
    # one document with almost no weight elsewhere (ratio 500) does not make the others count
    skewed = [{"answer_weight": 0.5, "other_weight": 0.001}] + [{"answer_weight": 0.05, "other_weight": 0.1}] * 4
    text = answer_freeform(skewed)
    assert "in 1 of them (median ratio 0.50)" in text and "does not single out the fact" in text

    def shares(answer_w):
        return {"answer": {"tokens": 0.1, "weight": answer_w}, "other": {"tokens": 0.9, "weight": 1 - answer_w},
                "relation": {"tokens": 0.001, "weight": 0.01}}

    near = answer_attention({"LAMA": shares(0.105)}, {0: {"LAMA": shares(0.1)}, 4: {"LAMA": shares(0.105)}})
    assert "close to uniform" in near and "relation" not in near.split(".")[0]  # rare categories skipped
    far = answer_attention({"LAMA": shares(0.4)}, {0: {"LAMA": shares(0.1)}, 4: {"LAMA": shares(0.4)}})
    assert "close to uniform" not in far and "over-weights answer tokens most (4.00×" in far


def test_markdown_table_formats_floats_and_missing_values():
    table = markdown_table([("a", "A"), ("b", "B"), ("c", "C")], [{"a": "x", "b": 0.12345, "c": None}])
    assert table.splitlines()[2] == "| x | 0.123 | – |" and not math.isnan(0.0)


def test_verdict_rows_flatten_single_and_grouped_verdicts():
    from trainattn.report.answers import verdict_rows

    one = verdict({"top_acc": 0.3, "top_acc_ci95": [0.2, 0.4]}, {"top_acc": 0.1, "top_acc_ci95": [0.0, 0.15]},
                  32, "φ", "finetune", "x")
    grouped = {"rank_4": verdict(_r(0.1), _r(0.1), 32, "rank_4", "base", "y")}
    share = {"compared": "fact share vs uniform", "verdict": "above", "rule": "r", "would_change": "z",
             "a_text": "0.30 [0.2, 0.4]", "b_text": "0.05"}
    rows = verdict_rows({"generalisation": one, "scaling": grouped, "attention_shares": share})
    assert [r["question"] for r in rows] == ["generalisation", "scaling", "attention_shares"]
    assert rows[0]["a"] == "0.300 [0.200, 0.400]" and rows[0]["verdict"] == "above"
    assert rows[1]["b"] == "0.100" and rows[1]["verdict"] == "level" and rows[2]["a"] == "0.30 [0.2, 0.4]"



def test_companion_file_sections_split_into_runs_and_verdicts():
    from trainattn.report.answers import companion_runs, companion_verdicts

    v = verdict(_r(0.3), _r(0.1), 32, "a", "b", "x")
    questions = {"generalisation": {"runs": {}, "verdict": {"held-out relations": v}},
                 "unpaired": {"paired": _r(0.3), "self_probe": _r(0.1), "self_probe_documents": 9,
                              "verdict": {"self_probe": v}},
                 "scaling": {"base": _r(0.3), "settings_choice": {"chosen": "base"}, "verdict": {}},
                 "heuristic_weights": {"rho1": _r(0.2)}, "parameters": {"n_to_learn": 32}}
    assert list(companion_runs(questions["unpaired"])) == ["paired", "self_probe"]
    assert list(companion_runs(questions["scaling"])) == ["base"]
    # a file written before verdicts existed (heuristic_weights here) has none to show
    assert companion_verdicts(questions) == {"generalisation": {"held-out relations": v},
                                             "unpaired": {"self_probe": v}, "scaling": {}}


def test_practical_reading_follows_the_verdicts():
    from trainattn.report.answers import practical_reading

    def v(word, a=0.3, b=0.3):
        return {"verdict": word, "a": {"top_acc": a}, "b": {"top_acc": b}}

    verdicts = {"generalisation": {"held-out relations": v("level"), "free-form text, φ without": v("level"),
                                   "free-form text, φ on all relations": v("above")},
                "attention_shares": v("above"),
                "heuristic_weights": {"heuristic-loss": v("below"), "heuristic-entity": v("level"), "rho1": v("level")},
                "unpaired": {"self_probe": v("below"), "document_change3": v("below")},
                "scaling": {"depth_2": v("level"), "depth_all": v("below"), "rank_64": v("above")}}
    rows = [{"variant": "base", "phi_trainable": 10}, {"variant": "depth_2", "phi_trainable": 4},
            {"variant": "depth_all", "phi_trainable": 50}, {"variant": "rank_64", "phi_trainable": 40}]
    text = practical_reading(verdicts, rows)
    assert len(text) == 6
    assert "need not have seen the relation" in text[0]
    assert "only φ on all relations put more weight on the fact" in text[1]
    assert "where a LAMA fact sits" in text[2]
    assert "heuristic-entity and rho1 did as well as the meta-trained φ" in text[3]
    assert "needs paired data" in text[4]
    assert text[5] == ("φ's size: depth_2 matched the base φ with fewer trainable parameters, so a smaller φ "
                       "suffices here. Above the base φ: rank_64.")
    verdicts["generalisation"]["held-out relations"] = v("below")
    verdicts["heuristic_weights"] = {"heuristic-loss": v("below")}
    verdicts["unpaired"]["self_probe"] = v("level")
    text = practical_reading(verdicts)  # no rows: question 5 needs the φ sizes
    assert len(text) == 5 and "meta-train φ on documents of the relations" in text[0]
    assert "pays for itself" in text[3] and text[4].startswith("Without hand-written probes: self_probe did as well")
    # runs that learned nothing (the ci smoke test) give no reading
    verdicts["unpaired"] = {"self_probe": v("level", 0.0, 0.0), "document_change3": v("level", 0.5, 0.0)}
    assert "did as well" in practical_reading(verdicts, n_to_learn=4)[4]
    verdicts["unpaired"]["document_change3"] = v("level", 0.0, 0.25)  # one fact of 4: within one probe
    assert "cannot tell" not in practical_reading(verdicts, n_to_learn=8)[4]
    assert practical_reading(verdicts, n_to_learn=4)[4] == ("Without hand-written probes: no compared run learned "
                                                           "more than one probe's worth of facts, so this run cannot tell.")

# ------------------------------------------------------------- the chapter's runs, by name


def test_scaling_variants_name_depth_and_rank_with_alpha_twice_the_rank():
    table = scaling_variants([2, None], [4, 64])
    assert list(table) == ["base", "depth_2", "depth_all", "rank_4", "rank_64"]
    assert table["base"].phi == {}
    assert table["depth_all"].phi == {"num_layers": None}
    assert table["rank_64"].phi == {"lora_rank": 64, "lora_alpha": 128}


def test_unpaired_run_rejects_an_unknown_strategy(tmp_path):
    runs = OpenQuestionRuns(None, None, None, None, None, tmp_path)
    with pytest.raises(ValueError, match=re.escape("unknown unpaired strategy 'paired': self_probe | document_<objective>")):
        runs.unpaired_run("paired", 32)


CPU_RECORDS = Path(__file__).resolve().parents[1] / "results" / "cpu" / "runs" / "07_open_questions"


def test_chapter_record_files_match_the_committed_cpu_records():
    # the layout the runs write: the records committed so far are exactly these files
    lrs = [3e-4, 1e-3, 3e-3]
    files = chapter_record_files(CPU_RECORDS, ["finetune", "oracle", "heuristic-loss"], 0, lrs, [], ["base"])
    assert len(files) == 3 * 3 + 3 + 2
    assert [f for f in files if not f.is_file()] == []
    assert CPU_RECORDS / "reference" / "seed-0" / "oracle" / "lr-0.003" / "result.json" in files
    more = chapter_record_files(CPU_RECORDS, [], 0, lrs, ["self_probe", "document_change3"], ["base", "rank_4"])
    assert more[-6:] == [CPU_RECORDS / g / n / f for g, n in [("self_probe", "base"), ("document_change3", "change3"),
                                                              ("paired_all", "rank_4")]
                         for f in ("row.json", "resources.json")]
    untuned = chapter_record_files(CPU_RECORDS, ["finetune"], 1, [], [], [])
    assert untuned[0] == CPU_RECORDS / "reference" / "seed-1" / "finetune" / "result.json"


def test_require_chapter_records_names_the_first_missing_file_in_records_only_mode(tmp_path, monkeypatch):
    from trainattn.protocols.store import RECORDS_ONLY_ENV, RecordMissingError

    files = chapter_record_files(tmp_path, ["finetune"], 0, [1e-3], [], [])
    for f in files[:2]:
        f.parent.mkdir(parents=True)
        f.write_text("{}")
    monkeypatch.delenv(RECORDS_ONLY_ENV, raising=False)
    require_chapter_records(files)  # computing is allowed: nothing to check
    monkeypatch.setenv(RECORDS_ONLY_ENV, "1")
    with pytest.raises(RecordMissingError, match=re.escape(f"{files[2]}: no finished run to read back")):
        require_chapter_records(files)


def _jobs_script():
    """``scripts/open_questions_jobs.py`` as a module (scripts are not a package)."""
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "scripts" / "open_questions_jobs.py"
    spec = importlib.util.spec_from_file_location("open_questions_jobs", script)
    jobs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(jobs)
    return jobs


def test_jobs_script_names_unknown_jobs_and_scaling_variants(tmp_path):
    jobs = _jobs_script()
    ns = {"runs": OpenQuestionRuns(None, None, None, None, None, tmp_path), "scaling_depths": [2],
          "scaling_ranks": [64]}
    with pytest.raises(ValueError, match="unknown job 'phi_all'"):
        jobs.run_job(ns, "phi_all")
    with pytest.raises(ValueError, match=r"scaling:rank_8: not one of the profile's variants \['depth_2', 'rank_64'\]"):
        jobs.run_job(ns, "scaling:rank_8")


def test_settings_choice_confirms_or_drops_the_earlier_best_by_validation_nll():
    rows = [{"variant": "base", "val_phi_nll": 7.9, "val_uniform_nll": 8.1},
            {"variant": "rank_64", "val_phi_nll": 7.5}, {"variant": "depth_2", "val_phi_nll": 8.0}]
    kept = settings_choice(rows, "base", "rank_64")
    assert kept["chosen"] == "rank_64" and kept["previous_best_kept"] is True
    assert "rank_64 7.500, base 7.900, depth_2 8.000" in kept["text"] and "confirmed" in kept["text"]
    rows[1]["val_phi_nll"] = 7.95
    dropped = settings_choice(rows, "base", "rank_64")
    assert dropped["chosen"] == "base" and dropped["previous_best_kept"] is False
    assert "dropped at this budget: base validates better (7.900 against 7.950)" in dropped["text"]
    with pytest.raises(ValueError, match="no validation NLL for the base row 'base'"):
        settings_choice(rows[1:], "base")


def test_jobs_script_lists_every_run_and_splits_them_between_processes(tmp_path):
    jobs = _jobs_script()
    ns = {"heuristics": ["heuristic-loss"], "unpaired": ["self_probe"], "scaling_depths": [None, 2],
          "scaling_ranks": [64]}
    every = jobs.all_jobs(ns)
    assert every == ["paired_all", "paired_seen", "reference:finetune", "reference:oracle", "reference:taalm",
                     "reference:heuristic-loss", "unpaired:self_probe", "scaling:depth_2", "scaling:rank_64",
                     "scaling:depth_all"]
    first, second = jobs.part_of(every, 0, 2), jobs.part_of(every, 1, 2)
    assert first[:5] == every[0::2] and second[:5] == every[1::2]
    assert sorted(first) == sorted(second) == sorted(every)  # each goes on with the other's jobs, from the end
    assert first[5] == "scaling:depth_all" and second[5] == "scaling:rank_64"
    with pytest.raises(ValueError, match="--part 2/2: K must lie in 0 … 1"):
        jobs.part_of(every, 2, 2)


def test_jobs_script_reads_set_overrides_as_yaml_like_the_plain_runner():
    jobs = _jobs_script()
    assert jobs.parse_overrides(["device=cuda", "lrs=[0.001, 0.003]", "tag=a=b"]) == {
        "device": "cuda", "lrs": [0.001, 0.003], "tag": "a=b"}
    with pytest.raises(ValueError, match=re.escape("--set 'device': expected KEY=VALUE")):
        jobs.parse_overrides(["device"])


def test_jobs_script_takes_job_names_given_after_set():
    jobs = _jobs_script()
    args, overrides = jobs.parse_cli(["paired_all", "--set", "lrs=[3.0e-4]", "reference:rho1", "device=cuda"])
    assert args.jobs == ["paired_all", "reference:rho1"]
    assert overrides == {"lrs": [3.0e-4], "device": "cuda"}
    args, overrides = jobs.parse_cli(["--all", "--part", "1/2", "--set", "device=cuda"])
    assert args.all and args.jobs == [] and overrides == {"device": "cuda"}
    with pytest.raises(SystemExit):
        jobs.parse_cli(["--set", "device=cuda"])  # no job named
