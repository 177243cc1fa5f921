import json
import os

import pytest

from trainattn.cli import build_parser, main
from trainattn.protocols.grid import summarise
from trainattn.report.figures import plot_curves
from trainattn.report.tables import LAMA_CKL_HEADER, lama_ckl_rows, lama_ckl_table, markdown_table

needs_data = pytest.mark.skipif(not os.environ.get("TRAINATTN_DATA"), reason="TRAINATTN_DATA not set")


@pytest.fixture
def model_dir(tmp_path, tokenizer, model):
    folder = tmp_path / "tiny-model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def fake_result(method, seed, to_learn, not_to_forget):
    from trainattn.protocols.lama_ckl import ckl_metrics

    return {
        "method": method, "seed": seed, "labels": {},
        "curves": {"to_learn": {"acc": to_learn}, "not_to_forget": {"acc": not_to_forget}},
        "metrics": {"test_chosen": ckl_metrics(to_learn, not_to_forget)},
    }


def test_summary_table_and_plot(tmp_path):
    results = [
        fake_result("finetune", 0, [0.0, 0.1, 0.05], [1.0, 0.8, 0.6]),
        fake_result("finetune", 1, [0.0, 0.2, 0.1], [1.0, 0.9, 0.7]),
        fake_result("oracle", 0, [0.0, 0.3, 0.4], [1.0, 0.9, 0.9]),
    ]
    s = summarise(results)
    assert s["finetune"]["top_acc_mean"] == pytest.approx(0.15)
    assert s["finetune"]["top_acc_std"] == pytest.approx(0.05 * 2**0.5)  # sample std of 0.1, 0.2
    assert s["finetune"]["total_knowledge_mean"] == pytest.approx((0.9 + 1.1) / 2)
    assert s["oracle"]["epoch_mean"] == 2 and s["oracle"]["seeds"] == [0]
    table = lama_ckl_table(results)
    assert table.index("oracle") < table.index("finetune")  # sorted by Top Acc
    assert lama_ckl_rows(results) == [["oracle", "0.400", "2.0", "0.900", "1.300", 1],
                                      ["finetune", "0.150 ± 0.071", "1.0", "0.850", "1.000 ± 0.141", 2]]
    assert table.splitlines()[2].split() == ["oracle", "0.400", "2.0", "0.900", "1.300", "1"]
    assert markdown_table(LAMA_CKL_HEADER, lama_ckl_rows(results)).splitlines()[3] == \
        "| finetune | 0.150 ± 0.071 | 1.0 | 0.850 | 1.000 ± 0.141 | 2 |"
    assert plot_curves(results, tmp_path / "curves.png").stat().st_size > 1000


def test_report_command_reads_result_folders(tmp_path, capsys):
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps(fake_result("rho1", 0, [0.0, 0.2], [1.0, 0.5])))
    assert main(["report", str(tmp_path / "runs")]) == 0
    assert "rho1" in capsys.readouterr().out


def test_boolean_overrides_are_real_booleans():
    from trainattn.config import CKLConfig, load_config

    args = build_parser().parse_args(["ckl", "--out", "x", "--set", "known_masking=false", "epochs=2"])
    config = load_config(CKLConfig, None, args.set)
    assert config.known_masking is False and config.epochs == 2
    with pytest.raises(ValueError, match="known_masking: expected bool"):
        load_config(CKLConfig, None, ["known_masking=maybe"])


@needs_data
def test_probe_eval_prints_every_split_and_form(model_dir, capsys, tmp_path):
    out = tmp_path / "probe.json"
    assert main(["probe-eval", "--model", str(model_dir), "--limit", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = [line.split() for line in printed.splitlines()]
    table = {(cells[0], cells[1]) for cells in lines if len(cells) == 7}
    for split in ("variant", "invariant_descriptive", "invariant_schematic"):
        assert {(split, "descriptive"), (split, "schematic")} <= table
    rows = json.loads(out.read_text())["results"]
    assert len(rows) == 6 and all(r["n"] == 3 and r["n_not_located"] == 0 for r in rows)


@needs_data
def test_ckl_command_runs_a_tiny_experiment(model_dir, tmp_path, capsys):
    from trainattn.data import load_lama_ckl
    from trainattn.files import write_text_atomic

    tailored = tmp_path / "tailored"
    variant = [dict(r) for r in load_lama_ckl("variant").select(range(4))]
    invariant = [dict(r) for r in load_lama_ckl("invariant_descriptive").select(range(4))]
    for name, rows in (("to_learn", variant), ("not_to_forget", invariant), ("meta_pool", [])):
        write_text_atomic(tailored / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_text_atomic(tailored / "stats.json", "{}")
    code = main(["ckl", "--method", "oracle", "--tailored", str(tailored), "--out", str(tmp_path / "run"),
                 "--set", f"theta.model={model_dir}", "epochs=1", "n_to_learn=4", "n_not_to_forget=4",
                 "batch_size=2", "theta.lora_rank=2", "val_fraction=0.25"])
    assert code == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["method"] == "oracle" and len(result["curves"]["to_learn"]["acc"]) == 2
    assert "Top Acc" in capsys.readouterr().out


def test_errors_are_reported_not_raised(capsys):
    assert main(["ckl", "--out", "x", "--set", "epochs=abc"]) == 2
    assert "epochs: expected int" in capsys.readouterr().err


@needs_data
def test_ckl_command_runs_temporalwiki_with_labelled_proxy_documents(model_dir, tmp_path, capsys):
    code = main(["ckl", "--benchmark", "temporalwiki", "--twiki-documents", "proxy", "--max-probes", "2",
                 "--out", str(tmp_path / "tw"), "--set", f"theta.model={model_dir}", "batch_size=2",
                 "theta.lora_rank=2"])
    assert code == 0
    result = json.loads((tmp_path / "tw" / "result.json").read_text())
    assert result["source"] == "proxy"
    assert "proxy" in capsys.readouterr().out


@needs_data
def test_meta_train_then_validate_then_taalm_end_to_end(model_dir, tmp_path, capsys):
    from trainattn.data import load_lama_ckl
    from trainattn.files import write_text_atomic

    tailored = tmp_path / "tailored"
    variant = [dict(r) for r in load_lama_ckl("variant").select(range(10))]
    invariant = [dict(r) for r in load_lama_ckl("invariant_descriptive").select(range(2))]
    for name, rows in (("to_learn", variant[:2]), ("not_to_forget", invariant), ("meta_pool", variant[2:])):
        write_text_atomic(tailored / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_text_atomic(tailored / "stats.json", "{}")
    tiny = [f"theta.model={model_dir}", f"phi.model={model_dir}", "phi.num_layers=1", "theta.lora_rank=2",
            "phi.lora_rank=2", "theta.max_length=64", "meta_steps=2", "meta_batch=2", "val_size=2",
            "val_epochs=1", "val_every=1", "checkpoint_every=1"]
    phi_run = tmp_path / "phi"
    assert main(["meta-train", "--tailored", str(tailored), "--out", str(phi_run), "--set", *tiny]) == 0
    meta = json.loads((phi_run / "result.json").read_text())
    assert meta["finished"] and [v["step"] for v in meta["validations"]] == [0, 1, 2]
    assert {"phi", "uniform", "weight_object", "weight_other"} <= set(meta["validations"][-1])
    out = tmp_path / "val.json"
    assert main(["meta-validate", "--phi", str(phi_run), "--tailored", str(tailored), "--examples-used", "4",
                 "--size", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["size"] == 2
    code = main(["ckl", "--method", "taalm", "--phi", str(phi_run), "--tailored", str(tailored),
                 "--out", str(tmp_path / "taalm"), "--set", f"theta.model={model_dir}", "epochs=1",
                 "n_to_learn=2", "n_not_to_forget=2", "batch_size=2", "theta.lora_rank=2"])
    assert code == 0
    assert json.loads((tmp_path / "taalm" / "result.json").read_text())["method"] == "taalm"
    capsys.readouterr()
    shipped = tmp_path / "shipped"
    assert main(["export-phi", str(phi_run), str(shipped)]) == 0
    assert sorted(p.name for p in shipped.iterdir()) == ["phi.safetensors", "state.json"]
    from trainattn.protocols.store import phi_fingerprint

    assert json.loads((shipped / "state.json").read_text())["phi_sha256"] == phi_fingerprint(phi_run)
    capsys.readouterr()
    assert main(["weights", "--phi", str(shipped), "the", "capital", "of", "France"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "meta-training step 2" in lines[0]
    from trainattn.testing import tiny_tokenizer

    n_targets = len(tiny_tokenizer()("the capital of France")["input_ids"]) - 1
    weights = [float(line.rstrip("█ ").split()[-1]) for line in lines[1:]]
    assert len(weights) == n_targets and all(0 < w < 1 for w in weights)


def test_weights_without_a_trained_phi_names_the_folder(tmp_path, capsys):
    assert main(["weights", "--phi", str(tmp_path / "none"), "some text"]) == 2
    assert "no trained φ" in capsys.readouterr().err


def test_token_weight_text_draws_one_bar_per_token():
    from trainattn.report.figures import token_weight_text

    text = token_weight_text(["Paris", "\n", "."], [0.002, 0.001, 0.0], width=10).splitlines()
    assert text == ["Paris      0.002  ██████████", "\\n         0.001  █████", ".              0  "]
