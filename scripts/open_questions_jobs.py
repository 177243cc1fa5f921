"""Chapter 07's long runs in a chosen order, so several processes can share its run store.

Executing ``notebooks/07_open_questions.ipynb`` computes its runs one after another
(the reference grid, then every φ). This script executes the notebook's setup cells
with a profile's parameters (exactly as ``scripts/run_notebook_plain.py`` does, so the
run identities match), then computes only the named jobs, in the order given, into
the profile's ``run_dir``. The notebook reads them back afterwards. Run folders are
locked: a job another process is computing is waited for and read back, so give each
process its own order.

Jobs (names as in the chapter's run folders):

* ``reference:<method>`` — a φ-free method (``finetune``, ``oracle``, a heuristic, ``rho1``)
  or ``taalm`` with chapter 03's φ, at every learning rate of the profile;
* ``paired_all`` — φ on all relations, meta-trained in stages (weight shares measured at
  each), then TAALM; ``paired_seen`` — φ without the held-out relations, then TAALM;
* ``unpaired:<strategy>`` — ``self_probe`` or ``document_<objective>``;
* ``scaling:<variant>`` — ``depth_<d>``, ``depth_all``, ``rank_<r>`` (the profile's lists).

    OMP_NUM_THREADS=1 python scripts/open_questions_jobs.py --profile cpu paired_all reference:finetune
    OMP_NUM_THREADS=1 python scripts/open_questions_jobs.py --profile cpu --all --part 1/2   # a 2nd process
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from run_notebook_plain import _ipython_stand_in, notebook_script, parse_overrides  # noqa: E402

NOTEBOOK = ROOT / "notebooks" / "07_open_questions.ipynb"
SETUP_UNTIL = "OpenQuestionRuns("  # the setup ends with the cell that builds `runs`


def setup_namespace(profile: str, results_path: str, overrides: dict) -> dict:
    """The notebook's namespace after its setup cells: parameters, ``data``, ``runs``, ``tokenizer``."""
    sys.path.insert(0, str(ROOT))
    from trainattn.book.runner import load_profile, notebook_parameters

    params = notebook_parameters(load_profile(profile), NOTEBOOK.stem)
    params.update(profile=profile, results_path=results_path, **overrides)
    _ipython_stand_in()
    namespace = {"__name__": "__main__", "__notebook__": NOTEBOOK.stem}
    for label, code in notebook_script(NOTEBOOK, params):
        exec(compile(code, f"{NOTEBOOK.name}:{label}", "exec"), namespace)
        if SETUP_UNTIL in code:
            return namespace
    raise ValueError(f"{NOTEBOOK}: no cell builds {SETUP_UNTIL!r}")


def all_jobs(ns: dict) -> list[str]:
    """Every job of the chapter under its parameters, in priority order: question 1's two φs and its
    references first, then the heuristics, the probe-free φs and the scaling φs (every layer last)."""
    scaling = [n for n in scaling_table(ns) if n != "base"]
    return ["paired_all", "paired_seen", "reference:finetune", "reference:oracle", "reference:taalm",
            *(f"reference:{h}" for h in ns["heuristics"]), *(f"unpaired:{u}" for u in ns["unpaired"]),
            *(f"scaling:{v}" for v in sorted(scaling, key=lambda v: v == "depth_all"))]


def part_of(jobs: list[str], k: int, n: int) -> list[str]:
    """Process ``k`` of ``n``: every ``n``-th job from the ``k``-th, then the others' jobs from the end
    (a job another process is computing is waited for and read back, so nothing runs twice)."""
    if not 0 <= k < n:
        raise ValueError(f"--part {k}/{n}: K must lie in 0 … {n - 1}")
    own = jobs[k::n]
    return own + [j for j in reversed(jobs) if j not in own]


def scaling_table(ns: dict) -> dict:
    from trainattn.studies.open_questions import scaling_variants

    return scaling_variants(ns["scaling_depths"], ns["scaling_ranks"])


def run_job(ns: dict, job: str) -> str:
    """Compute (or read back) one job; returns a one-line summary."""
    runs, kind, _, arg = ns["runs"], *job.partition(":")
    if kind == "reference":
        phi_run = ns["phi_run"] if arg == "taalm" else None
        from trainattn.studies.ablations import ckl_numbers

        (row,) = runs.reference_grid([arg], ns["seed"], phi_run)
        return f"top_acc {ckl_numbers(row)['top_acc']:.3f}"
    if kind == "paired_all":
        from trainattn.studies.open_questions import share_corpora

        corpora = share_corpora(ns["data"].to_learn, ns["n_share_docs"], ns["twiki_period"], ns["data_dir"])
        (_, row), _ = runs.phi_all_measured(ns["share_stages"], corpora, ns["max_length"])
    elif kind == "paired_seen":
        row, _ = runs.taalm_run("paired_seen", ns["data"].train_seen)
    elif kind == "unpaired":
        row, _ = runs.unpaired_run(arg, ns["max_length"])
    elif kind == "scaling":
        table = scaling_table(ns)
        if arg not in table or arg == "base":
            raise ValueError(f"scaling:{arg}: not one of the profile's variants {sorted(set(table) - {'base'})}")
        row, _ = runs.taalm_run("paired_all", ns["data"].train_all, arg, table)
    else:
        raise ValueError(f"unknown job {job!r}: reference:<method> | paired_all | paired_seen | "
                         "unpaired:<strategy> | scaling:<variant>")
    return f"top_acc {row['top_acc']:.3f}, val NLL φ {row['val_phi_nll']:.3f} vs uniform {row['val_uniform_nll']:.3f}"


def parse_cli(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict]:
    """The parsed arguments (``jobs`` in the order given) and the ``--set`` overrides."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("jobs", nargs="*", metavar="JOB")
    parser.add_argument("--all", action="store_true", help="every job of the chapter (after the JOBs given)")
    parser.add_argument("--part", default=None, metavar="K/N",
                        help="with --all: process K of N (0-based) takes every N-th job first")
    parser.add_argument("--dry-run", action="store_true", help="print the jobs in order and exit")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--results-path", default="runs/open_questions_jobs/07_open_questions.json",
                        help="the notebook's results_path (nothing is written there; run_dir comes from the profile)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="parameter overrides (YAML); a later word without '=' is a JOB")
    args = parser.parse_args(argv)
    # `--set` takes every later word; a job name never holds '=', an override always does
    args.jobs += [w for w in args.set if "=" not in w]
    try:
        overrides = parse_overrides([w for w in args.set if "=" in w])
    except ValueError as error:
        parser.error(str(error))
    if not args.jobs and not args.all:
        parser.error("name the jobs, or --all")
    if args.part and not args.all:
        parser.error("--part needs --all")
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_cli(argv)
    start = time.perf_counter()
    ns = setup_namespace(args.profile, args.results_path, overrides)
    print(f"[{time.strftime('%X')}] setup {time.perf_counter() - start:.0f} s; work folder {ns['run_dir']}", flush=True)
    jobs = list(args.jobs)
    if args.all:
        every = all_jobs(ns)
        if args.part:
            k, _, n = args.part.partition("/")
            every = part_of(every, int(k), int(n))
        jobs += [j for j in every if j not in jobs]
    if args.dry_run:
        print("\n".join(jobs))
        return 0
    for job in jobs:
        t0 = time.perf_counter()
        summary = run_job(ns, job)
        print(f"[{time.strftime('%X')}] {job}: {summary} ({(time.perf_counter() - t0) / 60:.1f} min)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
