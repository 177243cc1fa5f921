"""Tests of trainattn.data: sources/checksums/download, strict JSONL, LAMA-CKL, TemporalWiki, T-REx.

Tests that read the real files need ``TRAINATTN_DATA`` (e.g. ``TRAINATTN_DATA=../shared/data``)
and are skipped without it; everything else runs on small fixtures written in ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from trainattn.data import (
    FILES,
    LAMA_CKL_SPLITS,
    PINNED_COMMIT,
    TIME_INVARIANT_RELATIONS,
    TWIKI_PERIODS,
    build_lama_ckl_rows,
    data_file,
    load_lama_ckl,
    load_temporalwiki_probes,
    probe_text,
    raw_url,
    read_jsonl,
    sources,
    twiki_probe_text,
)
from trainattn.data.sources import DataFileInfo
from trainattn.errors import ChecksumError, DataFormatError

REAL_DATA = os.environ.get("TRAINATTN_DATA")
needs_real_data = pytest.mark.skipif(
    not REAL_DATA, reason="TRAINATTN_DATA is unset: no local copy of the real data files"
)

LAMA_RELPATH = "lama_ckl/variant.jsonl"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test sees the real data dir or the user's cache unless it asks for them."""
    monkeypatch.delenv("TRAINATTN_DATA", raising=False)
    monkeypatch.setenv("TRAINATTN_CACHE", str(tmp_path / "default-cache"))
    sources._VERIFIED.clear()


def write_jsonl(path: Path, rows: list, raw_lines: dict[int, str] | None = None) -> Path:
    """Write rows as JSON lines; ``raw_lines`` replaces given 1-based lines verbatim."""
    lines = [json.dumps(r) for r in rows]
    for lineno, text in (raw_lines or {}).items():
        lines[lineno - 1] = text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def lama_row(**overrides) -> dict:
    row = {
        "relation_code": "P530",
        "uuid": "u-1",
        "subject": "Libya",
        "object": "Brazil",
        "relation_label": "diplomatic relation",
        "task_descriptive": "Libya maintains diplomatic relations with Brazil .",
        "task_schematic": "Guess the object. \n  subject is Libya , relation is diplomatic "
        "relation , object is Brazil",
        "evidence": "Libya and Brazil ...",
        "masked_evidence": "Libya and [MASK] ...",
        "position": 0.5,
        "evidence_length": 20,
        "invariant": False,
        "scores": {"descriptive": {"llama_7b": 0.0}, "schematic": {"llama_1b": 1.0}},
    }
    row.update(overrides)
    return row


def pin_fixture(monkeypatch, relpath: str, content: bytes) -> str:
    """Make ``content`` the pinned version of ``relpath``; returns its SHA-256."""
    sha = hashlib.sha256(content).hexdigest()
    monkeypatch.setitem(sources.FILES, relpath, DataFileInfo(relpath, FILES[relpath].repo_path, sha))
    return sha


# ---------------------------------------------------------------- sources


def test_files_table_and_urls():
    assert len(FILES) == 9
    assert FILES["temporalwiki/probes/0901-1001_changed.jsonl"].repo_path == (
        "data/TemporalWiki/eval/0901-1001_changed.jsonl"
    )
    assert FILES[LAMA_RELPATH].repo_path == "data/LAMA_ckl/variant.jsonl"
    assert all(len(i.sha256) == 64 and i.relpath == k for k, i in FILES.items())
    assert raw_url("data/LAMA_ckl/variant.jsonl") == (
        f"https://raw.githubusercontent.com/ybseo-academy/TAALM/{PINNED_COMMIT}"
        "/data/LAMA_ckl/variant.jsonl"
    )


@needs_real_data
def test_pinned_hashes_match_sha256sums():
    sums = {}
    for line in (Path(REAL_DATA) / "SHA256SUMS").read_text().splitlines():
        sha, rel = line.split()
        sums[rel] = sha
    assert sums == {k: i.sha256 for k, i in FILES.items()}


def test_unknown_relpath():
    with pytest.raises(KeyError, match="unknown data file"):
        data_file("nope.jsonl", data_dir="/nonexistent")


def test_local_dir_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"lama_ckl/variant\.jsonl") as info:
        data_file(LAMA_RELPATH, data_dir=tmp_path)
    assert str(tmp_path) in str(info.value)


def test_local_dir_checksum_mismatch(tmp_path):
    write_jsonl(tmp_path / LAMA_RELPATH, [lama_row()])
    with pytest.raises(ChecksumError, match=FILES[LAMA_RELPATH].sha256):
        data_file(LAMA_RELPATH, data_dir=tmp_path)
    # verify=False skips the check
    assert data_file(LAMA_RELPATH, data_dir=tmp_path, verify=False) == tmp_path / LAMA_RELPATH


def test_env_data_dir_used_and_verification_cached(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / LAMA_RELPATH, [lama_row()])
    pin_fixture(monkeypatch, LAMA_RELPATH, path.read_bytes())
    monkeypatch.setenv("TRAINATTN_DATA", str(tmp_path))
    calls = []
    real_sha = sources.sha256_file
    monkeypatch.setattr(sources, "sha256_file", lambda p: calls.append(p) or real_sha(p))
    assert data_file(LAMA_RELPATH) == path
    assert data_file(LAMA_RELPATH) == path
    assert len(calls) == 1  # second call hit the (path, size, mtime) cache
    path.write_bytes(path.read_bytes() + b"\n")  # a changed file is hashed again, and fails
    with pytest.raises(ChecksumError):
        data_file(LAMA_RELPATH)
    assert len(calls) == 2


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def test_download_correct_lands_and_verifies(tmp_path, monkeypatch):
    content = (json.dumps(lama_row()) + "\n").encode()
    pin_fixture(monkeypatch, LAMA_RELPATH, content)
    urls = []

    def fake_fetch(url, dest):
        urls.append(url)
        Path(dest).write_bytes(content)

    monkeypatch.setattr(sources, "_fetch", fake_fetch)
    cache = tmp_path / "cache"
    path = data_file(LAMA_RELPATH, cache_dir=cache)
    assert path == cache / "data" / LAMA_RELPATH
    assert path.read_bytes() == content
    assert urls == [raw_url("data/LAMA_ckl/variant.jsonl")]
    assert _leftovers(cache) == ["variant.jsonl"]
    data_file(LAMA_RELPATH, cache_dir=cache)  # now cached: no second download
    assert len(urls) == 1
    ds = load_lama_ckl("variant", cache_dir=cache)
    assert ds.num_rows == 1 and ds[0]["subject"] == "Libya"


def test_download_default_cache_from_env(tmp_path, monkeypatch):
    content = b'{"subject": "a", "relation": "b", "object": "c"}\n'
    rel = "temporalwiki/probes/1101-1201_changed.jsonl"
    pin_fixture(monkeypatch, rel, content)
    monkeypatch.setattr(sources, "_fetch", lambda url, dest: Path(dest).write_bytes(content))
    ds = load_temporalwiki_probes("1112", "changed")
    assert ds["object"] == ["c"]
    assert (tmp_path / "default-cache" / "data" / rel).read_bytes() == content


def test_download_wrong_bytes_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_fetch", lambda url, dest: Path(dest).write_bytes(b"oops"))
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match=FILES[LAMA_RELPATH].sha256):
        data_file(LAMA_RELPATH, cache_dir=cache)
    assert _leftovers(cache) == []


def test_download_network_failure_leaves_nothing(tmp_path, monkeypatch):
    def failing_fetch(url, dest):
        Path(dest).write_bytes(b"half a fi")
        raise OSError("connection reset")

    monkeypatch.setattr(sources, "_fetch", failing_fetch)
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match="connection reset"):
        data_file(LAMA_RELPATH, cache_dir=cache)
    assert _leftovers(cache) == []


def test_corrupt_cached_file_raises(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    write_jsonl(cache / "data" / LAMA_RELPATH, [lama_row()])
    monkeypatch.setattr(sources, "_fetch", lambda url, dest: pytest.fail("must not download"))
    with pytest.raises(ChecksumError, match="delete it"):
        data_file(LAMA_RELPATH, cache_dir=cache)


# ---------------------------------------------------------------- schema


REQ = {"subject": str, "object": str, "n": int}


def test_read_jsonl_ok_skips_blank_lines(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_text('{"subject": "a", "object": "b", "n": 1}\n\n  \n'
                    '{"subject": "c", "object": "d", "n": 2, "extra": [1]}\n')
    rows = read_jsonl(path, REQ)
    assert [r["n"] for r in rows] == [1, 2] and rows[1]["extra"] == [1]


def test_read_jsonl_missing_field(tmp_path):
    good = {"subject": "a", "object": "b", "n": 1}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, good, {"subject": "a", "n": 1}])
    with pytest.raises(DataFormatError, match=r"bad\.jsonl, line 3, field 'object': missing") as e:
        read_jsonl(path, REQ)
    assert (e.value.line, e.value.field) == (3, "object")


def test_read_jsonl_broken_json(tmp_path):
    good = {"subject": "a", "object": "b", "n": 1}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, good], raw_lines={2: '{"subject": "a",'})
    with pytest.raises(DataFormatError, match=r"bad\.jsonl, line 2: not valid JSON"):
        read_jsonl(path, REQ)


def test_read_jsonl_not_an_object(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [[1, 2]])
    with pytest.raises(DataFormatError, match=r"bad\.jsonl, line 1: expected a JSON object"):
        read_jsonl(path, REQ)


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ({"subject": "a", "object": 7, "n": 1}, "object", "expected str, got int"),
        ({"subject": "a", "object": "b", "n": True}, "n", "expected int, got bool"),
        ({"subject": None, "object": "b", "n": 1}, "subject", "expected str, got NoneType"),
    ],
)
def test_read_jsonl_wrong_type(tmp_path, row, field, problem):
    path = write_jsonl(tmp_path / "bad.jsonl", [row])
    with pytest.raises(DataFormatError, match=rf"bad\.jsonl, line 1, field '{field}': {problem}"):
        read_jsonl(path, REQ)


def test_read_jsonl_type_tuple_and_nonempty(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"v": 1}, {"v": "s"}])
    assert len(read_jsonl(path, {"v": (int, str)})) == 2
    with pytest.raises(DataFormatError, match="expected int or str, got float"):
        read_jsonl(write_jsonl(tmp_path / "y.jsonl", [{"v": 1.5}]), {"v": (int, str)})
    with pytest.raises(DataFormatError, match=r"line 1, field 'v': empty"):
        read_jsonl(write_jsonl(tmp_path / "z.jsonl", [{"v": " "}]), {"v": str}, nonempty=["v"])


# ---------------------------------------------------------------- LAMA-CKL


def test_lama_ckl_fixture_columns(tmp_path, monkeypatch):
    rows = [lama_row(), lama_row(uuid="u-2", position=1, scores={"descriptive": {}})]
    path = write_jsonl(tmp_path / LAMA_RELPATH, rows)
    pin_fixture(monkeypatch, LAMA_RELPATH, path.read_bytes())
    ds = load_lama_ckl("variant", data_dir=tmp_path)
    assert ds.num_rows == 2
    assert set(ds.column_names) == {
        "relation_code", "uuid", "subject", "object", "relation_label", "task_descriptive",
        "task_schematic", "evidence", "invariant", "masked_evidence", "position",
        "evidence_length", "scores_json",
    }
    assert json.loads(ds[0]["scores_json"]) == rows[0]["scores"]
    assert ds["position"] == [0.5, 1.0]
    assert probe_text(ds[0], "descriptive") == rows[0]["task_descriptive"]
    assert probe_text(ds[0], "schematic") == rows[0]["task_schematic"]


def test_lama_ckl_optional_fields_absent(tmp_path, monkeypatch):
    row = {k: v for k, v in lama_row().items()
           if k not in ("masked_evidence", "position", "evidence_length", "scores")}
    path = write_jsonl(tmp_path / LAMA_RELPATH, [row])
    pin_fixture(monkeypatch, LAMA_RELPATH, path.read_bytes())
    ds = load_lama_ckl("variant", data_dir=tmp_path)
    assert "scores_json" not in ds.column_names and ds[0]["object"] == "Brazil"


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"object": ""}, r"variant\.jsonl, line 2, field 'object': empty"),
        ({"invariant": "no"}, r"variant\.jsonl, line 2, field 'invariant': expected bool, got str"),
        ({"evidence_length": "3"}, r"line 2, field 'evidence_length': expected int, got str"),
    ],
)
def test_lama_ckl_bad_rows(tmp_path, monkeypatch, override, pattern):
    path = write_jsonl(tmp_path / LAMA_RELPATH, [lama_row(), lama_row(**override)])
    pin_fixture(monkeypatch, LAMA_RELPATH, path.read_bytes())
    with pytest.raises(DataFormatError, match=pattern):
        load_lama_ckl("variant", data_dir=tmp_path)


def test_lama_ckl_unknown_split_and_form():
    with pytest.raises(ValueError, match="variant, invariant_descriptive, invariant_schematic"):
        load_lama_ckl("train", data_dir="/nonexistent")
    with pytest.raises(ValueError, match="descriptive, schematic"):
        probe_text(lama_row(), "cloze")


def test_time_invariant_relations():
    assert len(TIME_INVARIANT_RELATIONS) == 28
    assert {"P19", "P361", "P1412"} <= TIME_INVARIANT_RELATIONS
    assert "P530" not in TIME_INVARIANT_RELATIONS


@needs_real_data
@pytest.mark.parametrize("split", LAMA_CKL_SPLITS)
def test_real_lama_ckl(split):
    ds = load_lama_ckl(split, data_dir=REAL_DATA)
    assert ds.num_rows == 500
    assert set(ds["invariant"]) == {split != "variant"}
    row = ds[0]
    assert row["task_schematic"] == twiki_probe_text(
        row["subject"], row["relation_label"], row["object"]
    )
    assert set(json.loads(row["scores_json"])) == {"descriptive", "schematic"}
    assert row["evidence_length"] == len(row["evidence"])


# ---------------------------------------------------------------- TemporalWiki


def test_twiki_probe_text_exact():
    assert twiki_probe_text("Libya", "capital", "Tripoli") == (
        "Guess the object. \n  subject is Libya , relation is capital , object is Tripoli"
    )


def test_twiki_fixture_and_errors(tmp_path, monkeypatch):
    rel = "temporalwiki/probes/1001-1101_unchanged.jsonl"
    rows = [{"subject": "A", "relation": "r", "object": "B"}]
    path = write_jsonl(tmp_path / rel, rows)
    pin_fixture(monkeypatch, rel, path.read_bytes())
    ds = load_temporalwiki_probes("1011", "unchanged", data_dir=tmp_path)
    assert ds.column_names == ["subject", "relation", "object", "probe"]
    assert ds[0]["probe"] == twiki_probe_text("A", "r", "B")

    path = write_jsonl(tmp_path / rel, rows + [{"subject": "A", "relation": "r", "object": ""}])
    pin_fixture(monkeypatch, rel, path.read_bytes())
    with pytest.raises(DataFormatError, match=r"unchanged\.jsonl, line 2, field 'object'"):
        load_temporalwiki_probes("1011", "unchanged", data_dir=tmp_path)


def test_twiki_unknown_period_and_kind():
    with pytest.raises(ValueError, match="0910, 1011, 1112"):
        load_temporalwiki_probes("0809", "changed", data_dir="/nonexistent")
    with pytest.raises(ValueError, match="changed, unchanged"):
        load_temporalwiki_probes("0910", "new", data_dir="/nonexistent")


@needs_real_data
@pytest.mark.parametrize(
    ("period", "kind", "rows"),
    [
        ("0910", "changed", 1732), ("0910", "unchanged", 7090),
        ("1011", "changed", 1108), ("1011", "unchanged", 7063),
        ("1112", "changed", 1701), ("1112", "unchanged", 7043),
    ],
)
def test_real_twiki_probes(period, kind, rows):
    assert TWIKI_PERIODS[period]
    ds = load_temporalwiki_probes(period, kind, data_dir=REAL_DATA)
    assert ds.num_rows == rows
    r = ds[0]
    assert r["probe"] == (
        f"Guess the object. \n  subject is {r['subject']} , relation is {r['relation']} , "
        f"object is {r['object']}"
    )


# ---------------------------------------------------------------- T-REx builder

RELATIONS = [
    {"relation": "P530", "template": "[X] maintains diplomatic relations with [Y] .",
     "label": "diplomatic relation", "description": "", "type": "N-M"},
    {"relation": "P37", "template": "The official language of [X] is [Y] .",
     "label": "official language", "description": "", "type": "N-1"},
    {"relation": "P19", "template": "[X] was born in [Y] .", "label": "place of birth",
     "description": "", "type": "N-1"},
]
PAD = " It is a sentence padded out with further words so that it is long enough to pass." * 3
LONG_VARIANT = "Libya and [MASK] signed a treaty of friendship in Tripoli." + PAD
SHORT_VARIANT = "Libya and [MASK] trade."
LONG_INVARIANT = "In [MASK], the main language of Paraguay, many books were written." + PAD
NO_SUBJECT = "Someone else and [MASK] met at the summit in a city." + PAD


def fact(uuid, pred, sub, obj, sentences):
    evs = [{"sub_surface": sub, "obj_surface": obj, "masked_sentence": s, "sub_uri": "Q1",
            "obj_uri": "Q2", "predicate_id": pred, "uuid": uuid} for s in sentences]
    return {"uuid": uuid, "obj_uri": "Q2", "obj_label": obj, "sub_uri": "Q1", "sub_label": sub,
            "predicate_id": pred, "evidences": evs}


def write_trex(root: Path, p37_rows: list | None = None) -> Path:
    write_jsonl(root / "relations.jsonl", RELATIONS)
    write_jsonl(root / "TREx" / "P530.jsonl", [
        fact("v-good", "P530", "Libya", "Brazil", [SHORT_VARIANT, LONG_VARIANT, SHORT_VARIANT]),
        fact("v-nosubj", "P530", "Cuba", "Chile", [NO_SUBJECT]),
        fact("v-noev", "P530", "Cuba", "Peru", []),
    ])
    write_jsonl(root / "TREx" / "P37.jsonl", p37_rows or [
        fact("i-good", "P37", "Paraguay", "Spanish", [LONG_INVARIANT]),
    ])
    write_jsonl(root / "TREx" / "P19.jsonl", [
        fact("i-short", "P19", "Ada Lovelace", "London", ["Ada Lovelace was born in [MASK]."]),
    ])
    return root


def test_build_lama_ckl_rows(tmp_path):
    rows = build_lama_ckl_rows(write_trex(tmp_path))
    assert [r["uuid"] for r in rows] == ["i-good", "v-good"]  # P37 before P530
    inv, var = rows
    ev = LONG_VARIANT.replace("[MASK]", "Brazil")
    assert var == {
        "relation_code": "P530",
        "uuid": "v-good",
        "subject": "Libya",
        "object": "Brazil",
        "relation_label": "diplomatic relation",
        "task_descriptive": "Libya maintains diplomatic relations with Brazil .",
        "task_schematic": "Guess the object. \n  subject is Libya , relation is "
        "diplomatic relation , object is Brazil",
        "evidence": ev,
        "masked_evidence": LONG_VARIANT,
        "position": LONG_VARIANT.index("[MASK]") / len(LONG_VARIANT),
        "evidence_length": len(ev),
        "invariant": False,
    }
    assert inv["invariant"] is True
    assert inv["task_descriptive"] == "The official language of Paraguay is Spanish ."
    assert inv["evidence"].startswith("In Spanish, the main language of Paraguay")
    assert inv["relation_label"] == "official language"


def test_build_lama_ckl_rows_from_trex_subdir(tmp_path):
    rows = build_lama_ckl_rows(write_trex(tmp_path) / "TREx")
    assert [r["uuid"] for r in rows] == ["i-good", "v-good"]


def test_build_lama_ckl_rows_200_char_boundary(tmp_path):
    masked = "Paraguay speaks [MASK]."
    masked += "x" * (200 - len(masked.replace("[MASK]", "Spanish")))
    assert len(masked.replace("[MASK]", "Spanish")) == 200
    rows = build_lama_ckl_rows(write_trex(tmp_path, [
        fact("at-200", "P37", "Paraguay", "Spanish", [masked]),
        fact("at-201", "P37", "Paraguay", "Spanish", [masked + "x"]),
    ]))
    assert [r["uuid"] for r in rows] == ["at-201", "v-good"]


def test_build_lama_ckl_rows_malformed(tmp_path):
    bad = fact("b", "P37", "Paraguay", "Spanish", [LONG_INVARIANT])
    del bad["obj_label"]
    good = fact("i-good", "P37", "Paraguay", "Spanish", [LONG_INVARIANT])
    write_trex(tmp_path, [good, bad])
    with pytest.raises(DataFormatError, match=r"P37\.jsonl, line 2, field 'obj_label': missing"):
        build_lama_ckl_rows(tmp_path)

    bad = fact("b", "P37", "Paraguay", "Spanish", [LONG_INVARIANT, LONG_INVARIANT])
    del bad["evidences"][1]["masked_sentence"]
    write_trex(tmp_path, [bad])
    with pytest.raises(DataFormatError,
                       match=r"P37\.jsonl, line 1, field 'evidences\[1\]\.masked_sentence'"):
        build_lama_ckl_rows(tmp_path)

    write_trex(tmp_path, [fact("b", "P999", "A", "B", [LONG_INVARIANT])])
    with pytest.raises(DataFormatError, match=r"field 'predicate_id': relation 'P999'"):
        build_lama_ckl_rows(tmp_path)

    write_trex(tmp_path)
    write_jsonl(tmp_path / "relations.jsonl", RELATIONS[:2] + [{"relation": "P19", "label": "x"}])
    with pytest.raises(DataFormatError, match=r"relations\.jsonl, line 3, field 'template'"):
        build_lama_ckl_rows(tmp_path)


def test_build_lama_ckl_rows_missing_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="relations.jsonl"):
        build_lama_ckl_rows(tmp_path)
    write_jsonl(tmp_path / "relations.jsonl", RELATIONS)
    with pytest.raises(FileNotFoundError, match=r"P\*\.jsonl"):
        build_lama_ckl_rows(tmp_path)
