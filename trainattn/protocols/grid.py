"""Many LAMA-CKL runs (methods × seeds) in one resumable folder, and their summary.

Layout: ``<run_root>/seed-<k>/<method>/`` holds one :func:`~trainattn.protocols.lama_ckl.run_lama_ckl`
run (its per-epoch checkpoint and ``result.json``). A finished run is read back,
not recomputed, when the run store (:mod:`trainattn.protocols.store`) finds the
same identity: config, method, data and, for methods that use φ, the same φ
(:func:`~trainattn.protocols.store.phi_fingerprint`). An unfinished run
resumes from its last epoch. So a grid can be stopped at any point and run
again, by a script, the CLI or a notebook, and loses no finished work.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from trainattn.config import CKLConfig
from trainattn.errors import TrainattnError
from trainattn.methods import canonical_method_name, make_method, uses_phi
from trainattn.protocols.lama_ckl import ckl_identity, run_lama_ckl
from trainattn.protocols.store import (
    Run,
    config_identity,
    data_fingerprint,
    differing_keys,
    phi_fingerprint,
)

SUMMARY_KEYS = ("top_acc_mean", "top_acc_std", "epoch_mean", "nf_acc_mean",
                "total_knowledge_mean", "total_knowledge_std", "seeds")


def run_dir_for(run_root: str | Path, method: str, seed: int) -> Path:
    return Path(run_root) / f"seed-{seed}" / canonical_method_name(method)


def run_lama_ckl_grid(
    base: CKLConfig,
    methods: Sequence[str],
    seeds: Sequence[int],
    to_learn_rows: list[dict],
    not_to_forget_rows: list[dict],
    run_root: str | Path,
    load_model: Callable[[], tuple],
    load_phi: Callable | None = None,
    phi_run: str | Path | None = None,
    review_rows: list[dict] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> list[dict]:
    """Run (or read back) every ``method`` for every ``seed``; returns their result dicts.

    Args:
        base: the shared settings; ``method``, ``seed`` and (for φ methods)
            ``phi_checkpoint`` are set per run.
        load_model: returns a fresh ``(model, tokenizer)``; called once per run
            that has to train (runs modify their model in place).
        load_phi: ``callable(path) -> φ`` for methods that use φ, read from ``phi_run``.
        review_rows: the replay pool of MixReview (ignored by other methods).

    Each result gains ``phi_sha256`` (``None`` for methods without φ).
    """
    phi_methods = [m for m in methods if uses_phi(m)]
    if phi_methods and (phi_run is None or load_phi is None):
        raise ValueError(f"method {phi_methods[0]!r} needs φ: pass phi_run and load_phi")
    phi_sha = phi_fingerprint(phi_run) if phi_methods else None  # once: φ is the same for every run
    data_sha = data_fingerprint(to_learn_rows, not_to_forget_rows)
    results = []
    for seed in seeds:
        for method in methods:
            needs_phi = uses_phi(method)
            config = replace(base, method=method, seed=seed,
                             phi_checkpoint=str(phi_run) if needs_phi else None)
            out = run_dir_for(run_root, method, seed)
            run = Run(out, ckl_identity(config, phi_sha if needs_phi else None, data_sha))
            with run.lock():  # another process computing this run: wait, then read it back
                result = run.read_result()
                if result is not None:
                    state = "read back"
                else:
                    model, tokenizer = load_model()
                    torch.manual_seed(seed)
                    strategy = make_method(method, load_phi=load_phi)
                    result = run_lama_ckl(config, model, tokenizer, to_learn_rows, not_to_forget_rows, strategy,
                                          out_dir=out, review_rows=review_rows, progress=progress)
                    del model
                    state = f"{sum(t['train_s'] + t['eval_s'] for t in result['timings']) / 60:.1f} min"
            result["phi_sha256"] = phi_sha if needs_phi else None
            results.append(result)
            if log is not None:
                m = result["metrics"]["test_chosen"]
                log(f"seed {seed} {result['method']:<24} Top Acc {m['top_acc']:.3f} (epoch {m['epoch']}) "
                    f"NF {m['nf_acc']:.3f} Total {m['total_knowledge']:.3f}  [{state}]")
    return results


def summarise(results: list[dict]) -> dict[str, dict]:
    """Per method: mean and sample std (n - 1) over seeds of the paper's metrics (test-curve choice)."""
    by_method = defaultdict(list)
    for r in results:
        by_method[r["method"]].append(r)
    summary = {}
    for method, runs in by_method.items():
        metrics = [r["metrics"]["test_chosen"] for r in runs]

        def stat(key, runs=metrics):
            values = np.array([m[key] for m in runs if m[key] is not None], dtype=float)
            if not len(values):
                return float("nan"), float("nan")
            # sample standard deviation (n - 1), 0 for a single seed
            return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

        top, epoch, nf, total = (stat(k) for k in ("top_acc", "epoch", "nf_acc", "total_knowledge"))
        summary[method] = {
            "top_acc_mean": top[0], "top_acc_std": top[1], "epoch_mean": epoch[0],
            "nf_acc_mean": nf[0], "total_knowledge_mean": total[0], "total_knowledge_std": total[1],
            "seeds": sorted(r["seed"] for r in runs),
            "labels": runs[0].get("labels", {}),
        }
    return summary


def import_results(results: list[dict], base: CKLConfig, to_learn_rows: list[dict],
                   not_to_forget_rows: list[dict], run_root: str | Path, phi_run: str | Path | None = None,
                   ) -> list[Path]:
    """Turn finished results written before the run store into records the grid reads back.

    Each result must be the run this grid would make: its stored config equals
    ``base`` with the result's method and seed (compared by
    :func:`~trainattn.protocols.store.config_identity`, so a default spelled out
    equals one left out and φ's path does not count), its sizes match the rows, and
    for a method that uses φ its recorded ``phi_sha256`` is the fingerprint of
    ``phi_run``. The rows themselves are the caller's to check (older results
    record sizes, not uuids). Returns the ``result.json`` paths written.
    """
    from trainattn.config import from_dict

    data_sha = data_fingerprint(to_learn_rows, not_to_forget_rows)
    phi_sha = phi_fingerprint(phi_run) if phi_run is not None else None
    written = []
    for result in results:
        method, seed = canonical_method_name(result["method"]), int(result["seed"])
        needs_phi = uses_phi(method)
        config = replace(base, method=method, seed=seed, phi_checkpoint=str(phi_run) if needs_phi else None)
        where = result.get("_path", f"{method}/seed-{seed}")
        stored, expected = config_identity(from_dict(CKLConfig, result["config"], where)), config_identity(config)
        if stored != expected:
            keys = differing_keys(stored, expected)
            raise TrainattnError(f"{where}: not the run this grid makes (config {', '.join(keys)} differ)")
        sizes = result.get("sizes", {})
        if (sizes.get("to_learn"), sizes.get("not_to_forget")) != (len(to_learn_rows), len(not_to_forget_rows)):
            raise TrainattnError(f"{where}: made on {sizes.get('to_learn')} + {sizes.get('not_to_forget')} facts, "
                                 f"not {len(to_learn_rows)} + {len(not_to_forget_rows)}")
        if needs_phi and result.get("phi_sha256") != phi_sha:
            raise TrainattnError(f"{where}: made with another φ ({str(result.get('phi_sha256'))[:12]}…, "
                                 f"{phi_run} is {str(phi_sha)[:12]}…)")
        run = Run(run_dir_for(run_root, method, seed), ckl_identity(config, phi_sha if needs_phi else None, data_sha))
        run.write_result({k: v for k, v in result.items() if k != "_path"})
        written.append(run.folder / "result.json")
    return written


def lama_ckl_summary(results: list[dict]) -> dict[str, dict]:
    """Per method: the keys of :data:`SUMMARY_KEYS` (mean / sample std over seeds, test-curve metrics).

    NaN becomes ``None`` when written with :func:`~trainattn.files.write_json_atomic`.
    """
    summary = summarise(results)
    return {m: {k: s[k] for k in SUMMARY_KEYS} | {"labels": s["labels"]} for m, s in summary.items()}


def disjoint_review_rows(to_learn_rows, not_to_forget_rows, data_dir=None) -> list[dict]:
    """MixReview's default replay pool: released invariant rows not among the tested facts."""
    from trainattn.data.tailor import load_released_rows

    tested = {r["uuid"] for r in list(to_learn_rows) + list(not_to_forget_rows)}
    return [r for r in load_released_rows(data_dir=data_dir) if r["invariant"] and r["uuid"] not in tested]
