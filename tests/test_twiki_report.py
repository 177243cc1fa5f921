"""TemporalWiki beside the paper (trainattn.report.temporalwiki), probe selection and φ in a run's identity."""

import math

import pytest

import trainattn.protocols.temporalwiki as twiki
from trainattn.config import CKLConfig, ThetaConfig
from trainattn.core.train_attention import TrainAttention
from trainattn.files import write_json_atomic
from trainattn.methods import make_method
from trainattn.protocols.store import method_phi, phi_fingerprint, versions
from trainattn.protocols.temporalwiki import (
    run_temporalwiki,
    score_period,
    select_probes,
    twiki_proxy_documents,
)
from trainattn.report.figures import plot_twiki
from trainattn.report.paper import TWIKI_PROBE_COUNTS, TWIKI_TABLE2
from trainattn.report.temporalwiki import paper_twiki_result, relative_to, twiki_vs_paper_rows
from trainattn.studies.open_questions import chapter_versions, runs_hardware
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
    rows = {p: {k: [fact(f"{k[0]}{i}", "r", f"o{k[0]}{i}") for i in range(6)] for k in ("changed", "unchanged")}
            for p in PROBES}
    chosen = select_probes(("0910", "1011"), rows, max_probes=3, seed=5)
    assert all(len(chosen[p][k]) == 3 for p in chosen for k in chosen[p])
    assert chosen == select_probes(("0910", "1011"), rows, max_probes=3, seed=5)
    drawn = {k: [r["subject"][1:] for r in chosen["0910"][k]] for k in ("changed", "unchanged")}
    assert drawn["changed"] != drawn["unchanged"]  # each set has its own draw
    with pytest.raises(ValueError, match="no entry for period"):
        select_probes(("1112",), rows)
    cfg = CKLConfig(theta=ThetaConfig(model="tiny", lora_rank=4, lora_alpha=8, max_length=96),
                    benchmark="temporalwiki", batch_size=2, eval_batch_size=8, seed=5)
    model = tiny_llama(len(tokenizer), seed=0)
    before = score_period(model, tokenizer, cfg, chosen["0910"], progress=False)
    assert before["changed"]["n"] == 3 and math.isfinite(before["avg"]["nll"])
    # the run scores exactly these sets and trains on the same proxy documents as subsampling inside it
    # (the proxies' unchanged facts come from the whole set minus the scored ones, so pass both)
    a = run_temporalwiki(cfg, tiny_llama(len(tokenizer), seed=0), tokenizer, periods=("0910",),
                         probes_by_period=rows, max_probes=3, source_label="proxy", progress=False)
    docs = twiki_proxy_documents(("0910",), chosen, rows, seed=5, tokenizer=tokenizer, max_length=96)
    assert docs["0910"].info["n_context_facts"] > 0
    b = run_temporalwiki(cfg, tiny_llama(len(tokenizer), seed=0), tokenizer, periods=("0910",),
                         documents_by_period=docs, probes_by_period=chosen, progress=False)
    assert a["results"] == b["results"] and a["sizes"] == b["sizes"] and a["documents"] == b["documents"]
    assert b["source"] == "proxy" and b["proxy_version"] == docs["0910"].info["proxy_version"]


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


def test_chapter07_versions_name_where_its_runs_were_computed(tmp_path):
    # chapter 07 read H200 runs back on a CPU and wrote "cpu (2 cores)": the runs' hardware must win
    here = versions()["hardware"]
    assert chapter_versions(tmp_path / "none")["hardware"] == here  # no run record: this process
    for i, folder in enumerate(("reference/seed-0/taalm", "reference/seed-0/oracle", "paired_all/base/meta")):
        write_json_atomic(tmp_path / folder / "result.json", {"versions": {"hardware": "NVIDIA H200"}, "i": i})
    write_json_atomic(tmp_path / "paired_all" / "base" / "row.json", {"row": {}})  # not a run record
    write_json_atomic(tmp_path / "x" / "result.json", [1, 2])
    assert runs_hardware(tmp_path) == ["NVIDIA H200"]
    v = chapter_versions(tmp_path)
    assert v["hardware"] == "NVIDIA H200" and v["executed_on"] == here and v["runs_hardware"] == ["NVIDIA H200"]
    write_json_atomic(tmp_path / "cpu_run" / "result.json", {"versions": {"hardware": "cpu (2 cores)"}})
    assert chapter_versions(tmp_path)["hardware"] == "NVIDIA H200 + cpu (2 cores)"


def test_vs_untrained_gives_a_direction_only_where_the_intervals_separate():
    from trainattn.report.temporalwiki import VS_UNTRAINED_HEADER, vs_untrained

    def block(nll, acc, ci=True):
        out = {"nll": nll, "acc": acc}
        if ci:
            out |= {"nll_ci95": [nll - 0.2, nll + 0.2], "acc_ci95": [acc - 0.02, acc + 0.02]}
        return out

    def period(p, nll, acc, ci=True):
        return {"period": p, "changed": block(nll, acc, ci), "unchanged": block(9.0, 0.1, ci)}

    before = {p: {k: block(7.0, 0.1) for k in ("changed", "unchanged")} for p in ("0910", "1011")}
    results = {"finetune": {"results": [period("0910", 10.2, 0.14), period("1011", 8.9, 0.16)]},
               "taalm": {"results": [period("0910", 6.5, 0.3), period("1011", 7.1, 0.3)]}}
    rows, verdicts = vs_untrained(results, before)
    assert len(VS_UNTRAINED_HEADER) == len(rows[0]) == 8
    assert rows[0] == ["finetune", "0910", "7.000 [6.800, 7.200] → 10.200 [10.000, 10.400]", "above",
                       "0.100 [0.080, 0.120] → 0.140 [0.120, 0.160]", "level",  # touching intervals
                       "7.000 [6.800, 7.200] → 9.000 [8.800, 9.200]", "0.100 [0.080, 0.120] → 0.100 [0.080, 0.120]"]
    assert verdicts["finetune"] == {"changed_nll": ["above", "above"], "changed_acc": ["level", "above"],
                                    "changed_nll_below": False, "changed_acc_above": False}
    # 1011: 7.1 ± 0.2 overlaps 7.0 ± 0.2, so TAALM's NLL is level there, not below
    assert verdicts["taalm"]["changed_nll"] == ["below", "level"] and verdicts["taalm"]["changed_nll_below"] is False
    assert verdicts["taalm"]["changed_acc_above"] is True
    # a record without per-probe scores claims nothing
    rows, verdicts = vs_untrained({"x": {"results": [period("0910", 6.0, 0.2, ci=False)]}}, before)
    assert verdicts["x"] == {"changed_nll": [None], "changed_acc": [None], "changed_nll_below": None,
                             "changed_acc_above": None}
    assert rows[0][2] == "7.000 [6.800, 7.200] → 6.000" and rows[0][3] == "–"


def test_period_verdicts_compare_two_methods_per_period():
    from trainattn.report.temporalwiki import every_period, period_verdicts

    def result(*avgs):
        return {"results": [{"period": p, "avg": {"nll": a, "nll_ci95": [a - 0.1, a + 0.1]}}
                            for p, a in zip(("0910", "1011", "1112"), avgs, strict=False)]}

    assert period_verdicts(result(6.0, 6.0, 6.0), result(8.0, 6.1, 5.0)) == ["below", "level", "above"]
    assert period_verdicts(result(6.0, 6.0), result(8.0)) == ["below", None]  # b lacks 1011
    assert every_period(["below", "below"], "below") is True and every_period(["below", "level"], "below") is False
    assert every_period(["below", None], "below") is None and every_period([], "below") is None
