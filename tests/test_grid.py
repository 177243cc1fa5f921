import math

import pytest
import torch
from safetensors.torch import save_file
from test_ckl import NOT_TO_FORGET, REVIEW, TO_LEARN, config

import trainattn.protocols.grid as grid
from trainattn.errors import TrainattnError
from trainattn.files import read_json, write_json_atomic
from trainattn.methods import uses_phi
from trainattn.protocols.grid import SUMMARY_KEYS, lama_ckl_summary, run_dir_for, run_lama_ckl_grid
from trainattn.protocols.store import Run, data_fingerprint, phi_fingerprint, run_identity
from trainattn.report.tables import ratio
from trainattn.testing import tiny_llama


def grid_run(tokenizer, root, methods=("finetune", "oracle"), seeds=(0, 1), calls=None, **kw):
    def load_model():
        if calls is not None:
            calls.append(1)
        return tiny_llama(len(tokenizer), seed=0), tokenizer

    return run_lama_ckl_grid(config(epochs=1), methods, seeds, TO_LEARN, NOT_TO_FORGET, root, load_model,
                             review_rows=REVIEW, progress=False, log=None, **kw)


def test_grid_runs_each_method_and_seed_once_then_reads_back(tokenizer, tmp_path):
    calls = []
    first = grid_run(tokenizer, tmp_path, calls=calls)
    assert len(calls) == 4
    assert [(r["method"], r["seed"]) for r in first] == [("finetune", 0), ("oracle", 0), ("finetune", 1),
                                                          ("oracle", 1)]
    assert (run_dir_for(tmp_path, "oracle", 1) / "result.json").is_file()
    again = grid_run(tokenizer, tmp_path, calls=calls)
    assert len(calls) == 4  # nothing recomputed
    assert [r["curves"] for r in again] == [r["curves"] for r in first]
    # seeds change the data order and LoRA init, so the two finetune runs differ
    assert first[0]["curves"]["train_loss"] != first[2]["curves"]["train_loss"]


def test_grid_refuses_a_run_made_with_another_config(tokenizer, tmp_path):
    grid_run(tokenizer, tmp_path, methods=("finetune",), seeds=(0,))
    path = run_dir_for(tmp_path, "finetune", 0) / "result.json"
    result = read_json(path)
    result["identity"]["config"]["lr"] = 0.5  # as if another grid had written this run
    write_json_atomic(path, result)
    with pytest.raises(TrainattnError, match="different config.lr"):
        grid_run(tokenizer, tmp_path, methods=("finetune",), seeds=(0,))


def fake_phi_run(folder, value):
    (folder / "checkpoint").mkdir(parents=True)
    save_file({"head.weight": torch.full((2,), value)}, folder / "checkpoint" / "phi.safetensors")
    return folder


def test_phi_fingerprint_changes_with_phi_and_names_missing_phi(tmp_path):
    a = phi_fingerprint(fake_phi_run(tmp_path / "a", 1.0))
    assert a == phi_fingerprint(tmp_path / "a") and len(a) == 64
    assert a != phi_fingerprint(fake_phi_run(tmp_path / "b", 2.0))
    with pytest.raises(FileNotFoundError, match="meta-train it first"):
        phi_fingerprint(tmp_path / "missing")


def test_taalm_run_is_refused_after_phi_changed(tokenizer, tmp_path, monkeypatch):
    phi_run = fake_phi_run(tmp_path / "phi", 1.0)
    taalm_dir = run_dir_for(tmp_path / "grid", "taalm", 0)
    cfg = config(epochs=1)
    from dataclasses import replace

    from trainattn.config import to_dict

    # a finished run made with this φ is read back; the same run after φ changed is refused
    run_config = replace(cfg, method="taalm", seed=0, phi_checkpoint=str(phi_run))
    fake = {"config": to_dict(run_config), "method": "taalm", "seed": 0,
            "metrics": {"test_chosen": {"top_acc": 0.5, "epoch": 1, "nf_acc": 1.0, "total_knowledge": 1.5}}}
    # as run_lama_ckl writes it: identity from the method, its φ module and the data
    identity = run_identity(run_config, method="taalm", phi_sha256=phi_fingerprint(phi_run),
                            data=data_fingerprint(TO_LEARN, NOT_TO_FORGET))
    Run(taalm_dir, identity).write_result(fake)
    kw = dict(methods=("taalm",), seeds=(0,), phi_run=phi_run, load_phi=lambda p: None)
    assert grid_run(tokenizer, tmp_path / "grid", **kw)[0]["phi_sha256"] == identity["phi_sha256"]
    save_file({"head.weight": torch.full((2,), 3.0)}, phi_run / "checkpoint" / "phi.safetensors")
    with pytest.raises(TrainattnError, match="different phi_sha256"):
        grid_run(tokenizer, tmp_path / "grid", **kw)


def test_phi_methods_need_phi(tokenizer, tmp_path):
    assert uses_phi("taalm+mixreview") and uses_phi("mixreview+taalm") and not uses_phi("rho1")
    with pytest.raises(ValueError, match="needs φ"):
        grid_run(tokenizer, tmp_path, methods=("taalm",), seeds=(0,))


def test_summary_has_the_issue_keys_and_sample_std():
    def fake(method, seed, top, nf):
        return {"method": method, "seed": seed, "labels": {},
                "metrics": {"test_chosen": {"top_acc": top, "epoch": 2, "nf_acc": nf, "total_knowledge": top + nf}}}

    s = lama_ckl_summary([fake("taalm", 0, 0.2, 0.9), fake("taalm", 1, 0.4, 0.7), fake("finetune", 0, 0.1, 0.8)])
    assert set(SUMMARY_KEYS) <= set(s["taalm"])
    assert s["taalm"]["top_acc_mean"] == pytest.approx(0.3)
    assert s["taalm"]["top_acc_std"] == pytest.approx(math.sqrt(0.02))  # (0.1² + 0.1²) / (2 - 1)
    assert s["taalm"]["total_knowledge_std"] == 0.0  # 1.1 both times
    assert s["taalm"]["seeds"] == [0, 1] and s["finetune"]["top_acc_std"] is None  # one seed: no spread
    assert s["taalm"]["top_acc_ci95"] is None  # no per-fact scores: no interval, and no untrained row
    assert "untrained" not in s


def test_ratio_handles_zero_baselines():
    assert ratio(0.3, 0.1) == pytest.approx(3.0)
    assert ratio(0.3, 0.0) == math.inf and math.isnan(ratio(0.0, 0.0))


def test_disjoint_review_rows_exclude_tested_facts(monkeypatch):
    import trainattn.data.tailor as tailor

    rows = [{"uuid": u, "invariant": inv} for u, inv in [("a", True), ("b", True), ("c", False), ("d", True)]]
    monkeypatch.setattr(tailor, "load_released_rows", lambda data_dir=None: rows)
    got = grid.disjoint_review_rows([{"uuid": "a"}], [{"uuid": "d"}])
    assert [r["uuid"] for r in got] == ["b"]


def test_paper_rows_by_canonical_name():
    from trainattn.report.paper import paper_row

    assert paper_row("taalm") == (0.4290, 4, 0.8983, 1.3273)
    assert paper_row("finetune+mixreview") == paper_row("mixreview") == (0.0800, 25, 0.7988, 0.8788)
    assert paper_row("taalm+recadam")[0] == 0.4360
    assert paper_row("oracle") is None  # the paper reports no oracle row


def test_paper_vs_ours_table_and_bars(tmp_path):
    from trainattn.report.figures import plot_summary_bars
    from trainattn.report.tables import PAPER_VS_OURS_HEADER, markdown_table, paper_vs_ours_rows

    summary = {
        "taalm": {"top_acc_mean": 0.25, "top_acc_std": 0.05, "epoch_mean": 2.0, "nf_acc_mean": 0.9,
                  "total_knowledge_mean": 1.15, "total_knowledge_std": 0.02, "seeds": [0, 1, 2]},
        "oracle": {"top_acc_mean": 0.3, "top_acc_std": 0.0, "epoch_mean": 3.0, "nf_acc_mean": 0.8,
                   "total_knowledge_mean": 1.1, "total_knowledge_std": 0.0, "seeds": [0]},
    }
    rows = paper_vs_ours_rows(summary, ["taalm", "oracle", "rho1"])  # rho1 not run: left out
    assert [r[0] for r in rows] == ["taalm", "oracle"]
    assert rows[0][1] == "0.250 ± 0.050" and rows[0][2] == 0.4290 and rows[1][1] == "0.300"
    table = markdown_table(PAPER_VS_OURS_HEADER, rows)
    assert table.splitlines()[2].startswith("| taalm | 0.250 ± 0.050 | 0.429 |")
    assert "| oracle | 0.300 | – |" in table  # the paper has no oracle row
    assert plot_summary_bars(summary, ["taalm", "oracle"], tmp_path / "bars.png").stat().st_size > 1000


def test_tuning_rows_last_and_best(tmp_path):
    from trainattn.config import MetaConfig, to_dict
    from trainattn.report.tables import TUNING_HEADER, tuning_rows

    def val(step, nll):
        return {"step": step, "phi": {"accuracy": 0.0, "nll": nll}, "uniform": {"accuracy": 0.0, "nll": 9.0},
                "weight_object": 0.5, "weight_other": 0.25}

    run = {"step": 4, "seconds": 120.0, "config": to_dict(MetaConfig(meta_batch=8)),
           "validations": [val(0, 9.0), val(2, 7.0), val(4, 8.0)]}
    for name in ("A_last", "B_best"):
        write_json_atomic(tmp_path / name / "meta_train_result.json", run)
    write_json_atomic(tmp_path / "B_best" / "selection.json", {"phi": "best"})
    write_json_atomic(tmp_path / "B_best" / "validate_unseen.json",
                      {**val(2, 5.0), "uniform": {"accuracy": 0.1, "nll": 6.0}, "size": 24})
    rows = tuning_rows(tmp_path)
    assert [len(r) for r in rows] == [len(TUNING_HEADER)] * 2
    a, b = rows
    assert a[0] == "A_last" and a[1] == 32 and a[7] == "2.0" and a[8] == 4 and a[10] == "8.00 / 9.00"
    assert a[11] == "–"  # no unseen validation
    assert b[8] == 2 and b[10] == "7.00 / 9.00" and b[11] == "0.000 / 0.100 (n=24)"


def test_old_results_become_records_the_grid_reads_back(tokenizer, tmp_path):
    from dataclasses import replace

    from trainattn.config import to_dict
    from trainattn.protocols.grid import import_results

    made = grid_run(tokenizer, tmp_path / "made", methods=("finetune",), seeds=(0,))[0]
    old = {k: v for k, v in made.items() if k != "phi_sha256"}
    base = config(epochs=1)  # the grid's base config (grid_run)
    old["config"] = {**to_dict(replace(base, method="finetune", seed=0)), "rho_keep": 0.6}  # pre-store format
    old["config"].pop("method_settings")
    paths = import_results([old], base, TO_LEARN, NOT_TO_FORGET, tmp_path / "records")
    assert paths == [run_dir_for(tmp_path / "records", "finetune", 0) / "result.json"]
    calls = []
    again = grid_run(tokenizer, tmp_path / "records", methods=("finetune",), seeds=(0,), calls=calls)[0]
    assert calls == [] and again["curves"] == made["curves"]  # read back, not recomputed
    wrong = {**old, "config": {**old["config"], "lr": 0.5}}
    with pytest.raises(TrainattnError, match="config lr differ"):
        import_results([wrong], base, TO_LEARN, NOT_TO_FORGET, tmp_path / "x")
    with pytest.raises(TrainattnError, match="made on"):
        import_results([old], base, TO_LEARN[:1], NOT_TO_FORGET, tmp_path / "y")


def test_a_read_back_run_gets_its_metrics_from_its_curves(tokenizer, tmp_path):
    import json

    from trainattn.protocols.lama_ckl import run_metrics

    made = grid_run(tokenizer, tmp_path, methods=("finetune",), seeds=(0,))[0]
    path = run_dir_for(tmp_path, "finetune", 0) / "result.json"
    record = json.loads(path.read_text())
    record["metrics"]["val_chosen"] = {"epoch": 99, "stale": True}  # written by an older rule
    path.write_text(json.dumps(record))
    calls = []
    again = grid_run(tokenizer, tmp_path, methods=("finetune",), seeds=(0,), calls=calls)[0]
    assert calls == [] and again["metrics"] == run_metrics(made["curves"]) == made["metrics"]


def test_learning_rate_chosen_on_validation_then_used_for_every_seed(tokenizer, tmp_path, monkeypatch):
    def fake_result(lr, seed, val_acc, val_nll):
        per_fact = {"to_learn": [[0] * 4, [1, 0, 1, 0]], "not_to_forget": [[1, 1], [1, 0]]}
        return {"method": "finetune", "seed": seed, "labels": {}, "config": {"lr": lr}, "epochs_trained": 1, "timings": [],
                "val_indices": [1, 3],
                "curves": {"to_learn": {"acc": [0, 0.5]}, "not_to_forget": {"acc": [1, 0.5]},
                           "val": {"acc": [0, val_acc], "nll": [9, val_nll]}, "per_fact": per_fact},
                "metrics": {"test_chosen": {"top_acc": 0.5, "epoch": 1, "nf_acc": 0.5, "total_knowledge": 1.0},
                            "val_chosen": {"epoch": 1, "val_acc": val_acc, "to_learn_rest_acc": 1.0,
                                           "nf_acc": 0.5}}}

    val = {0.1: (0.5, 2.0), 0.2: (0.5, 1.0), 0.3: (0.0, 0.5)}  # 0.2: as accurate as 0.1, lower NLL
    made = []

    def fake_run(config, model, tokenizer, *a, out_dir=None, **kw):
        made.append((config.lr, config.seed, out_dir))
        return fake_result(config.lr, config.seed, *val[config.lr])

    monkeypatch.setattr(grid, "run_lama_ckl", fake_run)
    results = grid_run(tokenizer, tmp_path, methods=("finetune",), seeds=(0, 1), lrs=(0.1, 0.2, 0.3))
    assert [(lr, seed) for lr, seed, _ in made] == [(0.1, 0), (0.2, 0), (0.3, 0), (0.2, 1)]
    assert made[1][2] == run_dir_for(tmp_path, "finetune", 0, 0.2) == tmp_path / "seed-0" / "finetune" / "lr-0.2"
    assert [r["seed"] for r in results] == [0, 1] and all(r["lr_choice"]["chosen"] == 0.2 for r in results)
    summary = grid.summarise(results)
    choice = lama_ckl_summary(results)["finetune"]["lr_choice"]
    assert [c["lr"] for c in choice["candidates"]] == [0.1, 0.2, 0.3] and choice["candidates"][2]["val_acc"] == 0.0
    s = summary["finetune"]
    assert s["lr"] == 0.2 and s["epochs"] == 1.0 and s["val_top_acc_mean"] == 1.0
    assert s["top_acc_ci95"][0] <= 0.5 <= s["top_acc_ci95"][1] and s["val_top_acc_ci95"] == [1.0, 1.0]
    untrained = summary["untrained"]
    assert untrained["top_acc_mean"] == 0 and untrained["nf_acc_mean"] == 1 and untrained["top_acc_ci95"] == [0, 0]


def test_a_run_counts_the_pools_its_method_reads(tokenizer, tmp_path):
    from trainattn.methods import method_pools

    assert method_pools("taalm+mixreview") == ("review_rows",) and method_pools("rho1-paper") == ("reference_rows",)
    assert method_pools("finetune") == ()
    grid_run(tokenizer, tmp_path, methods=("mixreview",), seeds=(0,))
    identity = read_json(run_dir_for(tmp_path, "mixreview", 0) / "result.json")["identity"]
    assert identity["pools"] == {"review_rows": data_fingerprint(REVIEW)}
    with pytest.raises(TrainattnError, match="different pools"):  # another replay pool: not this run
        run_lama_ckl_grid(config(epochs=1), ["mixreview"], [0], TO_LEARN, NOT_TO_FORGET, tmp_path,
                          lambda: (tiny_llama(len(tokenizer), seed=0), tokenizer), review_rows=REVIEW[:1],
                          progress=False, log=None)
    grid_run(tokenizer, tmp_path, methods=("finetune",), seeds=(0,))
    assert "pools" not in read_json(run_dir_for(tmp_path, "finetune", 0) / "result.json")["identity"]


def _record(folder, method, seed, lr, val_acc, val_nll, data="d42", val_indices=(1, 3)):
    per_fact = {"to_learn": [[0] * 4, [1, 0, 1, 0]], "not_to_forget": [[1, 1], [1, 0]]}
    curves = {"to_learn": {"acc": [0, 0.5]}, "not_to_forget": {"acc": [1, 0.5]},
              "val": {"acc": [0, val_acc], "nll": [9, val_nll]}, "to_learn_rest": {"acc": [0, 1.0]},
              "train_loss": [None, 1.0], "per_fact": per_fact}
    result = {"method": method, "seed": seed, "labels": {}, "config": {"lr": lr}, "epochs_trained": 1,
              "timings": [], "val_indices": list(val_indices), "curves": curves, "metrics": {"stale": True},
              "identity": {"data_sha256": data}}
    write_json_atomic(folder / "result.json", result)


def test_read_grid_chooses_the_rate_again_and_reads_every_seed_without_computing(tmp_path):
    from trainattn.protocols.grid import read_grid
    from trainattn.protocols.lama_ckl import run_metrics

    for lr, (acc, nll) in {0.1: (0.5, 2.0), 0.2: (0.5, 1.0), 0.3: (0.0, 0.5)}.items():
        _record(run_dir_for(tmp_path, "finetune", 0, lr), "finetune", 0, lr, acc, nll)
    _record(run_dir_for(tmp_path, "finetune", 1, 0.2), "finetune", 1, 0.2, 0.5, 1.5)
    _record(run_dir_for(tmp_path, "finetune", 1, 0.1), "finetune", 1, 0.1, 0.9, 0.1)  # not the chosen rate
    _record(run_dir_for(tmp_path, "rho1", 0, 0.1), "rho1", 0, 0.1, 0.5, 1.0)  # rho1's 0.2 still running
    (run_dir_for(tmp_path, "rho1", 0, 0.2)).mkdir(parents=True)
    results = read_grid(tmp_path)
    assert [(r["method"], r["seed"], r["config"]["lr"]) for r in results] == [("finetune", 0, 0.2), ("finetune", 1, 0.2)]
    assert all(r["lr_choice"] == {
        "chosen": 0.2, "rule": "best validation accuracy, then NLL", "seed": 0,
        "candidates": [{"lr": 0.1, "val_acc": 0.5, "val_nll": 2.0, "epochs_trained": 1},
                       {"lr": 0.2, "val_acc": 0.5, "val_nll": 1.0, "epochs_trained": 1},
                       {"lr": 0.3, "val_acc": 0.0, "val_nll": 0.5, "epochs_trained": 1}]} for r in results)
    assert results[0]["metrics"] == run_metrics(results[0]["curves"])  # recomputed, not the stored ones
    _record(run_dir_for(tmp_path, "oracle", 0), "oracle", 0, 0.1, 0.5, 1.0, data="d7")
    with pytest.raises(TrainattnError, match="2 different fact sets"):
        read_grid(tmp_path)
    with pytest.raises(TrainattnError, match="not a LAMA-CKL grid"):
        read_grid(tmp_path / "seed-0")


def test_seeds_with_different_validation_slices_are_summarised(tmp_path):
    from trainattn.protocols.grid import read_grid

    _record(run_dir_for(tmp_path, "finetune", 0), "finetune", 0, 1e-3, 0.5, 1.0, val_indices=(1, 3))
    _record(run_dir_for(tmp_path, "finetune", 1), "finetune", 1, 1e-3, 0.5, 1.0, val_indices=(0, 2))
    s = grid.summarise(read_grid(tmp_path))["finetune"]
    # epoch 1 learns facts 0 and 2: seed 0 counts them (1.0), seed 1 counts facts 1 and 3 (0.0)
    assert s["val_top_acc_ci95"] == [0.0, 1.0]
    assert s["top_acc_mean"] == 0.5 and s["top_acc_ci95"][0] <= 0.5 <= s["top_acc_ci95"][1]


def test_chosen_learning_rates_are_read_back_and_a_single_candidate_is_labelled_fixed(tmp_path):
    from trainattn.protocols.grid import (
        FIXED_LR_RULE,
        chosen_learning_rates,
        lr_choice_record,
        read_grid,
    )

    for lr, (acc, nll) in {0.1: (0.5, 2.0), 0.2: (0.5, 1.0)}.items():
        _record(run_dir_for(tmp_path, "finetune", 0, lr), "finetune", 0, lr, acc, nll)
    _record(run_dir_for(tmp_path, "rho1", 0, 0.1), "rho1", 0, 0.1, 0.5, 1.0)
    (run_dir_for(tmp_path, "rho1", 0, 0.2)).mkdir(parents=True)  # still running: no rate yet
    assert chosen_learning_rates(tmp_path) == {"finetune": 0.2}
    one = read_grid(tmp_path)[0]
    assert lr_choice_record({0.2: one})[1]["rule"] == FIXED_LR_RULE


def test_ckl_grid_lr_from_needs_a_chosen_rate_and_excludes_lrs(tmp_path, capsys):
    from trainattn.cli import main

    assert main(["ckl-grid", "--methods", "taalm", "--out", str(tmp_path), "--lrs", "1e-3",
                 "--lr-from", str(tmp_path)]) == 2
    assert "--lrs and --lr-from exclude each other" in capsys.readouterr().err


def test_ckl_pool_cli_pools_two_splits(tmp_path, capsys):
    from trainattn.cli import main

    for split, acc in ((42, 0.5), (7, 0.0)):
        for seed in (0, 1):
            _record(run_dir_for(tmp_path / str(split), "finetune", seed), "finetune", seed, 0.1, acc, 1.0, f"d{split}")
    out = tmp_path / "pooled.json"
    assert main(["ckl-pool", "--grid", f"42={tmp_path / '42'}", f"7={tmp_path / '7'}", "--out", str(out)]) == 0
    pooled = read_json(out)["finetune"]
    assert pooled["splits"] == [7, 42] and pooled["top_acc_mean"] == 0.5 and set(pooled["by_split"]) == {"7", "42"}
    assert "| finetune |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="SPLIT_SEED=FOLDER"):
        main(["ckl-pool", "--grid", str(tmp_path / "42")])


def test_recorded_grid_leaves_out_a_method_without_records_only_in_records_only_mode(tokenizer, tmp_path,
                                                                                     monkeypatch):
    from trainattn.protocols.store import RECORDS_ONLY_ENV, RecordMissingError

    first = grid_run(tokenizer, tmp_path, methods=("finetune", "oracle", "rho1"))
    (run_dir_for(tmp_path, "oracle", 1) / "result.json").unlink()

    def load_model():
        raise AssertionError("records-only mode must not train")

    kw = dict(to_learn_rows=TO_LEARN, not_to_forget_rows=NOT_TO_FORGET, run_root=tmp_path, load_model=load_model,
              review_rows=REVIEW, progress=False, log=None)
    monkeypatch.setenv(RECORDS_ONLY_ENV, "1")
    results, missing = grid.recorded_lama_ckl_grid(config(epochs=1), ["finetune", "oracle", "rho1"], [0, 1], **kw)
    assert [(r["method"], r["seed"]) for r in results] == [("finetune", 0), ("rho1", 0), ("finetune", 1), ("rho1", 1)]
    assert [r["curves"] for r in results] == [r["curves"] for r in first if r["method"] != "oracle"]
    assert list(missing) == ["oracle"] and missing["oracle"].folder == run_dir_for(tmp_path, "oracle", 1)
    with pytest.raises(RecordMissingError, match="seed-1/oracle/result.json: no finished run"):
        grid.recorded_lama_ckl_grid(config(epochs=1), ["finetune", "oracle"], [0, 1], required=["oracle"], **kw)
