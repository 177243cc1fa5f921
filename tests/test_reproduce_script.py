"""scripts/reproduce_cpu.py: the cpu reference's job queue (plan and runner)."""

import importlib.util
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "reproduce_cpu.py"


@pytest.fixture(scope="module")
def rc():
    spec = importlib.util.spec_from_file_location("reproduce_cpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce_cpu"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


def test_plan_starts_every_phi_first_then_the_reference_grid_then_the_other_splits(rc):
    jobs = rc.plan([42, 7], "cuda", tailored=lambda s: f"T{s}")
    names = [j.name for j in jobs]
    assert names[:3] == ["tailor-42", "tailor-7", "phi-7"]  # the longest chain starts at once
    assert names.index("grid-42-taalm+recadam") < names.index("grid-7-finetune")
    by = {j.name: j for j in jobs}
    ft = by["grid-42-finetune"].command
    assert ft[ft.index("--seeds") + 1: ft.index("--lrs")] == ["0", "1", "2"]
    assert ft[ft.index("--lrs") + 1: ft.index("--out")] == ["3e-4", "1e-3", "3e-3"]
    assert "--phi" not in ft and ft[ft.index("--device") + 1] == "cuda" and ft[ft.index("--tailored") + 1] == "T42"
    taalm42 = by["grid-42-taalm"].command
    assert taalm42[taalm42.index("--phi") + 1] == "results/cpu/runs/03_meta_training/best"
    assert "phi-42" not in by and by["grid-42-taalm"].after == ["tailor-42"]
    # split 7: φ meta-trained on its own pool, chapter 03's settings; TAALM waits for it
    assert by["phi-7"].command[by["phi-7"].command.index("--out") + 1] == "results/cpu/runs/splits/split-7/phi"
    assert by["phi-7"].after == ["tailor-7"] and "configs/meta_smollm2_cpu.yml" in by["phi-7"].command
    taalm7 = by["grid-7-taalm"].command
    assert taalm7[taalm7.index("--phi") + 1] == "results/cpu/runs/splits/split-7/phi/best"
    assert by["grid-7-taalm"].after == ["tailor-7", "phi-7", "grid-42-taalm"]  # split 42 chooses its rate
    assert taalm7[taalm7.index("--out") + 1] == "results/cpu/runs/splits/split-7/lama_ckl"
    assert "--lrs" not in taalm7 and taalm7[taalm7.index("--lr-from") + 1] == "results/cpu/runs/lama_ckl"
    seeds = {m: by[f"grid-7-{m}"].command[by[f"grid-7-{m}"].command.index("--seeds") + 1:
                                          by[f"grid-7-{m}"].command.index("--lr-from")] for m in rc.METHODS}
    assert seeds["finetune"] == seeds["oracle"] == seeds["taalm"] == ["0", "1", "2"]
    assert all(seeds[m] == ["0"] for m in rc.BASELINES if m != "finetune")
    assert not any(n.startswith("grid-7-taalm+") for n in names)  # combinations: split 42 only
    alone = {j.name: j for j in rc.plan([7], "cpu", tailored=lambda s: f"T{s}")}
    assert alone["grid-7-finetune"].after == ["tailor-7"]  # split 42 not planned: its records are read


def test_runner_respects_slots_dependencies_failures_and_the_deadline(rc, tmp_path):
    py = sys.executable

    def job(name, code, after=()):
        return rc.Job(name, [py, "-c", code], list(after))

    jobs = [job("a", "import time; time.sleep(0.5)"), job("b", "raise SystemExit(3)"),
            job("c", "print('c ran')", ["a"]), job("d", "print('never')", ["b"]), job("e", "pass", ["d"])]
    status = rc.run(jobs, slots=2, deadline=None, logs=tmp_path, threads=1)
    assert status["a"]["rc"] == 0 and status["b"]["rc"] == 3 and status["c"]["rc"] == 0
    assert status["d"] == {"rc": None, "skipped": "b failed"} and status["e"]["rc"] is None
    assert (tmp_path / "c.log").read_text() == "c ran\n" and (tmp_path / "status.json").is_file()
    started = time.time()
    status = rc.run([job("slow", "import time; time.sleep(60)"), job("next", "pass", ["slow"])], slots=1,
                    deadline=time.time() + 1, logs=tmp_path, threads=1)
    assert time.time() - started < 20
    assert status["slow"]["rc"] == "stopped at the deadline" and status["next"]["skipped"] == "deadline"


def test_only_keeps_what_a_job_needs(rc, capsys):
    assert rc.main(["--splits", "42", "7", "--only", "grid-7-taalm", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["tailor-42", "tailor-7", "phi-7", "grid-42-taalm",
                                                      "grid-7-taalm"]  # split 42 chooses TAALM's rate
    with pytest.raises(SystemExit):
        rc.main(["--only", "grid-9-x", "--dry-run"])


def test_chapters_run_after_the_reference_grid_with_the_device_where_declared(rc, capsys):
    assert rc.main(["--splits", "42", "7", "--chapters", "--device", "cuda", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split(":")[0] for line in lines]
    assert names.index("grid-42-taalm+recadam") < names.index("chapter-05_temporalwiki") < names.index("grid-7-finetune")
    by = dict(zip(names, lines, strict=True))
    assert "device=cuda" in by["chapter-07_open_questions"] and "device=" not in by["chapter-05_temporalwiki"]
    assert "--profile cpu" in by["chapter-06_ablations"]
    # chapter 07's runs go to one process per slot (default 2), then its notebook reads them back
    assert "open_questions_jobs.py --profile cpu --all --part 1/2 --set device=cuda" in by["chapter-07_open_questions-part-1"]
    assert "(after chapter-07_open_questions-part-0, chapter-07_open_questions-part-1)" in by["chapter-07_open_questions"]


def test_chapters_can_be_chosen_by_stem(rc, capsys):
    assert rc.main(["--splits", "42", "--chapters", "06_ablations", "--dry-run"]) == 0
    names = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert [n for n in names if n.startswith("chapter-")] == ["chapter-06_ablations"]
    assert rc.main(["--splits", "42", "--chapters", "07_open_questions", "--slots", "3", "--dry-run"]) == 0
    names = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert [n for n in names if n.startswith("chapter-")] == [
        *(f"chapter-07_open_questions-part-{k}" for k in range(3)), "chapter-07_open_questions"]
    with pytest.raises(SystemExit):
        rc.main(["--chapters", "09_nothing", "--dry-run"])


def test_per_run_pieces_run_in_parallel_and_skip_recorded_runs(rc, tmp_path, monkeypatch):
    monkeypatch.setattr(rc, "ROOT", tmp_path)
    done = tmp_path / "results/cpu/runs/lama_ckl/seed-0/finetune/lr-0.001/result.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    by = {j.name: j for j in rc.plan([42, 7], "cuda", tailored=lambda s: f"T{s}", per_run=True)}
    assert "grid-42-finetune-lr-1e-3" not in by  # recorded: read back by the whole-grid job
    lr = by["grid-42-finetune-lr-3e-4"].command
    assert lr[lr.index("--seeds") + 1: lr.index("--lrs")] == ["0"] and lr[lr.index("--lrs") + 1] == "3e-4"
    seed1 = by["grid-42-finetune-seed-1"]
    assert seed1.command[seed1.command.index("--lr-from") + 1] == "results/cpu/runs/lama_ckl"
    assert seed1.after == ["tailor-42", "grid-42-finetune-lr-3e-4", "grid-42-finetune-lr-3e-3"]
    assert by["grid-42-finetune"].after == ["tailor-42", "grid-42-finetune-lr-3e-4", "grid-42-finetune-lr-3e-3",
                                            "grid-42-finetune-seed-1", "grid-42-finetune-seed-2"]
    t7 = by["grid-7-taalm-seed-2"]
    assert t7.after == ["tailor-7", "phi-7", "grid-42-taalm"] and t7.command[t7.command.index("--seeds") + 1] == "2"
    assert "grid-7-taalm-seed-2" in by["grid-7-taalm"].after
