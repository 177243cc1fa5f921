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
from trainattn.core.intervals import RunFacts, bootstrap, bootstrap_splits
from trainattn.errors import TrainattnError
from trainattn.methods import canonical_method_name, make_method, uses_phi
from trainattn.protocols.lama_ckl import (
    ckl_identity,
    pool_fingerprints,
    run_lama_ckl,
    run_metrics,
    validation_key,
)
from trainattn.protocols.store import (
    RecordMissingError,
    Run,
    config_identity,
    data_fingerprint,
    differing_keys,
    phi_fingerprint,
    records_only,
)

SUMMARY_KEYS = ("top_acc_mean", "top_acc_std", "epoch_mean", "nf_acc_mean",
                "total_knowledge_mean", "total_knowledge_std", "seeds",
                "lr", "epochs", "val_top_acc_mean", "top_acc_ci95", "nf_acc_ci95", "total_knowledge_ci95",
                "val_top_acc_ci95", "val_total_knowledge_mean", "val_total_knowledge_ci95")
UNTRAINED = "untrained"


def run_dir_for(run_root: str | Path, method: str, seed: int, lr: float | None = None) -> Path:
    """``<root>/seed-<k>/<method>``, with ``/lr-<lr>`` below it when the grid tunes the learning rate."""
    folder = Path(run_root) / f"seed-{seed}" / canonical_method_name(method)
    return folder if lr is None else folder / f"lr-{lr:g}"


def validation_score(result: dict) -> tuple[float, float]:
    """(validation accuracy, −validation NLL) at the run's validation-chosen epoch; higher is better."""
    chosen = result["metrics"].get("val_chosen")
    if not chosen:
        return (-np.inf, -np.inf)
    return validation_key(result["curves"], chosen["epoch"])


def choose_lr(results_by_lr: dict[float, dict]) -> float:
    """The learning rate whose seed-0 run scored best on the validation slice (ties: the first given).

    Only validation facts decide (:func:`validation_score`); the test facts never do.
    """
    if not results_by_lr:
        raise ValueError("no learning rates to choose from")
    lrs = list(results_by_lr)
    return max(lrs, key=lambda lr: (validation_score(results_by_lr[lr]), -lrs.index(lr)))


LR_RULE = "best validation accuracy, then NLL"
FIXED_LR_RULE = "one candidate: the rate was fixed in advance (e.g. chosen on another split, `--lr-from`)"


def lr_choice_record(results_by_lr: dict[float, dict], seed: int | None = None) -> tuple[float, dict]:
    """The chosen learning rate (:func:`choose_lr`) and the ``lr_choice`` record a tuned run keeps.

    The record holds every candidate's validation score and epochs trained, the rule, and (when
    given) the seed whose runs decided.
    """
    lr = choose_lr(results_by_lr)
    record = {"chosen": lr, "rule": LR_RULE if len(results_by_lr) > 1 else FIXED_LR_RULE}
    if seed is not None:
        record["seed"] = seed
    record["candidates"] = [{"lr": x, "val_acc": validation_score(r)[0], "val_nll": -validation_score(r)[1],
                             "epochs_trained": r.get("epochs_trained")} for x, r in results_by_lr.items()]
    return lr, record


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
    reference_rows: list[dict] | None = None,
    lrs: Sequence[float] | None = None,
) -> list[dict]:
    """Run (or read back) every ``method`` for every ``seed``; returns their result dicts.

    Args:
        base: the shared settings; ``method``, ``seed`` and (for φ methods)
            ``phi_checkpoint`` are set per run.
        load_model: returns a fresh ``(model, tokenizer)``; called once per run
            that has to train (runs modify their model in place).
        load_phi: ``callable(path) -> φ`` for methods that use φ, read from ``phi_run``.
        review_rows: the replay pool of MixReview (ignored by other methods).
        reference_rows: the documents RHO-1's reference model trains on (the meta pool).
        lrs: a learning-rate grid. Each method first runs seed ``seeds[0]`` at every rate;
            :func:`choose_lr` picks the rate on the validation slice, and the other seeds run
            at that rate only. Folders get ``/lr-<lr>``; results gain ``lr_choice``.

    Each result gains ``phi_sha256`` (``None`` for methods without φ). With ``lrs``, the
    results returned are the chosen rate's.
    """
    phi_methods = [m for m in methods if uses_phi(m)]
    if phi_methods and (phi_run is None or load_phi is None):
        raise ValueError(f"method {phi_methods[0]!r} needs φ: pass phi_run and load_phi")
    phi_sha = phi_fingerprint(phi_run) if phi_methods else None  # once: φ is the same for every run
    data_sha = data_fingerprint(to_learn_rows, not_to_forget_rows)
    done: dict[tuple, dict] = {}

    def one_run(method: str, seed: int, lr: float | None) -> dict:
        if (method, seed, lr) in done:  # the tuning run of the chosen rate
            return done[(method, seed, lr)]
        needs_phi = uses_phi(method)
        config = replace(base, method=method, seed=seed, phi_checkpoint=str(phi_run) if needs_phi else None,
                         **({} if lr is None else {"lr": lr}))
        out = run_dir_for(run_root, method, seed, lr)
        run = Run(out, ckl_identity(config, phi_sha if needs_phi else None, data_sha,
                                    pool_fingerprints(method, review_rows, reference_rows)))
        with run.lock():  # another process computing this run: wait, then read it back
            result = run.read_result()
            if result is not None:
                if "curves" in result:  # the current rule's metrics, not the writer's
                    result["metrics"] = run_metrics(result["curves"])
                state = "read back"
            else:
                model, tokenizer = load_model()
                torch.manual_seed(seed)
                strategy = make_method(method, load_phi=load_phi)
                result = run_lama_ckl(config, model, tokenizer, to_learn_rows, not_to_forget_rows, strategy,
                                      out_dir=out, review_rows=review_rows, progress=progress,
                                      reference_rows=reference_rows)
                del model
                state = f"{sum(t['train_s'] + t['eval_s'] for t in result['timings']) / 60:.1f} min"
        result["phi_sha256"] = phi_sha if needs_phi else None
        if log is not None:
            m = result["metrics"]["test_chosen"]
            at = "" if lr is None else f" lr {lr:g}"
            log(f"seed {seed} {result['method']:<24}{at} Top Acc {m['top_acc']:.3f} (epoch {m['epoch']}) "
                f"NF {m['nf_acc']:.3f} Total {m['total_knowledge']:.3f}  [{state}]")
        done[(method, seed, lr)] = result
        return result

    chosen: dict[str, tuple[float | None, dict | None]] = {m: (None, None) for m in methods}
    if lrs:
        for method in methods:
            tuning = {float(lr): one_run(method, seeds[0], float(lr)) for lr in lrs}
            lr, choice = lr_choice_record(tuning, seed=seeds[0])
            chosen[method] = (lr, choice)
            if log is not None:
                log(f"{canonical_method_name(method)}: lr {lr:g} chosen on the validation slice")
    results = []
    for seed in seeds:
        for method in methods:
            lr, choice = chosen[method]
            result = one_run(method, seed, lr)
            if choice is not None:
                result["lr_choice"] = choice
            results.append(result)
    return results


def recorded_lama_ckl_grid(
    base: CKLConfig, methods: Sequence[str], seeds: Sequence[int], required: Sequence[str] = (), **kwargs
) -> tuple[list[dict], dict[str, RecordMissingError]]:
    """:func:`run_lama_ckl_grid`, except that in records-only mode a method with any run not yet
    recorded is left out rather than stopping the grid.

    Returns ``(results, missing)``: the results in :func:`run_lama_ckl_grid`'s order (seed, then
    method), and for each left-out method the error that names its first run without a record.
    Outside records-only mode ``missing`` is empty: every run is read back or computed. A method
    of ``required`` without its records re-raises its error: a table without it says nothing.
    This is how the published book shows an interim grid while the rest is being computed.
    """
    if not records_only():
        return run_lama_ckl_grid(base, methods, seeds, **kwargs), {}
    results, missing = [], {}
    for method in methods:
        try:
            results += run_lama_ckl_grid(base, [method], seeds, **kwargs)
        except RecordMissingError as err:
            if method in required:
                raise
            missing[method] = err
    order = {(seed, canonical_method_name(m)): i
             for i, (seed, m) in enumerate((s, m) for s in seeds for m in methods)}
    return sorted(results, key=lambda r: order[(r["seed"], r["method"])]), missing


def summarise(results: list[dict], intervals: bool = True) -> dict[str, dict]:
    """Per method: mean and sample std (n − 1) over seeds of the paper's metrics, and 95 % intervals.

    Two readings: the paper's test-curve one (``top_acc_mean``: the best epoch of the TO-LEARN
    curve) and the validation-chosen one (``val_top_acc_mean``: the facts outside the
    validation slice, at the epoch where the validation slice peaked). Intervals
    (``*_ci95``) are bootstrapped over facts and seeds (:mod:`trainattn.core.intervals`);
    they are ``None`` for results written without per-fact scores. A single seed has std
    ``None`` (not 0: there is no spread to report). ``lr`` is the learning rate used,
    ``epochs`` the mean number of epochs trained (early stopping). With ``intervals``
    and a run with per-fact scores, an ``untrained`` entry gives θ before training
    (epoch 0 of the first LoRA run).
    """
    by_method = defaultdict(list)
    for r in results:
        by_method[r["method"]].append(r)
    summary = {}
    for method, runs in by_method.items():
        metrics = [r["metrics"]["test_chosen"] for r in runs]
        val = [r["metrics"].get("val_chosen") or {} for r in runs]

        def stat(key, runs=metrics):
            values = np.array([m[key] for m in runs if m.get(key) is not None], dtype=float)
            if not len(values):
                return float("nan"), None
            return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None

        top, epoch, nf, total = (stat(k) for k in ("top_acc", "epoch", "nf_acc", "total_knowledge"))
        lrs = sorted({r["config"]["lr"] for r in runs if "config" in r})
        entry = {
            "top_acc_mean": top[0], "top_acc_std": top[1], "epoch_mean": epoch[0],
            "nf_acc_mean": nf[0], "total_knowledge_mean": total[0], "total_knowledge_std": total[1],
            "seeds": sorted(r["seed"] for r in runs),
            "labels": runs[0].get("labels", {}),
            "lr": (lrs[0] if len(lrs) == 1 else lrs) if lrs else None,
            "epochs": _epochs_trained(runs),
            "val_top_acc_mean": stat("to_learn_rest_acc", val)[0],
            "val_total_knowledge_mean": _val_total(val),
        }
        if runs[0].get("lr_choice"):
            entry["lr_choice"] = runs[0]["lr_choice"]
        entry.update(_intervals(runs) if intervals else _no_intervals())
        summary[method] = entry
    if intervals and results:
        untrained = untrained_entry(results)
        if untrained is not None:
            summary[UNTRAINED] = untrained
    return summary


def _epochs_trained(runs: list[dict]) -> float | None:
    counts = [r.get("epochs_trained", len(r["curves"]["to_learn"]["acc"]) - 1 if "curves" in r else None)
              for r in runs]
    counts = [c for c in counts if c is not None]
    return float(np.mean(counts)) if counts else None


def _val_total(val: list[dict]) -> float:
    values = [v["to_learn_rest_acc"] + v["nf_acc"] for v in val
              if v.get("to_learn_rest_acc") is not None and v.get("nf_acc") is not None]
    return float(np.mean(values)) if values else float("nan")


def _no_intervals() -> dict:
    return {k: None for k in ("top_acc_ci95", "nf_acc_ci95", "total_knowledge_ci95",
                              "val_top_acc_ci95", "val_total_knowledge_ci95")}


def _intervals(runs: list[dict]) -> dict:
    """95 % intervals of both readings, or ``None`` where a run lacks per-fact scores."""
    out = _no_intervals()
    test = [RunFacts.from_result(r, "test") for r in runs]
    if all(t is not None for t in test):
        b = bootstrap(test)
        out.update(top_acc_ci95=b["top_acc_ci95"], nf_acc_ci95=b["nf_acc_ci95"],
                   total_knowledge_ci95=b["total_knowledge_ci95"])
    val = [RunFacts.from_result(r, "val") for r in runs]
    if all(v is not None for v in val):
        b = bootstrap(val)
        out.update(val_top_acc_ci95=b["top_acc_ci95"], val_total_knowledge_ci95=b["total_knowledge_ci95"])
    return out


def _untrained_source(results: list[dict]) -> tuple[dict, RunFacts, RunFacts | None] | None:
    """The run whose epoch 0 stands for θ before training, with its per-fact scores fixed at epoch 0:
    ``(result, test-reading facts, validation-reading facts or None)``; ``None`` if there is none."""
    for r in results:
        if "kadapter" in r["method"]:
            continue
        facts = RunFacts.from_result(r, "test")
        if facts is None:
            continue
        rest = RunFacts.from_result(r, "val")
        test = RunFacts(facts.to_learn, facts.not_to_forget, chosen_epoch=0)
        val = None if rest is None else RunFacts(rest.to_learn, rest.not_to_forget, chosen_epoch=0, facts=rest.facts)
        return r, test, val
    return None


def untrained_entry(results: list[dict]) -> dict | None:
    """θ before any training (epoch 0 of the first run that adds LoRA, which starts as θ exactly).

    K-Adapter runs are skipped: a fresh adapter already changes θ's output. ``None`` if no run
    has per-fact scores.
    """
    source = _untrained_source(results)
    if source is None:
        return None
    r, test, val = source
    learn, nf = r["curves"]["to_learn"]["acc"][0], r["curves"]["not_to_forget"]["acc"][0]
    b = bootstrap([test])
    entry = {"top_acc_mean": learn, "top_acc_std": None, "epoch_mean": 0.0, "nf_acc_mean": nf,
             "total_knowledge_mean": learn + nf, "total_knowledge_std": None, "seeds": [r["seed"]],
             "labels": {"from": f"epoch 0 of {r['method']} seed {r['seed']}"}, "lr": None, "epochs": 0.0,
             "top_acc_ci95": b["top_acc_ci95"], "nf_acc_ci95": b["nf_acc_ci95"],
             "total_knowledge_ci95": b["total_knowledge_ci95"]}
    if val is not None:
        v = bootstrap([val])
        entry.update(val_top_acc_mean=v["top_acc"], val_top_acc_ci95=v["top_acc_ci95"],
                     val_total_knowledge_mean=v["total_knowledge"],
                     val_total_knowledge_ci95=v["total_knowledge_ci95"])
    return entry


BY_SPLIT_KEYS = ("top_acc_mean", "nf_acc_mean", "total_knowledge_mean", "val_top_acc_mean", "epoch_mean",
                 "seeds", "lr", "epochs", "top_acc_ci95")


def summarise_splits(results_by_split: dict[int, list[dict]], intervals: bool = True) -> dict[str, dict]:
    """Per method, :func:`summarise` on each tailored split and the splits pooled.

    ``results_by_split`` maps a split seed to that split's LAMA-CKL results (every method and
    seed run on that split's facts, with that split's φ). Each method present in any split gets

    * ``by_split``: ``{str(split_seed): {k: summarise(...)[method][k] for k in BY_SPLIT_KEYS}}``;
    * ``top_acc_mean``, ``nf_acc_mean``, ``total_knowledge_mean``, ``val_top_acc_mean``,
      ``val_total_knowledge_mean``, ``epoch_mean``, ``epochs``: the mean over its splits of the
      split means (every split weighs the same, whatever its number of seeds);
    * ``*_ci95``: 95 % intervals from :func:`~trainattn.core.intervals.bootstrap_splits`
      (splits, then seeds and facts within a split, resampled), for the test-curve reading
      (``top_acc``, ``nf_acc``, ``total_knowledge``) and the validation-chosen one
      (``val_top_acc``, ``val_total_knowledge``); ``None`` when a run lacks per-fact scores,
      and all ``None`` without ``intervals``;
    * ``splits`` (the sorted split seeds it ran on: a method missing from a split is pooled over
      the others), ``n_runs`` (runs over all its splits), ``lr`` (the one rate every split chose,
      else the sorted distinct rates), ``labels`` (its first split's).

    With ``intervals``, an ``untrained`` entry pools θ before training over the splits: per split,
    epoch 0 of its first non-K-Adapter run with per-fact scores (as :func:`untrained_entry`).
    The pooled keys are those :func:`~trainattn.report.tables.headline` and
    :func:`~trainattn.report.tables.fair_rows` read.
    """
    splits = sorted(results_by_split)
    per_split = {split: summarise(results_by_split[split], intervals=intervals) for split in splits}
    methods = list(dict.fromkeys(m for split in splits for m in per_split[split] if m != UNTRAINED))
    summary = {}
    for method in methods:
        present = [split for split in splits if method in per_split[split]]
        entries = [per_split[split][method] for split in present]
        runs = [[r for r in results_by_split[split] if r["method"] == method] for split in present]

        def mean(key, entries=entries):
            values = [e.get(key) for e in entries]
            if any(v is None for v in values):
                return None if key == "epochs" else float("nan")
            return float(np.mean(values))

        lrs = sorted({lr for e in entries for lr in (e["lr"] if isinstance(e["lr"], list) else [e["lr"]])
                      if lr is not None})
        entry = {
            "by_split": {str(split): {k: e.get(k) for k in BY_SPLIT_KEYS} for split, e in zip(present, entries,
                                                                                              strict=True)},
            **{key: mean(key) for key in ("top_acc_mean", "nf_acc_mean", "total_knowledge_mean", "epoch_mean",
                                          "val_top_acc_mean", "val_total_knowledge_mean", "epochs")},
            "splits": present, "n_runs": sum(len(r) for r in runs), "labels": entries[0].get("labels", {}),
            "lr": (lrs[0] if len(lrs) == 1 else lrs) if lrs else None,
        }
        entry.update(_pooled_intervals(runs) if intervals else _no_intervals())
        summary[method] = entry
    if intervals:
        untrained = _pooled_untrained({split: results_by_split[split] for split in splits}, per_split)
        if untrained is not None:
            summary[UNTRAINED] = untrained
    return summary


def _pooled_intervals(runs_by_split: list[list[dict]]) -> dict:
    """95 % intervals of both readings pooled over splits, ``None`` where a run lacks per-fact scores."""
    out = _no_intervals()
    test = [[RunFacts.from_result(r, "test") for r in runs] for runs in runs_by_split]
    if all(t is not None for group in test for t in group):
        b = bootstrap_splits(test)
        out.update(top_acc_ci95=b["top_acc_ci95"], nf_acc_ci95=b["nf_acc_ci95"],
                   total_knowledge_ci95=b["total_knowledge_ci95"])
    val = [[RunFacts.from_result(r, "val") for r in runs] for runs in runs_by_split]
    if all(v is not None for group in val for v in group):
        b = bootstrap_splits(val)
        out.update(val_top_acc_ci95=b["top_acc_ci95"], val_total_knowledge_ci95=b["total_knowledge_ci95"])
    return out


def _pooled_untrained(results_by_split: dict[int, list[dict]], per_split: dict[int, dict]) -> dict | None:
    """θ before training pooled over the splits whose summary has an ``untrained`` entry; ``None`` if none."""
    sources = {split: _untrained_source(results) for split, results in results_by_split.items()
               if UNTRAINED in per_split[split]}
    if not sources:
        return None
    by_split = {str(split): {k: per_split[split][UNTRAINED].get(k) for k in BY_SPLIT_KEYS}
                | {"from": per_split[split][UNTRAINED]["labels"]["from"]} for split in sources}
    b = bootstrap_splits([[test] for _, test, _ in sources.values()])
    entry = {"by_split": by_split, "epoch_mean": 0.0, "epochs": 0.0, "lr": None, "splits": list(sources),
             "n_runs": len(sources), "labels": {"from": "epoch 0 of each split's first LoRA run"},
             **{key: float(np.mean([s[key] for s in by_split.values()]))
                for key in ("top_acc_mean", "nf_acc_mean", "total_knowledge_mean")},
             "top_acc_ci95": b["top_acc_ci95"], "nf_acc_ci95": b["nf_acc_ci95"],
             "total_knowledge_ci95": b["total_knowledge_ci95"]}
    if all(val is not None for _, _, val in sources.values()):
        v = bootstrap_splits([[val] for _, _, val in sources.values()])
        entry.update(val_top_acc_mean=v["top_acc"], val_top_acc_ci95=v["top_acc_ci95"],
                     val_total_knowledge_mean=v["total_knowledge"],
                     val_total_knowledge_ci95=v["total_knowledge_ci95"])
    return entry


def import_results(results: list[dict], base: CKLConfig, to_learn_rows: list[dict],
                   not_to_forget_rows: list[dict], run_root: str | Path, phi_run: str | Path | None = None,
                   review_rows: list[dict] | None = None, reference_rows: list[dict] | None = None,
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
        run = Run(run_dir_for(run_root, method, seed), ckl_identity(
            config, phi_sha if needs_phi else None, data_sha, pool_fingerprints(method, review_rows, reference_rows)))
        run.write_result({k: v for k, v in result.items() if k != "_path"})
        written.append(run.folder / "result.json")
    return written


def lama_ckl_summary(results: list[dict]) -> dict[str, dict]:
    """Per method: the keys of :data:`SUMMARY_KEYS` (mean / sample std over seeds, test-curve metrics).

    NaN becomes ``None`` when written with :func:`~trainattn.files.write_json_atomic`.
    """
    summary = summarise(results)
    out = {}
    for method, s in summary.items():
        out[method] = {k: s.get(k) for k in SUMMARY_KEYS} | {"labels": s["labels"]}
        if "lr_choice" in s:  # how the learning rate was chosen: every candidate's validation score
            out[method]["lr_choice"] = s["lr_choice"]
    return out


def chosen_learning_rates(run_root: str | Path) -> dict[str, float]:
    """``{canonical method: learning rate}`` as a grid folder's seed-0 candidates choose it (read back).

    Methods whose candidates have not all finished are absent (:func:`read_grid`).
    """
    return {canonical_method_name(r["method"]): r["lr_choice"]["chosen"]
            for r in read_grid(run_root) if r.get("lr_choice")}


def read_grid(run_root: str | Path) -> list[dict]:
    """The finished runs of a grid folder, read back without computing anything; chosen-rate runs only.

    For a method tuned over learning rates (``seed-<k>/<method>/lr-<lr>/``) the rate is chosen again
    from the first seed's runs (:func:`choose_lr`; every candidate must be finished) and each seed's
    run at that rate is returned, with ``lr_choice`` as :func:`run_lama_ckl_grid` records it. Metrics
    are recomputed from the curves. All runs must share one data fingerprint (one split), else a
    :class:`~trainattn.errors.TrainattnError` names the folder. Unfinished runs (no ``result.json``)
    are left out; a method whose rate cannot be chosen yet is left out whole.
    """
    from trainattn.files import read_json

    root = Path(run_root)
    seeds = sorted((int(p.name.removeprefix("seed-")), p) for p in root.glob("seed-*") if p.is_dir())
    if not seeds:
        raise TrainattnError(f"{root}: no seed-<k>/ folders: not a LAMA-CKL grid")

    def load(path: Path) -> dict | None:
        file = path / "result.json"
        if not file.is_file():
            return None
        result = read_json(file)
        result["metrics"] = run_metrics(result["curves"])
        return result

    first_seed = seeds[0][1]
    results, data = [], set()
    for method_dir in sorted(p for p in first_seed.iterdir() if p.is_dir()):
        tuned = sorted(method_dir.glob("lr-*"))
        lr, choice = None, None
        if tuned:
            candidates = {float(p.name.removeprefix("lr-")): load(p) for p in tuned}
            if any(r is None for r in candidates.values()):
                continue  # a candidate still running: the rate cannot be chosen yet
            lr, choice = lr_choice_record(dict(sorted(candidates.items())), seed=seeds[0][0])
        for _, seed_dir in seeds:
            folder = seed_dir / method_dir.name
            result = load(folder if lr is None else folder / f"lr-{lr:g}")
            if result is None:
                continue
            if choice is not None:
                result["lr_choice"] = choice
            data.add((result.get("identity") or {}).get("data_sha256"))
            results.append(result)
    if len(data) > 1:
        raise TrainattnError(f"{root}: runs made on {len(data)} different fact sets; one grid folder holds one split")
    return results


def disjoint_review_rows(to_learn_rows, not_to_forget_rows, data_dir=None) -> list[dict]:
    """MixReview's default replay pool: released invariant rows not among the tested facts."""
    from trainattn.data.tailor import load_released_rows

    tested = {r["uuid"] for r in list(to_learn_rows) + list(not_to_forget_rows)}
    return [r for r in load_released_rows(data_dir=data_dir) if r["invariant"] and r["uuid"] not in tested]
