"""Tests of trainattn.data.tailor: LAMA-CKL splits rebuilt from one model's pre-test scores.

Exact rules are tested on handcrafted score dicts; the pipeline on small fixture files (pinned
in ``sources.FILES`` for the test) with a counting fake scorer or the tiny random model. The
test on the real files needs ``TRAINATTN_DATA`` and uses a small subset.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from trainattn.core.evaluate import ProbeScores, score_probes
from trainattn.data import sources, tailor
from trainattn.data.lama_ckl import LAMA_CKL_SPLITS, load_lama_ckl
from trainattn.data.sources import FILES, DataFileInfo
from trainattn.data.tailor import (
    TailoredSplits,
    build_splits,
    load_tailored,
    score_rows,
    tailor_lama_ckl,
)
from trainattn.files import write_text_atomic

REAL_DATA = os.environ.get("TRAINATTN_DATA")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("TRAINATTN_DATA", raising=False)
    monkeypatch.setenv("TRAINATTN_CACHE", str(tmp_path / "default-cache"))
    sources._VERIFIED.clear()


def row(uuid: str, invariant: bool, relation: str = "P1", obj: str = "Brazil") -> dict:
    """A LAMA-CKL row whose probes contain ``obj`` (unless ``obj`` starts with '?')."""
    shown = "Oslo" if obj.startswith("?") else obj
    return {
        "relation_code": relation,
        "uuid": uuid,
        "subject": f"Libya {uuid}",
        "object": obj,
        "relation_label": "diplomatic relation",
        "task_descriptive": f"Libya {uuid} maintains diplomatic relations with {shown} .",
        "task_schematic": f"Guess the object. \n  subject is Libya {uuid} , relation is "
        f"diplomatic relation , object is {shown}",
        "evidence": f"Libya {uuid} and {shown} ...",
        "invariant": invariant,
    }


def score(uuid, invariant, d, s, relation="P1") -> dict:
    """A score dict as :func:`score_rows` returns; ``None`` means not located."""
    return {
        "uuid": uuid, "invariant": invariant, "relation_code": relation,
        "descriptive": d, "schematic": s,
        "descriptive_nll": None if d is None else 1.0, "schematic_nll": None if s is None else 1.0,
        "located_descriptive": d is not None, "located_schematic": s is not None,
    }


def build(scores, n_to_learn=10, n_not_to_forget=10, **kw) -> TailoredSplits:
    rows = {s["uuid"]: row(s["uuid"], s["invariant"], s["relation_code"]) for s in scores}
    return build_splits(scores, rows, n_to_learn, n_not_to_forget, **kw)


def uuids(rows) -> set[str]:
    return {r["uuid"] for r in rows}


# ---------------------------------------------------------------- rules


BOUNDARY_SCORES = [
    score("v-00", False, 0.0, 0.0),      # TO-LEARN
    score("v-00b", False, 0.0, 0.0),     # TO-LEARN
    score("v-0-half", False, 0.0, 0.5),  # not TO-LEARN; 0.5 is not < 0.5: not meta either
    score("v-low", False, 0.49, 0.25),   # meta only
    score("v-nl", False, 0.0, None),     # schematic not located: excluded, counted twice
    score("v-one", False, 1.0, 1.0),     # variant rows never go to NOT-TO-FORGET
    score("i-1", True, 1.0, 0.0),        # NOT-TO-FORGET (descriptive form only)
    score("i-1-nl", True, 1.0, None),    # NOT-TO-FORGET: the schematic form is not needed
    score("i-almost", True, 0.99, 0.0),  # neither
    score("i-low", True, 0.4, 0.2),      # meta only (any relation)
    score("i-0", True, 0.0, 0.0),        # invariant: never TO-LEARN, but meta
    score("i-nl", True, None, 1.0),      # descriptive not located: excluded, counted
]


def test_rules_at_the_boundaries():
    sp = build(BOUNDARY_SCORES, n_to_learn=10, n_not_to_forget=10, n_meta=None)
    assert uuids(sp.to_learn) == {"v-00", "v-00b"}
    assert uuids(sp.not_to_forget) == {"i-1", "i-1-nl"}
    assert uuids(sp.meta_pool) == {"v-low", "i-low", "i-0"}
    st = sp.stats
    assert st["not_located"] == {"to_learn": 1, "not_to_forget": 1, "meta_pool": 3}
    assert st["candidates"] == {"to_learn": 2, "not_to_forget": 2, "meta_pool": 3}
    assert st["shortfall"] == {"to_learn": 8, "not_to_forget": 8, "meta_pool": 0}
    assert st["sizes"] == {"to_learn": 2, "not_to_forget": 2, "meta_pool": 3}
    assert st["n_rows"] == 12 and st["n_variant"] == 6 and st["n_invariant"] == 6
    assert "to_learn" in sp.summary() and "short by 8" in sp.summary()


def test_unsampled_to_learn_candidates_stay_in_meta_pool():
    sp = build(BOUNDARY_SCORES, n_to_learn=1, n_not_to_forget=1, seed=0)
    (picked,) = uuids(sp.to_learn)
    assert picked in {"v-00", "v-00b"}
    other = ({"v-00", "v-00b"} - {picked}).pop()
    assert uuids(sp.meta_pool) == {"v-low", "i-low", "i-0", other}
    assert sp.stats["meta_excluded_as_to_learn"] == 1
    assert sp.stats["shortfall"]["to_learn"] == 0


def test_text_clean_pool_drops_shared_text_and_counts_it():
    tested = [{"evidence": "Sofia lies in  Bulgaria.", "subject": "Bulgaria", "object": "Italy"},
              {"evidence": "X.", "subject": "Manuel Roxas", "object": "governor"}]
    pool = [{"uuid": "same", "evidence": "sofia lies in Bulgaria"},        # same text, normalised
            {"uuid": "pair", "evidence": "Manuel Roxas was a GOVERNOR."},  # names a tested pair
            {"uuid": "half", "evidence": "Bulgaria borders Greece."},      # subject alone: kept
            {"uuid": "word", "evidence": "Bulgarian and Italyan food."}]   # no whole words: kept
    kept, counts = tailor.text_clean_pool(pool, tested)
    assert [r["uuid"] for r in kept] == ["half", "word"]
    assert counts == {"same_evidence": 1, "states_tested_fact": 1}


def test_build_splits_meta_pool_is_text_clean():
    scores = [score("v-a", False, 0.0, 0.0), score("i-a", True, 1.0, 1.0),
              score("m-copy", False, 0.2, 0.2), score("m-pair", True, 0.0, 0.0), score("m-ok", True, 0.0, 0.0)]
    rows = {s["uuid"]: row(s["uuid"], s["invariant"]) for s in scores}
    rows["v-a"]["evidence"] += f" {rows['i-a']['subject']} ({rows['i-a']['object']})"  # TO-LEARN states NF
    rows["m-copy"]["evidence"] = rows["v-a"]["evidence"].upper()          # TO-LEARN's document again
    rows["m-pair"]["evidence"] = f"On {rows['i-a']['subject']}: {rows['i-a']['object']}."  # a NOT-TO-FORGET fact
    sp = build_splits(scores, rows, 1, 1, seed=0)
    assert uuids(sp.meta_pool) == {"m-ok"}
    assert sp.stats["meta_excluded_by_text"] == {"same_evidence": 1, "states_tested_fact": 1}
    assert sp.stats["meta_excluded_as_to_learn"] == 1  # v-a itself
    assert sp.stats["to_learn_stating_not_to_forget"] == [["v-a", "i-a"]]


def test_rows_keep_fields_and_get_pretest():
    sp = build(BOUNDARY_SCORES, model_name="tiny")
    r = next(r for r in sp.not_to_forget if r["uuid"] == "i-1-nl")
    for key in ("uuid", "subject", "object", "relation_code", "relation_label",
                "task_descriptive", "task_schematic", "evidence", "invariant"):
        assert key in r
    assert r["pretest"]["descriptive"] == 1.0 and r["pretest"]["schematic"] is None
    assert r["pretest"]["located_schematic"] is False and r["pretest"]["model"] == "tiny"


def test_disjoint_and_duplicate_uuids_rejected():
    scores = [score(f"v{i}", False, 0.0, 0.0) for i in range(30)]
    scores += [score(f"i{i}", True, 1.0, 0.0) for i in range(30)]
    sp = build(scores, n_to_learn=10, n_not_to_forget=10)
    sets = [uuids(sp.to_learn), uuids(sp.not_to_forget), uuids(sp.meta_pool)]
    assert sum(map(len, sets)) == len(set().union(*sets)) == 10 + 10 + 20
    with pytest.raises(ValueError, match="duplicate"):
        build(scores + [scores[0]])


def test_sampling_deterministic_per_seed():
    scores = [score(f"v{i:03d}", False, 0.0, 0.0) for i in range(200)]
    scores += [score(f"i{i:03d}", True, 1.0, 1.0) for i in range(200)]

    def picks(seed):
        sp = build(scores, n_to_learn=50, n_not_to_forget=50, n_meta=20, seed=seed)
        return [[r["uuid"] for r in rows] for rows in (sp.to_learn, sp.not_to_forget, sp.meta_pool)]

    assert picks(42) == picks(42)
    other = picks(43)
    assert all(a != b for a, b in zip(picks(42), other, strict=True))
    assert all(len(x) == n for x, n in zip(other, (50, 50, 20), strict=True))


def test_p530_caps():
    scores = [score(f"p{i}", False, 0.0, 0.0, relation="P530") for i in range(40)]
    scores += [score(f"q{i}", False, 0.0, 0.0, relation="P31") for i in range(5)]
    scores += [score(f"m{i}", True, 0.1, 0.1, relation="P530") for i in range(40)]
    sp = build(scores, n_to_learn=100, n_not_to_forget=0, p530_cap_to_learn=13, p530_cap_meta=20)
    assert sp.stats["candidates_before_p530_cap"]["to_learn"] == 45
    assert sp.stats["candidates"]["to_learn"] == 18
    assert sp.stats["relations"]["to_learn"] == {"P530": 13, "P31": 5}
    # meta: the 27 unsampled P530 TO-LEARN candidates + 40 invariant P530 rows, capped to 20
    assert sp.stats["candidates_before_p530_cap"]["meta_pool"] == 67
    assert sp.stats["relations"]["meta_pool"] == {"P530": 20}
    assert sp.stats["shortfall"]["to_learn"] == 82


# ---------------------------------------------------------------- scoring


def test_score_rows_tiny_model(model, tokenizer):
    rows = [row("a", False), row("b", True, obj="Paris"), row("c", True, obj="?Zq")]
    out = score_rows(model, tokenizer, rows, batch_size=2)
    assert [o["uuid"] for o in out] == ["a", "b", "c"]
    assert [o["invariant"] for o in out] == [False, True, True]
    for o in out[:2]:
        for form in ("descriptive", "schematic"):
            assert o[f"located_{form}"] is True and 0.0 <= o[form] <= 1.0
            assert o[f"{form}_nll"] > 0
    assert out[2]["descriptive"] is None and out[2]["located_schematic"] is False
    ref = score_probes(model, tokenizer, [r["task_schematic"] for r in rows[:2]],
                       [r["object"] for r in rows[:2]])
    np.testing.assert_allclose([o["schematic"] for o in out[:2]], ref.accuracy)
    assert score_rows(model, tokenizer, []) == []


# ---------------------------------------------------------------- pipeline on fixture files


def write_fixture_files(monkeypatch, data_dir: Path, files: dict[str, list[dict]]) -> None:
    """Write the three LAMA-CKL files and pin their bytes in ``sources.FILES``."""
    for split in LAMA_CKL_SPLITS:
        rel = f"lama_ckl/{split}.jsonl"
        content = "".join(json.dumps(r) + "\n" for r in files.get(split, [])).encode()
        (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / rel).write_bytes(content)
        sha = hashlib.sha256(content).hexdigest()
        monkeypatch.setitem(sources.FILES, rel, DataFileInfo(rel, FILES[rel].repo_path, sha))


FIXTURE_FILES = {
    "variant": [row(f"v{i}", False) for i in range(6)],
    "invariant_descriptive": [row(f"i{i}", True) for i in range(4)],
    "invariant_schematic": [row("i0", True), row("i1", True), row("s9", True, obj="?Zq")],
}
# uuid -> (descriptive, schematic) accuracy the fake scorer gives
FAKE = {"v0": (0, 0), "v1": (0, 0), "v2": (0, 0.5), "v3": (0.25, 0.25), "v4": (0, 0),
        "v5": (1, 1), "i0": (1, 1), "i1": (1, 0), "i2": (0.5, 1), "i3": (0, 0.25)}


@pytest.fixture
def fake_scorer(monkeypatch):
    calls = []

    def fake(model, tokenizer, probes, objects, batch_size=32, max_length=None, **kw):
        calls.append(len(probes))
        form = 1 if probes[0].startswith("Guess") else 0
        acc, located = [], []
        for p, o in zip(probes, objects, strict=True):
            uuid = p.split()[6 if form else 1]
            located.append(o in p)
            acc.append(FAKE[uuid][form] if o in p else np.nan)
        acc = np.array(acc, dtype=float)
        return ProbeScores(acc, np.where(np.isnan(acc), np.nan, 2.0), np.array(located))

    monkeypatch.setattr(tailor, "score_probes", fake)
    return calls


def test_pipeline_cache_files_and_reload(monkeypatch, tmp_path, fake_scorer):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_fixture_files(monkeypatch, data, FIXTURE_FILES)
    kw = dict(n_to_learn=2, n_not_to_forget=5, seed=1, data_dir=data, cache_dir=cache,
              progress=False)
    sp = tailor_lama_ckl(None, None, "org/Tiny Model", **kw)
    assert fake_scorer == [11, 11]  # 13 rows, 2 duplicate uuids; two forms
    root = cache / "tailored" / "org_Tiny_Model"
    folder = root / "n2_5_s1"
    assert sp.stats["folder"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "meta_pool.jsonl", "not_to_forget.jsonl", "stats.json", "to_learn.jsonl"]
    assert uuids(sp.to_learn) < {"v0", "v1", "v4"} and len(sp.to_learn) == 2
    assert uuids(sp.not_to_forget) == {"i0", "i1"} and sp.stats["shortfall"]["not_to_forget"] == 3
    left = ({"v0", "v1", "v4"} - uuids(sp.to_learn)).pop()
    assert uuids(sp.meta_pool) == {"v3", "i3", left}
    assert sp.stats["not_located"]["not_to_forget"] == 1  # s9
    i0 = next(r for r in sp.not_to_forget if r["uuid"] == "i0")
    assert i0["source_splits"] == ["invariant_descriptive", "invariant_schematic"]

    again = tailor_lama_ckl(None, None, "org/Tiny Model", **kw)
    assert fake_scorer == [11, 11]  # served from scores.json
    assert [r["uuid"] for r in again.to_learn] == [r["uuid"] for r in sp.to_learn]
    loaded = load_tailored(folder)
    assert loaded.to_learn == sp.to_learn and loaded.meta_pool == sp.meta_pool
    assert loaded.stats == json.loads(json.dumps(sp.stats))
    assert not [p for p in root.rglob("*.tmp")]

    # a new row is scored alone; the cached ones are not re-scored
    files = dict(FIXTURE_FILES, variant=FIXTURE_FILES["variant"] + [row("v9", False)])
    FAKE["v9"] = (0, 0)
    try:
        write_fixture_files(monkeypatch, data, files)
        tailor_lama_ckl(None, None, "org/Tiny Model", **kw)
    finally:
        del FAKE["v9"]
    assert fake_scorer == [11, 11, 1, 1]
    cached = json.loads((root / "scores.json").read_text())
    assert cached["model"] == "org/Tiny Model" and len(cached["rows"]) == 12


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "scores.json"
    write_text_atomic(target, "old")
    assert target.read_text() == "old"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(tailor.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["scores.json"]


def test_pipeline_tiny_model(monkeypatch, tmp_path, model, tokenizer):
    data = tmp_path / "data"
    write_fixture_files(monkeypatch, data, FIXTURE_FILES)
    sp = tailor_lama_ckl(model, tokenizer, "tiny", n_to_learn=3, n_not_to_forget=3,
                         data_dir=data, cache_dir=tmp_path / "c", progress=False, batch_size=4)
    st = sp.stats
    assert st["n_rows"] == 11 and st["not_located"]["not_to_forget"] == 1
    for r in sp.to_learn:
        assert r["pretest"]["descriptive"] == 0 == r["pretest"]["schematic"]
    for r in sp.not_to_forget:
        assert r["pretest"]["descriptive"] == 1


@pytest.mark.skipif(not REAL_DATA, reason="TRAINATTN_DATA is unset: no real data files")
def test_real_files_subset_counts_add_up(monkeypatch, tmp_path, model, tokenizer):
    def first_rows(split, data_dir=None, cache_dir=None):
        return load_lama_ckl(split, data_dir=data_dir, cache_dir=cache_dir).select(range(12))

    monkeypatch.setattr(tailor, "load_lama_ckl", first_rows)
    sp = tailor_lama_ckl(model, tokenizer, "tiny", n_to_learn=5, n_not_to_forget=5,
                         data_dir=REAL_DATA, cache_dir=tmp_path, progress=False)
    st = sp.stats
    assert st["n_rows"] == st["n_variant"] + st["n_invariant"] <= 36
    assert st["n_variant"] == 12
    scores = json.loads((tmp_path / "tailored" / "tiny" / "scores.json").read_text())["rows"]
    assert len(scores) == st["n_rows"]
    n_variant_rejected = sum(
        1 for s in scores if not s["invariant"] and s["located_descriptive"]
        and s["located_schematic"] and not (s["descriptive"] == 0 == s["schematic"]))
    assert (st["candidates_before_p530_cap"]["to_learn"] + st["not_located"]["to_learn"]
            + n_variant_rejected == st["n_variant"])
    for name in ("to_learn", "not_to_forget", "meta_pool"):
        assert st["sizes"][name] == min(st["candidates"][name], st["requested"][name] or 10**9)
    every = [r["uuid"] for rows in (sp.to_learn, sp.not_to_forget, sp.meta_pool) for r in rows]
    assert len(every) == len(set(every))
