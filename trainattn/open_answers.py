"""Tables, figures and plain-worded answers for the "open questions" chapter (notebook 07).

Every sentence is built from the numbers it is given, so the same code words the
answer of a tiny CI run and of the CPU reference run, whichever way they come out.
Two accuracies count as different only when they differ by more than ``tol``
(by default one probe of the TO-LEARN set, 1 / n).
"""

from __future__ import annotations

import math

from .plots import save_figure
from .token_categories import CATEGORIES


def compare(a: float, b: float, tol: float) -> str:
    """``"above"``, ``"below"`` or ``"level with"``: ``a`` against ``b`` with tolerance ``tol``."""
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return "not comparable with"
    if a > b + tol:
        return "above"
    if a < b - tol:
        return "below"
    return "level with"


def _f(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A markdown table: ``columns`` = [(key, header)]; floats with 3 decimals, None as –."""
    def cell(v):
        return _f(v) if isinstance(v, float) or v is None else str(v)

    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines)


def nothing_learned(rows, tol: float) -> bool:
    """True when no run (the oracle included) got above Top Acc ``tol``: nothing to compare."""
    return all(r["top_acc"] is None or r["top_acc"] <= tol for r in rows)


EMPTY = ("In this run no method, the oracle included, learned more than one probe's worth of the "
         "TO-LEARN facts, so the comparison is empty: the run is too small to answer; see the `cpu` profile's numbers.")


def _gap_share(row: dict, low: dict, high: dict) -> float | None:
    """Where ``row``'s Top Acc sits between ``low`` (0) and ``high`` (1)."""
    span = high["top_acc"] - low["top_acc"]
    return None if span <= 0 else (row["top_acc"] - low["top_acc"]) / span


def answer_generalisation(rows: dict[str, dict], n_to_learn: int, held_out: list[str]) -> str:
    """Q1 in words. ``rows``: ``phi_seen`` (φ meta-trained without the held-out relations),
    ``phi_all`` (all relations, same budget), ``finetune``, ``oracle``; each with top_acc / nf_acc."""
    tol = 1.0 / n_to_learn
    seen, full, ft, oracle = (rows[k] for k in ("phi_seen", "phi_all", "finetune", "oracle"))
    text = (f"On TO-LEARN facts of the held-out relations ({', '.join(held_out)}), TAALM with a φ that never saw "
            f"them reached Top Acc {_f(seen['top_acc'])}, {compare(seen['top_acc'], full['top_acc'], tol)} "
            f"the φ meta-trained on all relations ({_f(full['top_acc'])}) and "
            f"{compare(seen['top_acc'], ft['top_acc'], tol)} plain fine-tuning ({_f(ft['top_acc'])}); "
            f"the oracle reached {_f(oracle['top_acc'])}. ")
    share = _gap_share(seen, ft, oracle)
    if share is not None:
        text += f"That closes {share:.0%} of the gap from fine-tuning to the oracle. "
    verdict = compare(seen["top_acc"], full["top_acc"], tol)
    if nothing_learned(rows.values(), tol):
        text += EMPTY
    elif verdict == "level with" and compare(seen["top_acc"], ft["top_acc"], tol) == "above":
        text += "So in this run φ transfers to relations it was not meta-trained on."
    elif verdict == "below":
        text += ("So in this run φ transfers only partly: part of what it learned is specific to the "
                 "relations it was meta-trained on.")
    elif compare(seen["top_acc"], ft["top_acc"], tol) != "above":
        text += ("So in this run neither φ beats fine-tuning by more than one probe: the run is too small "
                 "(or φ too little trained) to tell whether it generalises.")
    else:
        text += "So in this run φ does no worse on relations it never saw."
    return text


def answer_freeform(per_doc: list[dict]) -> str:
    """Free-form documents in words: ``per_doc`` rows with ``answer_weight`` / ``other_weight``."""
    located = [d for d in per_doc if d["answer_weight"] is not None]
    above = sum(d["answer_weight"] > d["other_weight"] for d in located)
    return (f"On {len(located)} free-form documents, φ's mean weight on the fact's tokens was above its mean "
            f"weight on the other tokens in {above} of them"
            + (" — it still finds the new fact in prose of another kind." if located and above > len(located) / 2
               else " — outside LAMA-style text it does not single out the fact." if located else "."))


def answer_attention(final: dict[str, dict], history: dict[int, dict[str, dict]]) -> str:
    """Q2 in words: per corpus the most over-weighted category (weight share ÷ token share), and
    how the answer's and function words' weight share moved over meta-training."""
    parts = []
    for corpus, shares in final.items():
        lifts = {c: s["weight"] / s["tokens"] for c, s in shares.items() if s["tokens"] > 0}
        top = max(lifts, key=lifts.get)
        low = min(lifts, key=lifts.get)
        parts.append(f"on {corpus} documents φ over-weights {top} tokens most ({lifts[top]:.2f}× their share "
                     f"of tokens) and under-weights {low} tokens most ({lifts[low]:.2f}×)")
    text = "At the end of meta-training, " + "; ".join(parts) + ". "
    steps = sorted(history)
    if len(steps) > 1:
        first, last = history[steps[0]], history[steps[-1]]
        moves = []
        for corpus in last:
            for c in ("answer", "function"):
                a, b = first[corpus][c]["weight"], last[corpus][c]["weight"]
                moves.append(f"{c} {a:.3f}→{b:.3f} on {corpus}")
        text += f"From step {steps[0]} to step {steps[-1]} the weight shares moved: " + ", ".join(moves) + "."
    return text


def answer_heuristics(rows: dict[str, dict], phi_key: str, n_to_learn: int) -> str:
    """Q3 in words: the best heuristic against φ and the oracle, and against fine-tuning."""
    tol = 1.0 / n_to_learn
    heuristics = {k: r for k, r in rows.items() if k.startswith("heuristic-") or k == "rho1"}
    best = max(heuristics, key=lambda k: (heuristics[k]["top_acc"], heuristics[k]["nf_acc"] or 0))
    b, phi, ft = heuristics[best], rows[phi_key], rows["finetune"]
    text = (f"The best simple score was {best} (Top Acc {_f(b['top_acc'])}, NF Acc {_f(b['nf_acc'])}), "
            f"{compare(b['top_acc'], phi['top_acc'], tol)} meta-learned φ ({_f(phi['top_acc'])}, NF "
            f"{_f(phi['nf_acc'])}) and {compare(b['top_acc'], ft['top_acc'], tol)} fine-tuning "
            f"({_f(ft['top_acc'])}); the oracle reached {_f(rows['oracle']['top_acc'])}. ")
    if nothing_learned(rows.values(), tol):
        text += EMPTY
    elif compare(b["top_acc"], phi["top_acc"], tol) == "below":
        text += "In this run meta-learning earns its cost: no heuristic matches φ."
    elif compare(b["top_acc"], phi["top_acc"], tol) == "above":
        text += "In this run a heuristic does better than φ: the meta-learning is not what makes the gain."
    else:
        text += "In this run a heuristic does as well as φ (within one probe), so the gain cannot be credited to meta-learning."
    return text


def answer_unpaired(rows: dict[str, dict], paired_key: str, finetune: dict, n_to_learn: int) -> str:
    """Q4 in words: each probe-free strategy against the paired-data φ and fine-tuning."""
    tol = 1.0 / n_to_learn
    paired = rows[paired_key]
    parts = [f"{k} reached Top Acc {_f(r['top_acc'])}, {compare(r['top_acc'], paired['top_acc'], tol)} the "
             f"paired-data φ ({_f(paired['top_acc'])}) and {compare(r['top_acc'], finetune['top_acc'], tol)} "
             f"fine-tuning ({_f(finetune['top_acc'])})" for k, r in rows.items() if k != paired_key]
    good = [k for k, r in rows.items() if k != paired_key and compare(r["top_acc"], paired["top_acc"], tol) != "below"]
    if nothing_learned([*rows.values(), finetune], tol):
        return "Without hand-written probes: " + "; ".join(parts) + ". " + EMPTY
    tail = (f" So without paired probes, {' and '.join(good)} did as well here." if good
            else " So in this run the hand-written (paired) probes matter: the probe-free φs fall short.")
    return "Without hand-written probes: " + "; ".join(parts) + "." + tail


def answer_scaling(rows: list[dict], base: str, n_to_learn: int) -> str:
    """Q5 in words: time and memory against Top Acc, relative to the ``base`` φ."""
    tol = 1.0 / n_to_learn
    ref = next(r for r in rows if r["variant"] == base)
    parts = []
    for r in rows:
        if r["variant"] == base:
            continue
        t = r["meta_seconds"] / ref["meta_seconds"] if ref["meta_seconds"] else math.nan
        mem = ("" if r.get("extra_rss_mb") is None or not ref.get("extra_rss_mb") else
               f", {r['extra_rss_mb'] / ref['extra_rss_mb']:.1f}× the peak memory")
        parts.append(f"{r['variant']} took {t:.1f}× the meta-training time{mem} and reached Top Acc "
                     f"{_f(r['top_acc'])}, {compare(r['top_acc'], ref['top_acc'], tol)} the base φ ({_f(ref['top_acc'])})")
    cheaper = [r["variant"] for r in rows if r["variant"] != base and r["meta_seconds"] < ref["meta_seconds"]
               and compare(r["top_acc"], ref["top_acc"], tol) != "below"]
    if nothing_learned(rows, tol):
        return "; ".join(parts) + ". No φ taught θ anything measurable here, so only the costs can be compared."
    tail = (f" A cheaper φ ({', '.join(cheaper)}) lost nothing measurable here." if cheaper
            else " No cheaper φ matched the base one here.")
    return "; ".join(parts) + "." + tail


# ---------------------------------------------------------------- figures


def _save(fig, path):
    return save_figure(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bars(rows: list[dict], keys: list[tuple[str, str]], path, title: str, label_key: str = "name"):
    """Grouped bars: one group per row, one bar per (key, legend label)."""
    plt = _pyplot()
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows) + 2), 3.6))
    x = np.arange(len(rows))
    width = 0.8 / len(keys)
    for i, (key, label) in enumerate(keys):
        vals = [np.nan if r.get(key) is None else r[key] for r in rows]
        ax.bar(x + (i - (len(keys) - 1) / 2) * width, vals, width=width, label=label)
    ax.set_xticks(x, [r[label_key] for r in rows], rotation=25, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_shares(final: dict[str, dict], history: dict[int, dict[str, dict]], path):
    """Left: per corpus, token share vs φ-weight share per category. Right: weight share per
    category over meta-training (first corpus solid, others dashed)."""
    plt = _pyplot()
    import numpy as np

    corpora = list(final)
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
    x = np.arange(len(CATEGORIES))
    width = 0.8 / (2 * len(corpora))
    for j, corpus in enumerate(corpora):
        for k, key in enumerate(("tokens", "weight")):
            pos = x + (2 * j + k - len(corpora) + 0.5) * width
            axes[0].bar(pos, [final[corpus][c][key] for c in CATEGORIES], width=width,
                        label=f"{corpus}: {'share of tokens' if key == 'tokens' else 'share of φ weight'}",
                        color=f"C{j}", alpha=0.45 if key == "tokens" else 1.0)
    axes[0].set_xticks(x, CATEGORIES)
    axes[0].set_title("where φ's weight goes (end of meta-training)", fontsize=10)
    axes[0].legend(fontsize=7)
    steps = sorted(history)
    for j, corpus in enumerate(corpora):
        for i, c in enumerate(CATEGORIES):
            axes[1].plot(steps, [history[s][corpus][c]["weight"] for s in steps], color=f"C{i}",
                         ls="-" if j == 0 else "--", marker="o", ms=3, label=c if j == 0 else None)
    axes[1].set(xlabel="meta-step", ylabel="share of φ's weight",
                title=f"during meta-training (solid: {corpora[0]}; dashed: the others)")
    axes[1].legend(fontsize=7)
    return _save(fig, path)


def plot_scaling(rows: list[dict], path):
    """Meta-training time and peak memory (bars) against Top Acc (line), per φ variant."""
    plt = _pyplot()
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    names = [r["variant"] for r in rows]
    x = np.arange(len(rows))
    for ax, key, label in ((axes[0], "meta_seconds", "meta-training s"),
                           (axes[1], "peak_mb", "peak extra memory (MB)"), (axes[2], "top_acc", "TAALM Top Acc")):
        ax.bar(x, [np.nan if r.get(key) is None else r[key] for r in rows], color="C0" if ax is not axes[2] else "C3")
        ax.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
        ax.set_title(label, fontsize=10)
    return _save(fig, path)
