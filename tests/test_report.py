"""The device check of the reproduction report: two runs of one config and seed compared."""

import pytest

from trainattn.files import write_json_atomic
from trainattn.report.tables import curves_agree_until, device_check_rows


def _run(to_learn, nf, loss1, hardware, top=0.3):
    return {"method": "taalm", "config": {"seed": 0}, "versions": {"hardware": hardware},
            "curves": {"to_learn": {"acc": to_learn}, "not_to_forget": {"acc": nf}, "train_loss": [None, loss1]},
            "metrics": {"test_chosen": {"top_acc": top, "epoch": 1, "nf_acc": nf[1], "total_knowledge": top + nf[1]}}}


def test_device_check_counts_the_epochs_whose_accuracies_agree(tmp_path):
    a = _run([0.0, 0.2, 0.3, 0.4], [1.0, 0.8, 0.7, 0.6], 2.5, "cpu (2 cores)")
    b = _run([0.0, 0.2, 0.3, 0.35], [1.0, 0.8, 0.7, 0.6], 2.25, "NVIDIA H200")
    assert curves_agree_until(a, b) == 3 and curves_agree_until(a, a) == 4
    c = _run([0.0, 0.2], [1.0, 0.9], 2.5, "x")
    assert curves_agree_until(a, c) == 1  # NOT-TO-FORGET differs at epoch 1
    write_json_atomic(tmp_path / "a" / "taalm.json", a)
    write_json_atomic(tmp_path / "b" / "taalm.json", b)
    header, rows = device_check_rows(tmp_path / "a", tmp_path / "b")
    assert header[3] == "epochs that agree (of 4)"
    assert rows == [["taalm", "cpu (2 cores)", "NVIDIA H200", 3, "0.300 / 0.300", "1 / 1", "0.800 / 0.800", "2.5e-01"]]
    b["config"] = {"seed": 1}
    write_json_atomic(tmp_path / "b" / "taalm.json", b)
    with pytest.raises(ValueError, match="different configs"):
        device_check_rows(tmp_path / "a", tmp_path / "b")


def test_ratio_rows_compare_each_method_with_finetune_on_both_sides():
    from trainattn.report.tables import ratio_rows

    def s(top, total, ci=None):
        return {"top_acc_mean": top, "total_knowledge_mean": total, "top_acc_ci95": ci}

    summary = {"finetune": s(0.05, 0.8, [0.03, 0.07]), "taalm": s(0.35, 1.3, [0.3, 0.4]),
               "rho1": s(0.04, 0.6, [0.02, 0.06]), "oracle": s(0.36, 1.0), "finetune+recadam": s(0.01, 0.9, [0.0, 0.02])}
    rows = {r[0]: r for r in ratio_rows(summary, ["taalm", "rho1", "oracle", "recadam", "kadapter"])}
    assert set(rows) == {"taalm", "rho1", "oracle", "recadam"}  # kadapter has no runs
    assert rows["taalm"][1] == pytest.approx(7.0) and rows["taalm"][2] == pytest.approx(0.429 / 0.115)
    assert rows["taalm"][5:] == ["above", "above"]
    assert rows["rho1"][5:] == ["level", "above"]  # 0.04 vs 0.05 with overlapping intervals: level
    assert rows["recadam"][5:] == ["below", "below"]  # [0, 0.02] wholly below [0.03, 0.07]
    assert rows["oracle"][2] is None and rows["oracle"][5:] == ["level", "–"]  # no interval: no claim
    assert ratio_rows({"taalm": s(0.3, 1.0)}, ["taalm"]) == []


def test_fair_rows_and_headline_use_intervals():
    from trainattn.report.tables import fair_rows, headline

    def s(top, ci, total, tci, lr=1e-3):
        return {"top_acc_mean": top, "top_acc_ci95": ci, "total_knowledge_mean": total, "total_knowledge_ci95": tci,
                "epoch_mean": 2.0, "nf_acc_mean": total - top, "lr": lr, "epochs": 5.0,
                "val_top_acc_mean": top, "val_top_acc_ci95": ci}

    summary = {"untrained": {**s(0.0, [0.0, 0.0], 1.0, [0.98, 1.0], None), "epochs": 0.0},
               "finetune": s(0.06, [0.03, 0.09], 0.9, [0.85, 0.95], 3e-3),
               "rho1": s(0.10, [0.07, 0.14], 1.0, [0.93, 1.05]),
               "taalm": s(0.33, [0.28, 0.38], 1.2, [1.1, 1.3])}
    rows = fair_rows(summary, ["finetune", "rho1", "taalm"])
    assert [r[0] for r in rows] == ["untrained θ (epoch 0)", "finetune", "rho1", "taalm"]
    assert rows[1][1] == "0.003" and rows[0][1] == "–" and rows[3][3] == "0.330 [0.280, 0.380]"
    assert [r[-1] for r in rows] == ["–", "–", "level", "above"]  # rho1's interval overlaps finetune's
    h = headline(summary, "taalm", ["finetune", "rho1", "kadapter"])
    assert h["best_baseline"] == "rho1" and h["ratio"] == pytest.approx(3.3) and h["top_acc_vs_best"] == "above"
    assert h["total_knowledge_vs"] == {"finetune": "above", "rho1": "above"}


def test_one_table_builder_for_sequences_and_dicts_with_formats():
    from trainattn.report.tables import markdown_table

    by_position = markdown_table(["name", "value", "norm"], [["a", 0.12345, 1234.5], ["b", None, float("nan")]])
    by_key = markdown_table([("name", "name"), ("value", "value"), ("norm", "norm")],
                            [{"name": "a", "value": 0.12345, "norm": 1234.5}, {"name": "b", "norm": float("nan")}])
    assert by_position == by_key == "\n".join([
        "| name | value | norm |", "|---|---|---|", "| a | 0.123 | 1234.500 |", "| b | – | – |"])
    formatted = markdown_table([("norm", "‖∇φ‖"), ("n", "n")], [{"norm": 1234.5, "n": 3}],
                               formats={"norm": ".2e", "n": lambda v: f"{v} seeds"})
    assert formatted.splitlines()[2] == "| 1.23e+03 | 3 seeds |"


def test_grid_change_rows_put_the_first_grid_beside_the_fair_one():
    from trainattn.report.tables import GRID_CHANGE_HEADER, grid_change_rows

    first = {"finetune": {"top_acc_mean": 0.058, "top_acc_std": 0.01, "total_knowledge_mean": 0.78,
                          "total_knowledge_std": 0.1},
             "finetune+mixreview": {"top_acc_mean": 0.062, "top_acc_std": None, "total_knowledge_mean": 0.8}}
    fair = {"finetune": {"top_acc_mean": 0.05, "top_acc_ci95": [0.03, 0.1], "total_knowledge_mean": 0.801,
                         "total_knowledge_ci95": [0.53, 0.89], "lr": 0.001, "epochs": 8.0},
            "finetune+mixreview": {"top_acc_mean": 0.07, "total_knowledge_mean": 0.9, "lr": 0.003, "epochs": None},
            "taalm": {"top_acc_mean": 0.29, "total_knowledge_mean": 0.96}}
    rows = grid_change_rows(first, fair, ["finetune", "mixreview", "taalm"])
    assert rows == [["finetune", "0.058 ± 0.010", "0.050 [0.030, 0.100]", "0.780 ± 0.100", "0.801 [0.530, 0.890]",
                     "0.001, 8.0"],
                    ["mixreview", "0.062", "0.070", "0.800", "0.900", "0.003, –"]]  # taalm: not in the first
    assert len(GRID_CHANGE_HEADER) == len(rows[0])
