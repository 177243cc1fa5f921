"""LAMA-CKL pooled across tailored splits: the hierarchical bootstrap, the pooled summary, its
figure and table."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from trainattn.core.intervals import RunFacts, bootstrap, bootstrap_splits  # noqa: E402
from trainattn.protocols.grid import BY_SPLIT_KEYS, summarise, summarise_splits  # noqa: E402


def facts(learn_by_epoch, nf_by_epoch, **kw):
    return RunFacts(np.array(learn_by_epoch, dtype=float), np.array(nf_by_epoch, dtype=float), **kw)


def learned(k, n=20):
    """One run that learns ``k`` of ``n`` TO-LEARN facts at epoch 1 and keeps 4 of 5 NOT-TO-FORGET."""
    return facts([[0] * n, [1] * k + [0] * (n - k)], [[1] * 5, [1] * 4 + [0]])


def width(ci):
    return ci[1] - ci[0]


def test_one_split_is_bootstrap_exactly():
    runs = [learned(5), learned(9)]
    assert bootstrap_splits([runs], n_boot=200) == bootstrap(runs, n_boot=200) | {"splits": 1}
    val = [facts(r.to_learn, r.not_to_forget, chosen_epoch=1, facts=np.arange(10)) for r in runs]
    assert bootstrap_splits([val], n_boot=100) == bootstrap(val, n_boot=100) | {"splits": 1}


def test_pooled_point_is_the_mean_of_split_means():
    a = [learned(10), learned(5)]  # Top Acc 0.5, 0.25: split mean 0.375; NF 0.8
    b = [facts([[0, 0], [1, 1]], [[1, 1], [1, 1]])]  # other fact counts: Top Acc 1.0, NF 1.0
    p = bootstrap_splits([a, b], n_boot=50)
    assert p["splits"] == 2
    assert p["top_acc"] == pytest.approx((0.375 + 1.0) / 2)  # not the run mean (0.5 + 0.25 + 1) / 3
    assert p["nf_acc"] == pytest.approx((0.8 + 1.0) / 2)
    assert p["total_knowledge"] == pytest.approx((1.175 + 2.0) / 2)
    assert bootstrap_splits([a, b], n_boot=50) == p  # seeded
    assert bootstrap_splits([a, b], n_boot=50, seed=1) != p


def test_split_to_split_variance_widens_the_pooled_interval():
    low, high = [learned(2), learned(3)], [learned(18), learned(17)]  # ≈ 0.125 and ≈ 0.875
    own = [bootstrap(split, n_boot=300)["top_acc_ci95"] for split in (low, high)]
    pooled = bootstrap_splits([low, high], n_boot=300)
    assert pooled["top_acc"] == pytest.approx(0.5)
    assert all(width(pooled["top_acc_ci95"]) > width(ci) for ci in own)
    # a quarter of the draws pick the low split twice, a quarter the high one twice
    assert pooled["top_acc_ci95"][0] < own[0][1] and pooled["top_acc_ci95"][1] > own[1][0]
    assert pooled["nf_acc_ci95"][0] <= 0.8 <= pooled["nf_acc_ci95"][1]


def test_facts_are_checked_within_a_split_only():
    with pytest.raises(ValueError, match=r"split 1: the runs were scored on different numbers of facts "
                                         r"\(TO-LEARN \+ NOT-TO-FORGET per run: 20 \+ 5, 2 \+ 1\)"):
        bootstrap_splits([[learned(3)], [learned(3), facts([[0, 1]], [[1]])]])
    with pytest.raises(ValueError, match="split 1: bootstrap needs at least one run"):
        bootstrap_splits([[learned(3)], []])
    with pytest.raises(ValueError, match="at least one split"):
        bootstrap_splits([])


def result(method, seed, learn, nf, lr=1e-3, val_indices=(0,), per_fact=True):
    """A LAMA-CKL result dict as the grid returns it, from per-fact rows ``[epochs + 1, n]``."""
    learn, nf = np.array(learn, dtype=float), np.array(nf, dtype=float)
    acc, nf_acc = learn.mean(axis=1), nf.mean(axis=1)
    best = int(acc.argmax())
    rest = [i for i in range(learn.shape[1]) if i not in val_indices]
    val_epoch = int(learn[:, list(val_indices)].mean(axis=1).argmax())
    curves = {"to_learn": {"acc": acc.tolist()}, "not_to_forget": {"acc": nf_acc.tolist()}}
    if per_fact:
        curves["per_fact"] = {"to_learn": learn.tolist(), "not_to_forget": nf.tolist()}
    return {"method": method, "seed": seed, "labels": {}, "config": {"lr": lr}, "epochs_trained": len(acc) - 1,
            "val_indices": list(val_indices), "curves": curves,
            "metrics": {"test_chosen": {"top_acc": acc[best], "epoch": best, "nf_acc": nf_acc[best],
                                        "total_knowledge": acc[best] + nf_acc[best]},
                        "val_chosen": {"epoch": val_epoch, "to_learn_rest_acc": learn[val_epoch, rest].mean(),
                                       "nf_acc": nf_acc[val_epoch]}}}


ZERO = [0, 0, 0, 0]
SPLITS = {
    42: [result("finetune", 0, [ZERO, [1, 0, 0, 0]], [[1, 1], [1, 0]]),   # Top Acc .25, NF .5
         result("finetune", 1, [ZERO, [1, 1, 0, 0]], [[1, 1], [1, 1]]),   # .5, 1
         result("taalm", 0, [ZERO, [1, 1, 1, 0]], [[1, 1], [1, 1]], lr=3e-4)],  # .75, 1
    7: [result("finetune", 0, [[0, 0, 0], [1, 1, 1]], [[1, 0], [0, 0]], lr=3e-3)],  # 1.0, 0; θ: 0, .5
}


@pytest.fixture(scope="module")
def real():
    """``summarise_splits(SPLITS)``, computed once (2000 bootstrap draws per interval)."""
    return summarise_splits(SPLITS)


def test_summarise_splits_pools_split_means_and_keeps_each_split(real):
    s = real
    ft, taalm = s["finetune"], s["taalm"]
    for split, results in SPLITS.items():
        alone = summarise(results)["finetune"]
        assert ft["by_split"][str(split)] == {k: alone[k] for k in BY_SPLIT_KEYS}
    assert ft["by_split"]["42"]["top_acc_mean"] == pytest.approx(0.375) and ft["by_split"]["42"]["seeds"] == [0, 1]
    assert ft["splits"] == [7, 42] and ft["n_runs"] == 3 and ft["lr"] == [1e-3, 3e-3]
    assert ft["top_acc_mean"] == pytest.approx((0.375 + 1.0) / 2)
    assert ft["nf_acc_mean"] == pytest.approx((0.75 + 0.0) / 2)
    assert ft["total_knowledge_mean"] == pytest.approx((1.125 + 1.0) / 2)
    assert ft["val_top_acc_mean"] == pytest.approx((np.mean([0, 1 / 3]) + 1.0) / 2)  # facts 1.. only
    assert ft["top_acc_ci95"][0] <= ft["top_acc_mean"] <= ft["top_acc_ci95"][1]
    assert ft["val_top_acc_ci95"] is not None and ft["total_knowledge_ci95"] is not None
    # taalm ran on split 42 only: pooled over that split, which is its own summary
    assert taalm["splits"] == [42] and set(taalm["by_split"]) == {"42"} and taalm["lr"] == 3e-4
    assert taalm["top_acc_mean"] == taalm["by_split"]["42"]["top_acc_mean"] == pytest.approx(0.75)
    # θ before training: epoch 0 of each split's first run
    untrained = s["untrained"]
    assert untrained["splits"] == [7, 42] and untrained["top_acc_mean"] == 0.0
    assert untrained["nf_acc_mean"] == pytest.approx((1.0 + 0.5) / 2) and untrained["top_acc_ci95"] == [0.0, 0.0]
    assert untrained["by_split"]["7"]["nf_acc_mean"] == 0.5


def test_summarise_splits_without_per_fact_scores_or_intervals(real):
    old = {**SPLITS, 7: [result("finetune", 0, [[0, 0, 0], [1, 1, 1]], [[1, 0], [0, 0]], per_fact=False)]}
    s = summarise_splits(old)
    assert s["finetune"]["top_acc_ci95"] is None and s["finetune"]["val_top_acc_ci95"] is None
    assert s["taalm"]["top_acc_ci95"] is not None  # all its runs have per-fact scores
    assert s["untrained"]["splits"] == [42]  # split 7 has no run to read θ from
    plain = summarise_splits(SPLITS, intervals=False)
    assert "untrained" not in plain and plain["finetune"]["top_acc_ci95"] is None
    assert plain["finetune"]["top_acc_mean"] == real["finetune"]["top_acc_mean"]


def pooled(top, ci, by_split, total=None, tci=None):
    total = top + 0.8 if total is None else total
    return {"top_acc_mean": top, "top_acc_ci95": ci, "nf_acc_mean": 0.8, "nf_acc_ci95": [0.75, 0.85],
            "total_knowledge_mean": total, "total_knowledge_ci95": tci or [total - 0.05, total + 0.05],
            "splits": sorted(int(k) for k in by_split),
            "by_split": {k: {"top_acc_mean": v, "top_acc_ci95": None} for k, v in by_split.items()}}


SUMMARY = {"finetune": pooled(0.05, [0.02, 0.09], {"42": 0.04, "7": 0.06}),
           "rho1": pooled(0.1, [0.04, 0.2], {"42": 0.15, "7": 0.05}),
           "taalm": pooled(0.3, [0.25, 0.36], {"42": 0.3}, total=1.2, tci=[1.1, 1.3])}


SUMMARY_SPLITS = {"taalm": {"splits": [42]}, "finetune": {"splits": [7, 42]}}


def test_headline_reads_a_pooled_summary(real):
    from trainattn.report.tables import fair_rows, headline

    h = headline(real, "taalm", ["finetune"])
    assert h["best_baseline"] == "finetune" and h["ratio"] == pytest.approx(0.75 / 0.6875)
    assert h["top_acc_vs_best"] in ("above", "level", "below")
    rows = fair_rows(real, ["finetune", "taalm"])  # the pooled summary has the keys the fair table reads
    assert [r[0] for r in rows] == ["untrained θ (epoch 0)", "finetune", "taalm"] and rows[1][1] == "0.001, 0.003"
    h = headline(SUMMARY, "taalm", ["finetune", "rho1"])
    assert h["best_baseline"] == "rho1" and h["ratio"] == pytest.approx(3.0) and h["top_acc_vs_best"] == "above"
    assert h["total_knowledge_vs"] == {"finetune": "above", "rho1": "above"}


def test_split_rows_one_column_per_split(real):
    from trainattn.report.tables import markdown_table, split_header, split_rows

    header = split_header(SUMMARY)
    assert header[:3] == ["method", "Top Acc, split 7 [95 % CI]", "Top Acc, split 42 [95 % CI]"]
    rows = split_rows(SUMMARY, ["taalm", "finetune", "kadapter"])  # kadapter not run: left out
    assert rows == [["taalm", "–", "0.300", "0.300 [0.250, 0.360]", "0.800 [0.750, 0.850]",
                     "1.200 [1.100, 1.300]", 1],
                    ["finetune", "0.060", "0.040", "0.050 [0.020, 0.090]", "0.800 [0.750, 0.850]",
                     "0.850 [0.800, 0.900]", 2]]
    assert [len(r) for r in rows] == [len(header)] * 2
    assert markdown_table(header, rows).splitlines()[2].startswith("| taalm | – | 0.300 |")
    assert [r[0] for r in split_rows(real)] == ["untrained θ (epoch 0)", "finetune", "taalm"]


def test_split_spread_draws_a_dot_per_split_and_an_error_bar_per_method(real):
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer
    from matplotlib.figure import Figure

    from trainattn.report.figures import split_spread

    fig = split_spread(SUMMARY)
    ax = fig.axes[0]
    assert isinstance(fig, Figure)
    assert sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 3
    dots = {c.get_label(): c.get_offsets() for c in ax.collections if c.get_label().startswith("split")}
    assert list(dots) == ["split 7", "split 42"]
    assert len(dots["split 7"]) == 2 and len(dots["split 42"]) == 3  # taalm has no split 7
    assert [t.get_text() for t in ax.get_xticklabels()] == ["finetune", "rho1", "taalm\n(1 of 2 splits)"]
    plt.close(fig)
    fig, ax = plt.subplots()
    assert split_spread(real, ["taalm"], ax=ax) is fig
    assert sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 1
    plt.close(fig)


def test_split_diagnostics_reads_difficulty_and_phi_training_per_split(tmp_path):
    from trainattn.files import write_json_atomic
    from trainattn.report.figures import plot_phi_validations
    from trainattn.studies.splits import phi_validations, split_diagnostics

    def result(method, top):
        return {"method": method, "seed": 0, "config": {"lr": 1e-3},
                "curves": {"to_learn": {"acc": [0.0, top]}, "not_to_forget": {"acc": [1.0, 0.9]}},
                "metrics": {"test_chosen": {"top_acc": top, "epoch": 1, "nf_acc": 0.9, "total_knowledge": top + 0.9}}}

    def validation(step, phi_nll, weight):
        return {"step": step, "phi": {"nll": phi_nll, "accuracy": 0.0}, "uniform": {"nll": 8.0, "accuracy": 0.0},
                "weight_object": weight, "weight_other": 0.1}

    for split, vals in ((42, [validation(0, 8.1, 0.9), validation(13, 6.0, 0.4), validation(26, 6.5, 0.2)]),
                        (7, [validation(0, 8.1, 0.9), validation(13, 8.2, 0.8)])):
        write_json_atomic(tmp_path / str(split) / "result.json", {"validations": vals})
    (tmp_path / "42" / "best").mkdir()
    by_split = {42: [result("oracle", 0.5), result("taalm", 0.25), result("finetune", 0.05)],
                7: [result("oracle", 0.2), result("finetune", 0.04)]}
    rows = split_diagnostics(by_split, {42: tmp_path / "42" / "best", 7: tmp_path / "7"},
                             {42: {"phi_object_share": 0.3, "uniform_object_share": 0.05}})
    a, b = sorted(rows, key=lambda r: r["split"], reverse=True)
    assert [r["split"] for r in rows] == [7, 42]
    assert (a["oracle"], a["taalm"], a["taalm_of_oracle"]) == (0.5, 0.25, 0.5)
    assert a["phi_best_step"] == 13 and a["phi_val_gain"] == pytest.approx(2.0) and a["phi_share"] == 0.3
    assert a["phi_last_val_gain"] == pytest.approx(1.5)  # the last step (26) validated worse than step 13
    assert b["taalm"] is None and b["taalm_of_oracle"] is None and b["phi_share"] is None
    assert b["phi_best_step"] == 0 and b["phi_val_gain"] == pytest.approx(-0.1)  # φ never beat uniform
    assert b["phi_last_val_gain"] == pytest.approx(-0.2)
    assert phi_validations(tmp_path / "42")[1]["weight_object"] == 0.4
    with pytest.raises(FileNotFoundError, match="no meta-training result.json"):
        phi_validations(tmp_path / "missing")
    fig = plot_phi_validations(rows, tmp_path / "phi.png")
    assert (tmp_path / "phi.png").is_file() and len(fig.axes[0].lines) == 3  # two splits + the zero line


def test_pooled_waiting_names_the_splits_a_judged_method_lacks():
    from trainattn.report.tables import pooled_waiting

    assert pooled_waiting(SUMMARY_SPLITS, [7, 42], ["taalm", "finetune", "mixreview"]) == {
        "taalm": [7], "finetune": [], "finetune+mixreview": [7, 42]}
    assert pooled_waiting(None, [42], ["taalm"]) == {"taalm": [42]}


def _by_split(**splits):
    """``{split: (mean, [lo, hi])}`` → a pooled entry's ``by_split``."""
    return {"by_split": {str(s[1:]): {"top_acc_mean": m, "top_acc_ci95": ci} for s, (m, ci) in splits.items()}}


def test_explain_split_gaps_names_facts_or_phi_by_intervals():
    from trainattn.studies.splits import explain_split_gaps, split_gap_sentence

    level = {"taalm": _by_split(s7=(0.2, [0.1, 0.3]), s42=(0.3, [0.2, 0.4])),
             "oracle": _by_split(s7=(0.2, [0.1, 0.3]), s42=(0.3, [0.2, 0.4]))}
    assert explain_split_gaps(level) == {"pairs": [], "cause": "none"}
    assert "level across every pair" in split_gap_sentence(explain_split_gaps(level))
    # split 7's TAALM below split 42's: its oracle below too → facts; split 1234's oracle level → φ
    mixed = {"taalm": _by_split(s7=(0.1, [0.05, 0.15]), s42=(0.3, [0.2, 0.4]), s1234=(0.1, [0.05, 0.15])),
             "oracle": _by_split(s7=(0.1, [0.05, 0.15]), s42=(0.3, [0.25, 0.35]), s1234=(0.3, [0.2, 0.4]))}
    out = explain_split_gaps(mixed)
    assert [(p["lower"], p["higher"], p["cause"]) for p in out["pairs"]] == [(7, 42, "facts"), (1234, 42, "phi")]
    assert out["cause"] == "both"
    assert "split 7 is below split 42 (TAALM 0.100 against 0.300; oracle 0.100 against 0.300)" in \
        split_gap_sentence(out)
    only_phi = {"taalm": mixed["taalm"], "oracle": _by_split(s7=(0.3, [0.2, 0.4]), s42=(0.3, [0.25, 0.35]),
                                                                    s1234=(0.3, [0.2, 0.4]))}
    assert explain_split_gaps(only_phi)["cause"] == "phi"
    missing = {"taalm": _by_split(s7=(0.1, [0.05, 0.15]), s42=(0.3, [0.2, 0.4])), "oracle": _by_split(s42=(0.3, None))}
    assert explain_split_gaps(missing)["cause"] == "unknown"
