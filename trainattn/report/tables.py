"""Paper-style tables and learning/forgetting curves from CKL result files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from trainattn.files import read_json
from trainattn.protocols.grid import summarise


def load_results(paths) -> list[dict]:
    """Every CKL result among ``paths``: files, or folders searched recursively for ``*.json``
    files that hold ``metrics`` and ``curves`` (run folders' ``result.json``, copied results)."""
    found = []
    for path in map(Path, paths):
        files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
        for f in files:
            result = read_json(f)
            if "metrics" in result and "curves" in result:
                result["_path"] = str(f)
                found.append(result)
    if not found:
        raise FileNotFoundError(f"no CKL result.json found in {', '.join(map(str, paths))}")
    return found


LAMA_CKL_HEADER = ["Method", "Top Acc (± std)", "Epoch", "NF Acc", "Total Knowledge (± std)", "seeds"]
LAMA_CKL_NOTE = "Top Acc and its Epoch are read on the TO-LEARN test curve, as in the paper; NF Acc at that epoch."


def lama_ckl_rows(results: list[dict]) -> list[list]:
    """Rows under :data:`LAMA_CKL_HEADER`, the paper's Table 1 layout: mean ± std over seeds
    (no ± for a single seed), best Top Acc first."""
    rows = []
    for method, s in sorted(summarise(results).items(), key=lambda kv: -np.nan_to_num(kv[1]["top_acc_mean"])):
        label = method + (f" [{s['labels']['review_pool']} pool]" if "review_pool" in s["labels"] else "")
        rows.append([label, _mean_std(s["top_acc_mean"], s["top_acc_std"]), f"{s['epoch_mean']:.1f}",
                     f"{s['nf_acc_mean']:.3f}", _mean_std(s["total_knowledge_mean"], s["total_knowledge_std"]),
                     len(s["seeds"])])
    return rows


def lama_ckl_table(results: list[dict]) -> str:
    """:func:`lama_ckl_rows` as aligned plain text, for a terminal."""
    rows = [LAMA_CKL_HEADER, *([str(c) for c in r] for r in lama_ckl_rows(results))]
    widths = [max(len(r[i]) for r in rows) for i in range(len(LAMA_CKL_HEADER))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:], LAMA_CKL_NOTE])


def with_interval(value: float | None, ci: list[float] | None) -> str:
    """``0.338 [0.301, 0.372]``; the value alone without an interval, an en dash without a value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}" if ci is None else f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


FAIR_HEADER = ["method", "lr", "epochs trained", "Top Acc, test curve [95 % CI]", "Epoch",
               "Top Acc, validation-chosen [95 % CI]", "NF Acc", "Total Knowledge [95 % CI]",
               "Top Acc vs finetune"]


def fair_rows(summary: dict[str, dict], methods: list[str], baseline: str = "finetune") -> list[list]:
    """One row per method, the untrained θ first: the learning rate each chose on validation,
    epochs trained (early stopping), Top Acc in both readings and Total Knowledge with their 95 %
    intervals, and ``above`` / ``level`` / ``below`` against ``baseline`` by those intervals."""
    from trainattn.core.intervals import compare
    from trainattn.methods import canonical_method_name
    from trainattn.protocols.grid import UNTRAINED

    base = summary.get(canonical_method_name(baseline)) if baseline else None
    rows = []
    for method in [UNTRAINED, *methods]:
        s = summary.get(method if method == UNTRAINED else canonical_method_name(method))
        if s is None:
            continue
        versus = "–"
        if base is not None and method not in (UNTRAINED, baseline):
            versus = compare(s.get("top_acc_ci95"), base.get("top_acc_ci95"))
        lr = s.get("lr")
        rows.append([
            "untrained θ (epoch 0)" if method == UNTRAINED else method,
            "–" if lr is None else (f"{lr:g}" if not isinstance(lr, list) else ", ".join(f"{x:g}" for x in lr)),
            "–" if s.get("epochs") is None else f"{s['epochs']:.1f}",
            with_interval(s["top_acc_mean"], s.get("top_acc_ci95")),
            f"{s['epoch_mean']:.1f}",
            with_interval(s.get("val_top_acc_mean"), s.get("val_top_acc_ci95")),
            f"{s['nf_acc_mean']:.3f}",
            with_interval(s["total_knowledge_mean"], s.get("total_knowledge_ci95")),
            versus,
        ])
    return rows


def _mean_std(mean: float, std: float | None) -> str:
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


GRID_CHANGE_HEADER = ["method", "Top Acc, first grid (± std)", "Top Acc, fair grid [95 % CI]",
                      "Total Knowledge, first grid (± std)", "Total Knowledge, fair grid [95 % CI]",
                      "fair grid: lr, epochs trained"]


def grid_change_rows(first: dict[str, dict], fair: dict[str, dict], methods: list[str]) -> list[list]:
    """The first grid (every method at TAALM's lr and 8 epochs) beside the fair one (each method's
    validated lr, early stopping, 95 % intervals), one row per method found in both summaries."""
    from trainattn.methods import canonical_method_name

    rows = []
    for method in methods:
        name = canonical_method_name(method)
        old, new = first.get(name), fair.get(name)
        if old is None or new is None:
            continue
        lr, epochs = new.get("lr"), new.get("epochs")
        rows.append([
            method,
            _mean_std(old["top_acc_mean"], old.get("top_acc_std")),
            with_interval(new["top_acc_mean"], new.get("top_acc_ci95")),
            _mean_std(old["total_knowledge_mean"], old.get("total_knowledge_std")),
            with_interval(new["total_knowledge_mean"], new.get("total_knowledge_ci95")),
            ("–" if lr is None else f"{lr:g}") + ", " + ("–" if epochs is None else f"{epochs:.1f}"),
        ])
    return rows


def headline(summary: dict[str, dict], method: str, baselines: list[str]) -> dict:
    """``method`` against the best of ``baselines`` (by Top Acc) and against every baseline's
    Total Knowledge, decided by 95 % intervals: ``{"best_baseline", "ratio", "top_acc_vs_best",
    "total_knowledge_vs": {baseline: above|level|below}}``."""
    from trainattn.core.intervals import compare
    from trainattn.methods import canonical_method_name

    ours = summary[canonical_method_name(method)]
    present = [b for b in baselines if canonical_method_name(b) in summary]
    if not present:
        raise ValueError(f"none of the baselines {baselines} is in the summary")
    best = max(present, key=lambda b: summary[canonical_method_name(b)]["top_acc_mean"])
    b = summary[canonical_method_name(best)]
    return {
        "best_baseline": best,
        "ratio": ratio(ours["top_acc_mean"], b["top_acc_mean"]),
        "top_acc_vs_best": compare(ours.get("top_acc_ci95"), b.get("top_acc_ci95")),
        "total_knowledge_vs": {x: compare(ours.get("total_knowledge_ci95"),
                                          summary[canonical_method_name(x)].get("total_knowledge_ci95"))
                               for x in present},
    }


def pooled_waiting(pooled: dict[str, dict] | None, splits: list[int], methods: list[str]) -> dict[str, list[int]]:
    """For each of ``methods`` (canonical names), the ``splits`` it has no runs on in ``pooled``
    (a :func:`~trainattn.protocols.grid.summarise_splits` summary; ``None``: every split).

    A headline may read the pooled numbers only when no judged method waits on any split: a
    method pooled over fewer splits than the others does not compare fairly with them.
    """
    from trainattn.methods import canonical_method_name

    out = {}
    for method in methods:
        name = canonical_method_name(method)
        have = set((pooled or {}).get(name, {}).get("splits", []))
        out[name] = sorted(set(splits) - have)
    return out


SPLIT_HEADER = ["method", "Top Acc, split {split} [95 % CI]", "Top Acc, pooled [95 % CI]", "NF Acc, pooled [95 % CI]",
                "Total Knowledge, pooled [95 % CI]", "splits"]


def split_seeds(summary: dict[str, dict]) -> list[int]:
    """Every split seed in a :func:`~trainattn.protocols.grid.summarise_splits` summary, sorted."""
    return sorted({int(k) for s in summary.values() for k in s.get("by_split", {})})


def split_header(summary: dict[str, dict]) -> list[str]:
    """:data:`SPLIT_HEADER` with its per-split column repeated for each split seed of ``summary``."""
    per_split = SPLIT_HEADER[1]
    return [SPLIT_HEADER[0], *(per_split.format(split=k) for k in split_seeds(summary)), *SPLIT_HEADER[2:]]


def split_rows(summary: dict[str, dict], methods: list[str] | None = None) -> list[list]:
    """One row per method of a :func:`~trainattn.protocols.grid.summarise_splits` summary (the
    untrained θ first), matching :func:`split_header`: Top Acc on each split (``–`` where the
    method did not run on it), then Top Acc, NF Acc and Total Knowledge pooled over its splits
    with their 95 % intervals, and how many splits it pooled. ``methods``: which, in order
    (default: every entry)."""
    from trainattn.methods import canonical_method_name
    from trainattn.protocols.grid import UNTRAINED

    seeds = split_seeds(summary)
    wanted = [m for m in summary if m != UNTRAINED] if methods is None else methods
    rows = []
    for method in [UNTRAINED, *wanted]:
        s = summary.get(method if method == UNTRAINED else canonical_method_name(method))
        if s is None:
            continue
        by_split = s.get("by_split", {})
        cells = [with_interval(by_split[str(k)]["top_acc_mean"], by_split[str(k)].get("top_acc_ci95"))
                 if str(k) in by_split else "–" for k in seeds]
        rows.append([
            "untrained θ (epoch 0)" if method == UNTRAINED else method,
            *cells,
            with_interval(s["top_acc_mean"], s.get("top_acc_ci95")),
            with_interval(s["nf_acc_mean"], s.get("nf_acc_ci95")),
            with_interval(s["total_knowledge_mean"], s.get("total_knowledge_ci95")),
            len(s.get("splits", by_split)),
        ])
    return rows


def markdown_table(columns: list, rows: list, formats: dict | None = None) -> str:
    """The book's one table builder: a GitHub/MyST markdown table.

    Args:
        columns: header strings when ``rows`` are sequences, or ``(key, header)``
            pairs when ``rows`` are dicts (a missing key reads as ``None``).
        rows: the table's rows, in order.
        formats: optional per column (key or header): a format spec (``".2e"``)
            or a callable ``value -> str``. Otherwise floats show 3 decimals,
            ``None`` and NaN an en dash, anything else ``str(value)``.
    """
    keyed = bool(columns) and all(isinstance(c, tuple) for c in columns)
    keys = [c[0] for c in columns] if keyed else list(columns)
    headers = [c[1] for c in columns] if keyed else [str(c) for c in columns]
    formats = formats or {}

    def cell(key, value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        how = formats.get(key)
        if callable(how):
            return how(value)
        if how is not None:
            return format(value, how)
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    values = ([[r.get(k) for k in keys] for r in rows] if keyed else [list(r) for r in rows])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(k, v) for k, v in zip(keys, row, strict=True)) + " |" for row in values]
    return "\n".join(lines)


def ratio(a: float, b: float) -> float:
    """a / b, ``inf`` when b is 0 and a > 0, NaN when both are 0 (e.g. "TAALM ÷ finetune")."""
    if b == 0:
        return math.inf if a > 0 else math.nan
    return a / b


def paper_vs_ours_rows(summary: dict[str, dict], methods: list[str]) -> list[list]:
    """Rows ``[method, ours Top Acc (mean ± std), paper Top Acc, ours Total, paper Total, ...]``."""
    from trainattn.methods import canonical_method_name
    from trainattn.report.paper import paper_row

    rows = []
    for method in methods:
        s = summary.get(canonical_method_name(method))
        if s is None:
            continue
        paper = paper_row(method) or (None, None, None, None)
        n = len(s["seeds"])
        rows.append([
            method,
            f"{s['top_acc_mean']:.3f} ± {s['top_acc_std']:.3f}" if n > 1 else f"{s['top_acc_mean']:.3f}",
            paper[0],
            f"{s['epoch_mean']:.1f}", paper[1],
            s["nf_acc_mean"], paper[2],
            f"{s['total_knowledge_mean']:.3f} ± {s['total_knowledge_std']:.3f}" if n > 1
            else f"{s['total_knowledge_mean']:.3f}",
            paper[3], n,
        ])
    return rows


PAPER_VS_OURS_HEADER = ["method", "Top Acc (ours)", "Top Acc (paper)", "Epoch (ours)", "Epoch (paper)",
                        "NF Acc (ours)", "NF Acc (paper)", "Total (ours)", "Total (paper)", "seeds"]


TUNING_HEADER = ["attempt", "examples", "φ layers / rank", "inner", "untracked", "objective", "outer_lr",
                 "minutes", "val step", "val acc φ / uniform", "val NLL φ / uniform",
                 "unseen acc φ / uniform", "unseen NLL φ / uniform", "weight object / other"]


def tuning_rows(folder) -> list[list]:
    """One row per meta-training attempt in ``folder/<attempt>/``, for the φ-tuning table.

    Each attempt folder holds ``meta_train_result.json`` (a meta-training run's
    ``result.json``) and optionally ``validate_unseen.json`` (``trainattn
    meta-validate`` on meta-pool documents no run trained on). With a
    ``selection.json`` of ``{"phi": "best"}`` the attempt is the run's
    best-validated φ (``<run>/best``) rather than its last one, and the
    validation columns show that step. Only meta-pool data is involved: no
    TO-LEARN probe chooses φ.
    """
    from trainattn.protocols.meta_training import best_validation

    rows = []
    for attempt in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        run = read_json(attempt / "meta_train_result.json")
        c = run["config"]
        selection = attempt / "selection.json"
        pick_best = selection.is_file() and read_json(selection).get("phi") == "best"
        last = None
        if run["validations"]:
            last = best_validation(run["validations"]) if pick_best else run["validations"][-1]
        unseen_path = attempt / "validate_unseen.json"
        unseen = read_json(unseen_path) if unseen_path.is_file() else None

        def pair(v, key, fmt):
            return "–" if v is None else f"{v['phi'][key]:{fmt}} / {v['uniform'][key]:{fmt}}"

        weights = unseen or last
        rows.append([
            attempt.name, run["step"] * c["meta_batch"], f"{c['phi']['num_layers']} / {c['phi']['lora_rank']}",
            f"{c['inner_optimizer']} {c['inner_lr']:g}", c["untracked_steps"], c["objective"], f"{c['outer_lr']:g}",
            f"{run['seconds'] / 60:.1f}", last["step"] if last else "–",
            pair(last, "accuracy", ".3f"), pair(last, "nll", ".2f"),
            pair(unseen, "accuracy", ".3f") + (f" (n={unseen['size']})" if unseen else ""), pair(unseen, "nll", ".2f"),
            "–" if weights is None else f"{weights['weight_object']:.4f} / {weights['weight_other']:.4f}",
        ])
    return rows


DEVICE_CHECK_HEADER = ["method", "run A", "run B", "epochs that agree (of {n})", "Top Acc A / B", "Epoch A / B",
                       "NF Acc A / B", "train loss, epoch 1, A − B"]


def curves_agree_until(a: dict, b: dict) -> int:
    """The number of evaluations (epoch 0 first) whose TO-LEARN and NOT-TO-FORGET accuracies are equal
    in two runs' result dicts, counted from the start up to the first that differs."""
    n = 0
    curves = [r["curves"][s]["acc"] for r in (a, b) for s in ("to_learn", "not_to_forget")]
    for learn_a, forget_a, learn_b, forget_b in zip(*curves, strict=False):
        if learn_a != learn_b or forget_a != forget_b:
            break
        n += 1
    return n


def device_check_rows(folder_a, folder_b) -> tuple[list[str], list[list]]:
    """Runs of the same config and seed on two machines (``<folder>/<method>.json`` in both):
    ``(header, rows)`` saying how long their curves stay identical and where they end up."""
    rows, total = [], 0
    for path_a in sorted(Path(folder_a).glob("*.json")):
        path_b = Path(folder_b) / path_a.name
        if not path_b.is_file():
            continue
        a, b = read_json(path_a), read_json(path_b)
        if a["config"] != b["config"]:
            raise ValueError(f"{path_a} and {path_b}: different configs, not a device check")
        ma, mb = a["metrics"]["test_chosen"], b["metrics"]["test_chosen"]
        total = len(a["curves"]["to_learn"]["acc"])
        rows.append([a["method"], a["versions"].get("hardware", "not recorded"), b["versions"].get("hardware", "not recorded"),
                     curves_agree_until(a, b), f"{ma['top_acc']:.3f} / {mb['top_acc']:.3f}",
                     f"{ma['epoch']} / {mb['epoch']}", f"{ma['nf_acc']:.3f} / {mb['nf_acc']:.3f}",
                     f"{a['curves']['train_loss'][1] - b['curves']['train_loss'][1]:.1e}"])
    header = [h.format(n=total) for h in DEVICE_CHECK_HEADER]
    return header, rows


RATIO_HEADER = ["method", "Top Acc ÷ finetune (ours)", "(paper)", "Total ÷ finetune (ours)", "(paper)",
                "Top Acc vs finetune, ours (95 % intervals)", "(paper)"]


def ratio_rows(summary: dict[str, dict], methods: list[str]) -> list[list]:
    """Each method against fine-tuning, ours (seed means) and the paper's: the scale-free comparison.

    The direction columns say ``above`` / ``level`` / ``below``: ours only where the 95 %
    intervals separate (``level`` otherwise, and ``level`` without intervals: no claim), the
    paper's by its reported means (it gives no intervals); ``–`` where the paper has no number.
    """
    from trainattn.core.intervals import compare
    from trainattn.methods import canonical_method_name
    from trainattn.report.paper import paper_row

    base, paper_base = summary.get("finetune"), paper_row("finetune")
    if base is None:
        return []
    rows = []
    for method in methods:
        s, p = summary.get(canonical_method_name(method)), paper_row(method)
        if s is None:
            continue
        ours_top, ours_total = ratio(s["top_acc_mean"], base["top_acc_mean"]), ratio(
            s["total_knowledge_mean"], base["total_knowledge_mean"])
        paper_top = ratio(p[0], paper_base[0]) if p else None
        paper_total = ratio(p[3], paper_base[3]) if p else None
        ours_side = "–" if method == "finetune" else compare(s.get("top_acc_ci95"), base.get("top_acc_ci95"))
        paper_side = "–" if paper_top is None or method == "finetune" else (
            "above" if paper_top > 1 else "below" if paper_top < 1 else "level")
        rows.append([method, ours_top, paper_top, ours_total, paper_total, ours_side, paper_side])
    return rows


def missing_records_note(missing: dict, recorded: list[str]) -> str:
    """A MyST warning over an interim grid: the methods left out for want of records (``missing``:
    method → the :class:`~trainattn.protocols.store.RecordMissingError` naming its first missing run)
    and the ``recorded`` methods that are shown."""
    rows = [f"| {m} | `{Path(err.folder).as_posix()}` |" for m, err in missing.items()]
    return "\n".join([
        "```{warning}",
        f"**Interim table: {len(missing)} method(s) have runs not yet recorded** and are left out of every table, "
        f"figure and goal on this page until they are (`python scripts/reproduce_cpu.py` computes them; it "
        f"resumes). Shown: {', '.join(recorded) or 'none'}. The goals judge TAALM against the recorded "
        "baselines only.", "",
        "| left out | first run without a record |", "|---|---|", *rows,
        "```"])
