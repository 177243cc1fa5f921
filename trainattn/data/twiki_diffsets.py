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

When no diff-set is available (offline), :func:`revision_proxy_documents` builds a clearly
labelled stand-in (proxy version :data:`PROXY_VERSION`): per changed probe fact, a short
"revision" of a few sentences in varied wording, the changed fact among unchanged facts that
are never scored. Results trained on it are labelled ``source: "proxy"`` and are NOT comparable
with the paper's Table 2. :func:`proxy_documents` is proxy version 1 (one near-probe template
per fact), kept unchanged because chapter 07's weight-share corpus hashes its texts.
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

import numpy as np

from trainattn.data.sources import cache_root
from trainattn.data.temporalwiki import TWIKI_PERIODS
from trainattn.errors import TrainattnError

DIFFSET_ENV = "TRAINATTN_TWIKI_DIFFSETS"
HUB_REPO_ID = "seonghyeonye/TemporalWiki"
HUB_FILENAME = "TWiki_Diffsets.zip"
MIN_CHARS = 50  # Appendix C.1 as implemented: drop lines shorter than this
MIN_LETTER_SHARE = 0.3  # ... and lines with fewer ASCII letters than this share
PROXY_TEMPLATE = "{subject} — {relation}: {object}. In the latest revision, the {relation} of {subject} is {object}."
#: Version of the proxy built by :func:`revision_proxy_documents` (1: :func:`proxy_documents`).
#: Part of a TemporalWiki run's identity, so runs on an older proxy are never read back as new.
PROXY_VERSION = 2
#: Sentence templates of a proxy revision, one drawn per fact. None is the probe's schematic form
#: ("Guess the object. subject is … , relation is … , object is …"). Each states the object verbatim.
PROXY_SENTENCES = (
    "The {relation} of {subject} is {object}.",
    "{subject}'s {relation}: {object}.",
    "As of this revision, {subject} has {object} as its {relation}.",
    "According to the article, {object} is the {relation} of {subject}.",
    "For {subject}, the {relation} is listed as {object}.",
    "{object} is recorded as the {relation} of {subject}.",
    "In the entry on {subject}, the {relation} reads {object}.",
    "{subject} — {relation}: {object}.",
)
PROXY_CONTEXT = 3  # unchanged facts per proxy document, at most
PROXY_MAX_CHARS = 400  # a proxy document's length cap in characters (the token cap, if given, also holds)
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
        "or train on proxy documents instead: run_temporalwiki(..., source_label='proxy') "
        "(trainattn.data.twiki_diffsets.revision_proxy_documents); proxy results are not comparable with the paper."
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
    """PROXY version 1: one template text per distinct (subject, relation, object).

    Superseded for training by :func:`revision_proxy_documents` (version 2): this near-probe
    text let every method lower Unchanged NLL by learning the probe's format. Kept, unchanged,
    because chapter 07 measures φ's weight shares on these texts and its run identity hashes
    them. Each fact becomes :data:`PROXY_TEMPLATE`, e.g. ``"Ada — occupation: writer. In the
    latest revision, the occupation of Ada is writer."``; duplicates are dropped, order kept.
    Returned with ``source="proxy"``.
    """
    seen, texts = set(), []
    for r in probe_rows:
        key = (r["subject"], r["relation"], r["object"])
        if key not in seen:
            seen.add(key)
            texts.append(PROXY_TEMPLATE.format(subject=key[0], relation=key[1], object=key[2]))
    return Documents(texts, "proxy", n_facts=len(texts), proxy_version=1,
                     note="PROXY: template documents built from probe facts, not TemporalWiki diff text")


def _fact(row) -> tuple[str, str, str]:
    return row["subject"], row["relation"], row["object"]


def _mentions(fact: tuple[str, str, str], text: str) -> bool:
    return any(text.casefold() in part.casefold() for part in fact)


def _sentence(fact: tuple[str, str, str], template: int) -> str:
    subject, relation, obj = fact
    return PROXY_SENTENCES[template].format(subject=subject, relation=relation, object=obj)


def _templates_for(fact: tuple[str, str, str]) -> list[int]:
    """Templates usable for ``fact``: all, but where the subject contains the object, only those
    that state the object after the subject (so its LAST occurrence, the one an object mask marks,
    is the object itself)."""
    subject, _, obj = fact
    if obj.casefold() not in subject.casefold():
        return list(range(len(PROXY_SENTENCES)))
    return [i for i, t in enumerate(PROXY_SENTENCES) if t.index("{object}") > t.index("{subject}")]


def revision_proxy_documents(changed_rows, unchanged_rows=(), scored_unchanged=(), *, seed: int = 0,
                             n_context: int = PROXY_CONTEXT, max_chars: int | None = PROXY_MAX_CHARS,
                             tokenizer=None, max_tokens: int | None = None) -> Documents:
    """PROXY training documents, version :data:`PROXY_VERSION`: one short "revision" per changed fact.

    A stand-in for the Wikipedia diff text when the diff-set is unavailable (offline). Each
    distinct (subject, relation, object) of ``changed_rows`` becomes a document of a few
    sentences: the changed fact plus up to ``n_context`` UNCHANGED facts, shuffled, each fact
    in one of the :data:`PROXY_SENTENCES`, so that (as in a diff paragraph) the change sits among
    facts that did not change, and nothing looks like the probe.

    The unchanged facts come from ``unchanged_rows`` (the period's whole UNCHANGED probe file)
    minus ``scored_unchanged`` (the probes a run scores): a scored Unchanged probe's fact is
    never stated, nor any fact with the same (subject, relation) as a scored or changed one, so
    Unchanged NLL still measures facts no document restates. The subject's own unchanged facts
    come first; the probe files seldom share subjects (in TWiki-Probes 8, 3 and 6 changed facts
    per period have any), so the rest are unchanged facts about OTHER entities, drawn from one
    seeded permutation of the pool: the document reads like a revision log of a few entries
    rather than one article's paragraph. No fact is used whose text contains the changed object
    (its last occurrence is the changed fact's). There is no neutral filler sentence: with an
    empty pool (every Unchanged probe scored) a document is the changed fact alone.

    Length: unchanged facts are dropped (last drawn first) until the document has at most
    ``max_chars`` characters and, with ``tokenizer``, at most ``max_tokens`` tokens as
    ``tokenizer(text)["input_ids"]`` counts them; the changed fact is always kept (a document
    whose changed fact alone is too long is counted in ``info["n_over_cap"]``).

    Deterministic in (inputs, ``seed``); duplicates in ``changed_rows`` are dropped, order kept.
    Returned with ``source="proxy"``; ``.facts`` holds each document's changed fact and
    ``.context`` its unchanged facts (as ``{"subject", "relation", "object"}`` dicts).
    """
    changed, seen = [], set()
    for r in changed_rows:
        if _fact(r) not in seen:
            seen.add(_fact(r))
            changed.append(_fact(r))
    blocked = {f[:2] for f in map(_fact, scored_unchanged)} | {f[:2] for f in changed}
    pool, pool_seen = [], set()
    for r in unchanged_rows:
        f = _fact(r)
        if f[:2] not in blocked and f not in pool_seen:
            pool_seen.add(f)
            pool.append(f)
    by_subject: dict[str, list[int]] = {}
    for i, f in enumerate(pool):
        by_subject.setdefault(f[0], []).append(i)
    rng = np.random.default_rng([seed, 0x7057, PROXY_VERSION])
    order = rng.permutation(len(pool)).tolist() if pool else []
    cursor = 0

    def fits(text: str) -> bool:
        if max_chars is not None and len(text) > max_chars:
            return False
        return tokenizer is None or max_tokens is None or len(tokenizer(text)["input_ids"]) <= max_tokens

    texts, facts, contexts = [], [], []
    n_same_subject = n_over_cap = 0
    for fact in changed:
        obj = fact[2]
        own = [pool[i] for i in by_subject.get(fact[0], []) if not _mentions(pool[i], obj)][:n_context]
        context = list(own)
        looked = 0
        while len(context) < n_context and order and looked < len(order):
            candidate = pool[order[cursor % len(order)]]
            cursor += 1
            looked += 1
            if candidate not in context and candidate[0] != fact[0] and not _mentions(candidate, obj):
                context.append(candidate)
        templates = [int(rng.choice(_templates_for(f))) for f in [fact, *context]]
        placement = rng.permutation(len(context) + 1).tolist()
        for k in range(len(context), -1, -1):  # drop the last-drawn unchanged facts until it fits
            kept = [(f, t) for f, t in zip([fact, *context[:k]], templates, strict=False)]
            ranked = sorted(range(k + 1), key=lambda j: placement[j])
            text = " ".join(_sentence(*kept[j]) for j in ranked)
            if fits(text):
                break
        else:
            n_over_cap += 1
        texts.append(text)
        facts.append(dict(zip(("subject", "relation", "object"), fact, strict=True)))
        contexts.append([dict(zip(("subject", "relation", "object"), f, strict=True)) for f in context[:k]])
        n_same_subject += sum(f in own for f in context[:k])
    docs = Documents(texts, "proxy", proxy_version=PROXY_VERSION, seed=seed, n_facts=len(texts),
                     n_pool=len(pool), n_context_facts=sum(map(len, contexts)),
                     n_same_subject_context=n_same_subject, max_chars=max_chars, max_tokens=max_tokens,
                     n_over_cap=n_over_cap,
                     note="PROXY: each changed probe fact among unchanged, unscored probe facts, in varied "
                          "sentence templates; built from probe facts, not TemporalWiki diff text")
    docs.facts, docs.context = facts, contexts
    return docs
