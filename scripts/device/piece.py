"""Run one piece of notebook 07 (or only its setup) in the notebook's own namespace.

usage: python3 scripts/device/piece.py PIECE --results-path P [--set k=v ...]
PIECE: reference:<method> | paired_seen | self_probe | document_change3 | scaling:<name>
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, "scripts")
sys.path.insert(0, ".")
import yaml  # noqa: E402
from run_notebook_plain import _ipython_stand_in, notebook_script  # noqa: E402

from trainattn.book.runner import load_profile, notebook_parameters  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("piece")
ap.add_argument("--results-path", required=True)
ap.add_argument("--profile", default="cpu")
ap.add_argument("--set", nargs="*", default=[])
args = ap.parse_args()
nb = Path("notebooks/07_open_questions.ipynb")
params = notebook_parameters(load_profile(args.profile), nb.stem)
params.update(profile=args.profile, results_path=args.results_path)
for item in args.set:
    k, _, v = item.partition("=")
    params[k] = yaml.safe_load(v)
_ipython_stand_in()
import matplotlib  # noqa: E402

matplotlib.use("Agg")
ns = {"__name__": "__main__"}
cells = json.loads(nb.read_text())["cells"]
t0 = time.perf_counter()
for label, code in notebook_script(nb, params):
    if label.startswith("cell ") and int(label.split()[1]) > 5:
        break
    exec(compile(code, f"{nb}:{label}", "exec"), ns)
print(f"setup done in {time.perf_counter() - t0:.0f} s", flush=True)

piece = args.piece
if piece.startswith("reference:"):
    m = piece.split(":", 1)[1]
    code = f"""
use_phi = {m!r} == "taalm"
run_lama_ckl_grid(base_ckl, [{m!r}], [seed], data.to_learn, data.not_to_forget, run_dir / "reference",
                  load_model=lambda: (runs.load_theta(), tokenizer), phi_run=phi_run if use_phi else None,
                  load_phi=lambda path: load_trained_phi(path, tokenizer).to(device), progress=False)
"""
elif piece == "paired_seen":
    code = 'print(runs.taalm_run("paired_seen", data.train_seen))'
elif piece == "self_probe":
    code = """generated = self_probe_examples(data.train_seen, tokenizer, max_length)
print(runs.taalm_run("self_probe", generated))"""
elif piece.startswith("document_"):
    objective = piece.removeprefix("document_")
    code = f"""objective = {objective!r}
table = {{objective: Variant(f"document as its own probe, objective {{objective}}", meta={{"objective": objective}})}}
print(runs.taalm_run({piece!r}, document_probe_examples(data.train_seen, tokenizer, max_length), objective, table))"""
elif piece.startswith("scaling:"):
    name = piece.split(":", 1)[1]
    src = "".join(cells[20]["source"])
    table_code = src[: src.index("n_layers =")]
    assert "table" in table_code and "taalm_run" not in table_code, table_code
    code = table_code + f'\nprint(runs.taalm_run("paired_all", data.train_all, {name!r}, table))'
else:
    raise SystemExit(f"unknown piece {piece}")
exec(compile(code, f"piece {piece}", "exec"), ns)
print(f"piece {piece} done in {time.perf_counter() - t0:.0f} s", flush=True)
