"""Tolerance bands: which keys of a notebook's results must regenerate, and how closely.

``results/<profile>/tolerances.yml`` maps notebook stems to ``{key pattern: band}``:

.. code-block:: yaml

    default: {abs: 1.0e-6}          # band of any key not named below
    ignore: ["versions.*"]          # never compared (every notebook)
    01_concept:                     # per notebook: key pattern -> band
      "document.*_nll": {rel: 1.0e-3}
      ignore: ["seconds"]

Keys are dotted paths into the JSON (list items by index, ``curves.0``);
patterns use :mod:`fnmatch`; an exact key wins over a pattern, otherwise the
first matching pattern in file order. A value is within its band when
``|got - ref| <= max(abs, rel * |ref|)``; strings, booleans and nulls must be equal.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_RESERVED = ("default", "ignore")


def within(value: float, reference: float, abs_tol: float = 0.0, rel_tol: float = 0.0) -> bool:
    """``value`` equals ``reference`` within ``max(abs_tol, rel_tol·|reference|)`` (NaN equals NaN)."""
    if math.isnan(value) or math.isnan(reference):
        return math.isnan(value) and math.isnan(reference)
    return abs(value - reference) <= max(abs_tol, rel_tol * abs(reference))


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested dicts/lists by dotted path (``{"a": [1]}`` → ``{"a.0": 1}``)."""
    if isinstance(data, dict) and data:
        items = data.items()
    elif isinstance(data, list) and data:
        items = enumerate(data)
    else:
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def load_tolerances(path: str | Path) -> dict:
    """The tolerance bands of a profile (empty when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    return data


def band_for(tolerances: dict, stem: str, key: str) -> dict | None:
    """The band ``{"abs", "rel"}`` of ``key`` in notebook ``stem``; ``None`` if ignored."""
    section = tolerances.get(stem) or {}
    ignored = list(tolerances.get("ignore") or []) + list(section.get("ignore") or [])
    if any(fnmatch.fnmatchcase(key, pattern) for pattern in ignored):
        return None
    bands = {k: v for k, v in section.items() if k not in _RESERVED}
    band = bands.get(key) or next(
        (v for k, v in bands.items() if fnmatch.fnmatchcase(key, k)), None)
    band = band or section.get("default") or tolerances.get("default") or {}
    unknown = set(band) - {"abs", "rel"}
    if unknown:
        raise ValueError(f"tolerance band for {stem}:{key} has unknown field(s) {sorted(unknown)}")
    return {"abs": float(band.get("abs", 0.0)), "rel": float(band.get("rel", 0.0))}


@dataclass
class Mismatch:
    """One key outside its band (``reference``/``got`` are ``"(missing)"`` when absent)."""

    notebook: str
    key: str
    reference: Any
    got: Any
    band: str


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _band_text(band: dict) -> str:
    parts = [f"abs {band['abs']:g}" if band["abs"] else "", f"rel {band['rel']:g}" if band["rel"] else ""]
    return ", ".join(p for p in parts if p) or "exact"


def compare_results(stem: str, reference: dict, got: dict, tolerances: dict) -> list[Mismatch]:
    """Every key of either JSON whose values differ beyond its band (missing keys included)."""
    ref, new = flatten(reference), flatten(got)
    mismatches = []
    for key in list(ref) + [k for k in new if k not in ref]:
        band = band_for(tolerances, stem, key)
        if band is None:
            continue
        a, b = ref.get(key, "(missing)"), new.get(key, "(missing)")
        if key not in ref or key not in new:
            ok = False
        elif _number(a) and _number(b):
            ok = within(float(b), float(a), band["abs"], band["rel"])
        else:
            ok = a == b and type(a) is type(b)
        if not ok:
            text = _band_text(band) if _number(a) and _number(b) else "equal"
            mismatches.append(Mismatch(stem, key, a, b, text))
    return mismatches


def cell_text(value) -> str:
    """A value as a short table cell: floats with 6 significant digits, others as JSON, cut at 40 characters."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def format_mismatches(mismatches: list[Mismatch]) -> str:
    """A plain-text table: notebook, key, reference, got, band."""
    rows = [("notebook", "key", "reference", "got", "band")]
    rows += [(m.notebook, m.key, cell_text(m.reference), cell_text(m.got), m.band) for m in mismatches]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------ measuring bands


@dataclass
class Spread:
    """How far one key moved across runs under other settings: the largest |got - ref| and its relative size."""

    key: str
    abs: float
    rel: float
    where: str  # the setting of the largest difference


def measure_spread(reference: dict, runs: dict[str, dict]) -> dict[str, Spread]:
    """Per numeric key of ``reference``: the largest difference in any of ``runs`` (``{setting: results}``).

    Keys whose value is not a number in the reference or a run are left out; a key
    missing from a run counts as an infinite difference (the run is not comparable).
    """
    ref = flatten(reference)
    spreads: dict[str, Spread] = {}
    for label, got in runs.items():
        new = flatten(got)
        for key, a in ref.items():
            if not _number(a):
                continue
            b = new.get(key)
            diff = math.inf if not _number(b) else abs(float(b) - float(a))
            rel = diff / abs(a) if a else (0.0 if diff == 0 else math.inf)
            if key not in spreads or diff > spreads[key].abs:
                spreads[key] = Spread(key, diff, rel, label)
    return spreads


def spread_table(spreads: dict[str, Spread], only_moving: bool = True) -> str:
    """A plain-text table of the keys that moved (all keys with ``only_moving=False``)."""
    rows = [s for s in spreads.values() if s.abs > 0 or not only_moving]
    lines = [f"{'key':<60} {'max |Δ|':>12} {'max |Δ|/|ref|':>14}  setting"]
    lines += [f"{s.key:<60} {s.abs:>12.3g} {s.rel:>14.3g}  {s.where}" for s in sorted(rows, key=lambda s: s.key)]
    return "\n".join(lines)
