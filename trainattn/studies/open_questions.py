"""Beyond the paper: the data and runs of the "open questions" chapter (notebook 07).

* :func:`relation_split` / :func:`generalisation_data` — LAMA-CKL relations in two
  disjoint groups: φ meta-trains on one, TAALM is tested on TO-LEARN facts of the other;
* :func:`self_probe_examples` / :func:`document_probe_examples` — meta-training data
  without hand-written probes (a probe cut from the document at its last
  capitalised span; or the document as its own probe, for the change objectives);
* :func:`corpus_documents` / :func:`phi_shares` / :func:`staged_shares` — the share of
  φ's weight per token category (:mod:`trainattn.data.token_categories`) on a corpus, and
  how it moves during meta-training;
* :class:`PeakMemory` / :func:`measured` — peak memory and time of a run;
* :func:`chapter_record_files` — what the chapter reads back (checked first in records-only mode);
* :func:`runs_hardware` / :func:`chapter_versions` — where the chapter's runs were computed
  (not where the notebook that read them back ran);
* :class:`OpenQuestionRuns` — the chapter's fresh θs, φs and resumable TAALM runs on one
  loaded base model.

The runs themselves reuse :func:`trainattn.studies.ablations.run_variant` (meta-train, validate,
TAALM) and :func:`trainattn.protocols.grid.run_lama_ckl_grid` (φ-free methods).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from trainattn.config import CKLConfig, MetaConfig, PhiConfig
from trainattn.core.lora import add_lora
from trainattn.core.meta import MetaExample, MetaLearner, examples_from_rows
from trainattn.core.spans import encode_with_objects
from trainattn.core.train_attention import TrainAttention
from trainattn.data.token_categories import (
    FUNCTION_WORDS,
    category_shares,
    mean_shares,
    target_categories,
)
from trainattn.files import read_json, write_json_atomic
from trainattn.protocols.meta_training import load_phi_tensors, meta_train
from trainattn.protocols.store import (
    RESULT_NAME,
    Run,
    data_fingerprint,
    phi_file,
    require_records,
    run_identity,
    run_lock,
    versions,
)
from trainattn.studies.ablations import Variant, run_variant

# ---------------------------------------------------------------- Q1: held-out relations


def relation_split(to_learn_rows: list[dict]) -> list[str]:
    """The held-out relation codes: every other TO-LEARN relation, by count (then code).

    Alternating down the frequency ranking gives the held-out group about half
    of the TO-LEARN facts; every relation not returned (including those only in
    the meta-training pool) is φ's side.
    """
    counts = Counter(r["relation_code"] for r in to_learn_rows)
    ranked = sorted(counts, key=lambda c: (-counts[c], c))
    return sorted(ranked[::2])


@dataclass
class GeneralisationData:
    """TO-LEARN facts of held-out relations and three disjoint-by-uuid meta-training sets."""

    held_out: list[str]  # relation codes φ never sees in ``train_seen``
    to_learn: list[dict]  # TO-LEARN rows of held-out relations
    not_to_forget: list[dict]
    val: list[MetaExample]  # validation documents (seen relations only)
    train_seen: list[MetaExample]  # meta-training on the other relations only
    train_all: list[MetaExample]  # meta-training on all relations (same size)

    def summary(self) -> dict:
        return {"held_out_relations": self.held_out, "n_to_learn": len(self.to_learn),
                "n_not_to_forget": len(self.not_to_forget), "n_val": len(self.val),
                "n_train": len(self.train_seen),
                "train_seen_relations": sorted({u.split("|")[0] for u in self._codes(self.train_seen)}),
                "to_learn_relations": sorted({r["relation_code"] for r in self.to_learn})}

    def _codes(self, examples):
        return [e.uuid for e in examples]


def generalisation_data(splits, n_to_learn: int, n_not_to_forget: int, n_train: int, val_size: int,
                        probe_form: str = "schematic") -> GeneralisationData:
    """Build :class:`GeneralisationData` from tailored splits (see :func:`relation_split`).

    Example uuids are prefixed with their relation code (``"P31|<uuid>"``) so a
    set's relations can be read back. Raises if a set would be short.
    """
    held = relation_split(splits.to_learn)
    to_learn = [r for r in splits.to_learn if r["relation_code"] in held][:n_to_learn]
    seen_pool = [r for r in splits.meta_pool if r["relation_code"] not in held]
    val_rows = seen_pool[:val_size]
    taken = {r["uuid"] for r in val_rows}
    seen_rows = seen_pool[val_size : val_size + n_train]
    all_rows = [r for r in splits.meta_pool if r["uuid"] not in taken][:n_train]
    for name, got, want in (("TO-LEARN (held-out relations)", len(to_learn), n_to_learn),
                            ("meta-training (seen relations)", len(seen_rows), n_train),
                            ("meta-training (all relations)", len(all_rows), n_train)):
        if got < want:
            raise ValueError(f"{name}: {got} rows, {want} requested; tailor a larger split")

    def examples(rows):
        out = examples_from_rows(rows, probe_form)
        return [MetaExample(e.document, e.probe, e.object, f"{r['relation_code']}|{e.uuid}")
                for e, r in zip(out, rows, strict=True)]

    return GeneralisationData(held, to_learn, splits.not_to_forget[:n_not_to_forget], examples(val_rows),
                              examples(seen_rows), examples(all_rows))


# ---------------------------------------------------------------- Q4: no paired probes

_SPAN = re.compile(r"(?:[A-Z][\w'’-]*|\d[\d,.]*\d|\d)(?:\s+(?:[A-Z][\w'’-]*|\d[\d,.]*\d|\d))*")
_SENTENCE_END = re.compile(r"[.!?]\s+|\n")


def kept_text(tokenizer, text: str, max_length: int | None) -> str:
    """The part of ``text`` that survives truncation to ``max_length`` tokens."""
    if max_length is None:
        return text
    enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_length:
        return text
    ends = [b for _, b in enc["offset_mapping"][:max_length] if b > 0]
    return text[: max(ends)] if ends else ""


def self_probe(text: str, min_context_words: int = 3) -> tuple[str, str] | None:
    """``(probe, answer)`` cut from ``text`` at its last capitalised (or numeric) span.

    Leading function words of a span are dropped (``"The Hague"`` → ``"Hague"``);
    the probe is the span's sentence up to and including the span, and needs at
    least ``min_context_words`` words before it. ``None`` if no span qualifies.
    """
    for m in reversed(list(_SPAN.finditer(text))):
        start, words = m.start(), m.group().split()
        while words and words[0].lower() in FUNCTION_WORDS:
            start = text.index(words[1], start + len(words[0])) if len(words) > 1 else m.end()
            words = words[1:]
        if not words:
            continue
        sentence_start = max((e.end() for e in _SENTENCE_END.finditer(text, 0, start)), default=0)
        context = text[sentence_start:start]
        if len(re.findall(r"\w+", context)) < min_context_words:
            continue
        answer = text[start : m.end()]
        return text[sentence_start : m.end()], answer
    return None


def self_probe_examples(examples: list[MetaExample], tokenizer, max_length: int | None) -> list[MetaExample]:
    """Meta-examples whose probe is cut from the (truncated) document itself (:func:`self_probe`).

    Documents without a usable span are dropped.
    """
    out = []
    for e in examples:
        found = self_probe(kept_text(tokenizer, e.document, max_length))
        if found is not None:
            out.append(MetaExample(e.document, found[0], found[1], e.uuid))
    return out


def document_probe_examples(examples: list[MetaExample], tokenizer, max_length: int | None) -> list[MetaExample]:
    """Meta-examples whose probe IS the (truncated) document: the outer loss reads all its tokens."""
    out = []
    for e in examples:
        text = kept_text(tokenizer, e.document, max_length)
        out.append(MetaExample(text, text, text, e.uuid))
    return out


# ---------------------------------------------------------------- Q2: where φ's weight goes


def corpus_documents(kind: str, rows) -> list[dict]:
    """Documents with their answer and relation: ``{"text", "answer", "relation"}``.

    ``kind``: ``"lama"`` (LAMA-CKL rows: evidence, object, relation_label),
    ``"twiki"`` (TemporalWiki probe rows → the proxy template document of
    :func:`~trainattn.data.twiki_diffsets.proxy_documents`), ``"freeform"``
    (:mod:`trainattn.data.freeform`; relation words = the probe's words).
    """
    if kind == "lama":
        return [{"text": r["evidence"], "answer": r["object"], "relation": r["relation_label"]} for r in rows]
    if kind == "twiki":
        from trainattn.data.twiki_diffsets import proxy_documents

        out = []
        for r in rows:
            (text,) = proxy_documents([r])
            out.append({"text": text, "answer": r["object"], "relation": r["relation"]})
        return out
    if kind == "freeform":
        return [{"text": d["document"], "answer": d["answer"], "relation": d["probe"].replace(d["answer"], "")}
                for d in rows]
    raise ValueError(f"unknown corpus kind {kind!r}: lama | twiki | freeform")


def share_corpora(to_learn_rows: list[dict], n_docs: int, twiki_period: str, data_dir=None) -> dict[str, list[dict]]:
    """The three corpora whose weight shares question 2 follows: ``n_docs`` LAMA-CKL TO-LEARN
    documents, ``n_docs`` TemporalWiki proxy documents of ``twiki_period`` and the free-form set."""
    from trainattn.data.freeform import freeform_documents
    from trainattn.data.temporalwiki import load_temporalwiki_probes

    return {
        "LAMA-CKL": corpus_documents("lama", to_learn_rows[:n_docs]),
        "TemporalWiki (proxy)": corpus_documents(
            "twiki", load_temporalwiki_probes(twiki_period, "changed", data_dir).to_list()[:n_docs]),
        "free-form": corpus_documents("freeform", freeform_documents()),
    }


def scaling_variants(depths: list[int | None], ranks: list[int]) -> dict[str, Variant]:
    """Question 5's φs: ``base``, ``depth_<d>`` (``depth_all``: every layer) and ``rank_<r>`` (alpha 2r)."""
    table = {"base": Variant("paired data, base settings")}
    for depth in depths:
        table[f"depth_{depth or 'all'}"] = Variant(f"φ with {depth or 'all'} layers", phi={"num_layers": depth})
    for rank in ranks:
        table[f"rank_{rank}"] = Variant(f"φ LoRA rank {rank}", phi={"lora_rank": rank, "lora_alpha": 2 * rank})
    return table


@torch.no_grad()
def document_weights(phi, tokenizer, doc: dict, max_length: int | None):
    """``(tokens, weights, categories, answer_mask)`` of one document's targets under φ."""
    device = next(phi.parameters()).device
    enc = encode_with_objects(tokenizer, [doc["text"]], [doc["answer"]], max_length).to(device)
    phi.eval()
    weights = phi(enc.input_ids, enc.attention_mask, enc.position_ids)[0].cpu()
    ids = enc.input_ids[0].cpu()
    cats = target_categories(tokenizer, ids, enc.object_mask[0].cpu(), doc.get("relation"))
    tokens = [tokenizer.decode([i]) for i in ids[1:].tolist()]
    return tokens, weights, cats, enc.target_mask[0].cpu()


def phi_shares(phi, tokenizer, docs: list[dict], max_length: int | None) -> dict:
    """Mean over documents of each category's token share and φ-weight share."""
    return mean_shares([category_shares(w, c) for _, w, c, _ in
                        (document_weights(phi, tokenizer, d, max_length) for d in docs)])


def staged_shares(config, learner, train, out_dir, stages: list[int], corpora: dict[str, list[dict]],
                  max_length: int | None, progress: bool = False) -> dict[int, dict]:
    """Meta-train in stages (``meta_train(stop_after=s)``) and measure :func:`phi_shares` at each.

    Resumable: the shares of each stage are written to ``<out_dir>/shares.json``
    right after they are measured; the run continues from its checkpoint. A
    later :func:`~trainattn.protocols.meta_training.meta_train` call on ``out_dir`` with the
    same config finds the run finished. Returns ``{stage: {corpus: shares}}``.
    """
    documents = {name: [d.get("text", d) if isinstance(d, dict) else d for d in docs]
                 for name, docs in corpora.items()}
    run = Run(Path(out_dir), run_identity(config, data=data_fingerprint(train), max_length=max_length,
                                          corpora=hashlib.sha256(json.dumps(documents, sort_keys=True,
                                                                            default=str).encode()).hexdigest()))
    saved = run.read_result("shares.json") or {}
    for stage in sorted(set(stages)):
        if str(stage) in saved:
            continue
        state = meta_train(config, learner, train, None, out_dir=out_dir, stop_after=stage, progress=progress)
        if state["step"] != stage:
            raise ValueError(f"{out_dir}: the run is at step {state['step']}, past stage {stage} whose "
                             "shares were not saved; delete the folder to measure the stages again")
        saved[str(stage)] = {name: phi_shares(learner.phi, learner.tokenizer, docs, max_length)
                             for name, docs in corpora.items()}
        run.write_result(saved, "shares.json")
    return {int(k): v for k, v in saved.items() if int(k) in stages}


# ---------------------------------------------------------------- Q5: cost


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of a block: resident set (Linux: VmHWM reset via ``clear_refs``) and CUDA.

    ``extra_rss_mb``: the block's peak resident memory above the resident memory
    at its start (``None`` where the peak cannot be reset); ``cuda_peak_mb``:
    ``torch.cuda.max_memory_allocated`` (``None`` without CUDA).
    """

    def __enter__(self):
        self.rss_before = _status_kb("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.resettable = True
        except OSError:
            self.resettable = False
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started
        peak = _status_kb("VmHWM")
        self.extra_rss_mb = (peak - self.rss_before) / 1024 if self.resettable and peak and self.rss_before else None
        self.cuda_peak_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        return False


def measured(folder, run):
    """``(run(), resources)``: peak memory of ``run`` the first time; read back afterwards.

    The resources are written to ``<folder>/resources.json`` after a run that
    did work; when a later call finds the result cached (it returns at once),
    the saved resources are returned instead.
    """
    path = Path(folder) / "resources.json"
    with run_lock(folder, ".measure.lock"):  # a process that only waited must not record its wait
        with PeakMemory() as peak:
            out = run()
        if path.is_file():
            return out, read_json(path)
        resources = {"extra_rss_mb": peak.extra_rss_mb, "cuda_peak_mb": peak.cuda_peak_mb,
                     "seconds": peak.seconds}
        write_json_atomic(path, resources)
        return out, resources


# ---------------------------------------------------------------- records


def unpaired_run_folder(strategy: str) -> tuple[str, str]:
    """``(group, name)`` of question 4's run for ``strategy`` (see :meth:`OpenQuestionRuns.unpaired_run`)."""
    if strategy == "self_probe":
        return "self_probe", "base"
    if strategy.startswith("document_"):
        return strategy, strategy.removeprefix("document_")
    raise ValueError(f"unknown unpaired strategy {strategy!r}: self_probe | document_<objective>")


def chapter_record_files(run_dir, methods: list[str], seed: int, lrs, unpaired: list[str],
                         scaling: list[str]) -> list[Path]:
    """The files the chapter reads back when every run is recorded, in the order it reads them.

    ``methods``: the reference grid's (``taalm`` included when chapter 03's φ is used); ``lrs``:
    its learning-rate grid (empty: one run per method, no ``lr-`` folder); ``unpaired``:
    question 4's strategies; ``scaling``: question 5's variant names (``base`` is the
    all-relations φ of question 1). In records-only mode (the published book) the chapter checks
    these before it tailors its split, so a missing run gives way to the fallback at once.
    """
    from trainattn.protocols.grid import run_dir_for

    root = Path(run_dir)
    rates = [float(lr) for lr in lrs] or [None]
    files = [run_dir_for(root / "reference", m, seed, lr) / RESULT_NAME for m in methods for lr in rates]
    files += [root / "paired_all" / "base" / "row.json", root / "paired_all" / "base" / "meta" / "shares.json",
              root / "paired_all" / "base_staged" / "resources.json"]
    runs = [("paired_seen", "base"), *map(unpaired_run_folder, unpaired),
            *(("paired_all", name) for name in scaling if name != "base")]
    for group, name in runs:
        files += [root / group / name / "row.json", root / group / name / "resources.json"]
    return files


def require_chapter_records(files) -> None:
    """:func:`~trainattn.protocols.store.require_records` for each of ``files`` (records-only mode only)."""
    for path in files:
        require_records([Path(path).parent], Path(path).name)


# ---------------------------------------------------------------- provenance


def runs_hardware(run_dir) -> list[str]:
    """The distinct ``versions.hardware`` of every run record (``result.json``) under ``run_dir``, sorted.

    A finished run keeps the hardware that computed it (LAMA-CKL: the latest epoch's trainer;
    meta-training: the process that finished φ), also when another machine reads it back.
    """
    found = set()
    for path in sorted(Path(run_dir).rglob(RESULT_NAME)) if Path(run_dir).is_dir() else []:
        try:
            data = read_json(path)
        except (OSError, ValueError):
            continue
        hardware = (data.get("versions") or {}).get("hardware") if isinstance(data, dict) else None
        if hardware:
            found.add(hardware)
    return sorted(found)


def chapter_versions(run_dir) -> dict:
    """The chapter's ``versions``: :func:`~trainattn.protocols.store.versions` of this process, but
    ``hardware`` = where its runs under ``run_dir`` were computed (:func:`runs_hardware`, joined by
    " + "; this process's hardware when there is no record), ``runs_hardware`` = that list and
    ``executed_on`` = this process's hardware (a notebook that reads runs back may run elsewhere).
    """
    here = versions()
    ran_on = runs_hardware(run_dir)
    return {**here, "hardware": " + ".join(ran_on) if ran_on else here["hardware"],
            "runs_hardware": ran_on, "executed_on": here["hardware"]}


# ---------------------------------------------------------------- the runs


class OpenQuestionRuns:
    """The chapter's runs on one loaded base model (θ's backbone and φ's).

    ``base_model`` stays untouched: every run gets a deep copy (:meth:`load_theta`)
    and every φ copies the layers it keeps (:meth:`make_phi`). TAALM runs go to
    ``<run_dir>/<group>/<name>/`` through :func:`trainattn.studies.ablations.run_variant`
    (resumable, locked per run) and are measured with :func:`measured`.
    """

    def __init__(self, base_model, tokenizer, base_meta: MetaConfig, base_ckl: CKLConfig,
                 data: GeneralisationData, run_dir, device="cpu", lrs=None):
        self.base_model, self.tokenizer = base_model, tokenizer
        self.base_meta, self.base_ckl, self.data = base_meta, base_ckl, data
        self.run_dir, self.device = Path(run_dir), device
        self.lrs = list(lrs) if lrs else None  # TAALM's CKL learning rate chosen on validation (chapter 04's budget)

    def load_theta(self):
        """A fresh θ (no adapters) for one run."""
        return copy.deepcopy(self.base_model)

    def make_phi(self, cfg: PhiConfig, phi_seed: int) -> TrainAttention:
        """An untrained φ on the same backbone (its first ``cfg.num_layers`` layers)."""
        return TrainAttention(self.base_model, cfg.num_layers, cfg.lora_rank, cfg.lora_alpha,
                              bias_init=cfg.bias_init, seed=phi_seed).to(self.device)

    def trained_phi(self, cfg: PhiConfig, meta_dir) -> TrainAttention:
        """φ as a finished meta-training run in ``meta_dir`` left it (eval mode)."""
        phi = self.make_phi(cfg, self.base_meta.seed)
        load_phi_tensors(phi, phi_file(meta_dir))
        return phi.eval()

    def taalm_run(self, group: str, train: list[MetaExample], name: str = "base",
                  variants: dict[str, Variant] | None = None, measure: bool = True):
        """Meta-train φ on ``train``, validate it, run TAALM on the held-out TO-LEARN facts.

        Returns ``(row, resources)`` with ``measure``, else the row (see :func:`run_variant`).
        """
        variants = variants or {"base": Variant("paired data, base settings")}
        folder = self.run_dir / group

        def run():
            return run_variant(name, self.base_meta, self.base_ckl, run_dir=folder, tokenizer=self.tokenizer,
                               load_theta=self.load_theta, make_phi=self.make_phi, train=train,
                               val=self.data.val, to_learn=self.data.to_learn,
                               not_to_forget=self.data.not_to_forget, variants=variants, lrs=self.lrs)

        return measured(folder / name, run) if measure else run()

    def reference_grid(self, methods: list[str], seed: int, phi_run=None, progress: bool = False) -> list[dict]:
        """φ-free methods (and ``taalm`` with ``phi_run``) on the held-out TO-LEARN facts: the grid rows.

        Runs go to ``<run_dir>/reference/<method>/...`` (one locked folder per method, seed and
        learning rate), so processes computing different methods share them.
        """
        from trainattn.protocols.grid import run_lama_ckl_grid
        from trainattn.protocols.meta_training import load_trained_phi

        return run_lama_ckl_grid(
            self.base_ckl, methods, [seed], self.data.to_learn, self.data.not_to_forget,
            self.run_dir / "reference", load_model=lambda: (self.load_theta(), self.tokenizer),
            phi_run=phi_run, load_phi=lambda path: load_trained_phi(path, self.tokenizer).to(self.device),
            progress=progress, lrs=self.lrs)

    def phi_all_measured(self, share_stages: list[int], corpora: dict[str, list[dict]], max_length: int | None):
        """``((shares by stage, TAALM row), resources)``: :meth:`staged_then_taalm` at ``share_stages``
        and φ's last step, time and memory measured once over the staged meta-training and the
        TAALM run (question 5's base row)."""
        stages = sorted({*share_stages, self.base_meta.meta_steps})
        return measured(self.run_dir / "paired_all" / "base_staged",
                        lambda: self.staged_then_taalm(stages, corpora, max_length))

    def unpaired_run(self, strategy: str, max_length: int | None):
        """``(row, resources)`` of φ meta-trained without hand-written probes (question 4).

        ``strategy``: ``"self_probe"`` (a probe cut from each seen-relation document) or
        ``"document_<objective>"`` (the document as its own probe, e.g. ``document_change3``).
        """
        group, objective = unpaired_run_folder(strategy)
        if strategy == "self_probe":
            return self.taalm_run(group, self_probe_examples(self.data.train_seen, self.tokenizer, max_length))
        table = {objective: Variant(f"document as its own probe, objective {objective}",
                                    meta={"objective": objective})}
        return self.taalm_run(group, document_probe_examples(self.data.train_seen, self.tokenizer, max_length),
                              objective, table)

    def staged_then_taalm(self, stages: list[int], corpora: dict[str, list[dict]], max_length: int | None):
        """φ on all relations, meta-trained in ``stages`` (weight shares measured at each), then used.

        Returns ``(shares by stage, TAALM row)``; the meta-training folder is the one
        ``taalm_run("paired_all", ...)`` resumes, so the TAALM run finds φ finished.
        """
        t = self.base_meta.theta
        learner = MetaLearner(self.base_meta, add_lora(self.load_theta(), t.lora_rank, t.lora_alpha,
                                                       t.lora_dropout, seed=self.base_meta.seed),
                              self.make_phi(self.base_meta.phi, self.base_meta.seed), self.tokenizer)
        shares = staged_shares(self.base_meta, learner, self.data.train_all,
                               self.run_dir / "paired_all" / "base" / "meta", stages, corpora, max_length)
        del learner
        return shares, self.taalm_run("paired_all", self.data.train_all, measure=False)
