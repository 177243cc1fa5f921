"""TemporalWiki beside the paper: Table 2 as results, the side-by-side rows, the per-period figure.

Inputs are :func:`trainattn.protocols.temporalwiki.run_temporalwiki` results (``{"method", "source", "results":
[{"period", "changed", "unchanged", "avg"}, ...]}``), by method name, and optionally the
untrained θ's scores per period (``{period: trainattn.protocols.temporalwiki.score_period(...)}``). NLL is the
mean object-token NLL, the paper's "ppl"; lower is better.
"""

from __future__ import annotations

import numpy as np

from trainattn.core.intervals import compare
from trainattn.protocols.temporalwiki import PROXY_LINE
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


def _nll_cell(block: dict, intervals: bool = True):
    """A block's NLL; with ``intervals``, ``"6.445 [6.301, 6.590]"`` where it has one (per-probe scores kept)."""
    ci = block.get("nll_ci95") if intervals else None
    return block["nll"] if ci is None else f"{block['nll']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _avg_cell(result: dict, period: str, intervals: bool = True):
    """The Avg NLL of ``period`` (:func:`_nll_cell`); ``None`` if the run lacks the period."""
    row = next((r for r in result["results"] if r["period"] == period), None)
    return None if row is None else _nll_cell(row["avg"], intervals)


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
                        baseline: str = "finetune", intervals: bool = False) -> tuple[list[str], list[list]]:
    """``(header, rows)``: per period the Avg NLL, ours beside the paper's; then each method's
    Avg NLL relative to ``baseline`` (mean over periods), ours and the paper's.

    ``before``: ``{period: scores}`` of the untrained θ, shown as a first row (ours only).
    ``intervals``: our Avg cells as text with their 95 % interval where the run kept per-probe
    scores (for display; the numbers alone otherwise, e.g. for a results file).
    """
    periods = [r["period"] for r in next(iter(results.values()))["results"]]
    header = ["method"] + [f"{p} Avg ({who})" for p in periods for who in ("ours", "paper")]
    header += [f"Avg ÷ {baseline} (ours)", f"Avg ÷ {baseline} (paper)"]
    rows = []
    if before is not None:
        rows.append(["before training"] + [v for p in periods
                                            for v in (_nll_cell(before[p]["avg"], intervals), None)]
                    + [None, None])
    ours_base, paper_base = results.get(baseline), paper_twiki_result(baseline)
    for name, result in results.items():
        paper = paper_twiki_result(name)
        cells = [v for p in periods
                 for v in (_avg_cell(result, p, intervals), None if paper is None else _avg(paper, p))]
        rows.append([name] + cells + [
            None if ours_base is None else relative_to(result, ours_base, periods),
            None if paper is None or paper_base is None else relative_to(paper, paper_base, periods),
        ])
    return header, rows


def period_verdicts(a: dict, b: dict, kind: str = "avg", metric: str = "nll") -> list[str | None]:
    """Per period of ``a`` (in its order), ``a``'s ``kind`` ``metric`` against ``b``'s: ``"below"``,
    ``"level"`` or ``"above"`` by their 95 % intervals (:func:`~trainattn.core.intervals.compare`:
    a direction only where they separate); ``None`` where either has no interval (a record written
    before per-probe scores were kept) or ``b`` lacks the period.

    ``a`` and ``b``: results (``{"results": [{"period", kind: {metric, f"{metric}_ci95"}}]}``); ``b``
    may also be ``{period: scores}`` (the untrained θ's).
    """
    by = b if "results" not in b else {x["period"]: x for x in b["results"]}
    out = []
    for x in a["results"]:
        other = by.get(x["period"])
        ca = x[kind].get(f"{metric}_ci95")
        cb = None if other is None else other[kind].get(f"{metric}_ci95")
        out.append(None if ca is None or cb is None else compare(ca, cb))
    return out


def every_period(verdicts: list[str | None], wanted: str) -> bool | None:
    """Whether every period's verdict is ``wanted``; ``None`` if any period has no interval."""
    if not verdicts or any(v is None for v in verdicts):
        return None
    return all(v == wanted for v in verdicts)


def _before_after(before: dict, after: dict, metric: str) -> str:
    def one(block):
        ci = block.get(f"{metric}_ci95")
        return f"{block[metric]:.3f}" if ci is None else f"{block[metric]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"

    return f"{one(before)} → {one(after)}"


VS_UNTRAINED_HEADER = ["method", "period", "Changed NLL: untrained → after [95 % CI]", "Changed NLL",
                       "Changed acc: untrained → after [95 % CI]", "Changed acc",
                       "Unchanged NLL: untrained → after", "Unchanged acc: untrained → after"]


def vs_untrained(results: dict[str, dict], before: dict) -> tuple[list[list], dict[str, dict]]:
    """Each method's probe scores after each period beside the untrained θ's on the same probes.

    Returns ``(rows, verdicts)``: rows under :data:`VS_UNTRAINED_HEADER` (the Changed columns with
    their verdict: below / level / above by the 95 % intervals over probes, "–" without
    intervals), and per method ``{"changed_nll": [verdict per period], "changed_acc": [...],
    "changed_nll_below": bool | None, "changed_acc_above": bool | None}``, the last two whether
    every period ended with the Changed facts' mean NLL below (accuracy above) the untrained θ's,
    intervals separating (``None`` without intervals). NLL and accuracy can disagree: the mean NLL
    punishes confident errors, so accuracy can rise while the NLL rises too.
    """
    rows, verdicts = [], {}
    for name, result in results.items():
        nll = period_verdicts(result, before, "changed", "nll")
        acc = period_verdicts(result, before, "changed", "acc")
        for x, vn, va in zip(result["results"], nll, acc, strict=True):
            b = before[x["period"]]
            rows.append([name, x["period"], _before_after(b["changed"], x["changed"], "nll"), vn or "–",
                         _before_after(b["changed"], x["changed"], "acc"), va or "–",
                         _before_after(b["unchanged"], x["unchanged"], "nll"),
                         _before_after(b["unchanged"], x["unchanged"], "acc")])
        verdicts[name] = {"changed_nll": nll, "changed_acc": acc, "changed_nll_below": every_period(nll, "below"),
                          "changed_acc_above": every_period(acc, "above")}
    return rows, verdicts


def format_twiki_table(result, digits: int = 4) -> str:
    """A paper-style Markdown table of mean object-token NLL (Un / C / Avg; lower is better).

    ``result``: one result (rows = periods) or a list / ``{name: result}`` of results
    (rows = methods, Un / C / Avg per period, as Table 2). Says "proxy" when any is (and, for
    one result, the proxy's version).
    """
    if isinstance(result, dict) and "results" in result:
        named = None
        results = [result]
    else:
        named = dict(result) if isinstance(result, dict) else {r["method"]: r for r in result}
        results = list(named.values())

    def cell(block):
        return "–" if block["nll"] is None else f"{block['nll']:.{digits}f}"

    lines = ["TemporalWiki — mean object-token NLL (the paper's 'ppl'; lower is better)"]
    if any(r.get("source") == "proxy" for r in results):
        lines.append(PROXY_LINE)
    if named is None:
        r = results[0]
        version = f" (version {r['proxy_version']})" if r.get("proxy_version") else ""
        lines += [f"method: {r['method']} · source: {r['source']}{version}", "",
                  "| period | Un | C | Avg |", "|---|---|---|---|"]
        lines += [f"| {p['period']} | {cell(p['unchanged'])} | {cell(p['changed'])} | {cell(p['avg'])} |"
                  for p in r["results"]]
        return "\n".join(lines)
    periods = [p["period"] for p in results[0]["results"]]
    header = " | ".join(f"{p} {k}" for p in periods for k in ("Un", "C", "Avg"))
    lines += ["", f"| method | {header} |", "|---" * (1 + 3 * len(periods)) + "|"]
    for name, r in named.items():
        by = {p["period"]: p for p in r["results"]}
        cells = [cell(by[p][k]) if p in by else "–" for p in periods for k in ("unchanged", "changed", "avg")]
        tag = " (proxy)" if r.get("source") == "proxy" else ""
        lines.append(f"| {name}{tag} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
