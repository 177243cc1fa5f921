"""Measure how far each checked number of a profile moves under other kernels, threads and caches.

Each setting is one execution of the profile (``trainattn book --profile ci --no-build``) in its
own checkout, e.g. with ``ATEN_CPU_CAPABILITY=avx2`` or ``OMP_NUM_THREADS=1``. This script
compares every run's result JSONs with the reference ``results/<profile>/`` and prints, per
notebook, the keys that moved: the largest |Δ| and |Δ|/|ref| and the setting where it happened.
``results/<profile>/tolerances.yml`` sets its bands from these numbers (its comments record them).

    python scripts/measure_bands.py --profile ci avx2=/tmp/m_avx2/book/executed/results/ci \
        default=/tmp/m_default/book/executed/results/ci
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainattn.book.tolerances import band_for, load_tolerances, measure_spread, spread_table
from trainattn.files import read_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--reference", default=None, help="default: results/<profile>")
    parser.add_argument("--json", default=None, help="also write the spreads here")
    parser.add_argument("runs", nargs="+", metavar="SETTING=FOLDER")
    args = parser.parse_args()
    reference = Path(args.reference or f"results/{args.profile}")
    tolerances = load_tolerances(reference / "tolerances.yml")
    runs = dict(item.split("=", 1) for item in args.runs)
    out = {}
    for ref_file in sorted(reference.glob("[0-9][0-9]_*.json")):
        stem = ref_file.stem
        got = {label: read_json(Path(folder) / ref_file.name) for label, folder in runs.items()
               if (Path(folder) / ref_file.name).is_file()}
        spreads = measure_spread(read_json(ref_file), got)
        checked = {k: s for k, s in spreads.items() if band_for(tolerances, stem, k) is not None}
        print(f"== {stem} ({len(got)} settings, {len(checked)} checked numeric keys)")
        print(spread_table(checked))
        out[stem] = {k: {"abs": s.abs, "rel": s.rel, "where": s.where} for k, s in checked.items() if s.abs > 0}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
