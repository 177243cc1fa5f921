"""LAMA-CKL (the paper's benchmark built from LAMA T-REx): loading and probe texts.

``scores`` (nested dict of pre-test accuracies whose keys vary) is not kept as a nested Arrow
column: it is JSON-encoded into the string column ``scores_json`` (``json.loads`` restores it).
"""

from __future__ import annotations

import json
import os
from typing import Any

from trainattn.data.schema import check_fields, check_nonempty, iter_jsonl, rows_to_dataset
from trainattn.data.sources import data_file

LAMA_CKL_SPLITS = ("variant", "invariant_descriptive", "invariant_schematic")
PROBE_FORMS = ("descriptive", "schematic")

#: Fields every LAMA-CKL row must have, with their JSON types.
LAMA_CKL_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "relation_code": str,
    "uuid": str,
    "subject": str,
    "object": str,
    "relation_label": str,
    "task_descriptive": str,
    "task_schematic": str,
    "evidence": str,
    "invariant": bool,
}
#: Optional fields kept when present (``scores`` becomes ``scores_json``).
LAMA_CKL_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "masked_evidence": str,
    "position": float,
    "evidence_length": int,
    "scores": dict,
}

#: The 28 T-REx relations the paper treats as time-invariant (NOT-TO-FORGET candidates).
TIME_INVARIANT_RELATIONS = frozenset({
    "P19", "P20", "P279", "P37", "P449", "P47", "P138", "P364", "P527", "P176", "P27", "P407",
    "P30", "P178", "P1376", "P131", "P1412", "P17", "P276", "P937", "P140", "P103", "P190",
    "P1001", "P495", "P36", "P740", "P361",
})


def _check_split(split: str) -> str:
    if split not in LAMA_CKL_SPLITS:
        raise ValueError(f"unknown LAMA-CKL split {split!r}; valid: {', '.join(LAMA_CKL_SPLITS)}")
    return f"lama_ckl/{split}.jsonl"


def read_lama_ckl_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Validated rows of a LAMA-CKL JSON-lines file, normalised to the loader's columns."""
    rows = []
    for lineno, obj in iter_jsonl(path):
        check_fields(obj, LAMA_CKL_REQUIRED, path, lineno)
        present = {k: t for k, t in LAMA_CKL_OPTIONAL.items() if k in obj}
        check_fields(obj, present, path, lineno)
        check_nonempty(obj, ("object",), path, lineno)
        row = {k: obj[k] for k in LAMA_CKL_REQUIRED}
        for k in ("masked_evidence", "position", "evidence_length"):
            if k in obj:
                row[k] = float(obj[k]) if k == "position" else obj[k]
        if "scores" in obj:
            row["scores_json"] = json.dumps(obj["scores"], sort_keys=True)
        rows.append(row)
    return rows


def load_lama_ckl(
    split: str,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
):
    """Load one LAMA-CKL split as a ``datasets.Dataset`` (file located by :func:`data_file`).

    Columns: the required fields, plus ``masked_evidence``, ``position``, ``evidence_length``
    and ``scores_json`` (JSON string of ``scores``) when the file has them.
    """
    path = data_file(_check_split(split), data_dir=data_dir, cache_dir=cache_dir)
    return rows_to_dataset(read_lama_ckl_rows(path))


def probe_text(row: dict[str, Any], form: str) -> str:
    """The probe of a LAMA-CKL row in ``form`` ("descriptive" or "schematic")."""
    if form not in PROBE_FORMS:
        raise ValueError(f"unknown probe form {form!r}; valid: {', '.join(PROBE_FORMS)}")
    return row[f"task_{form}"]
