"""TemporalWiki beside the paper (trainattn.report.temporalwiki), probe selection and φ in a run's identity."""

import math

import pytest

import trainattn.protocols.temporalwiki as twiki
from trainattn.config import CKLConfig, ThetaConfig
from trainattn.core.train_attention import TrainAttention
from trainattn.methods import make_method
from trainattn.protocols.store import method_phi, phi_fingerprint
from trainattn.protocols.temporalwiki import (
    run_temporalwiki,
    score_period,
    select_probes,
)
from trainattn.report.figures import plot_twiki
from trainattn.report.paper import TWIKI_PROBE_COUNTS, TWIKI_TABLE2
from trainattn.report.temporalwiki import paper_twiki_result, relative_to, twiki_vs_paper_rows
from trainattn.testing import tiny_llama


def fact(subject, relation, obj):
    return {"subject": subject, "relation": relation, "object": obj}


PROBES = {
    "0910": {"changed": [fact("Ada", "occupation", "writer"), fact("Oslo", "country", "Norway")],
             "unchanged": [fact("Wales", "official language", "Welsh"), fact("Paris", "capital of", "France")]},
    "1011": {"changed": [fact("the company", "headquarters", "Oslo"), fact("She", "genre", "jazz")],
             "unchanged": [fact("Lochinvar", "country", "Scotland"), fact("Ada", "city", "London")]},
}


def fake_result(method, avgs, source="proxy"):
    rows = [{"period": p, "changed": {"nll": a + 0.5, "acc": 0.1}, "unchanged": {"nll": a - 0.5, "acc": 0.2},
             "avg": {"nll": a, "acc": 0.15}} for p, a in avgs.items()]
    return {"method": method, "source": source, "results": rows}


def test_paper_table2_is_consistent():
    for method, periods in TWIKI_TABLE2.items():
        assert set(periods) == set(TWIKI_PROBE_COUNTS)
        for un, c, avg in periods.values():
            assert avg == pytest.approx((un + c) / 2, abs=1e-3), method
    assert paper_twiki_result("taalm")["results"][0] == {
        "period": "0910", "unchanged": {"nll": 4.019, "acc": None}, "changed": {"nll": 4.268, "acc": None},
        "avg": {"nll": 4.1435, "acc": None}}
    assert paper_twiki_result("finetune+mixreview")["method"] == "mixreview"
    assert paper_twiki_result("oracle") is None


def test_rows_put_ours_beside_the_paper_and_ratios_to_finetune():
    results = {"finetune": fake_result("finetune", {"0910": 8.0, "1011": 6.0}),
               "taalm": fake_result("taalm", {"0910": 4.0, "1011": 3.0}),
               "oracle": fake_result("oracle", {"0910": 2.0, "1011": 2.0})}
    before = {p: {"avg": {"nll": 7.0}} for p in ("0910", "1011")}
    header, rows = twiki_vs_paper_rows(results, before)
    assert header[:3] == ["method", "0910 Avg (ours)", "0910 Avg (paper)"] and len(header) == 7
    assert rows[0] == ["before training", 7.0, None, 7.0, None, None, None]
    taalm = rows[2]
    assert taalm[:5] == ["taalm", 4.0, 4.1435, 3.0, 4.092]
    assert taalm[5] == pytest.approx(0.5)  # (4/8 + 3/6) / 2
    assert taalm[6] == pytest.approx((4.1435 / 10.028 + 4.092 / 9.543) / 2)
    assert rows[1][5] == pytest.approx(1.0) and rows[1][6] == pytest.approx(1.0)
    assert rows[3][2] is None and rows[3][6] is None  # no oracle in the paper
    assert relative_to(results["taalm"], fake_result("x", {"0910": 8.0}), ["0910", "1011"]) is None


def test_plot_writes_a_png(tmp_path):
    results = {"finetune": fake_result("finetune", {"0910": 8.0, "1011": 6.0}),
               "taalm": fake_result("taalm", {"0910": 4.0})}  # a missing period is a gap
    before = {p: {k: {"nll": 7.0, "acc": 0.1} for k in ("changed", "unchanged")} for p in ("0910", "1011")}
    path = plot_twiki(results, tmp_path / "fig" / "twiki.png", before)
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"


def test_select_probes_matches_the_run_and_scores_before_training(tokenizer):
    rows = {p: {k: [fact(f"s{i}", "r", f"o{i}") for i in range(6)] for k in ("changed", "unchanged")}
            for p in PROBES}
    chosen = select_probes(("0910", "1011"), rows, max_probes=3, seed=5)
    assert all(len(chosen[p][k]) == 3 for p in chosen for k in chosen[p])
    assert chosen == select_probes(("0910", "1011"), rows, max_probes=3, seed=5)
    assert chosen["0910"]["changed"] != chosen["0910"]["unchanged"]  # each set has its own draw
    with pytest.raises(ValueError, match="no entry for period"):
        select_probes(("1112",), rows)
    cfg = CKLConfig(theta=ThetaConfig(model="tiny", lora_rank=4, lora_alpha=8, max_length=32),
                    benchmark="temporalwiki", batch_size=2, eval_batch_size=8, seed=5)
    model = tiny_llama(len(tokenizer), seed=0)
    before = score_period(model, tokenizer, cfg, chosen["0910"], progress=False)
    assert before["changed"]["n"] == 3 and math.isfinite(before["avg"]["nll"])
    # the run scores exactly these sets: the same proxy documents and probes as subsampling inside it
    a = run_temporalwiki(cfg, tiny_llama(len(tokenizer), seed=0), tokenizer, periods=("0910",),
                         probes_by_period=rows, max_probes=3, source_label="proxy", progress=False)
    b = run_temporalwiki(cfg, tiny_llama(len(tokenizer), seed=0), tokenizer, periods=("0910",),
                         probes_by_period=chosen, source_label="proxy", progress=False)
    assert a["results"] == b["results"] and a["sizes"] == b["sizes"]


def test_a_changed_phi_does_not_resume_an_old_taalm_run(tokenizer, tmp_path):
    cfg = CKLConfig(theta=ThetaConfig(model="tiny", lora_rank=4, lora_alpha=8, max_length=32), method="taalm",
                    benchmark="temporalwiki", batch_size=2, lr=1e-2, eval_batch_size=8)

    def run(phi_seed, periods):
        phi = TrainAttention(tiny_llama(len(tokenizer), seed=0), num_layers=1, lora_rank=2, seed=phi_seed)
        return run_temporalwiki(cfg, tiny_llama(len(tokenizer), seed=0), tokenizer, periods=periods,
                                probes_by_period=PROBES, method=make_method("taalm", phi=phi),
                                out_dir=tmp_path, source_label="proxy", progress=False)

    first = run(1, ("0910", "1011"))
    assert len(first["phi_sha256"]) == 64
    assert run(1, ("0910", "1011"))["results"] == first["results"]  # same φ: read back
    with pytest.raises(ValueError, match="different phi_sha256"):
        run(2, ("0910", "1011"))
    assert phi_fingerprint(method_phi(make_method("finetune"))) is None
    assert twiki.PROXY_LINE  # the module's label for proxy results is still there
