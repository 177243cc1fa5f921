"""Figures for the book: token-weight heat maps and meta-training curves."""

from __future__ import annotations

import html
from pathlib import Path


def save_figure(fig, path) -> Path:
    """Lay out ``fig``, write it to ``path`` (folders created) at 120 dpi, close it; the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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


def plot_meta_history(result: dict, path=None):
    """Outer loss and φ's mean weight on object vs other tokens, per meta-step."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
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
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
