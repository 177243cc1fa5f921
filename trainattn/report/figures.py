"""Every figure of the book: token-weight heat maps, meta-training curves, CKL curves and bars,
TemporalWiki per period, ablation and open-question bars.

Each ``plot_*`` function draws from result dicts, saves a PNG with :func:`save_figure` and
returns its path; :func:`split_spread` returns its Figure (drawn on a given axis or a new one).
None of them chooses a matplotlib backend: a notebook keeps its inline
backend, a script without a display gets matplotlib's default (Agg).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from trainattn.data.token_categories import CATEGORIES


def save_figure(fig, path) -> Path:
    """Lay out ``fig``, write it to ``path`` (folders created) at 120 dpi, close it; the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _laid_out(fig, path):
    """``fig`` saved to ``path`` (:func:`save_figure`), or only laid out when ``path`` is ``None``; the figure."""
    if path is not None:
        save_figure(fig, path)
    else:
        fig.tight_layout()
    return fig


def token_weight_html(tokens: list[str], weights, object_mask=None, scale: float = 1.0,
                      underline=None, rgb: str = "255, 140, 0", unit: str = "") -> str:
    """Tokens shaded by value (white 0 → colour ``rgb`` at ``scale``), object tokens boxed.

    ``tokens``: the predicted tokens (targets, ``input_ids[1:]`` decoded);
    ``weights``: ``[seq_len - 1]`` values (index t belongs to token t + 1, i.e. ``tokens[t]``),
    e.g. φ's weights or per-token losses; ``object_mask`` / ``underline``: optional
    ``[seq_len - 1]`` bool masks (the object's tokens; e.g. tokens already predicted).
    """
    cells = []
    for i, token in enumerate(tokens):
        w = float(weights[i])
        alpha = max(0.0, min(w / scale, 1.0))
        style = f"background: rgba({rgb}, {alpha:.2f});"
        if object_mask is not None and bool(object_mask[i]):
            style += " outline: 2px solid #1f4fb4;"
        if underline is not None and bool(underline[i]):
            style += " text-decoration: underline;"
        text = html.escape(token).replace("\n", "⏎")
        cells.append(f'<span title="{w:.3f}{unit}" style="{style}">{text}</span>')
    return ('<div style="line-height: 2; font-family: monospace; white-space: pre-wrap;">'
            + "".join(cells) + "</div>")


def token_weight_text(tokens: list[str], weights, width: int = 30) -> str:
    """One line per token for a terminal: the token, φ's weight, and a bar of ``width`` at the
    text's largest weight (a trained φ's weights can all be small: the bar shows where they go)."""
    shown = [repr(t)[1:-1] for t in tokens]
    values = [float(x) for x in weights]
    top = max(values, default=0.0)
    pad = max((len(t) for t in shown), default=0)
    lines = []
    for token, w in zip(shown, values, strict=True):
        bar = "█" * round(width * w / top) if top > 0 else ""
        lines.append(f"{token:<{pad}}  {w:9.3g}  {bar}")
    return "\n".join(lines)


def plot_meta_history(result: dict, path=None):
    """Outer loss and φ's mean weight on object vs other tokens, per meta-step."""
    import matplotlib.pyplot as plt

    history = result["history"]
    steps = [h["step"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(steps, [h["outer_loss"] for h in history], label="outer loss (probe NLL after θ's step)")
    left.plot(steps, [h["probe_nll_before"] for h in history], alpha=0.6, label="probe NLL before")
    left.set(xlabel="meta-step", ylabel="nats", title="meta-objective")
    left.legend(fontsize=8)
    right.plot(steps, [h["weight_object"] for h in history], color="C3", label="object tokens")
    right.plot(steps, [h["weight_other"] for h in history], color="C0", label="other tokens")
    validations = result.get("validations", [])
    if validations:
        right.scatter([v["step"] for v in validations], [v["weight_object"] for v in validations],
                      color="C3", marker="x", label="held-out: object")
        right.scatter([v["step"] for v in validations], [v["weight_other"] for v in validations],
                      color="C0", marker="x", label="held-out: other")
    right.set(xlabel="meta-step", ylabel="mean token weight", title="where φ puts its weight", ylim=(0, 1.02))
    right.legend(fontsize=8)
    return _laid_out(fig, path)


def plot_curves(results: list[dict], path) -> Path:
    """TO-LEARN (solid) and NOT-TO-FORGET (dashed) accuracy per epoch, one colour per method."""
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
    return save_figure(fig, path)


def plot_summary_bars(summary: dict[str, dict], methods: list[str], path) -> Path:
    """Top Acc and Total Knowledge per method: bars at the seed mean, error bars the 95 % interval
    (bootstrapped over facts and seeds) where the summary has one, else ± the sample std."""
    import matplotlib.pyplot as plt

    from trainattn.methods import canonical_method_name

    names = [m for m in methods if canonical_method_name(m) in summary]
    stats = [summary[canonical_method_name(m)] for m in names]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in ((axes[0], "top_acc", "Top Acc (TO-LEARN)"),
                           (axes[1], "total_knowledge", "Total Knowledge")):
        means = np.array([s[f"{key}_mean"] for s in stats], dtype=float)
        errors = np.zeros((2, len(stats)))
        for i, s in enumerate(stats):
            ci, std = s.get(f"{key}_ci95"), s.get(f"{key}_std")
            if ci is not None:
                errors[:, i] = [means[i] - ci[0], ci[1] - means[i]]
            elif std is not None:
                errors[:, i] = std
        ax.bar(range(len(names)), means, yerr=errors, capsize=3,
               color=["C3" if "taalm" in n else "C7" if n in ("oracle", "untrained") else "C0" for n in names])
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
    has_ci = any(s.get("top_acc_ci95") is not None for s in stats)
    fig.text(0.01, 0.01, "error bars: 95 % interval over facts and seeds" if has_ci else "error bars: ± std over seeds",
             fontsize=7, color="0.4")
    return save_figure(fig, path)


def plot_twiki(results: dict[str, dict], path, before: dict | None = None) -> Path:
    """Changed and Unchanged probes per period: NLL (top) and accuracy (bottom), one line per
    method; the untrained θ's level as grey crosses. Saved to ``path`` (PNG)."""
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


def plot_ablations(rows: list[dict], path, reference: dict | None = None) -> Path:
    """Bars per variant: validation NLL gain of φ's weights over uniform, φ's weights, CKL Top Acc / NF Acc.

    The first panel shows ``val_uniform_nll − val_phi_nll`` (nats per probe; above 0: θ trained
    with φ's weights answers the held-out probes better): at small scales the validation
    accuracies are often 0 for every variant, while the NLL still separates them.
    """
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rows]
    x = np.arange(len(names))

    def values(key):
        return [np.nan if r.get(key) is None else r[key] for r in rows]

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    gain = [np.nan if r.get("val_phi_nll") is None or r.get("val_uniform_nll") is None
            else r["val_uniform_nll"] - r["val_phi_nll"] for r in rows]
    axes[0].bar(x, gain, width=0.6, color="C2")
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    axes[0].set_title("validation: uniform NLL − NLL with φ's weights", fontsize=10)
    axes[0].set_ylabel("nats per probe (above 0: φ helps)", fontsize=8)
    panels = (
        (axes[1], ("weight_object", "weight_other"), ("object tokens", "other tokens"),
         "φ's mean weight (held-out documents)"),
        (axes[2], ("top_acc", "nf_acc"), ("Top Acc (TO-LEARN)", "NF Acc at that epoch"), "LAMA-CKL with TAALM"),
    )
    for ax, keys, labels, title in panels:
        for i, (key, label) in enumerate(zip(keys, labels, strict=True)):
            ax.bar(x + (i - 0.5) * 0.38, values(key), width=0.38, label=label, color=("C3", "C0")[i])
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1.02)  # accuracies and weights all lie in [0, 1]
        ax.legend(fontsize=7, loc="lower center", framealpha=0.9)
    if reference is not None:
        for key, colour in (("top_acc", "C3"), ("nf_acc", "C0")):
            if reference.get(key) is not None:
                axes[2].axhline(reference[key], color=colour, ls=":", lw=1)
        axes[2].text(0.01, 0.97, f"dotted: {reference['variant']}", transform=axes[2].transAxes,
                     fontsize=7, va="top")
    return save_figure(fig, path)


def plot_bars(rows: list[dict], keys: list[tuple[str, str]], path, title: str, label_key: str = "name"):
    """Grouped bars: one group per row, one bar per (key, legend label)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows) + 2), 3.6))
    x = np.arange(len(rows))
    width = 0.8 / len(keys)
    for i, (key, label) in enumerate(keys):
        vals = [np.nan if r.get(key) is None else r[key] for r in rows]
        ax.bar(x + (i - (len(keys) - 1) / 2) * width, vals, width=width, label=label)
    ax.set_xticks(x, [r[label_key] for r in rows], rotation=25, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_shares(final: dict[str, dict], history: dict[int, dict[str, dict]], path):
    """Left: per corpus, token share vs φ-weight share per category. Right: weight share per
    category over meta-training (first corpus solid, others dashed)."""
    import matplotlib.pyplot as plt

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
    return save_figure(fig, path)


def plot_scaling(rows: list[dict], path):
    """Meta-training time and peak memory (bars) against Top Acc (line), per φ variant."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    names = [r["variant"] for r in rows]
    x = np.arange(len(rows))
    for ax, key, label in ((axes[0], "meta_seconds", "meta-training s"),
                           (axes[1], "peak_mb", "peak extra memory (MB)"), (axes[2], "top_acc", "TAALM Top Acc")):
        ax.bar(x, [np.nan if r.get(key) is None else r[key] for r in rows], color="C0" if ax is not axes[2] else "C3")
        ax.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
        ax.set_title(label, fontsize=10)
    return save_figure(fig, path)


def split_spread(summary: dict[str, dict], methods: list[str] | None = None, ax=None):
    """Top Acc per method across tailored splits: one dot per split (a colour and marker per split
    seed, in the legend) and the pooled mean with its 95 % interval (splits, seeds and facts
    resampled) as a black error bar; no bar where the summary has no interval. A method run on
    fewer of the splits has "(k of n splits)" under its name.

    ``summary``: :func:`~trainattn.protocols.grid.summarise_splits`'s output; ``methods``: the
    methods to show, in order (default: every entry, ``untrained`` first). Draws on ``ax`` if
    given, else on a new figure; returns the Figure (not saved: see :func:`save_figure`).
    """
    import matplotlib.pyplot as plt

    from trainattn.methods import canonical_method_name
    from trainattn.protocols.grid import UNTRAINED

    if methods is None:
        names = sorted(summary, key=lambda m: m != UNTRAINED)  # stable: the summary's order otherwise
    else:
        names = [m for m in methods if (m if m == UNTRAINED else canonical_method_name(m)) in summary]
    stats = [summary[m if m == UNTRAINED else canonical_method_name(m)] for m in names]
    splits = sorted({int(k) for s in stats for k in s.get("by_split", {})})
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names) + 2), 3.6))
    else:
        fig = ax.figure
    offsets = np.linspace(-0.2, 0.2, len(splits)) if len(splits) > 1 else np.zeros(1)
    for j, split in enumerate(splits):
        xs, ys = [], []
        for i, s in enumerate(stats):
            one = s.get("by_split", {}).get(str(split))
            if one is not None and one.get("top_acc_mean") is not None:
                xs.append(i + offsets[j])
                ys.append(one["top_acc_mean"])
        ax.scatter(xs, ys, color=f"C{j % 10}", marker="os^Dvp*hX<>"[j % 11], s=28, alpha=0.8,
                   label=f"split {split}", zorder=2)
    for i, s in enumerate(stats):
        mean, ci = s["top_acc_mean"], s.get("top_acc_ci95")
        err = None if ci is None else [[mean - ci[0]], [ci[1] - mean]]
        ax.errorbar([i], [mean], yerr=err, fmt="_", color="k", markersize=16, capsize=4, lw=1.5, zorder=3,
                    label="pooled mean, 95 % interval" if i == 0 else None)
    # a method with runs on fewer splits than the figure shows says so: its "pooled" bar is not
    # comparable with the others' yet
    display = [("untrained θ" if n == UNTRAINED else n)
               + (f"\n({len(st.get('by_split', {}))} of {len(splits)} splits)"
                  if len(splits) > 1 and len(st.get("by_split", {})) < len(splits) else "")
               for n, st in zip(names, stats, strict=True)]
    ax.set_xticks(range(len(names)), display, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("Top Acc (TO-LEARN, test curve)")
    ax.set_title(f"Top Acc across {len(splits)} tailored split{'s' if len(splits) != 1 else ''}", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def plot_phi_validations(rows: list[dict], path=None):
    """Each split's φ during meta-training: validation NLL gain over uniform weights (left) and φ's
    mean weight on object tokens divided by its mean weight on the others (right, log scale: 1 =
    no focus), per validation step.

    ``rows``: :func:`~trainattn.studies.splits.split_diagnostics` (each with ``phi_curve``).
    """
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    for j, row in enumerate(rows):
        curve = row.get("phi_curve") or []
        if not curve:
            continue
        steps = [v["step"] for v in curve]
        style = dict(color=f"C{j % 10}", marker="os^Dvp*hX<>"[j % 11], label=f"split {row['split']}")
        left.plot(steps, [v["uniform_nll"] - v["phi_nll"] for v in curve], **style)
        right.plot(steps, [v["weight_object"] / max(v["weight_other"], 1e-12) for v in curve], **style)
    left.axhline(0, color="grey", lw=0.8)
    left.set(xlabel="meta-step", ylabel="uniform NLL − φ's NLL (nats)", title="φ's validation gain (higher: better)")
    right.axhline(1, color="grey", lw=0.8)
    right.set(xlabel="meta-step", ylabel="object ÷ other tokens' mean weight", title="φ's focus on the object",
              yscale="log")
    left.legend(fontsize=8)
    return _laid_out(fig, path)
