"""The book: profiles, committed notebooks, tolerance comparison (nothing is executed by default)."""

from __future__ import annotations

import ast
import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml

from trainattn.book.runner import (
    PUBLISH_FALLBACK,
    PUBLISH_PROFILE,
    BookCheckError,
    check_profile,
    check_toc,
    companion_results,
    list_notebooks,
    load_profile,
    parameters_cell,
    run_book,
)
from trainattn.book.tolerances import band_for, compare_results, flatten, format_mismatches
from trainattn.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PROFILES = ("ci", "cpu", "gpu")


# ------------------------------------------------------------ committed notebooks


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_parameters_cell_holds_plain_literals(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0]
    for node in ast.parse("".join(tagged[0]["source"])).body:
        assert isinstance(node, ast.Assign), ast.dump(node)
        ast.literal_eval(node.value)  # raises on anything but a plain literal
    params = parameters_cell(path)
    assert {"profile", "results_path"} <= set(params)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_colab_badge_guarded_install_and_results_check(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    first_md = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    from trainattn.book.links import colab_url, install_spec

    url = colab_url(path.name, ROOT)
    assert url in "".join(first_md["source"])
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert '"google.colab" in sys.modules' in code[1] and install_spec(ROOT) in code[1]
    last = code[-1]
    assert ("results_path" in last or "chapter.write_results(" in last) and "assert" in last
    sources = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "## Results check" in sources
    assert "2407.16920" in sources or "NeurIPS 2024" in sources, "cite the paper at the top"


# ------------------------------------------------------------ profiles


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_sets_only_declared_parameters(profile):
    assert check_profile(profile, ROOT) == []


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_covers_every_notebook(profile):
    data = load_profile(profile, ROOT)
    assert "common" in data
    for path in NOTEBOOKS:
        # Without a section a notebook runs at its own (cpu-scale) defaults under this profile.
        assert path.stem in data, (f"notebooks/profiles/{profile}.yml has no section for "
                                   f"{path.stem}: add one with this profile's sizes")


def test_gpu_profile_is_paper_scale():
    data = load_profile("gpu", ROOT)
    assert data["common"]["model_name"] in {
        "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "meta-llama/Llama-2-7b-hf"}
    text = (ROOT / "notebooks" / "profiles" / "gpu.yml").read_text()
    assert "meta-llama/Llama-2-7b-hf" in text and "TinyLlama/TinyLlama-1.1B-Chat-v1.0" in text
    assert data["common"]["max_length"] == 512
    ckl = data["02_token_weighted_learning"]
    assert (ckl["n_to_learn"], ckl["n_not_to_forget"], ckl["epochs"]) == (500, 500, 30)
    assert (ckl["lr"], ckl["batch_size"]) == (1e-4, 64)
    assert (ckl["lora_rank"], ckl["lora_alpha"]) == (64, 16)


def test_ci_profile_is_small():
    ckl = load_profile("ci", ROOT)["02_token_weighted_learning"]
    assert ckl["n_to_learn"] <= 32 and ckl["n_not_to_forget"] <= 32 and ckl["epochs"] <= 2


def test_temporalwiki_profiles():
    stem = "05_temporalwiki"
    if not (ROOT / "notebooks" / f"{stem}.ipynb").is_file():
        pytest.skip("no TemporalWiki notebook")
    declared = parameters_cell(ROOT / "notebooks" / f"{stem}.ipynb")
    ci, cpu, gpu = (load_profile(p, ROOT)[stem] for p in PROFILES)
    assert ci["max_probes"] <= 16 and ci["phi_run"] == "book/executed/results/ci/03_meta_training_work"
    assert ci["run_dir"] is None  # next to the results: the runner clears it
    # the cpu φ is chapter 03's committed run record
    assert cpu["phi_run"] == "results/cpu/runs/03_meta_training/best" and cpu["run_dir"] == "results/cpu/runs/05_temporalwiki"  # committed records
    # the paper's Table 2 settings: the real diff-sets, every probe, lr 1e-4, batch 64, QLoRA r 64 / alpha 16
    assert gpu["documents"] == "diffset" and gpu["max_probes"] is None
    assert (gpu["lr"], gpu["batch_size"], gpu["lora_rank"], gpu["lora_alpha"]) == (1e-4, 64, 64, 16)
    assert declared["periods"] == ["0910", "1011", "1112"]
    assert set(declared["methods"]) == {"finetune", "rho1", "taalm"}


def test_profile_with_undeclared_parameter_is_reported(tmp_path):
    (tmp_path / "notebooks" / "profiles").mkdir(parents=True)
    nb = json.loads(NOTEBOOKS[0].read_text(encoding="utf-8"))
    (tmp_path / "notebooks" / NOTEBOOKS[0].name).write_text(json.dumps(nb))
    (tmp_path / "notebooks" / "profiles" / "x.yml").write_text(yaml.safe_dump(
        {"common": {"epochz": 3}, "99_missing": {}}))
    problems = check_profile("x", tmp_path)
    assert any("'epochz'" in p for p in problems)
    assert any("99_missing" in p for p in problems)


def test_missing_profile_names_the_known_ones():
    with pytest.raises(FileNotFoundError, match="known profiles: ci, cpu, gpu"):
        load_profile("laptop", ROOT)


def test_list_notebooks_by_prefix_and_unknown_name():
    assert [p.stem for p in list_notebooks(ROOT, ["01"])] == ["01_concept"]
    with pytest.raises(ValueError, match="matches nothing"):
        list_notebooks(ROOT, ["99_nope"])


# ------------------------------------------------------------ tolerance comparison

TOLERANCES = {
    "default": {"abs": 1e-6},
    "ignore": ["versions.*"],
    "nb": {"metrics.top_acc": {"abs": 0.05}, "curve.*": {"rel": 0.1}, "ignore": ["seconds"]},
}
REFERENCE = {"metrics": {"top_acc": 0.30, "epoch": 2}, "curve": [1.0, 2.0], "name": "oracle",
             "seconds": 10.0, "versions": {"torch": "2.13"}}


def test_flatten_dotted_paths():
    assert flatten({"a": {"b": [1, {"c": None}]}, "d": []}) == {"a.b.0": 1, "a.b.1.c": None, "d": []}


def test_band_lookup_exact_pattern_default_ignore():
    assert band_for(TOLERANCES, "nb", "metrics.top_acc") == {"abs": 0.05, "rel": 0.0}
    assert band_for(TOLERANCES, "nb", "curve.1") == {"abs": 0.0, "rel": 0.1}
    assert band_for(TOLERANCES, "nb", "metrics.epoch") == {"abs": 1e-6, "rel": 0.0}
    assert band_for(TOLERANCES, "nb", "seconds") is None
    assert band_for(TOLERANCES, "other", "versions.torch") is None


def test_within_band_passes():
    got = {**REFERENCE, "metrics": {"top_acc": 0.34, "epoch": 2}, "curve": [1.09, 1.85],
           "seconds": 99.0, "versions": {"torch": "9.9"}}
    assert compare_results("nb", REFERENCE, got, TOLERANCES) == []


def test_outside_band_gives_readable_table():
    got = {**REFERENCE, "metrics": {"top_acc": 0.40, "epoch": 3}, "name": "finetune",
           "extra": 1}
    del got["curve"]
    mismatches = compare_results("nb", REFERENCE, got, TOLERANCES)
    keys = {m.key: m for m in mismatches}
    assert set(keys) == {"metrics.top_acc", "metrics.epoch", "name", "curve.0", "curve.1", "extra"}
    assert keys["curve.0"].got == "(missing)" and keys["extra"].reference == "(missing)"
    table = format_mismatches(mismatches)
    lines = table.splitlines()
    assert lines[0].split() == ["notebook", "key", "reference", "got", "band"]
    top = next(line for line in lines if "metrics.top_acc" in line)
    assert top.split() == ["nb", "metrics.top_acc", "0.3", "0.4", "abs", "0.05"]


def test_bool_and_int_are_not_equal():
    assert compare_results("nb", {"x": True}, {"x": 1}, {})


def _fake_project(tmp_path: Path) -> Path:
    (tmp_path / "notebooks" / "profiles").mkdir(parents=True)
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "outputs": [],
                     "execution_count": None, "source": "profile = 'x'\nresults_path = 'r.json'\n"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "notebooks" / "01_toy.ipynb").write_text(json.dumps(nb))
    (tmp_path / "notebooks" / "profiles" / "ci.yml").write_text("common: {}\n")
    return tmp_path


def _fake_papermill(monkeypatch, value):
    import papermill

    def execute(input_path, output_path, parameters, **kwargs):
        assert not Path(parameters["results_path"]).is_absolute()  # no build machine's path on a page
        results = Path(kwargs["cwd"]) / parameters["results_path"]
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps({"acc": value}))
        page = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# Toy"}], "metadata": {},
                "nbformat": 4, "nbformat_minor": 5}
        Path(output_path).write_text(json.dumps(page))

    monkeypatch.setattr(papermill, "execute_notebook", execute)


def test_missing_reference_says_run_with_update(tmp_path, monkeypatch):
    root = _fake_project(tmp_path)
    _fake_papermill(monkeypatch, 0.5)
    with pytest.raises(BookCheckError, match="no reference yet: run with --update"):
        run_book("ci", root=root)


def test_update_then_check_then_mismatch(tmp_path, monkeypatch):
    root = _fake_project(tmp_path)
    _fake_papermill(monkeypatch, 0.5)
    report = run_book("ci", root=root, update=True)
    assert [r.status for r in report.runs] == ["updated"]
    assert json.loads((root / "results" / "ci" / "01_toy.json").read_text()) == {"acc": 0.5}
    assert run_book("ci", root=root).ok
    (root / "results" / "ci" / "tolerances.yml").write_text("default: {abs: 0.01}\n")
    _fake_papermill(monkeypatch, 0.6)
    with pytest.raises(BookCheckError) as err:
        run_book("ci", root=root)
    assert "01_toy" in str(err.value) and "acc" in str(err.value) and "abs 0.01" in str(err.value)
    assert err.value.report.runs[0].status == "mismatch"
    page = json.loads((root / "book" / "executed" / "01_toy.ipynb").read_text())
    note = page["cells"][1]["source"]  # after the title: the page says which numbers differ
    assert note.startswith("```{warning}") and "| `acc` | 0.5 | 0.6 | abs 0.01 |" in note
    assert "results/ci/01_toy.json" in note


def test_executed_pages_name_paths_relative_to_the_repository(tmp_path, monkeypatch):
    import papermill

    root = _fake_project(tmp_path)
    _fake_papermill(monkeypatch, 0.5)
    execute = papermill.execute_notebook

    def with_paths(input_path, output_path, parameters, **kw):
        execute(input_path, output_path, parameters, **kw)
        page = json.loads(Path(output_path).read_text())
        page["metadata"]["papermill"] = {"input_path": str(input_path), "output_path": str(output_path)}
        warning = f"{kw['cwd']}/.venv/lib/site-packages/x.py:3: FutureWarning: old\n"
        page["cells"].append({"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "",
                              "outputs": [{"output_type": "stream", "name": "stderr", "text": warning}]})
        Path(output_path).write_text(json.dumps(page))

    monkeypatch.setattr(papermill, "execute_notebook", with_paths)
    run_book("ci", root=root, update=True)
    page = json.loads((root / "book" / "executed" / "01_toy.ipynb").read_text())
    assert page["metadata"]["papermill"] == {"input_path": "notebooks/01_toy.ipynb",
                                             "output_path": "book/executed/01_toy.ipynb"}
    assert page["cells"][-1]["outputs"][0]["text"] == ".venv/lib/site-packages/x.py:3: FutureWarning: old\n"
    assert str(root.resolve()) not in (root / "book" / "executed" / "01_toy.ipynb").read_text()


def test_update_publishes_companions_and_the_published_profiles_figures(tmp_path, monkeypatch):
    import papermill

    root = _fake_project(tmp_path)
    nb = json.loads((root / "notebooks" / "01_toy.ipynb").read_text())
    nb["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                        "source": 'chapter.write_companion("toy_summary", summary)\n'})
    (root / "notebooks" / "01_toy.ipynb").write_text(json.dumps(nb))
    (root / "notebooks" / "profiles" / "cpu.yml").write_text("common: {}\n")
    _fake_papermill(monkeypatch, 0.5)
    execute = papermill.execute_notebook

    def with_files(input_path, output_path, parameters, **kw):
        execute(input_path, output_path, parameters, **kw)
        built = (Path(kw["cwd"]) / parameters["results_path"]).parent
        (built / "toy_summary.json").write_text(json.dumps({"taalm": parameters["profile"]}))
        for name in ("01_toy.curves.png", "01_toy.png", "01_toys.png"):
            (built / name).write_bytes(b"png")

    monkeypatch.setattr(papermill, "execute_notebook", with_files)
    report = run_book("ci", root=root, update=True)
    assert report.runs[0].message == "reference written to results/ci/01_toy.json with toy_summary.json"
    assert sorted(p.name for p in (root / "results" / "ci").iterdir()) == ["01_toy.json", "toy_summary.json"]
    run_book(PUBLISH_PROFILE, root=root, update=True)
    assert sorted(p.name for p in (root / "results" / "cpu").iterdir()) == [
        "01_toy.curves.png", "01_toy.json", "01_toy.png", "toy_summary.json"]  # not another stem's figure
    assert json.loads((root / "results" / "cpu" / "toy_summary.json").read_text()) == {"taalm": "cpu"}


def test_cli_builds_the_book_despite_a_mismatch_unless_strict(tmp_path, monkeypatch):
    import trainattn.book.runner as runner
    from trainattn.cli import main

    root = _fake_project(tmp_path)
    _fake_papermill(monkeypatch, 0.5)
    run_book("ci", root=root, update=True)
    (root / "results" / "ci" / "tolerances.yml").write_text("default: {abs: 0.01}\n")
    _fake_papermill(monkeypatch, 0.6)
    built = []
    monkeypatch.setattr(runner, "build_book", lambda *a, **k: built.append(1) or root / "_build" / "html")
    monkeypatch.chdir(root)
    assert main(["book", "--profile", "ci"]) == 0 and built == [1]
    assert main(["book", "--profile", "ci", "--strict"]) == 1 and built == [1, 1]


def test_recompute_sends_the_runs_to_a_fresh_folder_and_keeps_phi(tmp_path, monkeypatch):
    from trainattn.book.runner import recompute_parameters
    from trainattn.cli import main

    params = {"run_dir": "results/cpu/runs/lama_ckl", "phi_run": "results/cpu/runs/03_meta_training/best",
              "epochs": 16}
    moved = recompute_parameters(params, "cpu", "04_lama_ckl")
    assert moved == {**params, "run_dir": "runs/cpu/recompute/04_lama_ckl"}
    assert recompute_parameters({"epochs": 1}, "cpu", "01_concept") == {"epochs": 1}

    root = _fake_project(tmp_path)
    (root / "notebooks" / "profiles" / "ci.yml").write_text("01_toy: {run_dir: results/ci/runs/toy}\n")
    nb = json.loads((root / "notebooks" / "01_toy.ipynb").read_text())
    nb["cells"][0]["source"] += "run_dir = 'x'\n"
    (root / "notebooks" / "01_toy.ipynb").write_text(json.dumps(nb))
    seen = []
    _fake_papermill(monkeypatch, 0.5)
    import papermill

    execute = papermill.execute_notebook
    monkeypatch.setattr(papermill, "execute_notebook",
                        lambda i, o, parameters, **k: seen.append(parameters["run_dir"]) or execute(
                            i, o, parameters, **k))
    run_book("ci", root=root, update=True)
    run_book("ci", root=root, recompute=["01_toy"])
    run_book("ci", root=root, recompute=["02_other"])
    monkeypatch.chdir(root)
    main(["book", "--profile", "ci", "--recompute", "--no-build"])
    assert seen == ["results/ci/runs/toy", "runs/ci/recompute/01_toy", "results/ci/runs/toy",
                    "runs/ci/recompute/01_toy"]


def test_publish_reads_records_only_and_shows_a_chapter_without_them_at_ci(tmp_path, monkeypatch):
    import papermill

    from trainattn.cli import main
    from trainattn.protocols.store import RECORDS_ONLY_ENV

    root = _fake_project(tmp_path)
    (root / "notebooks" / "profiles" / "cpu.yml").write_text("common: {}\n")
    nb = (root / "notebooks" / "01_toy.ipynb").read_text()
    (root / "notebooks" / "02_done.ipynb").write_text(nb)
    for profile, value in (("ci", 0.5), ("cpu", 0.9)):
        for stem in ("01_toy", "02_done"):
            (root / "results" / profile).mkdir(parents=True, exist_ok=True)
            (root / "results" / profile / f"{stem}.json").write_text(json.dumps({"acc": value}))
    _fake_papermill(monkeypatch, None)
    execute = papermill.execute_notebook
    seen = []

    def records(input_path, output_path, parameters, **kw):  # 01_toy has no cpu record yet
        seen.append((Path(input_path).stem, parameters["profile"], os.environ.get(RECORDS_ONLY_ENV)))
        if parameters["profile"] == "cpu" and "01_toy" in input_path and os.environ.get(RECORDS_ONLY_ENV) == "1":
            time.sleep(0.2)  # the cpu attempt's work before it reached the missing record
            raise papermill.PapermillExecutionError(3, 3, "grid(...)", "RecordMissingError",
                                                    "results/cpu/runs/toy/seed-0/result.json: no finished run "
                                                    "to read back, and TRAINATTN_RECORDS_ONLY is set", [])
        execute(input_path, output_path, parameters, **kw)
        got = Path(kw["cwd"]) / parameters["results_path"]
        got.write_text(json.dumps({"acc": 0.9 if parameters["profile"] == "cpu" else 0.5}))

    monkeypatch.setattr(papermill, "execute_notebook", records)
    report = run_book(PUBLISH_PROFILE, root=root, records_only=True, fallback=PUBLISH_FALLBACK)
    assert seen == [("01_toy", "cpu", "1"), ("01_toy", "ci", ""), ("02_done", "cpu", "1")]
    assert [(r.stem, r.profile, r.status) for r in report.runs] == [("01_toy", "ci", "ok"), ("02_done", "cpu", "ok")]
    assert 0.2 <= report.runs[0].attempt_seconds < 0.2 + report.runs[0].seconds + 1.0
    assert re.search(r"\[ci: no cpu record at results/cpu/runs/toy/seed-0/result.json; 0\.[2-9] s before that\]",
                     report.table())
    page = json.loads((root / "book" / "executed" / "01_toy.ipynb").read_text())
    assert page["cells"][1]["source"].startswith("```{note}\n**This page shows the `ci` profile's smoke test")
    assert "`trainattn book --profile cpu --notebooks 01_toy`" in page["cells"][1]["source"]
    other = json.loads((root / "book" / "executed" / "02_done.ipynb").read_text())
    assert len(other["cells"]) == 1  # read back at cpu: no note
    assert os.environ.get(RECORDS_ONLY_ENV) is None  # restored after the build
    # without a fallback the missing record is a failure that names the run
    with pytest.raises(BookCheckError, match="01_toy .* results/cpu/runs/toy/seed-0/result.json: no finished run"):
        run_book(PUBLISH_PROFILE, root=root, records_only=True)
    monkeypatch.chdir(root)
    assert main(["book", "--update"]) == 2  # the published book only reads records back
    seen.clear()
    assert main(["book", "--profile", "cpu", "--records-only", "--notebooks", "02_done", "--no-build"]) == 0
    assert seen == [("02_done", "cpu", "1")]  # a named profile, read back only (no fallback)
    assert main(["book", "--profile", "cpu", "--records-only", "--recompute", "--no-build"]) == 2


def test_a_fallback_chapter_first_computes_the_fallback_work_it_reads(tmp_path, monkeypatch):
    import papermill

    root = _fake_project(tmp_path)
    nb = json.loads((root / "notebooks" / "01_toy.ipynb").read_text())
    nb["cells"][0]["source"] += "phi_run = None\n"
    (root / "notebooks" / "02_uses_phi.ipynb").write_text(json.dumps(nb))
    (root / "notebooks" / "profiles" / "ci.yml").write_text(
        "02_uses_phi: {phi_run: book/executed/results/ci/01_toy_work}\n")
    (root / "notebooks" / "profiles" / "cpu.yml").write_text("02_uses_phi: {phi_run: results/cpu/runs/phi}\n")
    for profile in ("ci", "cpu"):
        (root / "results" / profile).mkdir(parents=True)
        for stem in ("01_toy", "02_uses_phi"):
            (root / "results" / profile / f"{stem}.json").write_text(json.dumps({"acc": 0.5}))
    _fake_papermill(monkeypatch, 0.5)
    execute = papermill.execute_notebook
    seen = []

    def records(input_path, output_path, parameters, **kw):  # 02 has no cpu record yet
        seen.append((Path(input_path).stem, parameters["profile"], Path(output_path).relative_to(root).as_posix()))
        if parameters["profile"] == "cpu" and "02_" in input_path:
            raise papermill.PapermillExecutionError(1, 1, "", "RecordMissingError", "results/cpu/runs/x: no finished run", [])
        execute(input_path, output_path, parameters, **kw)

    monkeypatch.setattr(papermill, "execute_notebook", records)
    report = run_book(PUBLISH_PROFILE, root=root, records_only=True, fallback=PUBLISH_FALLBACK)
    assert seen == [("01_toy", "cpu", "book/executed/01_toy.ipynb"), ("02_uses_phi", "cpu", "book/executed/02_uses_phi.ipynb"),
                    ("01_toy", "ci", "_build/fallback-dependencies/01_toy.ipynb"),  # 02's ci φ, not a page
                    ("02_uses_phi", "ci", "book/executed/02_uses_phi.ipynb")]
    assert [(r.stem, r.profile) for r in report.runs] == [("01_toy", "cpu"), ("02_uses_phi", "ci")]


def test_committed_tolerances_and_references_are_valid():
    for profile in PROFILES:
        folder = ROOT / "results" / profile
        tol = folder / "tolerances.yml"
        if tol.is_file():
            data = yaml.safe_load(tol.read_text())
            assert isinstance(data, dict) and "default" in data
        stems = {p.stem for p in NOTEBOOKS}
        companions = companion_results(ROOT)
        for ref in folder.glob("*.json"):
            owner = companions.get(ref.stem, ref.stem)
            assert owner in stems, f"{ref} names no notebook"
            if ref.stem in companions:  # written by its notebook beside that notebook's results
                assert (folder / f"{owner}.json").is_file(), f"{ref} without {owner}.json"


def test_toc_names_the_executed_notebooks():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for c in toc["chapters"]]
    executed = [f for f in files if f.startswith("book/executed/")]
    assert executed == [f"book/executed/{p.stem}" for p in NOTEBOOKS[: len(executed)]]
    # prose chapters (book/*.md): background and how_to_run before the notebooks, references last
    prose = [f for f in files if not f.startswith("book/executed/")]
    assert all((ROOT / f"{f}.md").is_file() for f in prose), prose
    assert files.index("book/how_to_run") < files.index(executed[0]) if executed else True
    assert files[-1] == "book/references"
    assert check_toc(ROOT) == [] or all(m.startswith("book/executed/") for m in check_toc(ROOT))
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"


def test_cli_book_subcommand_parses():
    args = build_parser().parse_args(["book", "--profile", "cpu", "--notebooks", "01_concept",
                                      "--update", "--no-build"])
    assert (args.profile, args.notebooks, args.update, args.no_build) == (
        "cpu", ["01_concept"], True, True)
    assert args.recompute is None
    assert build_parser().parse_args(["book"]).profile == "publish"
    assert build_parser().parse_args(["book", "--recompute"]).recompute == []
    assert build_parser().parse_args(["book", "--recompute", "04_lama_ckl"]).recompute == ["04_lama_ckl"]


# ------------------------------------------------------------ executing (slow)


@pytest.mark.slow
def test_concept_notebook_runs_under_ci_profile(tmp_path):
    if not os.environ.get("TRAINATTN_DATA") and not (ROOT.parent / "shared" / "data").is_dir():
        pytest.skip("needs the LAMA-CKL data (TRAINATTN_DATA)")
    os.environ.setdefault("TRAINATTN_DATA", str(ROOT.parent / "shared" / "data"))
    report = run_book("ci", ["01_concept"], build_dir=tmp_path, root=ROOT)
    assert [r.status for r in report.runs] == ["ok"]


def test_companion_files_are_read_from_the_notebooks():
    from trainattn.book.chapter import companion_files

    assert companion_results(ROOT) == {"lama_ckl_summary": "04_lama_ckl", "open_questions": "07_open_questions"}
    assert companion_files({"a": 'chapter.write_companion(\n  "x", {})', "b": "write_companion('y', 1)"}) == {
        "x": "a", "y": "b"}
    with pytest.raises(ValueError, match="written by both a and b"):
        companion_files({"a": 'write_companion("x", 1)', "b": 'write_companion("x", 2)'})


def test_badges_follow_the_repository_setting(tmp_path):
    import shutil

    from trainattn.book.links import colab_url, install_spec, sync_links

    assert sync_links(ROOT, write=False) == []  # the committed notebooks agree with _config.yml
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    config = (ROOT / "_config.yml").read_text().replace("https://github.com/trainattn/trainattn",
                                                        "https://github.com/someone/fork")
    (tmp_path / "_config.yml").write_text(config.replace("branch: main", "branch: dev"))
    assert len(sync_links(tmp_path)) == len(NOTEBOOKS) and sync_links(tmp_path) == []
    text = (tmp_path / "notebooks" / NOTEBOOKS[0].name).read_text()
    assert colab_url(NOTEBOOKS[0].name, tmp_path) in text and install_spec(tmp_path) in text
    assert "github/someone/fork/blob/dev/notebooks/" in text and "trainattn @ git+https://github.com/someone/fork@dev" in text


def test_measured_spread_is_the_largest_difference_over_settings():
    from trainattn.book.tolerances import measure_spread

    ref = {"a": 1.0, "b": [2.0, 0.0], "name": "x", "n": 3}
    spreads = measure_spread(ref, {"avx2": {"a": 1.1, "b": [2.0, 0.0], "name": "y", "n": 3},
                                   "default": {"a": 0.95, "b": [1.0, 0.0], "n": 3}})
    assert spreads["a"].abs == pytest.approx(0.1) and spreads["a"].where == "avx2"
    assert spreads["b.0"].abs == 1.0 and spreads["b.0"].rel == 0.5 and spreads["b.0"].where == "default"
    assert spreads["b.1"].abs == 0.0 and spreads["n"].abs == 0 and "name" not in spreads
    assert measure_spread(ref, {"broken": {"b": [2.0, 0.0]}})["a"].abs == float("inf")


def test_unique_scripts_extension_drops_repeated_scripts():
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("unique_scripts", ROOT / "book" / "_ext" / "unique_scripts.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    inline = SimpleNamespace(filename=None, attributes={"body": "const THEBE_JS_URL = 'x'"})
    again = SimpleNamespace(filename="", attributes={"body": "const THEBE_JS_URL = 'x'"})  # "" = None
    other = SimpleNamespace(filename="_static/a.js", attributes={})
    context = {"script_files": [inline, other, again, SimpleNamespace(filename="_static/a.js", attributes={})]}
    ext.unique_scripts(None, "index", "page.html", context, None)
    assert context["script_files"] == [inline, other]
