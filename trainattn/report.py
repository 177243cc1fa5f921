"""Paper-style tables and learning/forgetting curves from CKL result files."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from .results import read_json


def load_results(paths) -> list[dict]:
    """Every ``result.json`` among ``paths`` (files, or folders searched recursively)."""
    found = []
    for path in map(Path, paths):
        files = sorted(path.rglob("result.json")) if path.is_dir() else [path]
        for f in files:
            result = read_json(f)
            if "metrics" in result and "curves" in result:
                result["_path"] = str(f)
                found.append(result)
    if not found:
        raise FileNotFoundError(f"no CKL result.json found in {', '.join(map(str, paths))}")
    return found


def summarise(results: list[dict]) -> dict[str, dict]:
    """Per method: mean and std over seeds of the paper's metrics (test-curve choice)."""
    by_method = defaultdict(list)
    for r in results:
        by_method[r["method"]].append(r)
    summary = {}
    for method, runs in by_method.items():
        metrics = [r["metrics"]["test_chosen"] for r in runs]

        def stat(key, runs=metrics):
            values = np.array([m[key] for m in runs if m[key] is not None], dtype=float)
            return (float(values.mean()), float(values.std())) if len(values) else (float("nan"), float("nan"))

        top, epoch, nf, total = (stat(k) for k in ("top_acc", "epoch", "nf_acc", "total_knowledge"))
        summary[method] = {
            "top_acc_mean": top[0], "top_acc_std": top[1], "epoch_mean": epoch[0],
            "nf_acc_mean": nf[0], "total_knowledge_mean": total[0], "total_knowledge_std": total[1],
            "seeds": sorted(r["seed"] for r in runs),
            "labels": runs[0].get("labels", {}),
        }
    return summary


def lama_ckl_table(results: list[dict]) -> str:
    """A text table like the paper's Table 1 (mean ± std over seeds where there are several)."""
    rows = summarise(results)
    header = f"{'Method':<28}{'Top Acc':>16}{'Epoch':>8}{'NF Acc':>9}{'Total Knowledge':>19}{'seeds':>7}"
    lines = [header, "-" * len(header)]
    for method, s in sorted(rows.items(), key=lambda kv: -np.nan_to_num(kv[1]["top_acc_mean"])):
        label = method + (f" [{s['labels']['review_pool']} pool]" if "review_pool" in s["labels"] else "")
        lines.append(
            f"{label:<28}{s['top_acc_mean']:>9.3f} ± {s['top_acc_std']:.3f}{s['epoch_mean']:>8.1f}"
            f"{s['nf_acc_mean']:>9.3f}{s['total_knowledge_mean']:>11.3f} ± {s['total_knowledge_std']:.3f}"
            f"{len(s['seeds']):>7}"
        )
    lines.append("Top Acc and its Epoch are read on the TO-LEARN test curve, as in the paper; "
                 "NF Acc at that epoch.")
    return "\n".join(lines)


def plot_curves(results: list[dict], path) -> Path:
    """TO-LEARN (solid) and NOT-TO-FORGET (dashed) accuracy per epoch, one colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    colours = {}
    for r in results:
        colour = colours.setdefault(r["method"], f"C{len(colours) % 10}")
        label = r["method"] if r["method"] not in {lbl.get_label() for lbl in left.lines} else None
        left.plot(r["curves"]["to_learn"]["acc"], color=colour, label=label, alpha=0.8)
        right.plot(r["curves"]["not_to_forget"]["acc"], color=colour, ls="--", alpha=0.8)
    left.set(title="TO-LEARN (learning)", xlabel="epoch", ylabel="probe accuracy")
    right.set(title="NOT-TO-FORGET (retention)", xlabel="epoch")
    left.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
