"""Why tailored splits differ: how hard each split's facts are, and how well its φ trained.

Issue 16's experiment, per split: the oracle's Top Acc (the upper end that a perfect token
weighting reaches on those facts: a measure of their difficulty for θ), φ's share of a TO-LEARN
document's weight on the object tokens against the oracle's (1) and uniform weights', and φ's
validation curve during meta-training. A split where the oracle is low is hard by its facts; a
split where the oracle is high but TAALM is not, and φ's object share is low or its validation
curve never dropped below uniform, points at φ's training.
"""

from __future__ import annotations

from pathlib import Path

from trainattn.files import read_json
from trainattn.protocols.grid import summarise

DIAGNOSTIC_COLUMNS = [
    ("split", "split"), ("oracle", "oracle Top Acc"), ("taalm", "TAALM Top Acc"), ("finetune", "fine-tuning Top Acc"),
    ("taalm_of_oracle", "TAALM ÷ oracle"), ("phi_share", "φ's object share"), ("uniform_share", "uniform's object share"),
    ("phi_best_step", "φ's step"), ("phi_val_gain", "φ's validation NLL gain over uniform"),
    ("phi_last_val_gain", "the same at the last step"),
]


def phi_validations(phi_run: str | Path) -> list[dict]:
    """φ's validation curve from its meta-training record: ``[{"step", "phi_nll", "uniform_nll",
    "weight_object", "weight_other"}]``. ``phi_run`` is the run folder or its ``best/``."""
    folder = Path(phi_run)
    record = folder / "result.json" if (folder / "result.json").is_file() else folder.parent / "result.json"
    if not record.is_file():
        raise FileNotFoundError(f"{phi_run}: no meta-training result.json here or one folder up")
    return [{"step": v["step"], "phi_nll": v["phi"]["nll"], "uniform_nll": v["uniform"]["nll"],
             "weight_object": v["weight_object"], "weight_other": v["weight_other"]}
            for v in read_json(record).get("validations", [])]


def split_diagnostics(results_by_split: dict[int, list[dict]], phi_runs: dict[int, str | Path],
                      weight_mass: dict[int, dict] | None = None) -> list[dict]:
    """One row per split (keys of :data:`DIAGNOSTIC_COLUMNS`), sorted by split seed.

    ``results_by_split``: each split's LAMA-CKL results (as for
    :func:`~trainattn.protocols.grid.summarise_splits`); ``phi_runs``: each split's φ;
    ``weight_mass``: each split's :func:`~trainattn.studies.token_stats.object_weight_mass` on its
    TO-LEARN documents (``None`` leaves the share columns empty). ``phi_best_step`` is the
    validation with the lowest φ-weighted NLL (the rule that chose φ) and ``phi_val_gain`` the
    uniform NLL minus φ's there (positive: φ's weights help); ``phi_last_val_gain`` the same at
    the last validation (what keeping the last step instead of the best would have given).
    """
    rows = []
    for split in sorted(results_by_split):
        summary = summarise(results_by_split[split], intervals=False)

        def top(method, summary=summary):
            entry = summary.get(method)
            return None if entry is None else entry["top_acc_mean"]

        row = {"split": split, "oracle": top("oracle"), "taalm": top("taalm"), "finetune": top("finetune")}
        row["taalm_of_oracle"] = (row["taalm"] / row["oracle"]
                                  if row["taalm"] is not None and row["oracle"] else None)
        mass = (weight_mass or {}).get(split) or {}
        row["phi_share"], row["uniform_share"] = mass.get("phi_object_share"), mass.get("uniform_object_share")
        curve = phi_validations(phi_runs[split]) if split in phi_runs else []
        best = min(curve, key=lambda v: v["phi_nll"]) if curve else None
        row["phi_best_step"] = None if best is None else best["step"]
        row["phi_val_gain"] = None if best is None else best["uniform_nll"] - best["phi_nll"]
        row["phi_last_val_gain"] = None if not curve else curve[-1]["uniform_nll"] - curve[-1]["phi_nll"]
        row["phi_curve"] = curve
        rows.append(row)
    return rows


def explain_split_gaps(pooled: dict[str, dict]) -> dict:
    """Whether TAALM's Top Acc differs between splits, and, where it does, whether the facts or φ explain it.

    ``pooled`` is :func:`~trainattn.protocols.grid.summarise_splits`'s output (its ``by_split``
    entries carry each split's ``top_acc_ci95``). For every pair of splits where TAALM's intervals
    separate, the lower split's oracle is compared with the higher one's, by intervals too: if
    the oracle is below there as well, the facts are harder (``"facts"``); if the oracle is level
    or above, the same facts allow more and φ's training is what falls short (``"phi"``).

    Returns ``{"pairs": [{"lower", "higher", "taalm", "oracle", "cause"}], "cause": c}`` with ``c``
    ``"none"`` (TAALM level on every pair of splits), ``"facts"``, ``"phi"`` or ``"both"``;
    ``"unknown"`` where a split lacks TAALM's or the oracle's interval.
    """
    from trainattn.core.intervals import compare

    taalm = pooled.get("taalm", {}).get("by_split", {})
    oracle = pooled.get("oracle", {}).get("by_split", {})
    splits = sorted(taalm, key=int)
    pairs = []
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            ci = {s: taalm[s].get("top_acc_ci95") for s in (a, b)}
            if None in ci.values():
                return {"pairs": pairs, "cause": "unknown"}
            verdict = compare(ci[a], ci[b])
            if verdict == "level":
                continue
            lower, higher = (a, b) if verdict == "below" else (b, a)
            o_low, o_high = (oracle.get(s, {}).get("top_acc_ci95") for s in (lower, higher))
            if o_low is None or o_high is None:
                return {"pairs": pairs, "cause": "unknown"}
            oracle_verdict = compare(o_low, o_high)
            pairs.append({"lower": int(lower), "higher": int(higher),
                          "taalm": [taalm[lower]["top_acc_mean"], taalm[higher]["top_acc_mean"]],
                          "oracle": [oracle[lower]["top_acc_mean"], oracle[higher]["top_acc_mean"]],
                          "cause": "facts" if oracle_verdict == "below" else "phi"})
    causes = {p["cause"] for p in pairs}
    cause = "none" if not causes else causes.pop() if len(causes) == 1 else "both"
    return {"pairs": pairs, "cause": cause}


def split_gap_sentence(explained: dict) -> str:
    """One plain sentence for :func:`explain_split_gaps`'s result (numbers at 3 decimals)."""
    if explained["cause"] == "unknown":
        return "A split lacks TAALM's or the oracle's interval, so nothing is claimed about why the splits differ."
    if explained["cause"] == "none":
        return ("TAALM's Top Acc is level across every pair of splits (95 % intervals overlap): "
                "there is no gap between splits to explain at this number of facts and seeds.")
    parts = []
    for p in explained["pairs"]:
        why = ("its oracle is below too, so its facts are harder" if p["cause"] == "facts"
               else "its oracle is not below, so φ's training falls short there")
        parts.append(f"split {p['lower']} is below split {p['higher']} (TAALM {p['taalm'][0]:.3f} against "
                     f"{p['taalm'][1]:.3f}; oracle {p['oracle'][0]:.3f} against {p['oracle'][1]:.3f}): {why}")
    return "TAALM's Top Acc differs between splits: " + "; ".join(parts) + "."
