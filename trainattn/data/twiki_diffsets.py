"""TemporalWiki diff-set training documents: load, filter (Appendix C.1), or build a PROXY.

The diff-sets are TemporalWiki's monthly Wikipedia changes, one CSV per training period:
``wikipedia_{0910,1011,1112}_gpt2.csv``, inside ``TWiki_Diffsets.zip`` of the Hugging Face hub
dataset ``seonghyeonye/TemporalWiki``. Each CSV has a header row and one text line per
row. The text column is the one named ``text``; a file without a ``text`` column is read from
its FIRST column, which is what the paper's ``preprocess_temporalwiki_dataset.py`` reads
(``line[0]`` after skipping the header).

Lookup order of :func:`diffset_csv_path`: an explicit ``diffset_dir``, else the environment
variable ``TRAINATTN_TWIKI_DIFFSETS`` (a folder holding the CSVs, directly or under
``TWiki_Diffsets/``), else the user cache (``<cache>/data/temporalwiki/diffsets/``), filled by
downloading the zip with ``huggingface_hub.hf_hub_download`` and extracting only the needed
CSV (atomically). No SHA-256 is pinned for these files (they are not in the project's
``SHA256SUMS``); :func:`load_diffset_documents` records the CSV's SHA-256 instead.

When no diff-set is available (offline), :func:`proxy_documents` builds a clearly labelled
stand-in: one short template document per changed probe fact. Results trained on it are
labelled ``source: "proxy"`` and are NOT comparable with the paper's Table 2.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from trainattn.data.sources import cache_root
from trainattn.data.temporalwiki import TWIKI_PERIODS
from trainattn.errors import TrainattnError

DIFFSET_ENV = "TRAINATTN_TWIKI_DIFFSETS"
HUB_REPO_ID = "seonghyeonye/TemporalWiki"
HUB_FILENAME = "TWiki_Diffsets.zip"
MIN_CHARS = 50  # Appendix C.1 as implemented: drop lines shorter than this
MIN_LETTER_SHARE = 0.3  # ... and lines with fewer ASCII letters than this share
PROXY_TEMPLATE = "{subject} — {relation}: {object}. In the latest revision, the {relation} of {subject} is {object}."
_LETTER = re.compile(r"[a-zA-Z]")


class DiffsetUnavailableError(TrainattnError, FileNotFoundError):
    """The diff-set CSV is neither in a local folder nor downloadable from the hub."""


class Documents(list):
    """A list of training documents (``str``) that says where they came from.

    Attributes:
        source: ``"diffset"`` (filtered TemporalWiki diff-set lines) or ``"proxy"``.
        info: provenance (period, path, SHA-256, line counts) for the results file.
    """

    def __init__(self, texts, source: str, **info):
        super().__init__(texts)
        self.source, self.info = source, {"source": source, **info}


def diffset_filename(period: str) -> str:
    """``"0910"`` → ``"wikipedia_0910_gpt2.csv"`` (the official file name)."""
    if period not in TWIKI_PERIODS:
        raise ValueError(f"unknown TemporalWiki period {period!r}; valid: {', '.join(TWIKI_PERIODS)}")
    return f"wikipedia_{period}_gpt2.csv"


# ---------------------------------------------------------------- filtering


def keep_diffset_line(line: str) -> bool:
    """Appendix C.1 as implemented in the official ``preprocess_temporalwiki_dataset.py``.

    A line is dropped when (1) its stripped text contains ``'nan'`` and is shorter than 50
    characters (pandas' missing values), (2) the raw line is shorter than 50 characters
    (this also drops ``''`` and ``'nan'``), or (3) ASCII letters ``[a-zA-Z]`` make up less
    than 30% of the raw line's characters. Lengths and shares are measured on the raw
    field, as the official code does; exactly 50 characters or exactly 30% is kept.
    """
    content = line.strip()
    if "nan" in content and len(content) < MIN_CHARS:
        return False
    if len(line) < MIN_CHARS:
        return False
    return len(_LETTER.findall(line)) / len(line) >= MIN_LETTER_SHARE


def filter_diffset_lines(lines) -> list[str]:
    """The kept lines, stripped of surrounding whitespace (see :func:`keep_diffset_line`)."""
    return [line.strip() for line in lines if keep_diffset_line(line)]


# ---------------------------------------------------------------- reading


def read_diffset_lines(path: str | os.PathLike) -> list[str]:
    """Raw text lines of a diff-set CSV: the ``text`` column, else the first column.

    The header row is skipped; a row with no field (a blank line) reads as ``""``.
    """
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # Wikipedia paragraphs can be long
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty CSV (expected a header row, then text lines)")
        column = header.index("text") if "text" in header else 0
        return [row[column] if len(row) > column else "" for row in reader]


def diffset_csv_path(period: str, diffset_dir: str | os.PathLike | None = None,
                     cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of ``wikipedia_{period}_gpt2.csv``: local folder, else cache, else hub download.

    Raises:
        DiffsetUnavailableError: the local folder lacks the file, or the download failed
            (the message names ``TRAINATTN_TWIKI_DIFFSETS`` and the proxy alternative).
    """
    name = diffset_filename(period)
    if diffset_dir is None:
        diffset_dir = os.environ.get(DIFFSET_ENV) or None
    if diffset_dir is not None:
        root = Path(diffset_dir).expanduser()
        for path in (root / name, root / "TWiki_Diffsets" / name):
            if path.is_file():
                return path
        raise DiffsetUnavailableError(
            f"diff-set folder {root} has no {name} (looked in {root} and {root / 'TWiki_Diffsets'}). "
            f"Unzip {HUB_FILENAME} from the hub dataset {HUB_REPO_ID} there, or unset {DIFFSET_ENV} "
            "to download it into the cache."
        )
    path = cache_root(cache_dir) / "data" / "temporalwiki" / "diffsets" / name
    if not path.is_file():
        zip_path = _download_zip(cache_dir)
        extract_member(zip_path, name, path)
    return path


def _download_zip(cache_dir) -> Path:
    hint = (
        f"Put the unzipped CSVs in a folder and set {DIFFSET_ENV}=<folder> (or pass diffset_dir=), "
        "or train on proxy documents instead: trainattn.data.twiki_diffsets.proxy_documents(probe_rows) "
        "/ run_temporalwiki(..., source_label='proxy'); proxy results are not comparable with the paper."
    )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise DiffsetUnavailableError(f"huggingface_hub is not installed, so {HUB_FILENAME} cannot be downloaded. {hint}") from err
    try:
        local = hf_hub_download(repo_id=HUB_REPO_ID, repo_type="dataset", filename=HUB_FILENAME,
                                cache_dir=str(cache_root(cache_dir) / "hf"))
    except Exception as err:  # offline, proxy, auth, missing file: all end the same way
        raise DiffsetUnavailableError(
            f"could not download {HUB_FILENAME} from the Hugging Face hub dataset {HUB_REPO_ID} "
            f"({type(err).__name__}: {err}). {hint}"
        ) from err
    return Path(local)


def extract_member(zip_path: str | os.PathLike, name: str, dest: str | os.PathLike) -> Path:
    """Extract the zip member whose file name is ``name`` (any folder) to ``dest``, atomically."""
    dest = Path(dest)
    with zipfile.ZipFile(zip_path) as zf:
        members = [m for m in zf.namelist() if Path(m).name == name and not m.endswith("/")]
        if not members:
            raise DiffsetUnavailableError(f"{zip_path} has no member named {name}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, zf.open(sorted(members, key=len)[0]) as src:
                shutil.copyfileobj(src, out)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    return dest


def load_diffset_documents(period: str, diffset_dir: str | os.PathLike | None = None,
                           cache_dir: str | os.PathLike | None = None) -> Documents:
    """The filtered diff-set lines of ``period`` as :class:`Documents` (``source="diffset"``)."""
    path = diffset_csv_path(period, diffset_dir, cache_dir)
    raw = read_diffset_lines(path)
    kept = filter_diffset_lines(raw)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Documents(kept, "diffset", period=period, path=str(path), sha256=digest,
                     n_lines=len(raw), n_kept=len(kept))


# ---------------------------------------------------------------- proxy


def proxy_documents(probe_rows) -> Documents:
    """PROXY training documents: one template text per distinct (subject, relation, object).

    A stand-in for the Wikipedia diff text when the diff-set is unavailable (offline). Each
    fact becomes :data:`PROXY_TEMPLATE`, e.g. ``"Ada — occupation: writer. In the latest
    revision, the occupation of Ada is writer."``; duplicates are dropped, order kept, so the
    result is deterministic. Unlike a diff-set, a proxy holds evidence only for the facts it
    is built from (normally the CHANGED probes), so Changed and Unchanged scores separate
    more cleanly than on TemporalWiki: returned with ``source="proxy"``.
    """
    seen, texts = set(), []
    for r in probe_rows:
        key = (r["subject"], r["relation"], r["object"])
        if key not in seen:
            seen.add(key)
            texts.append(PROXY_TEMPLATE.format(subject=key[0], relation=key[1], object=key[2]))
    return Documents(texts, "proxy", n_facts=len(texts),
                     note="PROXY: template documents built from probe facts, not TemporalWiki diff text")
