"""Data: pinned sources with checksums, strict JSON-lines parsing, LAMA-CKL and TemporalWiki."""

from __future__ import annotations

from trainattn.data.lama_ckl import (
    LAMA_CKL_SPLITS,
    TIME_INVARIANT_RELATIONS,
    load_lama_ckl,
    probe_text,
    read_lama_ckl_rows,
)
from trainattn.data.schema import read_jsonl, rows_to_dataset
from trainattn.data.sources import FILES, PINNED_COMMIT, data_file, raw_url
from trainattn.data.temporalwiki import (
    TWIKI_PERIODS,
    load_temporalwiki_probes,
    twiki_probe_text,
)
from trainattn.data.trex import build_lama_ckl_rows

__all__ = [
    "FILES",
    "LAMA_CKL_SPLITS",
    "PINNED_COMMIT",
    "TIME_INVARIANT_RELATIONS",
    "TWIKI_PERIODS",
    "build_lama_ckl_rows",
    "data_file",
    "load_lama_ckl",
    "load_temporalwiki_probes",
    "probe_text",
    "raw_url",
    "read_jsonl",
    "read_lama_ckl_rows",
    "rows_to_dataset",
    "twiki_probe_text",
]

from trainattn.data.tailor import TailoredSplits, load_tailored, tailor_lama_ckl  # noqa: E402

__all__ += ["TailoredSplits", "load_tailored", "tailor_lama_ckl"]
