"""TemporalWiki: probe sets (CHANGED / UNCHANGED facts per monthly period).

Probes are ``{"subject", "relation", "object"}`` rows; the paper asks them with the schematic
text of :func:`twiki_probe_text`. The diff-set training documents, and the proxy documents built
from these probes when the diff-sets are unavailable, live in :mod:`trainattn.data.twiki_diffsets`.
"""

from __future__ import annotations

import os
from typing import Any

from trainattn.data.schema import read_jsonl, rows_to_dataset
from trainattn.data.sources import data_file

#: Training period (diff set) -> stem of its probe files (the months the probes cover).
TWIKI_PERIODS = {"0910": "0901-1001", "1011": "1001-1101", "1112": "1101-1201"}
TWIKI_PROBE_KINDS = ("changed", "unchanged")
TWIKI_PROBE_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "subject": str,
    "relation": str,
    "object": str,
}
TWIKI_PROBE_TEMPLATE = (
    "Guess the object. \n  subject is {subject} , relation is {relation} , object is {object}"
)


def twiki_probe_text(subject: str, relation: str, object: str) -> str:
    """The paper's probe text for one TemporalWiki fact."""
    return TWIKI_PROBE_TEMPLATE.format(subject=subject, relation=relation, object=object)


def twiki_probe_relpath(period: str, kind: str) -> str:
    """Relative path (a key of ``sources.FILES``) of the probe file for ``period`` and ``kind``."""
    if period not in TWIKI_PERIODS:
        raise ValueError(
            f"unknown TemporalWiki period {period!r}; valid: {', '.join(TWIKI_PERIODS)}"
        )
    if kind not in TWIKI_PROBE_KINDS:
        raise ValueError(
            f"unknown TemporalWiki probe kind {kind!r}; valid: {', '.join(TWIKI_PROBE_KINDS)}"
        )
    return f"temporalwiki/probes/{TWIKI_PERIODS[period]}_{kind}.jsonl"


def read_twiki_probe_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Validated probe rows of one file, each with the added ``probe`` text."""
    rows = read_jsonl(path, TWIKI_PROBE_REQUIRED, nonempty=("object",))
    return [
        {
            "subject": r["subject"],
            "relation": r["relation"],
            "object": r["object"],
            "probe": twiki_probe_text(r["subject"], r["relation"], r["object"]),
        }
        for r in rows
    ]


def load_temporalwiki_probes(
    period: str,
    kind: str,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
):
    """TemporalWiki probes of ``period`` ("0910", "1011", "1112") and ``kind`` as a Dataset.

    Columns: ``subject``, ``relation``, ``object``, ``probe``.
    """
    path = data_file(twiki_probe_relpath(period, kind), data_dir=data_dir, cache_dir=cache_dir)
    return rows_to_dataset(read_twiki_probe_rows(path))
