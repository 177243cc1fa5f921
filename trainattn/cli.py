"""The ``trainattn`` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from trainattn.errors import TrainattnError


def _probe_eval(args) -> int:
    from trainattn.core.evaluate import score_probes
    from trainattn.data import LAMA_CKL_SPLITS, load_lama_ckl, probe_text
    from trainattn.lm import load_lm

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


def _tailor(args):
    from trainattn.data import tailor_lama_ckl
    from trainattn.lm import load_lm

    model, tokenizer = load_lm(args.model)
    splits = tailor_lama_ckl(
        model, tokenizer, args.model, args.to_learn, args.not_to_forget, args.meta or None,
        seed=args.seed, data_dir=args.data_dir, batch_size=args.batch_size,
    )
    print(splits.summary())
    print(f"written to {splits.stats['folder']}")
    return 0


def _meta_train(args):
    from trainattn.config import MetaConfig, load_config
    from trainattn.core.lora import add_lora
    from trainattn.core.meta import MetaLearner, examples_from_rows
    from trainattn.data import load_tailored, tailor_lama_ckl
    from trainattn.lm import build_phi, load_lm
    from trainattn.protocols.meta_training import meta_pool_split, meta_train

    config = load_config(MetaConfig, args.config, args.set)
    torch_seed(config.seed)
    theta, tokenizer = load_lm(config.theta.model)
    if args.tailored:
        splits = load_tailored(args.tailored)
    else:
        splits = tailor_lama_ckl(theta, tokenizer, config.theta.model, args.to_learn,
                                 args.not_to_forget, seed=args.split_seed, data_dir=args.data_dir)
    print(splits.summary())
    pool = examples_from_rows(splits.meta_pool, config.probe_form)
    # as chapter 03: validation first, then one pass of meta_steps × meta_batch (or --examples)
    val, train, _ = meta_pool_split(pool, config.val_size, args.examples or config.meta_steps * config.meta_batch)
    print(f"meta-training on {len(train)} examples, validating on {len(val)} held-out ones; "
          f"{config.meta_steps} meta-steps of {config.meta_batch} = "
          f"{config.meta_steps * config.meta_batch} example passes")
    theta = add_lora(theta, config.theta.lora_rank, config.theta.lora_alpha,
                     config.theta.lora_dropout, seed=config.seed)
    phi, _ = build_phi(config.phi.model, config.phi.num_layers, tokenizer,
                       config.phi.lora_rank, config.phi.lora_alpha, seed=config.seed)
    learner = MetaLearner(config, theta, phi, tokenizer)
    result = meta_train(config, learner, train, val, out_dir=args.out)
    for v in result["validations"]:
        print(
            f"step {v['step']:>4}: φ-weighted acc {v['phi']['accuracy']:.3f} NLL {v['phi']['nll']:.3f} | "
            f"uniform acc {v['uniform']['accuracy']:.3f} NLL {v['uniform']['nll']:.3f} | "
            f"φ weight object {v['weight_object']:.3f} vs other {v['weight_other']:.3f}"
        )
    print(f"{result['step']} meta-steps in {result['seconds'] / 60:.1f} min; results in {args.out}")
    return 0


def _meta_validate(args):
    from trainattn.core.lora import add_lora
    from trainattn.core.meta import MetaLearner, examples_from_rows
    from trainattn.data import load_tailored
    from trainattn.files import write_json_atomic
    from trainattn.lm import load_lm
    from trainattn.protocols.meta_training import load_trained_phi, trained_phi_config, validate

    config = trained_phi_config(args.phi)
    theta, tokenizer = load_lm(config.theta.model)
    theta = add_lora(theta, config.theta.lora_rank, config.theta.lora_alpha, config.theta.lora_dropout,
                     seed=config.seed)
    phi = load_trained_phi(args.phi, tokenizer)
    splits = load_tailored(args.tailored)
    rows = splits.to_learn if args.split == "to_learn" else splits.meta_pool[: config.val_size]
    if args.split == "meta_unseen":
        used = config.val_size + args.examples_used
        rows = splits.meta_pool[used : used + args.size]
    examples = examples_from_rows(rows[: args.size], config.probe_form if args.split != "to_learn" else "descriptive")
    report = validate(MetaLearner(config, theta, phi, tokenizer), examples)
    report.update(split=args.split, size=len(examples))
    print(json.dumps(report, indent=1))
    if args.out:
        write_json_atomic(args.out, report)
    return 0


def _ckl(args):
    from trainattn.config import CKLConfig, load_config
    from trainattn.lm import load_lm
    from trainattn.methods import make_method
    from trainattn.protocols.lama_ckl import run_lama_ckl
    from trainattn.protocols.meta_training import load_trained_phi

    overrides = list(args.set)
    if args.method:
        overrides.append(f"method={args.method}")
    if args.phi:
        overrides.append(f"phi_checkpoint={args.phi}")
    config = load_config(CKLConfig, args.config, overrides)
    torch_seed(config.seed)
    theta, tokenizer = load_lm(config.theta.model)
    method = make_method(config.method, load_phi=lambda path: load_trained_phi(path, tokenizer))
    if args.benchmark == "temporalwiki":
        from trainattn.protocols.temporalwiki import run_temporalwiki
        from trainattn.report.temporalwiki import format_twiki_table

        result = run_temporalwiki(
            config, theta, tokenizer, method=method, out_dir=args.out, max_probes=args.max_probes or None,
            source_label=args.twiki_documents, data_dir=args.data_dir,
        )
        print(format_twiki_table(result))
        return 0
    to_learn, not_to_forget, review, reference = _lama_ckl_rows(args, config, theta, tokenizer)
    result = run_lama_ckl(config, theta, tokenizer, to_learn, not_to_forget, method,
                          out_dir=args.out, review_rows=review, reference_rows=reference)
    m = result["metrics"]["test_chosen"]
    print(f"{result['method']}: Top Acc {m['top_acc']:.3f} at epoch {m['epoch']}, "
          f"NF Acc {m['nf_acc']:.3f}, Total Knowledge {m['total_knowledge']:.3f}")
    return 0


def _lama_ckl_rows(args, config, theta, tokenizer):
    """TO-LEARN, NOT-TO-FORGET (the tailored split, cut to the config's sizes), the replay pool and
    the meta-training pool (the in-domain documents of RHO-1's reference model)."""
    from trainattn.data import load_tailored, tailor_lama_ckl
    from trainattn.protocols.grid import disjoint_review_rows

    if args.tailored:
        splits = load_tailored(args.tailored)
    else:
        splits = tailor_lama_ckl(theta, tokenizer, config.theta.model, config.n_to_learn,
                                 config.n_not_to_forget, seed=args.split_seed, data_dir=args.data_dir)
    to_learn = splits.to_learn[: config.n_to_learn]
    not_to_forget = splits.not_to_forget[: config.n_not_to_forget]
    return to_learn, not_to_forget, disjoint_review_rows(to_learn, not_to_forget, args.data_dir), splits.meta_pool


def _ckl_grid(args):
    from trainattn.config import CKLConfig, load_config
    from trainattn.files import write_json_atomic
    from trainattn.lm import load_lm
    from trainattn.methods import canonical_method_name
    from trainattn.protocols.grid import chosen_learning_rates, lama_ckl_summary, run_lama_ckl_grid
    from trainattn.protocols.meta_training import load_trained_phi
    from trainattn.report.tables import lama_ckl_table

    if args.lr_from and args.lrs:
        raise ValueError("--lrs and --lr-from exclude each other: choose the rate here, or take another grid's")
    config = load_config(CKLConfig, args.config, args.set)
    theta, tokenizer = load_lm(config.theta.model)
    to_learn, not_to_forget, review, reference = _lama_ckl_rows(args, config, theta, tokenizer)
    del theta
    common = dict(load_model=lambda: load_lm(config.theta.model, device=args.device), phi_run=args.phi,
                  load_phi=lambda path: load_trained_phi(path, tokenizer), review_rows=review,
                  reference_rows=reference)
    if args.lr_from:
        # each method at the rate another grid (split) chose on its validation slice
        chosen = chosen_learning_rates(args.lr_from)
        missing = [m for m in args.methods if canonical_method_name(m) not in chosen]
        if missing:
            raise TrainattnError(f"--lr-from {args.lr_from}: no learning rate chosen there yet for {missing} "
                                 "(its seed-0 candidates are not all finished)")
        results = []
        for method in args.methods:
            lr = chosen[canonical_method_name(method)]
            print(f"{method}: lr {lr:g}, as chosen in {args.lr_from}")
            results += run_lama_ckl_grid(config, [method], args.seeds, to_learn, not_to_forget, args.out,
                                         lrs=[lr], **common)
    else:
        results = run_lama_ckl_grid(config, args.methods, args.seeds, to_learn, not_to_forget, args.out,
                                    lrs=args.lrs, **common)
    print(lama_ckl_table(results))
    if args.summary:
        write_json_atomic(args.summary, lama_ckl_summary(results))
        print(f"summary written to {args.summary}")
    return 0


def _ckl_pool(args):
    from trainattn.files import write_json_atomic
    from trainattn.protocols.grid import read_grid, summarise_splits
    from trainattn.report.tables import markdown_table, split_header, split_rows

    grids = {}
    for spec in args.grid:
        split, sep, folder = spec.partition("=")
        if not sep or not split.strip().isdigit():
            raise SystemExit(f"--grid {spec!r}: expected SPLIT_SEED=FOLDER, e.g. 42=results/cpu/runs/lama_ckl")
        grids[int(split)] = read_grid(folder)
        print(f"split {split}: {len(grids[int(split)])} finished runs read back from {folder}")
    summary = summarise_splits(grids)
    print(markdown_table(split_header(summary), split_rows(summary)))
    if args.out:
        write_json_atomic(args.out, summary)
        print(f"pooled summary written to {args.out}")
    if args.figure:
        from trainattn.report.figures import split_spread

        split_spread(summary).savefig(args.figure, dpi=120, bbox_inches="tight")
        print(f"figure written to {args.figure}")
    return 0


def _report(args):
    from trainattn.report.figures import plot_curves
    from trainattn.report.tables import lama_ckl_table, load_results

    results = load_results(args.results)
    print(lama_ckl_table(results))
    if args.plot:
        plot_curves(results, args.plot)
        print(f"curves written to {args.plot}")
    return 0


def _weights(args):
    from trainattn.core.train_attention import text_token_weights
    from trainattn.lm import load_tokenizer
    from trainattn.protocols.meta_training import load_trained_phi, trained_phi_config
    from trainattn.report.figures import token_weight_text

    config = trained_phi_config(args.phi)
    tokenizer = load_tokenizer(config.phi.model)
    phi = load_trained_phi(args.phi, tokenizer)
    text = " ".join(args.text)
    tokens, weights = text_token_weights(phi, tokenizer, text, args.max_length)
    print(f"φ from {args.phi} (meta-training step {config.meta_steps}, backbone {config.phi.model}); "
          "weight per predicted token:")
    print(token_weight_text(tokens, weights))
    return 0


def _export_phi(args):
    from trainattn.protocols.meta_training import export_phi

    out = export_phi(args.run, args.out)
    print(f"φ exported to {out} ({sum(f.stat().st_size for f in out.iterdir()) / 2**20:.1f} MiB)")
    return 0


def _book(args):
    from trainattn.book.runner import (
        PUBLISH_FALLBACK,
        PUBLISH_PROFILE,
        BookCheckError,
        build_book,
        run_book,
    )

    recompute = True if args.recompute == [] else (args.recompute or False)
    publish = args.profile == "publish"
    if args.records_only and recompute:
        raise ValueError("--records-only reads records back and --recompute computes: choose one")
    if publish and (args.update or recompute):
        raise ValueError("--update and --recompute compute and rewrite a profile's results: "
                         "name it, e.g. --profile cpu (the published book only reads records back)")
    try:
        report = run_book(PUBLISH_PROFILE if publish else args.profile, args.notebooks or None,
                          update=args.update, timeout=args.timeout or None, recompute=recompute,
                          records_only=publish or args.records_only, fallback=PUBLISH_FALLBACK if publish else None)
    except BookCheckError as err:  # the book is still built: its pages mark what differs
        report = err.report
    print(report.table())
    if not args.no_build:
        print(f"book built in {build_book()}")
    failed = [r.stem for r in report.runs if r.status == "failed"]
    if failed:
        print(f"trainattn book: notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    if not report.ok:
        if args.strict:
            print("trainattn book: results outside their tolerance bands (--strict)", file=sys.stderr)
            return 1
        print("note: some results are outside their tolerance bands; the pages say which "
              "(--strict makes this an error)")
    return 0


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


# φ meta-trained by chapter 03 at the cpu profile: its run record (LoRA + head tensors, config), committed
SHIPPED_PHI = "results/cpu/runs/03_meta_training/best"


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

    p = sub.add_parser("tailor", help="build TO-LEARN / NOT-TO-FORGET / meta-training splits for a model")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--to-learn", type=int, default=100)
    p.add_argument("--not-to-forget", type=int, default=100)
    p.add_argument("--meta", type=int, default=0, help="meta-training pool size (0: all candidates)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=_tailor)

    p = sub.add_parser("meta-train", help="meta-train φ (Train-Attention) on the tailored pool")
    p.add_argument("--config", default=None, help="YAML file of MetaConfig fields")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides, e.g. inner_lr=2e-4 phi.num_layers=6 val_known_masking=false")
    p.add_argument("--out", required=True, help="run folder: checkpoints and result.json (resumes)")
    p.add_argument("--tailored", default=None, help="folder written by `trainattn tailor`")
    p.add_argument("--examples", type=int, default=0, help="use only the first N training examples")
    p.add_argument("--to-learn", type=int, default=100)
    p.add_argument("--not-to-forget", type=int, default=100)
    p.add_argument("--split-seed", type=int, default=42)
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=_meta_train)

    p = sub.add_parser("meta-validate", help="validate a trained φ on more held-out documents")
    p.add_argument("--phi", required=True, help="meta-training run folder")
    p.add_argument("--tailored", required=True, help="folder written by `trainattn tailor`")
    p.add_argument("--split", default="meta_unseen", choices=["meta_unseen", "meta_val", "to_learn"],
                   help="meta_unseen: pool rows after the validation and training rows")
    p.add_argument("--examples-used", type=int, default=0,
                   help="how many pool rows after the validation rows the run trained on")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--out", default=None)
    p.set_defaults(func=_meta_validate)

    p = sub.add_parser("ckl", help="one continual-knowledge-learning run (LAMA-CKL) with one method")
    p.add_argument("--method", default=None, help="e.g. finetune, oracle, rho1, taalm, taalm+mixreview")
    p.add_argument("--benchmark", default="lama-ckl", choices=["lama-ckl", "temporalwiki"])
    p.add_argument("--config", default=None, help="YAML file of CKLConfig fields")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides, e.g. epochs=4 n_to_learn=32 known_masking=true")
    p.add_argument("--phi", default=None, help="meta-training run folder (for taalm)")
    p.add_argument("--out", required=True, help="run folder: checkpoints and result.json (resumes)")
    p.add_argument("--tailored", default=None, help="folder written by `trainattn tailor`")
    p.add_argument("--split-seed", type=int, default=42)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--twiki-documents", default="diffset", choices=["diffset", "proxy"],
                   help="TemporalWiki training documents: the filtered diff-sets, or a labelled proxy "
                   "built from the probe triples (when the diff-sets are unavailable)")
    p.add_argument("--max-probes", type=int, default=0, help="TemporalWiki: probes per set (0: all)")
    p.set_defaults(func=_ckl)

    p = sub.add_parser("ckl-grid", help="LAMA-CKL runs for several methods and seeds (resumable), and a summary")
    p.add_argument("--methods", nargs="+", required=True, help="e.g. finetune oracle taalm taalm+mixreview")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--config", default=None, help="YAML file of CKLConfig fields (shared by every run)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--phi", default=None, help="meta-training run folder (for methods with taalm)")
    p.add_argument("--out", required=True, help="grid folder: <out>/seed-<k>/<method>/[lr-<lr>/] per run")
    p.add_argument("--lrs", nargs="+", type=float, default=None,
                   help="learning rates to choose from on the validation slice at the first seed (chapter 04: "
                        "3e-4 1e-3 3e-3); without it every run uses the config's lr")
    p.add_argument("--lr-from", default=None, metavar="GRID",
                   help="run each method at the learning rate that grid folder chose on its validation slice "
                        "(the further splits of issue 16 take split 42's rates, fixed in advance)")
    p.add_argument("--summary", default=None, help="write mean/std per method (JSON) here")
    p.add_argument("--tailored", default=None, help="folder written by `trainattn tailor`")
    p.add_argument("--split-seed", type=int, default=42)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="cpu", help="θ's device, e.g. cpu or cuda (φ follows θ)")
    p.set_defaults(func=_ckl_grid)

    p = sub.add_parser("ckl-pool", help="LAMA-CKL pooled over tailored splits: per-split and pooled Top Acc with "
                       "95 %% intervals (splits, seeds and facts resampled), read back from grid folders")
    p.add_argument("--grid", nargs="+", required=True, metavar="SPLIT=FOLDER",
                   help="a grid folder per split seed, e.g. 42=results/cpu/runs/lama_ckl "
                        "7=results/cpu/runs/splits/split-7/lama_ckl")
    p.add_argument("--out", default=None, help="write the pooled summary (JSON) here")
    p.add_argument("--figure", default=None, help="write the per-split spread (PNG) here")
    p.set_defaults(func=_ckl_pool)

    p = sub.add_parser("report", help="paper-style table (and curves) from CKL result files")
    p.add_argument("results", nargs="+", help="result.json files or folders holding them")
    p.add_argument("--plot", default=None, help="write learning/forgetting curves to this PNG")
    p.set_defaults(func=_report)

    p = sub.add_parser("weights", help="φ's weight for every token of a text you type")
    p.add_argument("text", nargs="+", help="the text, e.g. \"Marie Curie was born in Warsaw.\"")
    p.add_argument("--phi", default=SHIPPED_PHI,
                   help=f"a meta-training run folder (default: the shipped φ, {SHIPPED_PHI})")
    p.add_argument("--max-length", type=int, default=None, help="tokens kept (default: all)")
    p.set_defaults(func=_weights)

    p = sub.add_parser("export-phi", help="copy a trained φ (LoRA + head tensors, config) into a small folder")
    p.add_argument("run", help="a meta-training run folder")
    p.add_argument("out", help="the folder to write (e.g. shipped/phi)")
    p.set_defaults(func=_export_phi)

    p = sub.add_parser("book", help="execute the notebooks (papermill), check their results, build the book")
    p.add_argument("--profile", default="publish", choices=["publish", "ci", "cpu", "gpu"],
                   help="publish (default): the book readers see, every chapter at the cpu reference scale read "
                        "back from the committed run records (a chapter with a run not yet committed is shown "
                        "at ci, marked); ci | cpu | gpu: notebooks/profiles/<profile>.yml, computing what has "
                        "no record")
    p.add_argument("--notebooks", nargs="*", default=[], metavar="STEM",
                   help="only these notebooks, e.g. 01_concept (default: all)")
    p.add_argument("--update", action="store_true",
                   help="rewrite the reference results/<profile>/*.json instead of checking them")
    p.add_argument("--no-build", action="store_true", help="execute and check only; skip jupyter-book")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a result leaves its tolerance band (CI); otherwise the book is built "
                        "and its pages mark the results that differ")
    p.add_argument("--timeout", type=int, default=0, help="seconds per cell (0: no limit)")
    p.add_argument("--recompute", nargs="*", default=None, metavar="STEM",
                   help="compute these notebooks' runs (all that run, without STEM) in runs/<profile>/recompute/ "
                        "instead of reading the committed run records back")
    p.add_argument("--records-only", action="store_true",
                   help="compute nothing: read every run back from its record, as the published book does; a "
                        "chapter that can show an interim table (04) leaves out the methods not yet recorded, "
                        "others stop at the first missing record. With --update: an interim reference")
    p.set_defaults(func=_book)
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
