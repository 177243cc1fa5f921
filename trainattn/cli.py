"""The ``trainattn`` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import TrainattnError


def _probe_eval(args) -> int:
    from .data import LAMA_CKL_SPLITS, load_lama_ckl, probe_text
    from .evaluate import score_probes
    from .models import load_lm

    start = time.time()
    model, tokenizer = load_lm(args.model)
    print(f"model {args.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    results = []
    for split in LAMA_CKL_SPLITS:
        rows = load_lama_ckl(split, data_dir=args.data_dir)
        if args.limit:
            rows = rows.select(range(min(args.limit, len(rows))))
        for form in ("descriptive", "schematic"):
            probes = [probe_text(r, form) for r in rows]
            scores = score_probes(
                model, tokenizer, probes, list(rows["object"]), args.batch_size,
                progress=f"{split}/{form}",
            )
            results.append({"split": split, "form": form, **scores.summary()})
    header = f"{'split':<24}{'form':<13}{'rows':>6}{'accuracy':>10}{'fully':>7}{'NLL':>8}{'not located':>13}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['split']:<24}{r['form']:<13}{r['n']:>6}{r['accuracy']:>10.3f}"
            f"{r['n_fully_correct']:>7}{r['nll']:>8.3f}{r['n_not_located']:>13}"
        )
    print(f"({time.time() - start:.0f} s; accuracy = teacher-forced object tokens, partial credit)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"model": args.model, "results": results}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainattn", description="Train-Attention (TAALM) reproduced: jobs of the book."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("probe-eval", help="score a model on every LAMA-CKL probe (both forms)")
    p.add_argument("--model", default="smollm2-135m", help="embedded name, local dir or hub id")
    p.add_argument("--data-dir", default=None, help="local data folder (default: $TRAINATTN_DATA, else download)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=0, help="only the first N rows of each file (0: all)")
    p.add_argument("--out", default=None, help="also write the table as JSON here")
    p.set_defaults(func=_probe_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TrainattnError, FileNotFoundError, ValueError) as err:
        print(f"trainattn {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
