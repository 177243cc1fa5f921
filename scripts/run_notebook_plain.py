"""Execute a book notebook's code cells in plain Python, with a profile's parameters.

For machines that have PyTorch but no Jupyter (the lent GPU machines of this
project have no papermill or ipykernel, and nothing can be installed there).
The parameters are injected right after the notebook's ``parameters`` cell, as
papermill does: the profile's ``common`` and ``<stem>`` sections, then
``profile`` and ``results_path``, then ``--set KEY=VALUE`` overrides (YAML
values). ``IPython.display`` is replaced by a stand-in that prints what is shown; figures and result files are written exactly as under papermill.

    python scripts/run_notebook_plain.py notebooks/04_lama_ckl.ipynb --profile cpu \\
        --results-path /tmp/w/results/cpu/04_lama_ckl.json --set device=cuda

The papermill run (``trainattn book``) stays the reference way to execute the
book; this runner is only how a machine without Jupyter produces the same files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import yaml


def parse_overrides(items: list[str]) -> dict:
    """``--set KEY=VALUE`` items as ``{key: YAML value}``; an item without ``=`` is a ``ValueError``."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    return overrides


def _ipython_stand_in() -> None:
    """Print what the notebook displays (Markdown tables as text), with or without IPython."""

    class _Shown:
        def __init__(self, data=None, filename=None, url=None, **_):
            self.data, self.filename = data, filename or url

        def __str__(self):
            return f"[{type(self).__name__}: {self.filename}]" if self.filename else str(self.data)

    display_module = types.ModuleType("IPython.display")
    for name in ("Markdown", "HTML", "Image"):
        setattr(display_module, name, type(name, (_Shown,), {}))
    display_module.display = lambda *objs, **_: [print(o) for o in objs] and None
    package = types.ModuleType("IPython")
    package.display = display_module
    package.get_ipython = lambda: None  # matplotlib asks for a shell and a version when
    package.version_info = (99, 0, 0)  # it sees IPython imported: no shell, nothing to fix
    sys.modules.update({"IPython": package, "IPython.display": display_module})


def notebook_script(notebook: Path, parameters: dict) -> list[tuple[str, str]]:
    """``[(label, code)]``: the code cells, with the parameter assignments after the tagged cell."""
    cells = json.loads(notebook.read_text())["cells"]
    out, injected = [], False
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        out.append((f"cell {i}", "".join(cell["source"])))
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            out.append(("injected parameters", "\n".join(f"{k} = {v!r}" for k, v in parameters.items())))
            injected = True
    if not injected:
        raise ValueError(f"{notebook}: no cell tagged 'parameters'")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--results-path", required=True)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path.cwd()))
    from trainattn.book.runner import load_profile, notebook_parameters

    stem = args.notebook.stem
    params = notebook_parameters(load_profile(args.profile), stem)
    params.update(profile=args.profile, results_path=args.results_path)
    try:
        params.update(parse_overrides(args.set))
    except ValueError as error:
        parser.error(str(error))
    Path(args.results_path).parent.mkdir(parents=True, exist_ok=True)

    _ipython_stand_in()
    import matplotlib

    matplotlib.use("Agg")
    namespace = {"__name__": "__main__", "__notebook__": stem}  # Chapter.stem: the recompute line names it
    start = time.perf_counter()
    for label, code in notebook_script(args.notebook, params):
        print(f"\n### {stem} {label} ({time.perf_counter() - start:.0f} s)", flush=True)
        exec(compile(code, f"{args.notebook}:{label}", "exec"), namespace)
    print(f"\n### {stem} done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
