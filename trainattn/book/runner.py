"""Execute the book's notebooks with papermill, check their numbers, build the book.

A *profile* (``notebooks/profiles/<profile>.yml``) is a mapping: ``common:``
parameters for every notebook plus one section per notebook stem, e.g.
``01_concept:``. :func:`run_book` executes each ``notebooks/NN_*.ipynb`` into
``<build_dir>/<stem>.ipynb`` with those parameters plus ``profile`` and
``results_path`` (``<build_dir>/results/<profile>/<stem>.json``), then compares
the JSON each notebook wrote with the committed reference
``results/<profile>/<stem>.json`` inside the bands of
``results/<profile>/tolerances.yml`` (:mod:`trainattn.book.tolerances`). ``update=True``
rewrites the references deliberately.

:func:`build_book` then runs ``jupyter-book build`` strictly (warnings are
errors) on the executed copies; the book itself executes nothing, and the
committed notebooks stay output-free.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainattn.book.chapter import companion_files
from trainattn.book.tolerances import (
    Mismatch,
    cell_text,
    compare_results,
    format_mismatches,
    load_tolerances,
)
from trainattn.errors import TrainattnError
from trainattn.files import read_json, write_json_atomic

PROFILES_DIR = Path("notebooks") / "profiles"
NOTEBOOKS_DIR = Path("notebooks")
DEFAULT_BUILD_DIR = Path("book") / "executed"  # Jupyter Book always skips `_build/`
DEFAULT_RESULTS_DIR = Path("results")
RUNNER_PARAMETERS = ("profile", "results_path")
RECOMPUTE_DIR = Path("runs")  # <root>/runs/<profile>/recompute/<stem>: git-ignored


class BookCheckError(TrainattnError):
    """A notebook failed, or its results left their tolerance bands; holds the report."""

    def __init__(self, report: BookReport):
        self.report = report
        super().__init__(report.table())


# ------------------------------------------------------------ notebooks, profiles


def list_notebooks(root: str | Path = ".", names: list[str] | None = None) -> list[Path]:
    """``notebooks/NN_*.ipynb`` in order; ``names`` selects by stem or stem prefix (``"01"``)."""
    folder = Path(root) / NOTEBOOKS_DIR
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebooks/NN_*.ipynb under {Path(root).resolve()}; "
                                "run from the repository root")
    if not names:
        return found
    chosen = []
    for name in names:
        stem = Path(name).stem
        hits = [p for p in found if p.stem == stem] or [p for p in found if p.stem.startswith(stem)]
        if len(hits) != 1:
            raise ValueError(f"notebook {name!r} matches {[p.stem for p in hits] or 'nothing'}; "
                             f"known: {', '.join(p.stem for p in found)}")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def companion_results(root: str | Path = ".") -> dict[str, str]:
    """``{name: notebook stem}`` of the files notebooks publish beside their results.

    Derived from each notebook's ``chapter.write_companion("<name>", …)`` calls
    (:func:`trainattn.book.chapter.companion_files`), so nothing lists them by hand.
    """
    sources = {}
    for path in list_notebooks(root):
        nb = json.loads(path.read_text(encoding="utf-8"))
        sources[path.stem] = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    return companion_files(sources)


def parameters_cell(notebook: str | Path) -> dict[str, Any]:
    """The literals assigned in the notebook's cell tagged ``parameters``.

    Raises ``ValueError`` unless there is exactly one such cell, it is the
    first code cell, and it holds only ``name = <literal>`` assignments.
    """
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{notebook}: {len(tagged)} cells tagged 'parameters', expected 1")
    if code[0] is not tagged[0]:
        raise ValueError(f"{notebook}: the 'parameters' cell must be the first code cell")
    source = "".join(tagged[0]["source"])
    values: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{notebook}: parameters cell line {node.lineno} is not `name = literal`")
        try:
            values[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError as err:
            raise ValueError(f"{notebook}: parameter {node.targets[0].id!r} is not a plain "
                             f"literal (line {node.lineno})") from err
    return values


def load_profile(profile: str, root: str | Path = ".") -> dict[str, dict[str, Any]]:
    """The profile YAML as ``{"common": {...}, "<stem>": {...}}`` (sections may be absent)."""
    folder = Path(root) / PROFILES_DIR
    path = folder / f"{profile}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yml"))
        raise FileNotFoundError(f"no profile {path}; known profiles: {', '.join(known) or 'none'}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values() if v):
        raise ValueError(f"{path}: expected a mapping of sections (common, <notebook stem>) "
                         "to mappings of parameters")
    return {k: dict(v or {}) for k, v in data.items()}


def notebook_parameters(profile_data: dict, stem: str) -> dict[str, Any]:
    """``common`` parameters overridden by the notebook's own section."""
    return {**profile_data.get("common", {}), **profile_data.get(stem, {})}


def recompute_parameters(params: dict[str, Any], profile: str, stem: str) -> dict[str, Any]:
    """``params`` with the notebook's ``run_dir`` moved to ``runs/<profile>/recompute/<stem>``.

    A profile points ``run_dir`` at committed run records (``results/cpu/runs/…``), which the run
    store reads back. Recomputing sends the runs to a fresh, git-ignored folder instead: nothing
    is read back from the records, and an interrupted recompute resumes there (delete the folder
    to start over). φ read from another chapter's record (``phi_run``) is kept: recompute
    chapter 03 for a new φ. A notebook without ``run_dir`` computes everything anyway.
    """
    if "run_dir" not in params:
        return dict(params)
    return {**params, "run_dir": (RECOMPUTE_DIR / profile / "recompute" / stem).as_posix()}


def check_profile(profile: str, root: str | Path = ".") -> list[str]:
    """Problems of a profile: unknown sections, parameters a notebook does not declare."""
    data = load_profile(profile, root)
    notebooks = {p.stem: p for p in list_notebooks(root)}
    problems = [f"section {s!r} names no notebook (known: {', '.join(notebooks)})"
                for s in data if s != "common" and s not in notebooks]
    for stem, path in notebooks.items():
        declared = parameters_cell(path)
        for name in notebook_parameters(data, stem):
            if name not in declared:
                problems.append(f"{stem}: parameter {name!r} is not in its parameters cell")
    problems += [f"{stem}: parameter {name!r} is set by the runner, not the profile"
                 for stem in notebooks for name in RUNNER_PARAMETERS
                 if name in notebook_parameters(data, stem)]
    return problems


# ------------------------------------------------------------ running


@dataclass
class NotebookRun:
    """The outcome of one notebook: ``status`` is ok | updated | mismatch | no-reference | failed.

    ``profile``: the profile it ran under; ``fallback_from``: the run whose missing record made the
    intended profile give way, if one did; ``missing_record``: it stopped at a run without a record;
    ``attempt_seconds``: what the intended profile's attempt (and the fallback's dependencies) took
    before the fallback run, whose time is ``seconds``.
    """

    stem: str
    status: str
    seconds: float = 0.0
    executed: Path | None = None
    results: Path | None = None
    message: str = ""
    mismatches: list[Mismatch] = field(default_factory=list)
    profile: str = ""
    fallback_from: str = ""
    missing_record: bool = False
    attempt_seconds: float = 0.0


@dataclass
class BookReport:
    """Every notebook's outcome under one profile."""

    profile: str
    runs: list[NotebookRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status in ("ok", "updated") for r in self.runs)

    def table(self) -> str:
        """A summary line per notebook, then the table of keys outside their bands."""
        lines = [f"profile {self.profile}:"]
        for r in self.runs:
            line = f"  {r.stem:<32} {r.status:<13} {r.seconds:7.1f} s"
            if r.profile and r.profile != self.profile:
                line += (f"  [{r.profile}: no {self.profile} record at {r.fallback_from}; "
                         f"{r.attempt_seconds:.1f} s before that]")
            lines.append(line + (f"  {r.message}" if r.message else ""))
        mismatches = [m for r in self.runs for m in r.mismatches]
        if mismatches:
            lines += ["", "results outside their tolerance bands:", format_mismatches(mismatches)]
        return "\n".join(lines)


PUBLISH_PROFILE, PUBLISH_FALLBACK = "cpu", "ci"  # `trainattn book`: the cpu reference, read back
FALLBACK_DEPENDENCIES = Path("_build") / "fallback-dependencies"  # executed copies that are not pages


def run_book(
    profile: str = "ci",
    notebooks: list[str] | None = None,
    build_dir: str | Path = DEFAULT_BUILD_DIR,
    results_dir: str | Path | None = None,
    update: bool = False,
    root: str | Path = ".",
    timeout: int | None = None,
    log_output: bool = False,
    recompute: list[str] | bool = False,
    records_only: bool = False,
    fallback: str | None = None,
) -> BookReport:
    """Execute the notebooks under ``profile`` and check (or, with ``update``, rewrite) their results.

    Every notebook runs even if an earlier one fails; at the end a
    :class:`BookCheckError` (its message is the report's table) is raised if
    any notebook failed, wrote no results, has no reference, or left a band.
    Relative paths are taken from ``root`` (the repository root). ``recompute`` (``True`` for
    every notebook run, or a list of stems) computes those notebooks' runs afresh instead of
    reading committed records back (:func:`recompute_parameters`).

    ``records_only``: the notebooks may only read their runs back from records
    (:data:`~trainattn.protocols.store.RECORDS_ONLY_ENV`); a notebook that reaches a run without
    one stops with :class:`~trainattn.protocols.store.RecordMissingError`. With ``fallback``
    (a profile) that notebook is then executed under ``fallback`` instead, checked against that
    profile's reference, and its page says so at the top (:func:`fallback_note`). This is the
    published book: the cpu reference where its records are committed, never hours of compute.
    """
    root = Path(root).resolve()
    paths = list_notebooks(root, notebooks)
    for name in {profile, fallback} - {None}:
        unknown = [s for s in load_profile(name, root) if s != "common" and s not in {p.stem for p in list_notebooks(root)}]
        if unknown:
            raise ValueError(f"profile {name}: section(s) {unknown} name no notebook")
    report = BookReport(profile)
    for path in paths:
        run = _run_notebook(path, profile, root, Path(build_dir), results_dir, update, timeout, log_output,
                            recompute, records_only)
        if run.missing_record and fallback:
            missing = run.message.split(": no finished run", 1)[0]  # RecordMissingError names the run first
            started = time.perf_counter() - run.seconds
            for producer in _missing_products(path, fallback, root, Path(build_dir)):
                # e.g. chapter 03's φ, which the fallback profile's later chapters read: computed
                # under that profile into the build folder, its page left as published
                _run_notebook(producer, fallback, root, Path(build_dir), results_dir, False, timeout, log_output,
                              recompute, False, executed=root / FALLBACK_DEPENDENCIES / f"{producer.stem}.ipynb")
            run = _run_notebook(path, fallback, root, Path(build_dir), results_dir, update, timeout, log_output,
                                recompute, False)
            run.fallback_from = missing
            run.attempt_seconds = time.perf_counter() - started - run.seconds
            if run.executed is not None and run.executed.is_file():
                mark_fallback(run.executed, fallback_note(path.stem, profile, fallback, missing))
        report.runs.append(run)
    if not report.ok:
        raise BookCheckError(report)
    return report


def _missing_products(path: Path, profile: str, root: Path, build_dir: Path) -> list[Path]:
    """Earlier notebooks whose work folders ``path``'s ``profile`` parameters read and that do not exist.

    A profile points a parameter at another notebook's work folder in the same build
    (``<build_dir>/results/<profile>/<stem>_work``, e.g. the ``ci`` profile's ``phi_run``).
    """
    params = notebook_parameters(load_profile(profile, root), path.stem)
    prefix = (build_dir / "results" / profile).as_posix() + "/"
    stems = {p.stem: p for p in list_notebooks(root)}
    found = []
    for value in params.values():
        if isinstance(value, str) and value.startswith(prefix) and value.endswith("_work"):
            stem = value[len(prefix):-len("_work")]
            if stem in stems and stem < path.stem and not (root / value).exists() and stems[stem] not in found:
                found.append(stems[stem])
    return found


def _run_notebook(path: Path, profile: str, root: Path, build_dir: Path, results_dir, update: bool,
                  timeout: int | None, log_output: bool, recompute, records_only: bool,
                  executed: Path | None = None) -> NotebookRun:
    """Execute one notebook under ``profile`` and check (or write) its results: its :class:`NotebookRun`.

    ``executed``: where the executed copy goes (default: the book's page, ``<build_dir>/<stem>.ipynb``).
    """
    import papermill as pm

    from trainattn.protocols.store import RECORDS_ONLY_ENV

    stem = path.stem
    build_dir = root / build_dir
    results_dir = root / (DEFAULT_RESULTS_DIR if results_dir is None else results_dir) / profile
    data = load_profile(profile, root)
    tolerances = load_tolerances(results_dir / "tolerances.yml")
    got_path = build_dir / "results" / profile / f"{stem}.json"
    executed = executed or build_dir / f"{stem}.ipynb"
    # relative to the repository root (papermill runs there): no build machine's path in the book
    params = {**notebook_parameters(data, stem), "results_path": os.path.relpath(got_path, root),
              "profile": profile}
    if recompute is True or (recompute and stem in recompute):
        params = recompute_parameters(params, profile, stem)
    run = NotebookRun(stem, "failed", executed=executed, results=got_path, profile=profile)
    undeclared = sorted(set(params) - set(parameters_cell(path)))
    if undeclared:
        run.message = f"parameters {undeclared} are not in the notebook's parameters cell"
        return run
    got_path.unlink(missing_ok=True)
    # a notebook keeps resumable work in <stem>_work next to its results; the runner
    # regenerates, so it starts that work afresh
    shutil.rmtree(got_path.parent / f"{stem}_work", ignore_errors=True)
    executed.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    saved_env = os.environ.get(RECORDS_ONLY_ENV)
    os.environ[RECORDS_ONLY_ENV] = "1" if records_only else ""  # the kernel inherits it
    try:
        pm.execute_notebook(str(path), str(executed), parameters=params, kernel_name="python3",
                            cwd=str(root), progress_bar=False, log_output=log_output,
                            execution_timeout=timeout)
    except pm.PapermillExecutionError as err:
        run.missing_record = err.ename == "RecordMissingError"
        run.message = str(err.evalue) if run.missing_record else f"{err.ename}: {err.evalue} (see {executed})"
        return run
    finally:
        run.seconds = time.perf_counter() - start
        if executed.is_file():
            relativise_paths(executed, root)
        if saved_env is None:
            os.environ.pop(RECORDS_ONLY_ENV, None)
        else:
            os.environ[RECORDS_ONLY_ENV] = saved_env
    if not got_path.is_file():
        run.message = f"the notebook wrote no results to {got_path}"
        return run
    got = read_json(got_path)
    reference = results_dir / f"{stem}.json"
    if update:
        write_json_atomic(reference, got)
        published = _publish_beside(stem, profile, got_path.parent, results_dir, root)
        run.status, run.message = "updated", f"reference written to {reference.relative_to(root)}" + (
            f" with {', '.join(published)}" if published else "")
    elif not reference.is_file():
        run.status = "no-reference"
        run.message = f"no reference yet: run with --update to write {reference.relative_to(root)}"
    else:
        run.mismatches = compare_results(stem, read_json(reference), got, tolerances)
        run.status = "mismatch" if run.mismatches else "ok"
        run.message = f"{len(run.mismatches)} key(s) outside their bands" if run.mismatches else ""
        if run.mismatches:
            mark_mismatches(executed, run.mismatches, reference.relative_to(root))
    return run


def _publish_beside(stem: str, profile: str, built: Path, results_dir: Path, root: Path) -> list[str]:
    """Copy a notebook's companion files (:func:`companion_results`) from the build's results folder
    ``built`` into the reference folder ``results_dir`` and, for the published profile, its figures
    (``<stem>.png``, ``<stem>.<name>.png``: the landing page shows them). Returns the names copied."""
    names = [f"{name}.json" for name, owner in companion_results(root).items() if owner == stem]
    if profile == PUBLISH_PROFILE:
        names += sorted(p.name for p in built.glob(f"{stem}*.png") if p.stem == stem or p.stem.startswith(f"{stem}."))
    copied = []
    for name in names:
        if (built / name).is_file():
            shutil.copyfile(built / name, results_dir / name)
            copied.append(name)
    return copied


def relativise_paths(executed: Path, root: Path) -> None:
    """Write the executed notebook with the repository root's absolute path removed: papermill's
    metadata (input and output paths) and library warnings (site-packages of a virtual environment
    inside the checkout) then name paths relative to the repository, as the pages do."""
    text = Path(executed).read_text(encoding="utf-8")
    prefix = json.dumps(str(Path(root).resolve()) + os.sep)[1:-1]  # as it appears inside JSON strings
    if prefix in text:
        Path(executed).write_text(text.replace(prefix, ""), encoding="utf-8")


def fallback_note(stem: str, profile: str, fallback: str, first: str) -> str:
    """A MyST note for a page built under ``fallback`` because ``profile``'s record ``first`` is missing."""
    return "\n".join([
        "```{note}",
        f"**This page shows the `{fallback}` profile's smoke test, not the `{profile}` reference.** "
        f"The published book reads every run of a chapter back from the committed `{profile}` run records, "
        f"and not all of this chapter's are committed yet (the first one missing: `{first}`). "
        f"`trainattn book --profile {profile} --notebooks {stem}` computes them, or "
        "`python scripts/reproduce_cpu.py` for the long grids (hours on 2 cores; both resume).",
        "```"])


def mark_fallback(executed: Path, note: str) -> None:
    """Put ``note`` on the executed notebook's page, after its title cell."""
    _insert_note(executed, "published-profile-fallback", note)


def mismatch_note(mismatches: list[Mismatch], reference: str | Path) -> str:
    """A MyST warning that lists the numbers of this build outside their bands (a page's first note)."""
    rows = [(m.key, cell_text(m.reference), cell_text(m.got), m.band) for m in mismatches]
    lines = ["```{warning}",
             f"**Results check:** {len(mismatches)} number(s) of this build are outside their tolerance "
             f"bands against the reference `{Path(reference).as_posix()}`. The page shows this build's numbers.",
             "", "| key | reference | this build | band |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {a} | {b} | {band} |" for k, a, b, band in rows]
    return "\n".join(lines + ["```"])


def mark_mismatches(executed: Path, mismatches: list[Mismatch], reference: str | Path) -> None:
    """Put :func:`mismatch_note` on the executed notebook's page, after its title cell."""
    _insert_note(executed, "results-check-mismatch", mismatch_note(mismatches, reference))


def _insert_note(executed: Path, cell_id: str, source: str) -> None:
    """A markdown cell ``cell_id`` holding ``source`` after the page's title cell (replacing an older one)."""
    nb = json.loads(Path(executed).read_text(encoding="utf-8"))
    cell = {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": source}
    nb["cells"] = [c for c in nb["cells"] if c.get("id") != cell["id"]]
    nb["cells"].insert(1 if nb["cells"] and nb["cells"][0]["cell_type"] == "markdown" else 0, cell)
    Path(executed).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def check_toc(root: str | Path = ".") -> list[str]:
    """Files named in ``_toc.yml`` that do not exist (executed notebooks not yet built)."""
    root = Path(root)
    from trainattn.book.browser_check import toc_entries

    entries = toc_entries(yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8")))
    suffixes = ("", ".md", ".ipynb")
    return [e for e in entries if not any((root / f"{e}{s}").is_file() for s in suffixes)]


def build_book(root: str | Path = ".", strict: bool = True, clean: bool = False) -> Path:
    """Build the HTML book with ``jupyter-book build`` (warnings are errors when ``strict``).

    The table of contents points at the executed copies (``book/executed/``),
    so :func:`run_book` must have run first; a missing page is named.
    Returns the folder of the HTML output.
    """
    root = Path(root).resolve()
    missing = check_toc(root)
    if missing:
        raise FileNotFoundError(f"_toc.yml names page(s) that do not exist: {', '.join(missing)}; "
                                "run `trainattn book` (without --no-build) to execute them first")
    if clean:
        shutil.rmtree(root / "_build" / "html", ignore_errors=True)
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.is_file() else "jupyter-book", "build", str(root)]
    if strict:
        cmd += ["--warningiserror", "--keep-going"]
    done = subprocess.run(cmd, cwd=root)
    if done.returncode != 0:
        raise TrainattnError(f"`{' '.join(cmd)}` failed (exit {done.returncode}); "
                             "the warnings above are errors in a strict build")
    return root / "_build" / "html"
