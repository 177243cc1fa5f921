"""Build LAMA-CKL rows from LAMA T-REx files (facebookresearch/LAMA ``data.zip``); pure Python.

Input layout: ``relations.jsonl`` (keys ``relation``, ``template``, ``label``, ...) and
``TREx/P*.jsonl`` (one fact per line: ``uuid``, ``sub_label``, ``obj_label``, ``predicate_id``,
``evidences`` = list of ``{"masked_sentence", "sub_surface", "obj_surface", ...}``).

Per fact, the evidence document is the longest ``masked_sentence`` (first one on ties) with
``[MASK]`` replaced by the object label. The fact is kept only if that evidence is longer than
:data:`MIN_EVIDENCE_CHARS` characters and contains both the subject and the object label.
The paper's further selection by the models' pre-test scores is not done here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from trainattn.data.lama_ckl import TIME_INVARIANT_RELATIONS
from trainattn.data.schema import check_fields, check_nonempty, iter_jsonl
from trainattn.errors import DataFormatError

MIN_EVIDENCE_CHARS = 200
MASK = "[MASK]"
SCHEMATIC_TEMPLATE = (
    "Guess the object. \n  subject is {subject} , relation is {relation} , object is {object}"
)

_RELATION_REQUIRED = {"relation": str, "template": str, "label": str}
_FACT_REQUIRED = {
    "uuid": str,
    "sub_label": str,
    "obj_label": str,
    "predicate_id": str,
    "evidences": list,
}


def read_relations(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Relation id -> its ``relations.jsonl`` record (validated ``relation``, ``template``,
    ``label``)."""
    relations = {}
    for lineno, obj in iter_jsonl(path):
        check_fields(obj, _RELATION_REQUIRED, path, lineno)
        check_nonempty(obj, ("relation", "template", "label"), path, lineno)
        relations[obj["relation"]] = obj
    return relations


def _locate(trex_dir: Path) -> tuple[Path, list[Path]]:
    """``relations.jsonl`` and the sorted fact files under a LAMA ``data`` or ``TREx`` dir."""
    rel = next((p for p in (trex_dir / "relations.jsonl", trex_dir.parent / "relations.jsonl")
                if p.is_file()), None)
    if rel is None:
        raise FileNotFoundError(f"no relations.jsonl in {trex_dir} or its parent")
    facts_dir = trex_dir / "TREx" if (trex_dir / "TREx").is_dir() else trex_dir
    fact_files = [p for p in facts_dir.glob("P*.jsonl") if re.fullmatch(r"P\d+\.jsonl", p.name)]
    if not fact_files:
        raise FileNotFoundError(f"no T-REx fact files P*.jsonl in {facts_dir}")
    fact_files.sort(key=lambda p: int(p.stem[1:]))
    return rel, fact_files


def _best_masked_sentence(fact: dict[str, Any], path: Path, lineno: int) -> str | None:
    best = None
    for i, ev in enumerate(fact["evidences"]):
        field = f"evidences[{i}].masked_sentence"
        if not isinstance(ev, dict):
            raise DataFormatError(path, lineno, f"evidences[{i}]",
                                  f"expected dict, got {type(ev).__name__}")
        if "masked_sentence" not in ev:
            raise DataFormatError(path, lineno, field, "missing")
        sentence = ev["masked_sentence"]
        if not isinstance(sentence, str):
            raise DataFormatError(path, lineno, field,
                                  f"expected str, got {type(sentence).__name__}")
        if best is None or len(sentence) > len(best):
            best = sentence
    return best


def fact_to_row(
    fact: dict[str, Any], relation: dict[str, Any], masked: str
) -> dict[str, Any] | None:
    """The LAMA-CKL row for one validated fact and its chosen masked sentence, or None if the
    evidence is too short or lacks the subject or object label."""
    subject, obj = fact["sub_label"], fact["obj_label"]
    evidence = masked.replace(MASK, obj)
    if len(evidence) <= MIN_EVIDENCE_CHARS or subject not in evidence or obj not in evidence:
        return None
    code = fact["predicate_id"]
    mask_at = masked.find(MASK)
    return {
        "relation_code": code,
        "uuid": fact["uuid"],
        "subject": subject,
        "object": obj,
        "relation_label": relation["label"],
        "task_descriptive": relation["template"].replace("[X]", subject).replace("[Y]", obj),
        "task_schematic": SCHEMATIC_TEMPLATE.format(
            subject=subject, relation=relation["label"], object=obj
        ),
        "evidence": evidence,
        "masked_evidence": masked,
        "position": mask_at / len(masked) if mask_at >= 0 else None,
        "evidence_length": len(evidence),
        "invariant": code in TIME_INVARIANT_RELATIONS,
    }


def build_lama_ckl_rows(trex_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """LAMA-CKL rows from a LAMA ``data`` dir (``relations.jsonl`` + ``TREx/P*.jsonl``).

    Also accepts the ``TREx`` dir itself (``relations.jsonl`` then in its parent). Fact files
    are read in relation-number order, facts in line order. Malformed lines raise
    :class:`DataFormatError` naming file, line and field.
    """
    rel_path, fact_files = _locate(Path(trex_dir))
    relations = read_relations(rel_path)
    rows = []
    for path in fact_files:
        for lineno, fact in iter_jsonl(path):
            check_fields(fact, _FACT_REQUIRED, path, lineno)
            check_nonempty(fact, ("uuid", "sub_label", "obj_label", "predicate_id"), path, lineno)
            relation = relations.get(fact["predicate_id"])
            if relation is None:
                raise DataFormatError(path, lineno, "predicate_id",
                                      f"relation {fact['predicate_id']!r} not in {rel_path}")
            masked = _best_masked_sentence(fact, path, lineno)
            if masked is None:
                continue
            row = fact_to_row(fact, relation, masked)
            if row is not None:
                rows.append(row)
    return rows
