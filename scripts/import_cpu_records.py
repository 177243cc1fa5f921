"""Turn the committed `cpu` LAMA-CKL results into run records that chapters 02 and 04 read back.

The grid of the `cpu` reference (`results/cpu/lama_ckl_runs/seed-<k>/<method>.json`) was computed
before the run store existed, so its files carry no identity. This script rebuilds the split and
the base config exactly as chapter 04 does under the `cpu` profile. It then checks each result
against them with `trainattn.protocols.grid.import_results`:

- the same config, with defaults spelled out or not;
- the same sizes;
- the same φ fingerprint for φ methods.

The split's uuids are also checked against chapter 02's committed results. Each result is then
written as a record under `--out`. The φ must be the one the grid used: `--phi` is a
meta-training run folder or an exported φ, and its fingerprint must match.

    python scripts/import_cpu_records.py --phi results/cpu/runs/03_meta_training --out results/cpu/runs/lama_ckl
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trainattn.book.chapter import Chapter
from trainattn.book.runner import load_profile, notebook_parameters, parameters_cell
from trainattn.files import read_json
from trainattn.protocols.grid import import_results
from trainattn.report.tables import load_results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phi", required=True, help="the φ the grid used (run folder or exported φ)")
    parser.add_argument("--out", default="results/cpu/runs/lama_ckl", help="where the records go")
    parser.add_argument("--results", default="results/cpu/lama_ckl_runs", help="the committed results")
    args = parser.parse_args()

    stem = "04_lama_ckl"
    params = {**parameters_cell(Path("notebooks") / f"{stem}.ipynb"),
              **notebook_parameters(load_profile("cpu"), stem), "results_path": f"results/cpu/{stem}.json"}
    chapter = Chapter(params)
    theta, tokenizer = chapter.load_theta()
    to_learn, not_to_forget, _ = chapter.lama_ckl_split(theta, tokenizer)
    del theta
    chapter02 = read_json("results/cpu/02_token_weighted_learning.json")["data"]
    if ([r["uuid"] for r in to_learn], [r["uuid"] for r in not_to_forget]) != (
            chapter02["to_learn_uuids"], chapter02["not_to_forget_uuids"]):
        raise SystemExit("the split rebuilt here is not the one the cpu reference used (chapter 02's uuids)")
    base = chapter.ckl_config(n_to_learn=len(to_learn), n_not_to_forget=len(not_to_forget))
    written = import_results(load_results([args.results]), base, to_learn, not_to_forget, args.out,
                             phi_run=args.phi)
    print(f"{len(written)} records written under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
