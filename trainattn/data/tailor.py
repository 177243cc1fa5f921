"""LAMA-CKL tailored to a model: score every released row, rebuild the paper's splits.

The released LAMA-CKL split was chosen for Llama-2-7B and TinyLlama (pre-test accuracy 0 on
TO-LEARN, 1 on NOT-TO-FORGET); another model knows other facts, so the paper tells users to
resample. The rules (paper's ``LAMA_ckl_pipeline.ipynb``, here with one model's scores):

* TO-LEARN: time-variant rows (``invariant`` False) scored 0 on BOTH probe forms; at most
  ``p530_cap_to_learn`` P530 (diplomatic relation) candidates.
* NOT-TO-FORGET: time-invariant rows scored 1 on the descriptive form.
* meta-training pool (for φ): any row scored < 0.5 on both forms, minus the sampled TO-LEARN
  rows; at most ``p530_cap_meta`` P530 candidates.
* the pool is also clean by TEXT (:func:`text_clean_pool`, not in the paper): a row is dropped
  when its normalised evidence equals a TO-LEARN or NOT-TO-FORGET evidence, or when its evidence
  names a tested fact's subject and object together. Disjoint uuids are not enough: the released
  files repeat documents word for word under other uuids. TO-LEARN documents that state a
  NOT-TO-FORGET fact are counted (``stats["to_learn_stating_not_to_forget"]``), not dropped.

Rows whose object cannot be located in a form the rule needs are excluded and counted.
Sampling uses one ``random.Random(seed)``, in the order: TO-LEARN P530 cap, TO-LEARN sample,
NOT-TO-FORGET sample, meta P530 cap, meta sample (only when ``n_meta`` is given).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainattn.core.evaluate import score_probes
from trainattn.data.lama_ckl import LAMA_CKL_SPLITS, PROBE_FORMS, load_lama_ckl, probe_text
from trainattn.files import write_text_atomic
from trainattn.lm import cache_root

SPLIT_NAMES = ("to_learn", "not_to_forget", "meta_pool")
SCORES_VERSION = 1


def _float_or_none(value: float, located: bool) -> float | None:
    value = float(value)
    return value if located and not math.isnan(value) else None


def score_rows(
    model,
    tokenizer,
    rows: list[dict[str, Any]],
    batch_size: int = 32,
    max_length: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Pre-test scores of each row on both probe forms (accuracy/NLL None where not located).

    Returns one dict per row, in order: ``uuid``, ``invariant``, ``relation_code``,
    ``descriptive``, ``schematic``, ``descriptive_nll``, ``schematic_nll``,
    ``located_descriptive``, ``located_schematic``.
    """
    out = [
        {"uuid": r["uuid"], "invariant": bool(r["invariant"]), "relation_code": r["relation_code"]}
        for r in rows
    ]
    if not rows:
        return out
    objects = [r["object"] for r in rows]
    for form in PROBE_FORMS:
        scores = score_probes(
            model, tokenizer, [probe_text(r, form) for r in rows], objects,
            batch_size=batch_size, max_length=max_length,
            progress=f"{form} probes" if progress else False,
        )
        for d, acc, nll, loc in zip(out, scores.accuracy, scores.nll, scores.located, strict=True):
            d[form] = _float_or_none(acc, bool(loc))
            d[f"{form}_nll"] = _float_or_none(nll, bool(loc))
            d[f"located_{form}"] = bool(loc)
    return out


@dataclass
class TailoredSplits:
    """TO-LEARN, NOT-TO-FORGET and meta-training rows (with ``pretest`` scores), plus stats."""

    to_learn: list[dict[str, Any]]
    not_to_forget: list[dict[str, Any]]
    meta_pool: list[dict[str, Any]]
    stats: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list[dict[str, Any]]:
        """The rows of split ``name`` (one of :data:`SPLIT_NAMES`)."""
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}; valid: {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)

    def summary(self) -> str:
        """A short text: split sizes, candidates, shortfalls and not-located counts."""
        s = self.stats
        cands, short = s.get("candidates", {}), s.get("shortfall", {})
        lines = [f"LAMA-CKL tailored to {s.get('model', '?')} (seed {s.get('seed', '?')}):"]
        for name in SPLIT_NAMES:
            line = f"  {name:<14} {len(self.split(name)):>5} rows"
            if name in cands:
                line += f" of {cands[name]} candidates"
            if short.get(name):
                line += f" (short by {short[name]})"
            lines.append(line)
        if s.get("not_located"):
            lines.append(f"  not located (excluded): {s['not_located']}")
        return "\n".join(lines)


def _check_disjoint(splits: dict[str, list[dict[str, Any]]]) -> None:
    seen: dict[str, str] = {}
    for name, rows in splits.items():
        for r in rows:
            other = seen.setdefault(r["uuid"], name)
            assert other == name, f"uuid {r['uuid']} is in both {other} and {name}"


def normalise_text(text: str) -> str:
    """Lower case, punctuation and runs of spaces collapsed: the form two evidences are compared in."""
    return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split())


def _mention(name: str) -> re.Pattern:
    """``name`` as a case-insensitive whole-word pattern (``Iran`` does not match ``Iranian``)."""
    return re.compile(r"(?<!\w)" + re.escape(name.strip()) + r"(?!\w)", re.IGNORECASE)


def states_fact(evidence: str, fact: dict[str, Any], patterns: dict | None = None) -> bool:
    """True if ``evidence`` names the fact's ``subject`` and ``object`` together (whole words)."""
    patterns = {} if patterns is None else patterns
    for key in (fact["subject"], fact["object"]):
        if key not in patterns:
            patterns[key] = _mention(key)
    return bool(patterns[fact["subject"]].search(evidence) and patterns[fact["object"]].search(evidence))


def text_clean_pool(pool: list[dict[str, Any]], tested: list[dict[str, Any]]
                    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """``pool`` without rows that share text with the ``tested`` facts, and the counts dropped.

    A pool row is dropped when its normalised evidence (:func:`normalise_text`) equals a tested
    row's (``same_evidence``), else when its evidence names a tested fact's subject and object
    together (``states_tested_fact``). Rows keep their order. Rows need ``evidence``; tested rows
    need ``evidence``, ``subject`` and ``object``.
    """
    evidences = {normalise_text(t["evidence"]) for t in tested}
    patterns: dict = {}
    kept, counts = [], {"same_evidence": 0, "states_tested_fact": 0}
    for row in pool:
        if normalise_text(row["evidence"]) in evidences:
            counts["same_evidence"] += 1
        elif any(states_fact(row["evidence"], t, patterns) for t in tested):
            counts["states_tested_fact"] += 1
        else:
            kept.append(row)
    return kept, counts


def _cap_relation(
    rng: random.Random, candidates: list[dict[str, Any]], relation: str, cap: int | None
) -> list[dict[str, Any]]:
    """``candidates`` with at most ``cap`` rows of ``relation`` (random choice, order kept)."""
    rel = [i for i, c in enumerate(candidates) if c["relation_code"] == relation]
    if cap is None or len(rel) <= cap:
        return candidates
    drop = set(rel) - set(rng.sample(rel, cap))
    return [c for i, c in enumerate(candidates) if i not in drop]


def _sample(rng: random.Random, candidates: list, n: int | None) -> list:
    if n is None or len(candidates) <= n:
        return list(candidates)
    return rng.sample(candidates, n)


def _with_pretest(row: dict[str, Any], score: dict[str, Any], model: str | None) -> dict[str, Any]:
    keys = ("descriptive", "schematic", "descriptive_nll", "schematic_nll",
            "located_descriptive", "located_schematic")
    out = dict(row)
    out["pretest"] = {"model": model, **{k: score[k] for k in keys}}
    return out


def build_splits(
    scored_rows: list[dict[str, Any]],
    rows_by_uuid: dict[str, dict[str, Any]],
    n_to_learn: int,
    n_not_to_forget: int,
    n_meta: int | None = None,
    seed: int = 42,
    p530_cap_to_learn: int | None = 130,
    p530_cap_meta: int | None = 350,
    model_name: str | None = None,
) -> TailoredSplits:
    """The three disjoint splits by the paper's rules (see the module docstring).

    ``scored_rows`` come from :func:`score_rows` (one per uuid); ``rows_by_uuid`` gives the
    LAMA-CKL rows, copied into the splits with a ``pretest`` dict added. With fewer candidates
    than requested all are taken and the shortfall recorded; ``n_meta=None`` keeps the whole pool.
    """
    uuids = [s["uuid"] for s in scored_rows]
    if len(set(uuids)) != len(uuids):
        raise ValueError("scored_rows has duplicate uuids; deduplicate the rows first")
    rng = random.Random(seed)
    not_located = {"to_learn": 0, "not_to_forget": 0, "meta_pool": 0}
    tl_cands, nf_cands, meta_all = [], [], []
    for s in scored_rows:
        both = s["located_descriptive"] and s["located_schematic"]
        if not s["invariant"]:
            if not both:
                not_located["to_learn"] += 1
            elif s["descriptive"] == 0 and s["schematic"] == 0:
                tl_cands.append(s)
        elif not s["located_descriptive"]:
            not_located["not_to_forget"] += 1
        elif s["descriptive"] == 1:
            nf_cands.append(s)
        if not both:
            not_located["meta_pool"] += 1
        elif s["descriptive"] < 0.5 and s["schematic"] < 0.5:
            meta_all.append(s)

    tl_capped = _cap_relation(rng, tl_cands, "P530", p530_cap_to_learn)
    to_learn = _sample(rng, tl_capped, n_to_learn)
    not_to_forget = _sample(rng, nf_cands, n_not_to_forget)
    learn_ids = {s["uuid"] for s in to_learn}
    meta_left = [s for s in meta_all if s["uuid"] not in learn_ids]
    tested = [rows_by_uuid[s["uuid"]] for s in to_learn + not_to_forget]
    by_uuid = {s["uuid"]: s for s in meta_left}
    clean, text_dropped = text_clean_pool([rows_by_uuid[s["uuid"]] for s in meta_left], tested)
    meta_left = [by_uuid[r["uuid"]] for r in clean]
    meta_capped = _cap_relation(rng, meta_left, "P530", p530_cap_meta)
    meta = _sample(rng, meta_capped, n_meta)

    chosen = {"to_learn": to_learn, "not_to_forget": not_to_forget, "meta_pool": meta}
    _check_disjoint(chosen)
    splits = {
        name: [_with_pretest(rows_by_uuid[s["uuid"]], s, model_name) for s in picked]
        for name, picked in chosen.items()
    }
    requested = {"to_learn": n_to_learn, "not_to_forget": n_not_to_forget, "meta_pool": n_meta}
    sizes = {name: len(rows) for name, rows in splits.items()}
    stats = {
        "model": model_name,
        "seed": seed,
        "n_rows": len(scored_rows),
        "n_variant": sum(not s["invariant"] for s in scored_rows),
        "n_invariant": sum(bool(s["invariant"]) for s in scored_rows),
        "candidates_before_p530_cap": {
            "to_learn": len(tl_cands), "not_to_forget": len(nf_cands), "meta_pool": len(meta_left),
        },
        "candidates": {
            "to_learn": len(tl_capped), "not_to_forget": len(nf_cands),
            "meta_pool": len(meta_capped),
        },
        "meta_excluded_as_to_learn": len(meta_all) - len(meta_left) - sum(text_dropped.values()),
        "meta_excluded_by_text": text_dropped,
        "to_learn_stating_not_to_forget": [
            [tl["uuid"], nf["uuid"]] for tl in splits["to_learn"] for nf in splits["not_to_forget"]
            if states_fact(tl["evidence"], nf)
        ],
        "p530_caps": {"to_learn": p530_cap_to_learn, "meta_pool": p530_cap_meta},
        "requested": requested,
        "sizes": sizes,
        "shortfall": {
            name: (0 if n is None else max(0, n - sizes[name])) for name, n in requested.items()
        },
        "not_located": not_located,
        "relations": {
            name: dict(Counter(r["relation_code"] for r in rows).most_common())
            for name, rows in splits.items()
        },
    }
    return TailoredSplits(splits["to_learn"], splits["not_to_forget"], splits["meta_pool"], stats)


def safe_model_name(name: str) -> str:
    """``name`` as a single folder name (``/`` and other odd characters become ``_``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    if not safe:
        raise ValueError(f"model name {name!r} gives an empty folder name")
    return safe


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def load_released_rows(data_dir=None, cache_dir=None) -> list[dict[str, Any]]:
    """All rows of the three released files, deduplicated by uuid (first occurrence kept).

    Each row gets ``source_splits``: the released files its uuid appears in.
    """
    by_uuid: dict[str, dict[str, Any]] = {}
    for split in LAMA_CKL_SPLITS:
        for row in load_lama_ckl(split, data_dir=data_dir, cache_dir=cache_dir):
            kept = by_uuid.setdefault(row["uuid"], {**dict(row), "source_splits": []})
            kept["source_splits"].append(split)
    return list(by_uuid.values())


def _cached_scores(
    model, tokenizer, model_name, rows, path: Path, batch_size, max_length, progress
) -> list[dict[str, Any]]:
    """Scores of ``rows`` from the JSON cache at ``path``; missing rows are scored and added."""
    meta = {"version": SCORES_VERSION, "model": model_name, "max_length": max_length}
    cached: dict[str, dict[str, Any]] = {}
    if path.is_file():
        blob = json.loads(path.read_text(encoding="utf-8"))
        if all(blob.get(k) == v for k, v in meta.items()):
            cached = {s["uuid"]: s for s in blob["rows"]}
    missing = [r for r in rows if r["uuid"] not in cached]
    if missing:
        for s in score_rows(model, tokenizer, missing, batch_size, max_length, progress):
            cached[s["uuid"]] = s
        write_text_atomic(path, json.dumps({**meta, "rows": list(cached.values())}))
    return [cached[r["uuid"]] for r in rows]


def tailor_lama_ckl(
    model,
    tokenizer,
    model_name: str,
    n_to_learn: int = 100,
    n_not_to_forget: int = 100,
    n_meta: int | None = None,
    seed: int = 42,
    data_dir=None,
    cache_dir=None,
    batch_size: int = 32,
    progress: bool = True,
    max_length: int | None = None,
) -> TailoredSplits:
    """Score all released LAMA-CKL rows with ``model`` and build its splits (written to disk).

    Scores are cached in ``<cache>/tailored/<model>/scores.json`` (keyed by ``model_name``
    and ``max_length``; a second call scores nothing). The splits go to
    ``<cache>/tailored/<model>/n<to_learn>_<nf>_s<seed>[_m<n_meta>]/`` as ``to_learn.jsonl``,
    ``not_to_forget.jsonl``, ``meta_pool.jsonl`` and ``stats.json``; ``stats["folder"]``
    names it.
    """
    rows = load_released_rows(data_dir=data_dir, cache_dir=cache_dir)
    root = cache_root(cache_dir) / "tailored" / safe_model_name(model_name)
    scores = _cached_scores(
        model, tokenizer, model_name, rows, root / "scores.json", batch_size, max_length, progress
    )
    splits = build_splits(
        scores, {r["uuid"]: r for r in rows}, n_to_learn, n_not_to_forget, n_meta, seed=seed,
        model_name=model_name,
    )
    name = f"n{n_to_learn}_{n_not_to_forget}_s{seed}" + ("" if n_meta is None else f"_m{n_meta}")
    folder = root / name
    splits.stats["folder"] = str(folder)
    splits.stats["max_length"] = max_length
    for split in SPLIT_NAMES:
        write_text_atomic(folder / f"{split}.jsonl", _jsonl(splits.split(split)))
    write_text_atomic(folder / "stats.json", json.dumps(splits.stats, indent=1) + "\n")
    return splits


def load_tailored(folder: str | os.PathLike) -> TailoredSplits:
    """The splits written by :func:`tailor_lama_ckl` in ``folder``."""
    folder = Path(folder)
    parts = {}
    for split in SPLIT_NAMES:
        with open(folder / f"{split}.jsonl", encoding="utf-8") as f:
            parts[split] = [json.loads(line) for line in f if line.strip()]
    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    return TailoredSplits(**parts, stats=stats)
