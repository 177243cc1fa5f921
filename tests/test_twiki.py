import csv
import json
import math
import os
import zipfile

import huggingface_hub
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import trainattn.protocols.temporalwiki as twiki
from trainattn.config import CKLConfig, ThetaConfig
from trainattn.core.train_attention import TrainAttention
from trainattn.data.temporalwiki import TWIKI_PROBE_TEMPLATE
from trainattn.data.twiki_diffsets import (
    DIFFSET_ENV,
    HUB_FILENAME,
    HUB_REPO_ID,
    PROXY_SENTENCES,
    PROXY_VERSION,
    DiffsetUnavailableError,
    Documents,
    filter_diffset_lines,
    load_diffset_documents,
    proxy_documents,
    read_diffset_lines,
    revision_proxy_documents,
)
from trainattn.methods import make_method
from trainattn.protocols.temporalwiki import (
    PROXY_LINE,
    run_temporalwiki,
    select_probes,
    subsample_probes,
    twiki_proxy_documents,
)
from trainattn.report.temporalwiki import format_twiki_table
from trainattn.testing import tiny_llama

# ------------------------------------------------------------- diff-set fixtures

GOOD = "Lochinvar is a castle in Scotland, built in the fifteenth century by the clan."


def boundary_lines():
    """(line, kept?) pairs hitting each Appendix C.1 rule at its boundary."""
    return [
        (GOOD, True),
        ("a" * 49, False),  # 49 characters: too short
        ("a" * 50, True),  # exactly 50: kept
        ("", False),
        ("nan", False),
        ("nan" + " " * 57, False),  # raw 60 chars, but stripped 'nan' is short: the nan rule
        ("  " + "b" * 47 + " " * 11, True),  # raw 60 chars, no 'nan': kept (raw length, as the official code)
        ("x" * 15 + "1" * 35, True),  # 15/50 letters = 30%: kept
        ("x" * 14 + "1" * 36, False),  # 14/50 = 28%: dropped
        ("é" * 40 + "abcdefghij", False),  # non-ASCII letters do not count: 10/50
        ('He said, "so", and\nleft; ' + "z" * 40, True),  # quotes, comma and newline inside a field
    ]


def write_csv(path, lines, header=("text",)):
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for line in lines:
            writer.writerow([line] + ["extra"] * (len(header) - 1))
    return path


def test_filter_rules_on_a_csv_in_the_real_format(tmp_path):
    cases = boundary_lines()
    path = write_csv(tmp_path / "wikipedia_0910_gpt2.csv", [line for line, _ in cases])
    raw = read_diffset_lines(path)
    assert raw == [line for line, _ in cases]
    assert filter_diffset_lines(raw) == [line.strip() for line, keep in cases if keep]


def test_text_column_by_name_else_first_column(tmp_path):
    named = write_csv(tmp_path / "a.csv", [GOOD], header=("id", "text"))
    with open(named, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([("id", "text"), ("7", GOOD)])
    assert read_diffset_lines(named) == [GOOD]
    first = write_csv(tmp_path / "b.csv", [GOOD], header=("content", "other"))
    assert read_diffset_lines(first) == [GOOD]


def test_load_from_a_local_directory(tmp_path, monkeypatch):
    folder = tmp_path / "diffsets" / "TWiki_Diffsets"
    folder.mkdir(parents=True)
    write_csv(folder / "wikipedia_1112_gpt2.csv", [line for line, _ in boundary_lines()])
    monkeypatch.setenv(DIFFSET_ENV, str(tmp_path / "diffsets"))
    docs = load_diffset_documents("1112")
    assert docs.source == "diffset" and docs[0] == GOOD
    assert docs.info["n_lines"] == len(boundary_lines()) and docs.info["n_kept"] == len(docs)
    assert len(docs.info["sha256"]) == 64
    with pytest.raises(DiffsetUnavailableError, match="wikipedia_0910_gpt2.csv"):
        load_diffset_documents("0910")
    with pytest.raises(ValueError, match="unknown TemporalWiki period"):
        load_diffset_documents("0809", diffset_dir=tmp_path)


def test_hub_download_is_extracted_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(DIFFSET_ENV, raising=False)
    archive = tmp_path / HUB_FILENAME
    csv_path = write_csv(tmp_path / "wikipedia_1011_gpt2.csv", [GOOD, "nan"])
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(csv_path, "TWiki_Diffsets/wikipedia_1011_gpt2.csv")
    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        return str(archive)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    docs = load_diffset_documents("1011", cache_dir=tmp_path / "cache")
    assert list(docs) == [GOOD]
    assert calls[0]["repo_id"] == HUB_REPO_ID and calls[0]["repo_type"] == "dataset"
    assert calls[0]["filename"] == HUB_FILENAME
    cached = tmp_path / "cache" / "data" / "temporalwiki" / "diffsets" / "wikipedia_1011_gpt2.csv"
    assert cached.is_file() and not list(cached.parent.glob(".*tmp"))
    assert list(load_diffset_documents("1011", cache_dir=tmp_path / "cache")) == [GOOD]
    assert len(calls) == 1  # the second load reads the cache
    with pytest.raises(DiffsetUnavailableError, match="has no member"):
        load_diffset_documents("0910", cache_dir=tmp_path / "cache")


def test_failed_download_names_the_env_var_and_the_proxy(tmp_path, monkeypatch):
    monkeypatch.delenv(DIFFSET_ENV, raising=False)

    def offline(**kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(DiffsetUnavailableError) as err:
        load_diffset_documents("0910", cache_dir=tmp_path)
    assert DIFFSET_ENV in str(err.value) and "proxy" in str(err.value)
    assert "network is unreachable" in str(err.value)


# ------------------------------------------------------------- proxy documents


def fact(subject, relation, obj):
    return {"subject": subject, "relation": relation, "object": obj}


def test_proxy_version_1_is_unchanged_and_labelled():
    # chapter 07 hashes these texts into its weight-share run's identity: they must not change
    rows = [fact("Ada", "occupation", "writer"), fact("Oslo", "country", "Norway"),
            fact("Ada", "occupation", "writer")]
    docs = proxy_documents(rows)
    assert isinstance(docs, Documents) and docs.source == "proxy" and "PROXY" in docs.info["note"]
    assert list(docs) == list(proxy_documents(rows)) and len(docs) == 2
    assert docs[0] == "Ada — occupation: writer. In the latest revision, the occupation of Ada is writer."
    assert "Norway" in docs[1] and docs.info["proxy_version"] == 1


def stated(fact_row, text):
    """Whether ``text`` states ``fact_row`` in any proxy sentence template."""
    return any(t.format(**fact_row) in text for t in PROXY_SENTENCES)


CHANGED = [fact(f"Person {i}", "occupation", f"job{i}") for i in range(12)]
UNCHANGED = ([fact(f"Place {i}", "country", f"Land{i}") for i in range(30)]
             + [fact("Person 3", "place of birth", "Rome"), fact("Person 3", "employer", "Acme"),
                fact("Person 5", "sport", "chess")])
SCORED = [UNCHANGED[i] for i in (0, 2, 4, 6, 8, 10, 12, 14, 31)]  # Person 3's employer is scored


def test_revision_proxy_is_deterministic_labelled_and_states_each_changed_fact():
    docs = revision_proxy_documents(CHANGED + CHANGED[:2], UNCHANGED, SCORED, seed=3)
    assert isinstance(docs, Documents) and docs.source == "proxy" and "PROXY" in docs.info["note"]
    assert docs.info["proxy_version"] == PROXY_VERSION == 2 and len(docs) == len(CHANGED)  # duplicates dropped
    assert list(docs) == list(revision_proxy_documents(CHANGED, UNCHANGED, SCORED, seed=3))
    assert list(docs) != list(revision_proxy_documents(CHANGED, UNCHANGED, SCORED, seed=4))
    for text, changed, context in zip(docs, docs.facts, docs.context, strict=True):
        assert changed["object"] in text and stated(changed, text)
        assert 1 <= len(context) <= 3 and all(stated(f, text) for f in context)
        assert "Guess the object" not in text and TWIKI_PROBE_TEMPLATE.format(**changed) not in text
        assert not any(changed["object"] in " ".join(f.values()) for f in context)
    # the subject's own (unscored) unchanged facts come first; its scored one never appears
    person3 = docs.context[3]
    assert fact("Person 3", "place of birth", "Rome") in person3 and fact("Person 3", "employer", "Acme") not in person3
    assert fact("Person 5", "sport", "chess") in docs.context[5]
    assert docs.info["n_same_subject_context"] == 2 and docs.info["n_context_facts"] == sum(map(len, docs.context))
    # the changed fact is not always first: its place among the unchanged facts varies
    first = [any(text.startswith(t.format(**c)) for t in PROXY_SENTENCES) for text, c in zip(docs, docs.facts,
                                                                                            strict=True)]
    assert any(first) and not all(first)


def test_revision_proxy_never_states_a_scored_unchanged_fact():
    docs = revision_proxy_documents(CHANGED, UNCHANGED, SCORED, seed=0)
    scored_pairs = {(f["subject"], f["relation"]) for f in SCORED}
    for text, context in zip(docs, docs.context, strict=True):
        assert not any(stated(f, text) for f in SCORED)
        assert not any((f["subject"], f["relation"]) in scored_pairs for f in context)
    alone = revision_proxy_documents(CHANGED, UNCHANGED, UNCHANGED)  # every Unchanged probe scored: no pool
    assert docs.info["n_pool"] == len(UNCHANGED) - len(SCORED) and alone.info["n_pool"] == 0
    assert all(stated(c, t) and t.count(".") == 1 for t, c in zip(alone, alone.facts, strict=True))


def test_revision_proxy_fits_the_length_cap(tokenizer):
    long_pool = [fact(f"The very long entity name number {i}", "located in the administrative territorial entity",
                      f"Somewhere far away {i}") for i in range(40)]
    wide = revision_proxy_documents(CHANGED, long_pool, seed=1, max_chars=None)
    assert max(len(tokenizer(t)["input_ids"]) for t in wide) > 60  # uncapped, three long facts do not fit
    capped = revision_proxy_documents(CHANGED, long_pool, seed=1, max_chars=None, tokenizer=tokenizer, max_tokens=60)
    assert all(len(tokenizer(t)["input_ids"]) <= 60 for t in capped) and capped.info["n_over_cap"] == 0
    assert all(c["object"] in t for t, c in zip(capped, capped.facts, strict=True))  # the change always stays
    assert sum(map(len, capped.context)) < sum(map(len, wide.context))
    by_chars = revision_proxy_documents(CHANGED, long_pool, seed=1, max_chars=150)
    assert all(len(t) <= 150 for t in by_chars)
    tiny = revision_proxy_documents(CHANGED[:1], long_pool, max_chars=10)
    assert tiny.info["n_over_cap"] == 1
    assert tiny.context == [[]] and "job0" in tiny[0]


def test_revision_proxy_varies_its_templates():
    docs = revision_proxy_documents(CHANGED, UNCHANGED, SCORED, seed=0)
    used = {i for text in docs for i, t in enumerate(PROXY_SENTENCES)
            for f in [*docs.facts, *(c for cs in docs.context for c in cs)] if t.format(**f) in text}
    assert len(used) >= 6
    for i, t in enumerate(PROXY_SENTENCES):  # every template states all three parts, none is the probe's form
        assert all(f"{{{k}}}" in t for k in ("subject", "relation", "object")), i
    # where the subject contains the object, the object's last occurrence is the stated object
    for seed in range(8):
        (text,) = revision_proxy_documents([fact("Belgium national team", "country", "Belgium")], seed=seed)
        assert text.rindex("Belgium") > text.index("Belgium national team")


@pytest.mark.skipif(not os.environ.get("TRAINATTN_DATA"), reason="TRAINATTN_DATA not set")
def test_proxy_of_the_real_probes_keeps_scored_unchanged_probes_out():
    probes = select_probes(("0910",), max_probes=200, seed=0)
    docs = twiki_proxy_documents(("0910",), probes, seed=0)["0910"]
    scored = {(r["subject"], r["relation"], r["object"]) for r in probes["0910"]["unchanged"]}
    used = {(c["subject"], c["relation"], c["object"]) for cs in docs.context for c in cs}
    assert len(docs) == 200 and docs.info["n_context_facts"] == 600 and not used & scored
    assert all(c["object"] in t for t, c in zip(docs, docs.facts, strict=True))
    assert list(docs) == list(twiki_proxy_documents(("0910",), probes, seed=0)["0910"])


# ------------------------------------------------------------- the protocol

PROBES = {
    "0910": {"changed": [fact("Libya", "diplomatic relation", "Brazil"), fact("Ada", "occupation", "writer")],
             "unchanged": [fact("Wales", "official language", "Welsh"), fact("Paris", "capital of", "France")]},
    "1011": {"changed": [fact("the company", "headquarters", "Oslo"), fact("She", "genre", "jazz")],
             "unchanged": [fact("Lochinvar", "country", "Scotland"), fact("Ada", "city", "London")]},
    "1112": {"changed": [fact("Lochinvar", "built in", "century"), fact("She", "instrument", "violin")],
             "unchanged": [fact("Oslo", "country", "Norway"), fact("Wales", "language", "Welsh")]},
}


def config(method="finetune", **kw):
    theta = ThetaConfig(model="tiny", lora_rank=4, lora_alpha=8, max_length=32)
    settings = {"batch_size": 2, "lr": 1e-2, "eval_batch_size": 8, **kw}
    return CKLConfig(theta=theta, method=method, benchmark="temporalwiki", **settings)


def run(tokenizer, cfg, out_dir=None, **kw):
    kw.setdefault("source_label", "proxy")
    model = tiny_llama(len(tokenizer), seed=0)
    result = run_temporalwiki(cfg, model, tokenizer, probes_by_period=PROBES, out_dir=out_dir,
                              progress=False, **kw)
    return result, model


def test_three_periods_metrics_and_table(tokenizer, tmp_path):
    result, _ = run(tokenizer, config(), out_dir=tmp_path)
    assert result["source"] == "proxy" and result["periods"] == ["0910", "1011", "1112"]
    assert result["proxy_version"] == PROXY_VERSION and result["documents"]["0910"]["proxy_version"] == PROXY_VERSION
    assert [p["period"] for p in result["results"]] == ["0910", "1011", "1112"]
    for p in result["results"]:
        assert p["updates"] == 1  # two proxy documents per period, batch 2, one epoch
        for kind in ("changed", "unchanged", "avg"):
            assert p[kind]["perplexity"] == pytest.approx(math.exp(p[kind]["nll"]))
        assert p["avg"]["nll"] == pytest.approx((p["changed"]["nll"] + p["unchanged"]["nll"]) / 2)
        assert p["avg"]["acc"] == pytest.approx((p["changed"]["acc"] + p["unchanged"]["acc"]) / 2)
        for kind in ("changed", "unchanged"):  # per-probe scores kept, and the mean and interval from them
            per = p[kind]["per_probe"]
            assert len(per["nll"]) == len(per["acc"]) == p[kind]["n"]
            assert np.mean([x for x in per["nll"] if x is not None]) == pytest.approx(p[kind]["nll"], abs=1e-5)
            lo, hi = p[kind]["nll_ci95"]
            assert lo <= p[kind]["nll"] + 1e-5 and p[kind]["nll"] - 1e-5 <= hi
        lo, hi = p["avg"]["nll_ci95"]
        assert lo <= p["avg"]["nll"] + 1e-5 and p["avg"]["nll"] - 1e-5 <= hi and "per_probe" not in p["avg"]
    assert "per_probe" not in json.dumps(twiki.without_per_probe(result))
    norms = [p["theta_l2"] for p in result["results"]]
    assert len(set(norms)) == 3  # θ moves every period
    assert json.loads((tmp_path / "result.json").read_text())["source"] == "proxy"
    table = format_twiki_table(result)
    assert PROXY_LINE in table and "| 1112 |" in table and f"source: proxy (version {PROXY_VERSION})" in table
    both = format_twiki_table({"finetune": result, "again": result})
    assert PROXY_LINE in both and "| finetune (proxy) |" in both and "1112 Avg" in both


def test_proxy_version_is_part_of_the_run_identity(tokenizer, tmp_path):
    docs = {"0910": revision_proxy_documents(PROBES["0910"]["changed"], seed=0)}
    first, _ = run(tokenizer, config(), out_dir=tmp_path, periods=("0910",), documents_by_period=docs)
    again, _ = run(tokenizer, config(), out_dir=tmp_path, periods=("0910",), documents_by_period=docs)
    assert again["results"] == first["results"] and first["proxy_version"] == PROXY_VERSION
    info = {k: v for k, v in docs["0910"].info.items() if k != "source"}
    older = {"0910": Documents(list(docs["0910"]), "proxy", **{**info, "proxy_version": 1})}
    with pytest.raises(ValueError, match="proxy_version"):  # same texts, older proxy: never read back as new
        run(tokenizer, config(), out_dir=tmp_path, periods=("0910",), documents_by_period=older)


def test_resume_after_a_crash_reproduces_the_straight_run(tokenizer, tmp_path, monkeypatch):
    straight, _ = run(tokenizer, config(), out_dir=tmp_path / "a")
    calls = {"n": 0}
    real_step = twiki.train_step

    def crashing_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:  # period 1 has one update; crash inside period 2
            raise RuntimeError("simulated crash")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(twiki, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tokenizer, config(), out_dir=tmp_path / "b")
    ckpt = tmp_path / "b" / "checkpoint"
    assert (ckpt / "latest").read_text().strip() == "epoch-0001"
    after_period_1 = load_file(ckpt / "epoch-0001" / "theta.safetensors")
    monkeypatch.setattr(twiki, "train_step", real_step)
    resumed, _ = run(tokenizer, config(), out_dir=tmp_path / "b")
    assert resumed["results"] == straight["results"]  # period 2 started from period 1's θ
    final = load_file(ckpt / "epoch-0003" / "theta.safetensors")
    assert set(final) == set(after_period_1)
    assert any(not torch.equal(final[n], after_period_1[n]) for n in final)
    with pytest.raises(ValueError, match="different"):
        run(tokenizer, config(lr=5e-3), out_dir=tmp_path / "b")


def test_rho1_and_taalm_run_and_oracle_is_refused(tokenizer):
    periods = ("0910",)
    rho, _ = run(tokenizer, config("rho1"), periods=periods)
    assert rho["method"] == "rho1" and rho["results"][0]["changed"]["nll"] is not None
    phi = TrainAttention(tiny_llama(len(tokenizer), seed=1), num_layers=1, lora_rank=2)
    taalm, _ = run(tokenizer, config("taalm"), periods=periods, method=make_method("taalm", phi=phi))
    assert taalm["method"] == "taalm" and taalm["source"] == "proxy"
    with pytest.raises(ValueError, match="oracle"):
        run(tokenizer, config("oracle"), periods=periods)
    with pytest.raises(ValueError, match="review_documents"):
        run(tokenizer, config("mixreview"), periods=periods)
    review, _ = run(tokenizer, config("mixreview"), periods=periods,
                    review_documents=["Paris is the capital of France ."])
    assert review["labels"]["review_pool_size"] == 1


def test_sources_must_be_declared_and_consistent(tokenizer):
    plain = {p: ["Ada worked as a writer in London ."] for p in PROBES}
    with pytest.raises(ValueError, match="source_label"):
        run(tokenizer, config(), periods=("0910",), documents_by_period=plain, source_label=None)
    proxies = {p: proxy_documents(PROBES[p]["changed"]) for p in PROBES}
    with pytest.raises(ValueError, match="labelled"):
        run(tokenizer, config(), periods=("0910",), documents_by_period=proxies, source_label="diffset")
    labelled, _ = run(tokenizer, config(), periods=("0910",), documents_by_period=proxies, source_label=None)
    assert labelled["source"] == "proxy"


def test_max_probes_subsamples_deterministically():
    rows = [fact(f"s{i}", "r", f"o{i}") for i in range(20)]
    a, b = subsample_probes(rows, 5, 0, 1), subsample_probes(rows, 5, 0, 1)
    assert a == b and len(a) == 5 and a == sorted(a, key=rows.index)
    assert subsample_probes(rows, 5, 1, 1) != a and subsample_probes(rows, 50, 0, 1) == rows


def test_a_finished_run_reads_back_from_its_record_without_theta_checkpoints(tokenizer, tmp_path):
    first, _ = run(tokenizer, config(), out_dir=tmp_path, periods=("0910",))
    removed = [p for p in tmp_path.rglob("*") if p.suffix in (".safetensors", ".pt")]
    assert removed  # the resumable θ / optimizer state was there
    for p in removed:
        p.unlink()
    again, _ = run(tokenizer, config(), out_dir=tmp_path, periods=("0910",))  # a committed record: JSON only
    assert again == json.loads(json.dumps(first))


def test_untrained_scores_are_a_record_read_back_without_theta(tokenizer, tmp_path, monkeypatch):
    from trainattn.protocols.store import RECORDS_ONLY_ENV, RecordMissingError, RunMismatchError

    loads = []

    def load_model():
        loads.append(1)
        return tiny_llama(len(tokenizer), seed=0), tokenizer

    periods = ["0910", "1011"]
    direct = {p: twiki.score_period(load_model()[0], tokenizer, config(), PROBES[p], progress=False) for p in periods}
    loads.clear()
    first = twiki.untrained_scores(config(), load_model, PROBES, periods, out_dir=tmp_path / "untrained",
                                   dtype="float32")
    assert first == direct and len(loads) == 1
    again = twiki.untrained_scores(config(lr=3e-4), load_model, PROBES, periods, out_dir=tmp_path / "untrained",
                                   dtype="float32")  # the learning rate is no part of θ's untrained scores
    assert again == direct and len(loads) == 1
    with pytest.raises(RunMismatchError, match="eval_batch_size"):  # it can flip argmax ties
        twiki.untrained_scores(config(eval_batch_size=4), load_model, PROBES, periods,
                               out_dir=tmp_path / "untrained", dtype="float32")
    monkeypatch.setenv(RECORDS_ONLY_ENV, "1")
    with pytest.raises(RecordMissingError, match="other/result.json"):
        twiki.untrained_scores(config(), load_model, PROBES, periods, out_dir=tmp_path / "other", dtype="float32")
    assert len(loads) == 1
