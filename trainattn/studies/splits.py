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
    uniform NLL minus φ's there (positive: φ's weights help).
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
        row["phi_curve"] = curve
        rows.append(row)
    return rows
