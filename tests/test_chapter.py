"""Chapter helpers: a notebook's parameters become the same configs the notebooks used to spell out."""

import json

import pytest

from trainattn.book.chapter import Chapter
from trainattn.config import CKLConfig, MetaConfig, PhiConfig, ThetaConfig

PARAMS = {
    "profile": "ci", "results_path": "out/results/04_lama_ckl.json", "model_name": "tiny", "device": "cpu",
    "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0, "max_length": 64, "epochs": 3, "lr": 3e-4,
    "batch_size": 4, "weight_decay": 0.01, "eval_batch_size": 16, "val_fraction": 0.25, "seed": 2,
    "methods": ["finetune", "taalm"], "n_to_learn": 10, "n_not_to_forget": 12, "phi_layers": 2,
    "inner_lr": 1e-4, "meta_steps": 5, "run_dir": None,
    "Path": object(),  # not a literal: ignored, like the imports in a notebook's namespace
}


def test_configs_from_parameters_equal_the_spelled_out_ones():
    chapter = Chapter(PARAMS)
    theta = ThetaConfig(model="tiny", lora_rank=8, lora_alpha=16, lora_dropout=0.0, max_length=64)
    assert chapter.ckl_config(method="taalm", n_to_learn=3, n_not_to_forget=4) == CKLConfig(
        theta=theta, method="taalm", n_to_learn=3, n_not_to_forget=4, epochs=3, lr=3e-4, batch_size=4,
        weight_decay=0.01, eval_batch_size=16, val_fraction=0.25, seed=2)
    assert chapter.meta_config(val_every=0) == MetaConfig(
        theta=theta, phi=PhiConfig(model="tiny", num_layers=2, lora_rank=8, lora_alpha=16),
        inner_lr=1e-4, meta_steps=5, val_every=0, seed=2)
    # a notebook's list of methods and its fact counts are not config fields of that name
    assert chapter.ckl_config().method_settings == {} and chapter.ckl_config().n_to_learn == CKLConfig().n_to_learn
    assert chapter.theta_config(lora_alpha=32).lora_alpha == 32


def test_missing_parameters_and_bad_split_sources_are_named():
    with pytest.raises(KeyError, match="no parameter 'model_name'"):
        Chapter({}).theta_config()
    with pytest.raises(ValueError, match="split_source must be one of"):
        Chapter({**PARAMS, "split_source": "mine"}).lama_ckl_split(None, None)


def test_results_companions_figures_and_work_folders_sit_beside_the_results(tmp_path):
    chapter = Chapter({**PARAMS, "results_path": str(tmp_path / "ci" / "04_lama_ckl.json")})
    assert chapter.work_dir() == tmp_path / "ci" / "04_lama_ckl_work"
    assert Chapter({**PARAMS, "run_dir": "runs/x"}).work_dir().as_posix() == "runs/x"
    assert chapter.figure_path("bars") == tmp_path / "ci" / "04_lama_ckl.bars.png"
    assert json.loads(chapter.write_results({"a": 1.5}).read_text()) == {"a": 1.5}
    assert chapter.write_companion("lama_ckl_summary", {"m": 1}) == tmp_path / "ci" / "lama_ckl_summary.json"


def test_the_recompute_line_names_the_notebook_even_under_another_results_file(tmp_path):
    params = {**PARAMS, "profile": "cpu", "results_path": str(tmp_path / "x.json")}
    assert Chapter(params).stem == "x"  # papermill: the book runner's results file is <stem>.json
    chapter = Chapter({**params, "__notebook__": "07_open_questions"})  # the plain runners name it
    assert chapter.stem == "07_open_questions" and "__notebook__" not in chapter.params
    assert chapter.provenance_note(tmp_path / "none") == "**Computed** while this book was built (no run records kept)."
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_text(json.dumps({"versions": {"hardware": "cpu"}}))
    note = chapter.provenance_note(tmp_path / "run")
    assert note.endswith("`trainattn book --profile cpu --notebooks 07_open_questions --recompute`.")


def test_chapter_04_cpu_runs_are_the_cli_grids_runs():
    """`trainattn ckl-grid --config configs/lama_ckl_cpu.yml` makes the runs chapter 04 reads back at the cpu profile."""
    import nbformat

    from trainattn.book.runner import load_profile, notebook_parameters
    from trainattn.config import load_config
    from trainattn.protocols.store import config_identity

    source = nbformat.read("notebooks/04_lama_ckl.ipynb", 4).cells[1].source
    params: dict = {}
    exec(source, {}, params)  # the parameters cell: plain literals
    params.update(notebook_parameters(load_profile("cpu"), "04_lama_ckl"))
    chapter_config = Chapter(params).ckl_config(n_to_learn=100, n_not_to_forget=100, method="rho1-paper", lr=3e-3)
    cli_config = load_config(CKLConfig, "configs/lama_ckl_cpu.yml", ["method=rho1-paper", "lr=0.003"])
    assert config_identity(chapter_config) == config_identity(cli_config)


def test_chapter_03_cpu_phi_is_the_cli_meta_training_run():
    """`trainattn meta-train --config configs/meta_smollm2_cpu.yml --split-seed S` meta-trains φ as chapter 03 does
    at the cpu profile (same settings; the pool is split the same way), so every split's φ follows one rule."""
    import nbformat

    from trainattn.book.runner import load_profile, notebook_parameters
    from trainattn.config import MetaConfig, load_config
    from trainattn.protocols.meta_training import _BOOKKEEPING, meta_pool_split
    from trainattn.protocols.store import config_identity

    source = nbformat.read("notebooks/03_meta_training.ipynb", 4).cells[1].source
    params: dict = {}
    exec(source, {}, params)
    params.update(notebook_parameters(load_profile("cpu"), "03_meta_training"))
    chapter = Chapter(params)
    rank = params["lora_rank"]
    chapter_config = chapter.meta_config(theta=chapter.theta_config(lora_alpha=2 * rank),
                                         phi=chapter.phi_config(lora_alpha=2 * rank))
    cli_config = load_config(MetaConfig, "configs/meta_smollm2_cpu.yml", [])
    def counted(config):
        return {k: v for k, v in config_identity(config).items() if k not in _BOOKKEEPING}

    assert counted(chapter_config) == counted(cli_config)
    pool = list(range(900))
    val, train, rest = meta_pool_split(pool, cli_config.val_size, cli_config.meta_steps * cli_config.meta_batch)
    assert (val, train, rest) == (pool[:16], pool[16:432], pool[432:])
    with pytest.raises(ValueError, match="fewer than 16 validation"):
        meta_pool_split(pool[:20], 16, 416)
