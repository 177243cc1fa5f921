"""The `cpu` reference's long LAMA-CKL runs, as one resumable job queue (chapter 04 and the split study).

What it runs, in priority order:

1. **Split 42, chapter 04's fair grid** (issue 14): every method at learning rates 3e-4 / 1e-3 /
   3e-3 on seed 0, the rate chosen on the validation slice, then seeds 1 and 2 at that rate; then
   the combinations. φ is chapter 03's best-validated φ (``results/cpu/runs/03_meta_training/best``).
   Records go to ``results/cpu/runs/lama_ckl/`` (read back by chapter 04).
2. **Other splits, each with its own φ** (issue 16): the tailored split ``S`` (``trainattn tailor
   --seed S``), φ meta-trained on that split's own text-clean pool with chapter 03's settings
   (``configs/meta_smollm2_cpu.yml``: the step with the best meta-pool validation is φ), then the
   grid: finetune, oracle and TAALM on 3 seeds, every other baseline on seed 0, each method at the
   learning rate split 42's validation slice chose for it (``--lr-from``: the settings are fixed in
   advance and identical on every split; 14 runs per split instead of 30). Records go to
   ``results/cpu/runs/splits/split-S/{phi,lama_ckl}/``.

3. With ``--chapters``: chapters 05, 06 and 07 at the ``cpu`` profile (TemporalWiki, the
   ablations, the open questions at chapter 03's budget), each executed in plain Python
   (``scripts/run_notebook_plain.py``) into ``runs/reproduce_cpu/results/``; their runs resume in
   the profile's ``run_dir``. They use chapter 03's φ only, so they start at once. Chapter 07's
   runs are first shared among ``--slots`` processes (``scripts/open_questions_jobs.py``).

Every job is a ``trainattn`` command that resumes where it stopped and reads finished runs back
(run folders are locked, so a job that reaches a run another process is computing waits for it and
reads it back). So the script can be stopped at any point (``--deadline``, Ctrl-C) and started
again. On a CPU each job gets ``cores // slots`` threads (two 2-thread processes on 2 cores slow
each other down 4-10×); on a GPU (``--device cuda``) use many slots.

    python scripts/reproduce_cpu.py --dry-run            # the plan
    python scripts/reproduce_cpu.py --slots 2            # this machine, 2 cores
    python scripts/reproduce_cpu.py --device cuda --slots 12 --deadline 540
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LRS = ["3e-4", "1e-3", "3e-3"]
BASELINES = ["finetune", "rho1", "rho1-paper", "mixreview", "recadam", "kadapter"]
METHODS = ["finetune", "oracle", "taalm", "rho1", "rho1-paper", "mixreview", "recadam", "kadapter"]
COMBINATIONS = ["taalm+kadapter", "taalm+mixreview", "taalm+recadam"]
THREE_SEEDS_EVERY_SPLIT = ("finetune", "oracle", "taalm")
REFERENCE_SPLIT = 42
SHIPPED_PHI = "results/cpu/runs/03_meta_training/best"
N_FACTS = 100


@dataclass
class Job:
    """One ``trainattn`` command; it starts once every job named in ``after`` has ended with status 0."""

    name: str
    command: list[str]
    after: list[str] = field(default_factory=list)


def tailored_folder(split: int) -> str:
    """Where ``trainattn tailor --seed split`` writes the split (the package's cache)."""
    from trainattn.data.sources import cache_root

    return str(cache_root() / "tailored" / "smollm2-135m" / f"n{N_FACTS}_{N_FACTS}_s{split}")


def split_paths(split: int) -> tuple[str, str]:
    """(grid folder, φ) of a split: the committed chapter-04 grid and chapter 03's φ for split 42."""
    if split == REFERENCE_SPLIT:
        return "results/cpu/runs/lama_ckl", SHIPPED_PHI
    base = f"results/cpu/runs/splits/split-{split}"
    return f"{base}/lama_ckl", f"{base}/phi/best"


def run_recorded(grid_dir: str, method: str, seed: int, lr: float | None = None) -> bool:
    """Whether a grid run already has its ``result.json`` (then it is not queued).

    ``lr`` names one candidate rate; without it any recorded rate of that seed counts (the other
    splits' seeds and split 42's seeds 1 and 2 run at one rate, chosen elsewhere).
    """
    from trainattn.protocols.grid import run_dir_for

    if lr is not None:
        return (run_dir_for(ROOT / grid_dir, method, seed, lr) / "result.json").is_file()
    return any(run_dir_for(ROOT / grid_dir, method, seed).glob("lr-*/result.json"))


def plan(splits: list[int], device: str = "cpu", tailored=tailored_folder, per_run: bool = False) -> list[Job]:
    """The jobs in priority order: every split's tailoring and φ first (the longest chains, and they
    need no grid), then split 42's fair grid and combinations, then each other split's grid.

    ``per_run`` (for a GPU with many slots): each method's grid also gets one job per run, run in
    parallel: on split 42 its seed-0 candidates (one per learning rate), then seeds 1 and 2 at the
    chosen rate; on the other splits one per seed. The method's whole-grid job then only reads them
    back, so the names other jobs wait on (``grid-<split>-<method>``) keep their meaning.
    """
    jobs: list[Job] = []
    grid_jobs: list[Job] = []
    for split in splits:
        folder = tailored(split)
        tailor = Job(f"tailor-{split}", ["trainattn", "tailor", "--to-learn", str(N_FACTS), "--not-to-forget",
                                         str(N_FACTS), "--seed", str(split)])
        jobs.append(tailor)
        grid_dir, phi = split_paths(split)
        phi_job = None
        if split != REFERENCE_SPLIT:
            phi_run = str(Path(phi).parent)
            phi_job = Job(f"phi-{split}", ["trainattn", "meta-train", "--config", "configs/meta_smollm2_cpu.yml",
                                           "--out", phi_run, "--tailored", folder], after=[tailor.name])
            jobs.append(phi_job)
        methods = METHODS + (COMBINATIONS if split == REFERENCE_SPLIT else [])
        for method in methods:
            if split == REFERENCE_SPLIT or method in THREE_SEEDS_EVERY_SPLIT:
                seeds = ["0", "1", "2"]
            else:
                seeds = ["0"]
            uses_phi = "taalm" in method
            # split 42 chooses each method's rate on its validation slice; the other splits take
            # that rate, fixed in advance (the same settings on every split, half the runs)
            lr_from = ["--lr-from", split_paths(REFERENCE_SPLIT)[0]]
            rates = ["--lrs", *LRS] if split == REFERENCE_SPLIT else lr_from
            common = ["--out", grid_dir, "--tailored", folder, "--device", device] + (["--phi", phi] if uses_phi else [])
            head = ["trainattn", "ckl-grid", "--config", "configs/lama_ckl_cpu.yml", "--methods", method]
            after = [tailor.name] + ([phi_job.name] if uses_phi and phi_job else [])
            if split != REFERENCE_SPLIT and REFERENCE_SPLIT in splits:
                after.append(f"grid-{REFERENCE_SPLIT}-{method}")
            name = f"grid-{split}-{method}"
            whole_after = after
            if per_run:
                if split == REFERENCE_SPLIT:
                    # a recorded candidate is not queued, so nothing waits on it
                    candidates = [Job(f"{name}-lr-{lr}", [*head, "--seeds", "0", "--lrs", lr, *common], after)
                                  for lr in LRS if not run_recorded(grid_dir, method, 0, float(lr))]
                    pieces = candidates + [
                        Job(f"{name}-seed-{s}", [*head, "--seeds", s, *lr_from, *common],
                            after + [j.name for j in candidates])
                        for s in seeds[1:] if not run_recorded(grid_dir, method, int(s))]
                else:
                    pieces = [Job(f"{name}-seed-{s}", [*head, "--seeds", s, *rates, *common], after)
                              for s in seeds if not run_recorded(grid_dir, method, int(s))]
                grid_jobs += pieces
                whole_after = after + [j.name for j in pieces]
            grid_jobs.append(Job(name, [*head, "--seeds", *seeds, *rates, *common], whole_after))
    return jobs + grid_jobs


CHAPTERS = ("05_temporalwiki", "06_ablations", "07_open_questions")
CHAPTERS_WITH_DEVICE = ("06_ablations", "07_open_questions")  # 05 has no device parameter


def chapter_jobs(device: str = "cpu", results: str = "runs/reproduce_cpu/results", parts: int = 1) -> list[Job]:
    """Chapters 05-07 at the cpu profile, each one job (a notebook executed in plain Python).

    Chapter 07's runs first go to ``parts`` processes (``scripts/open_questions_jobs.py --all
    --part k/parts``, each taking its share of the runs first); its notebook then reads them back.
    """
    jobs = []
    for stem in CHAPTERS:
        command = [sys.executable, "scripts/run_notebook_plain.py", f"notebooks/{stem}.ipynb", "--profile", "cpu",
                   "--results-path", f"{results}/{stem}.json"]
        device_set = ["--set", f"device={device}"] if stem in CHAPTERS_WITH_DEVICE else []
        after = []
        if stem == "07_open_questions" and parts > 1:
            for k in range(parts):
                after.append(f"chapter-{stem}-part-{k}")
                jobs.append(Job(after[-1], [sys.executable, "scripts/open_questions_jobs.py", "--profile", "cpu",
                                            "--all", "--part", f"{k}/{parts}", *device_set]))
        jobs.append(Job(f"chapter-{stem}", command + device_set, after))
    return jobs


def run(jobs: list[Job], slots: int, deadline: float | None, logs: Path, threads: int) -> dict:
    """Run ``jobs`` with at most ``slots`` at once (priority order, dependencies respected) until done
    or ``deadline`` (epoch seconds); returns ``{name: {"rc", "seconds"}}``. Jobs left at the deadline
    are stopped (their runs resume next time); jobs whose dependency failed are skipped."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    queue, running, status = list(jobs), {}, {}
    while queue or running:
        for name, (proc, t0) in list(running.items()):
            if proc.poll() is not None:
                status[name] = {"rc": proc.returncode, "seconds": round(time.time() - t0)}
                print(f"[{time.strftime('%X')}] {name} ended rc={proc.returncode} ({status[name]['seconds']} s)",
                      flush=True)
                del running[name]
        for job in list(queue):
            failed = [a for a in job.after if a in status and status[a]["rc"] != 0]
            if failed:
                queue.remove(job)
                status[job.name] = {"rc": None, "skipped": f"{failed[0]} failed"}
                print(f"skip {job.name}: {failed[0]} failed", flush=True)
        past_deadline = deadline is not None and time.time() > deadline
        while not past_deadline and len(running) < slots:
            ready = [j for j in queue if all(status.get(a, {}).get("rc") == 0 for a in j.after)]
            if not ready:
                break
            job = ready[0]
            queue.remove(job)
            log = open(logs / f"{job.name}.log", "a")
            proc = subprocess.Popen(job.command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                    start_new_session=True)
            running[job.name] = (proc, time.time())
            print(f"[{time.strftime('%X')}] start {job.name}: {' '.join(job.command)}", flush=True)
        if past_deadline:
            for name, (proc, t0) in running.items():
                os.killpg(proc.pid, signal.SIGTERM)
                status[name] = {"rc": "stopped at the deadline", "seconds": round(time.time() - t0)}
            for job in queue:
                status[job.name] = {"rc": None, "skipped": "deadline"}
            break
        if not running and queue:  # nothing can start: every remaining job waits on a skipped one
            for job in queue:
                status[job.name] = {"rc": None, "skipped": "dependency not run"}
            break
        time.sleep(2)
    (logs / "status.json").write_text(json.dumps(status, indent=1) + "\n")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, nargs="+", default=[42, 7, 1234])
    parser.add_argument("--only", nargs="*", default=None, metavar="JOB",
                        help="only these jobs (names from --dry-run) and what they need")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--slots", type=int, default=2, help="jobs at once")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per job (default: cores // slots, at least 1)")
    parser.add_argument("--deadline", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--logs", default="runs/reproduce_cpu", help="a log per job and status.json")
    parser.add_argument("--chapters", nargs="*", default=None, metavar="STEM",
                        help="also chapters 05-07 at the cpu profile (after split 42's grid in the queue); "
                             "with stems (e.g. 06_ablations), only those")
    parser.add_argument("--per-run", action="store_true",
                        help="one job per LAMA-CKL run, so a method's runs go in parallel (a GPU with many slots)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    jobs = plan(args.splits, args.device, per_run=args.per_run)
    if args.chapters is not None:  # after the reference split's grid, before the other splits' grids
        unknown = set(args.chapters) - set(CHAPTERS)
        if unknown:
            parser.error(f"--chapters: unknown {sorted(unknown)}; choose from {list(CHAPTERS)}")
        chapters = [j for j in chapter_jobs(args.device, parts=args.slots) if not args.chapters
                    or j.name.removeprefix("chapter-").split("-part-")[0] in args.chapters]
        cut = next((i for i, j in enumerate(jobs) if j.name.startswith("grid-")
                    and not j.name.startswith(f"grid-{REFERENCE_SPLIT}-")), len(jobs))
        jobs[cut:cut] = chapters
    if args.only:
        wanted = set(args.only)
        unknown = wanted - {j.name for j in jobs}
        if unknown:
            parser.error(f"unknown job(s) {sorted(unknown)}; see --dry-run")
        for job in reversed(jobs):
            if job.name in wanted:
                wanted.update(job.after)
        jobs = [j for j in jobs if j.name in wanted]
    if args.dry_run:
        for job in jobs:
            after = f"   (after {', '.join(job.after)})" if job.after else ""
            print(f"{job.name}: {' '.join(job.command)}{after}")
        return 0
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.slots)
    deadline = None if args.deadline is None else time.time() + args.deadline
    status = run(jobs, args.slots, deadline, ROOT / args.logs, threads)
    bad = {n: s for n, s in status.items() if s.get("rc") not in (0,)}
    print(f"{len(status) - len(bad)} of {len(status)} jobs done; see {args.logs}/status.json")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
