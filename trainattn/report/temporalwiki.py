"""TemporalWiki beside the paper: Table 2 as results, the side-by-side rows, the per-period figure.

Inputs are :func:`trainattn.protocols.temporalwiki.run_temporalwiki` results (``{"method", "source", "results":
[{"period", "changed", "unchanged", "avg"}, ...]}``), by method name, and optionally the
untrained θ's scores per period (``{period: trainattn.protocols.temporalwiki.score_period(...)}``). NLL is the
mean object-token NLL, the paper's "ppl"; lower is better.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainattn.report.figures import save_figure
from trainattn.report.paper import TWIKI_TABLE2

KINDS = ("unchanged", "changed", "avg")


def paper_twiki_result(method: str) -> dict | None:
    """The paper's Table 2 row of ``method`` in the shape of a run's result (``None`` if absent)."""
    from trainattn.methods import canonical_method_name

    wanted = canonical_method_name(method)
    for name, periods in TWIKI_TABLE2.items():
        if canonical_method_name(name) == wanted:
            rows = [{"period": p, **{k: {"nll": v, "acc": None} for k, v in zip(KINDS, values, strict=True)}}
                    for p, values in periods.items()]
            return {"method": name, "source": "paper", "results": rows}
    return None


def _avg(result: dict, period: str) -> float | None:
    row = next((r for r in result["results"] if r["period"] == period), None)
    return None if row is None else row["avg"]["nll"]


def relative_to(result: dict, reference: dict, periods) -> float | None:
    """Mean over ``periods`` of avg NLL ÷ the reference's avg NLL (``None`` if any is missing)."""
    ratios = []
    for p in periods:
        a, b = _avg(result, p), _avg(reference, p)
        if a is None or not b:
            return None
        ratios.append(a / b)
    return float(np.mean(ratios)) if ratios else None


def twiki_vs_paper_rows(results: dict[str, dict], before: dict | None = None,
                        baseline: str = "finetune") -> tuple[list[str], list[list]]:
    """``(header, rows)``: per period the Avg NLL, ours beside the paper's; then each method's
    Avg NLL relative to ``baseline`` (mean over periods), ours and the paper's.

    ``before``: ``{period: scores}`` of the untrained θ, shown as a first row (ours only).
    """
    periods = [r["period"] for r in next(iter(results.values()))["results"]]
    header = ["method"] + [f"{p} Avg ({who})" for p in periods for who in ("ours", "paper")]
    header += [f"Avg ÷ {baseline} (ours)", f"Avg ÷ {baseline} (paper)"]
    rows = []
    if before is not None:
        rows.append(["before training"] + [v for p in periods for v in (before[p]["avg"]["nll"], None)]
                    + [None, None])
    ours_base, paper_base = results.get(baseline), paper_twiki_result(baseline)
    for name, result in results.items():
        paper = paper_twiki_result(name)
        cells = [v for p in periods for v in (_avg(result, p), None if paper is None else _avg(paper, p))]
        rows.append([name] + cells + [
            None if ours_base is None else relative_to(result, ours_base, periods),
            None if paper is None or paper_base is None else relative_to(paper, paper_base, periods),
        ])
    return header, rows


def plot_twiki(results: dict[str, dict], path, before: dict | None = None) -> Path:
    """Changed and Unchanged probes per period: NLL (top) and accuracy (bottom), one line per
    method; the untrained θ's level as grey crosses. Saved to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    periods = [r["period"] for r in next(iter(results.values()))["results"]]
    x = np.arange(len(periods))
    proxy = any(r.get("source") == "proxy" for r in results.values())
    notes = {"changed": " (their facts = the proxy documents)", "unchanged": " (never trained on)"}
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4), sharex=True)
    for col, kind in enumerate(("changed", "unchanged")):
        for row, (metric, label) in enumerate((("nll", "object NLL (lower is better)"),
                                               ("acc", "object-token accuracy"))):
            ax = axes[row, col]
            if before is not None:
                ax.plot(x, [before[p][kind][metric] for p in periods], "x--", color="0.5",
                        label="before training")
            for i, (name, result) in enumerate(results.items()):
                by = {r["period"]: r for r in result["results"]}
                colour = "C3" if "taalm" in name else f"C{i % 3}"
                ax.plot(x, [by[p][kind][metric] if p in by else np.nan for p in periods], "os^Dv"[i % 5] + "-",
                        color=colour, label=name, markersize=9 - 2 * (i % 3), alpha=0.85)  # overlaps stay visible
            ax.set_ylabel(label)
            if row == 0:
                ax.set_title(f"{kind.upper()} probes" + (notes[kind] if proxy else ""))
            if row == 1:
                ax.set_xticks(x, periods)
                ax.set_xlabel("period (θ carried over)")
    axes[0, 0].legend(fontsize=8)
    return save_figure(fig, path)
