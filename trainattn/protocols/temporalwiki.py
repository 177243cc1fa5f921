"""The TemporalWiki protocol: three monthly periods in sequence, θ carried over.

For each period p of ``("0910", "1011", "1112")``: train θ (its LoRA, or K-Adapter) for ONE
epoch on p's documents with the method's ``token_weights`` (:func:`trainattn.protocols.lama_ckl.train_step`),
then score p's CHANGED and UNCHANGED probes (``twiki_probe_text``, teacher-forced object
tokens, :func:`~trainattn.core.evaluate.score_probes`). θ's trainable tensors go on to the next
period unchanged; the optimizer starts fresh each period, as the official code ran one
process per period (θ passed on through a pickle). φ, the RHO-1 reference and the RecAdam
anchors are the run's start (``prepare`` is called once).

Metrics per probe set: ``nll`` = the mean over probes of the mean object-token NLL (the
paper's "ppl", which is never exponentiated), ``perplexity = exp(nll)`` beside it, and
``acc`` (partial-credit accuracy); ``avg = (changed + unchanged) / 2``. Tracked per period:
the training loss, the L2 norm of θ's trainable tensors (``theta_l2``) and timings.

Documents are rows without an object: ``{"uuid", "evidence", "period"}``, encoded with
:func:`~trainattn.core.spans.encode_texts` (``object_mask`` all False). The oracle, which needs
an object inside each document, is refused. Results say ``source: "proxy"`` whenever the
documents are a proxy (:func:`twiki_proxy_documents`: each changed fact among unchanged facts
that are never scored, :func:`~trainattn.data.twiki_diffsets.revision_proxy_documents`), and
carry its ``proxy_version``, which is also part of the run's identity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from trainattn.config import CKLConfig, to_dict
from trainattn.core.evaluate import score_probes
from trainattn.core.intervals import mean_interval
from trainattn.core.lora import trainable_tensors
from trainattn.core.spans import encode_texts
from trainattn.data.temporalwiki import (
    TWIKI_PERIODS,
    TWIKI_PROBE_KINDS,
    load_temporalwiki_probes,
    twiki_probe_text,
)
from trainattn.data.twiki_diffsets import load_diffset_documents, revision_proxy_documents
from trainattn.methods import RunContext, TrainBatch
from trainattn.protocols.lama_ckl import (
    build_theta,
    epoch_order,
    epoch_seed,
    resolve_method,
    restore_training_state,
    save_training_state,
    train_step,
)
from trainattn.protocols.store import Run, provenance, run_identity, run_lock, versions

SOURCES = ("diffset", "proxy")
PROXY_LINE = "(proxy documents — not comparable with the paper's Table 2)"


# ---------------------------------------------------------------- data


def subsample_probes(rows: list[dict], max_probes: int | None, seed: int, tag: int) -> list[dict]:
    """At most ``max_probes`` rows, drawn without replacement under ``(seed, tag)``, in file order."""
    rows = list(rows)
    if max_probes is None or len(rows) <= max_probes:
        return rows
    rng = np.random.default_rng([seed, 0x7317, tag])
    return [rows[i] for i in sorted(rng.choice(len(rows), size=max_probes, replace=False).tolist())]


def document_rows(period: str, documents: list[str], prefix: str | None = None) -> list[dict]:
    """Training rows of plain documents: ``{"uuid", "evidence", "period"}``, no ``object``."""
    return [{"uuid": f"{prefix or period}:{i}", "evidence": text, "period": period}
            for i, text in enumerate(documents)]


def make_document_batch(tokenizer, rows: list[dict], n_to_learn: int, max_length: int) -> TrainBatch:
    """Encode documents without objects: ``[batch, seq_len]`` tensors, ``object_mask`` all False."""
    return TrainBatch(encode_texts(tokenizer, [r["evidence"] for r in rows], max_length), rows, n_to_learn)


def select_probes(periods, probes_by_period: dict | None = None, max_probes: int | None = None,
                  seed: int = 0, data_dir=None) -> dict:
    """The probe sets a run scores: ``{period: {"changed": rows, "unchanged": rows}}``.

    ``probes_by_period`` given, else TWiki-Probes (``data_dir``); each set subsampled to at most
    ``max_probes`` under ``(seed, period, kind)`` exactly as :func:`run_temporalwiki` does, so
    the same sets can be scored before training, or passed back in as ``probes_by_period``.
    """
    periods = tuple(periods)
    out = {}
    for period in periods:
        given = None if probes_by_period is None else probes_by_period.get(period)
        if probes_by_period is not None and given is None:
            raise ValueError(f"probes_by_period has no entry for period {period!r}")
        out[period] = {}
        for j, kind in enumerate(TWIKI_PROBE_KINDS):
            rows = given[kind] if given is not None else load_temporalwiki_probes(period, kind, data_dir).to_list()
            tag = 2 * list(TWIKI_PERIODS).index(period) + j
            out[period][kind] = subsample_probes(rows, max_probes, seed, tag)
    return out


def twiki_proxy_documents(periods, probes: dict, probes_by_period: dict | None = None, seed: int = 0,
                          data_dir=None, tokenizer=None, max_length: int | None = None) -> dict:
    """``{period: Documents}``: the proxy documents a run with ``source_label="proxy"`` trains on.

    ``probes``: the scored sets of :func:`select_probes`. Each period's documents are its scored
    CHANGED facts, each among unchanged facts drawn from the period's whole UNCHANGED set
    (``probes_by_period``, else TWiki-Probes in ``data_dir``) minus the scored Unchanged probes
    (:func:`~trainattn.data.twiki_diffsets.revision_proxy_documents`, seeded by ``seed`` and the
    period), each document at most ``max_length`` tokens of ``tokenizer`` when both are given.
    """
    out = {}
    for period in periods:
        if probes_by_period is not None:
            pool = probes_by_period[period]["unchanged"]
        else:
            pool = load_temporalwiki_probes(period, "unchanged", data_dir).to_list()
        out[period] = revision_proxy_documents(
            probes[period]["changed"], pool, probes[period]["unchanged"],
            seed=seed * 8 + list(TWIKI_PERIODS).index(period), tokenizer=tokenizer, max_tokens=max_length)
    return out


def _documents(periods, documents_by_period, probes, source_label, diffset_dir, proxy_args):
    """``({period: documents}, source)``; the source is declared or read from ``Documents.source``."""
    if source_label is not None and source_label not in SOURCES:
        raise ValueError(f"source_label must be one of {SOURCES}, got {source_label!r}")
    if documents_by_period is None:
        label = source_label or "diffset"
        if label == "proxy":
            return twiki_proxy_documents(periods, probes, **proxy_args), label
        return {p: load_diffset_documents(p, diffset_dir) for p in periods}, label
    missing = [p for p in periods if p not in documents_by_period]
    if missing:
        raise ValueError(f"documents_by_period has no documents for period(s) {missing}")
    docs = {p: documents_by_period[p] for p in periods}
    declared = {getattr(d, "source", None) for d in docs.values()}
    if len(declared - {None}) > 1:
        raise ValueError(f"documents mix sources {sorted(declared - {None})}; run them separately")
    label = source_label or (declared.pop() if len(declared) == 1 else None)
    if label is None:
        raise ValueError("say where the documents come from: source_label='diffset' or 'proxy'")
    if declared - {None, label}:
        raise ValueError(f"source_label={label!r} but the documents are labelled {sorted(declared - {None})}")
    return docs, label


# ---------------------------------------------------------------- one period


def train_period(theta, tokenizer, method, optimizer, config: CKLConfig, rows: list[dict],
                 index: int, first_step: int, progress: bool = True) -> tuple[float | None, int]:
    """One epoch over ``rows`` (period ``index``, 1-based); returns (mean loss, updates)."""
    torch.manual_seed(epoch_seed(config.seed, index))  # dropout masks, reproducible on resume
    order = epoch_order(len(rows), config.seed, index)
    losses = []
    starts = range(0, len(order), config.batch_size)
    for i, start in enumerate(tqdm(starts, desc=f"period {index}", disable=not progress, leave=False)):
        step = first_step + i + 1
        learn = [rows[j] for j in order[start : start + config.batch_size]]
        review = method.review_rows(index, step, len(learn))
        batch = make_document_batch(tokenizer, learn + review, len(learn), config.theta.max_length)
        losses.append(train_step(theta, method, optimizer, batch, step))
    return (float(np.mean(losses)) if losses else None), len(losses)


def probe_metrics(scores) -> dict:
    """One probe set's ``{"nll", "perplexity", "acc", "n", "n_not_located"}`` (``None`` if none
    located), with 95 % intervals over probes (``nll_ci95``, ``acc_ci95``,
    :func:`~trainattn.core.intervals.mean_interval`) and the per-probe scores they come from
    (``per_probe``: ``{"nll": [...], "acc": [...]}``, ``None`` where the object was not located).
    """
    s = scores.summary()
    nll = None if math.isnan(s["nll"]) else s["nll"]
    acc = None if math.isnan(s["accuracy"]) else s["accuracy"]
    per_probe = {k: [None if not ok else round(float(v), 6) for v, ok in zip(values, scores.located, strict=True)]
                 for k, values in (("nll", scores.nll), ("acc", scores.accuracy))}
    return {"nll": nll, "perplexity": None if nll is None else math.exp(nll), "acc": acc,
            "n": s["n"], "n_not_located": s["n_not_located"],
            "nll_ci95": mean_interval([per_probe["nll"]]), "acc_ci95": mean_interval([per_probe["acc"]]),
            "per_probe": per_probe}


def average_metrics(changed: dict, unchanged: dict) -> dict:
    """``avg = (changed + unchanged) / 2`` for nll and acc; ``perplexity = exp(avg nll)``; with the
    sets' per-probe scores, 95 % intervals of the average (each set's probes resampled on its own)."""
    def mean(key):
        a, b = changed[key], unchanged[key]
        return None if a is None or b is None else (a + b) / 2

    def interval(key):
        a, b = changed.get("per_probe"), unchanged.get("per_probe")
        return None if a is None or b is None else mean_interval([a[key], b[key]])

    nll = mean("nll")
    return {"nll": nll, "perplexity": None if nll is None else math.exp(nll), "acc": mean("acc"),
            "nll_ci95": interval("nll"), "acc_ci95": interval("acc")}


def without_per_probe(scores):
    """``scores`` (any nesting of dicts and lists) without the ``per_probe`` lists: for summaries."""
    if isinstance(scores, dict):
        return {k: without_per_probe(v) for k, v in scores.items() if k != "per_probe"}
    if isinstance(scores, list):
        return [without_per_probe(v) for v in scores]
    return scores


def score_period(theta, tokenizer, config: CKLConfig, probe_sets: dict, progress: bool = True) -> dict:
    """Score one period's probes: ``{"changed": {...}, "unchanged": {...}, "avg": {...}}``."""
    out = {}
    for kind in TWIKI_PROBE_KINDS:
        rows = probe_sets[kind]
        texts = [twiki_probe_text(r["subject"], r["relation"], r["object"]) for r in rows]
        scores = score_probes(theta, tokenizer, texts, [r["object"] for r in rows],
                              config.eval_batch_size, progress=f"{kind} probes" if progress else False)
        out[kind] = probe_metrics(scores)
    out["avg"] = average_metrics(out["changed"], out["unchanged"])
    return out


UNTRAINED = "untrained"


def untrained_scores(config: CKLConfig, load_model, probes_by_period: dict, periods, out_dir=None,
                     dtype: str | None = None, progress: bool = False) -> dict[str, dict]:
    """θ before any update on every period's probes: ``{period: score_period(...)}``.

    ``load_model()`` returns ``(θ, tokenizer)`` without LoRA (fresh LoRA adds exactly zero); it is
    called only when the scores have to be computed. With ``out_dir`` the scores are a run record
    (``result.json``) whose identity is θ's model, ``dtype``, the eval batch size (it can flip argmax
    ties) and the probes; it is read back instead of recomputed (thousands of probes), and in
    records-only mode a missing record raises
    :class:`~trainattn.protocols.store.RecordMissingError`.
    """
    data = hashlib.sha256(json.dumps([list(periods), {p: probes_by_period[p] for p in periods}],
                                     sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    run = Run(out_dir, run_identity(method=UNTRAINED, data=data, theta_model=config.theta.model, dtype=dtype,
                                    eval_batch_size=config.eval_batch_size))
    with run.lock():
        found = run.read_result()
        if found is not None:
            return found["scores"]
        theta, tokenizer = load_model()
        scores = {p: score_period(theta, tokenizer, config, probes_by_period[p], progress) for p in periods}
        del theta
        run.write_result({"scores": scores, "provenance": provenance(), "versions": versions()})
    return scores


def theta_l2(theta) -> float:
    """L2 norm of θ's trainable tensors (tracks that θ moves and is carried over)."""
    return float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in trainable_tensors(theta).values())))


# ---------------------------------------------------------------- the run


def run_temporalwiki(config: CKLConfig, model, tokenizer, periods=("0910", "1011", "1112"),
                     documents_by_period: dict[str, list[str]] | None = None,
                     probes_by_period: dict[str, dict[str, list[dict]]] | None = None,
                     method=None, out_dir=None, max_probes: int | None = None,
                     source_label: str | None = None, progress: bool = True, data_dir=None,
                     diffset_dir=None, review_documents: list[str] | None = None) -> dict:
    """Run the TemporalWiki protocol and return its results (also ``out_dir/result.json``).

    Args:
        model: a fresh base LM (modified in place: LoRA is injected).
        documents_by_period: training documents per period; ``None`` loads the filtered
            diff-sets (``source_label`` "diffset"/None) or builds proxies from the (subsampled)
            CHANGED probes among unscored UNCHANGED facts (``source_label="proxy"``,
            :func:`twiki_proxy_documents`, at most ``config.theta.max_length`` tokens each).
        probes_by_period: ``{period: {"changed": rows, "unchanged": rows}}`` with rows
            ``{"subject", "relation", "object"}``; ``None`` loads TWiki-Probes (``data_dir``).
        source_label: "diffset" | "proxy"; ``None`` reads ``Documents.source``.
        max_probes: per probe set, a seeded subsample for CPU-scale runs.
        review_documents: the Mix-review pool (the paper: the August 2021 Wikipedia snapshot).

    With ``out_dir``, a checkpoint is written after every period and a rerun with the same
    config and data continues after the last finished period.
    """
    with run_lock(out_dir):  # another process running this folder: wait, then resume its finished state
        return _run_temporalwiki(config, model, tokenizer, periods, documents_by_period, probes_by_period,
                                 method, out_dir, max_probes, source_label, progress, data_dir, diffset_dir,
                                 review_documents)


def _run_temporalwiki(config, model, tokenizer, periods, documents_by_period, probes_by_period, method,
                      out_dir, max_probes, source_label, progress, data_dir, diffset_dir,
                      review_documents) -> dict:
    periods = tuple(periods)
    for p in periods:
        if p not in TWIKI_PERIODS:
            raise ValueError(f"unknown TemporalWiki period {p!r}; valid: {', '.join(TWIKI_PERIODS)}")
    method = resolve_method(config, method)
    if method.weighting_method.name == "oracle":
        raise ValueError("the oracle needs each document's object string; TemporalWiki documents "
                         "have none, so oracle is not available here (use finetune, taalm or rho1)")
    if any(a.name == "mixreview" and (not review_documents or a.settings.pool != "disjoint")
           for a in method.addons):
        raise ValueError("mixreview on TemporalWiki needs review_documents=[...] (the paper replays the "
                         "August 2021 Wikipedia snapshot) and method_settings.mixreview.pool='disjoint'")
    probes = select_probes(periods, probes_by_period, max_probes, config.seed, data_dir)
    proxy_args = {"probes_by_period": probes_by_period, "seed": config.seed, "data_dir": data_dir,
                  "tokenizer": tokenizer, "max_length": config.theta.max_length}
    docs, source = _documents(periods, documents_by_period, probes, source_label, diffset_dir, proxy_args)
    rows = {p: document_rows(p, docs[p]) for p in periods}
    updates = {p: math.ceil(len(rows[p]) / config.batch_size) for p in periods}
    review = document_rows("review", review_documents, "review") if review_documents else None
    context = RunContext([r for p in periods for r in rows[p]], [], review, sum(updates.values()), config.seed)
    theta = build_theta(config, model, method)
    method.prepare(theta, tokenizer, config, context)

    def fresh_optimizer(period):
        period_context = dataclasses.replace(context, total_updates=updates[period])
        return method.make_optimizer(theta, config, period_context) or torch.optim.AdamW(
            trainable_tensors(theta).values(), lr=config.lr, weight_decay=config.weight_decay)

    run = twiki_run(config, method, periods, docs, probes, source, review_documents, out_dir)
    finished = run.read_result()
    if finished is not None:  # the same run, finished (here or on another machine): read back, no θ needed
        return finished
    state = restore_training_state(run, theta, fresh_optimizer(periods[0]), method)
    state = state or {"epoch": 0, "curves": [], "timings": []}  # "epoch" = periods finished
    first_step = sum(updates[p] for p in periods[: state["epoch"]])
    for index in tqdm(range(state["epoch"] + 1, len(periods) + 1), desc=f"TemporalWiki {method.name}",
                      disable=not progress):
        period = periods[index - 1]
        t0 = time.perf_counter()
        optimizer = fresh_optimizer(period)
        loss, n = train_period(theta, tokenizer, method, optimizer, config, rows[period],
                               index, first_step, progress)
        first_step += n
        t1 = time.perf_counter()
        scores = score_period(theta, tokenizer, config, probes[period], progress)
        state["epoch"] = index
        state["curves"].append({"period": period, "probe_file": TWIKI_PERIODS[period], "train_loss": loss,
                                "updates": n, "theta_l2": theta_l2(theta), **scores})
        state["timings"].append({"period": period, "train_s": t1 - t0, "eval_s": time.perf_counter() - t1})
        save_training_state(run, state, theta, optimizer, method)

    result = {
        "benchmark": "temporalwiki", "source": source, "proxy_version": proxy_version(source, docs),
        "source_note": PROXY_LINE if source == "proxy" else "filtered TemporalWiki diff-sets (Appendix C.1)",
        "metric": "nll = mean object-token NLL over probes (the paper's 'ppl'); perplexity = exp(nll)",
        "method": method.name, "labels": dict(method.labels), "config": to_dict(config),
        "seed": config.seed, "versions": versions(), "provenance": provenance(),
        "periods": list(periods), "max_probes": max_probes,
        "phi_sha256": run.identity.get("phi_sha256"),
        "sizes": {p: {"documents": len(docs[p]), "updates": updates[p],
                      **{k: len(probes[p][k]) for k in TWIKI_PROBE_KINDS}} for p in periods},
        "documents": {p: getattr(docs[p], "info", {"source": source}) for p in periods},
        "results": state["curves"], "timings": state["timings"],
    }
    return run.write_result(result)


def proxy_version(source: str, docs: dict) -> int | None:
    """The proxy's version as its :class:`~trainattn.data.twiki_diffsets.Documents` say (``None``: diff-sets,
    or plain lists without one)."""
    if source != "proxy":
        return None
    said = {getattr(d, "info", {}).get("proxy_version") for d in docs.values()} - {None}
    if len(said) > 1:
        raise ValueError(f"proxy documents of different versions {sorted(said)}; build them alike")
    return said.pop() if said else None


def twiki_run(config, method, periods, docs, probes, source, review_documents, out_dir) -> Run:
    """The run store's view of one TemporalWiki run: config, method, φ, periods, the data and,
    for proxy documents, the proxy's version (a run folder of an older proxy is never read back)."""
    data = hashlib.sha256(json.dumps(
        [source, list(periods), {p: list(docs[p]) for p in periods}, probes, review_documents],
        sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return Run(out_dir, run_identity(config, method=method, phi=method, data=data, periods=list(periods),
                                     proxy_version=proxy_version(source, docs)))
