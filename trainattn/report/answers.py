"""Plain-worded answers for the "open questions" chapter (notebook 07); its figures are in
:mod:`trainattn.report.figures`, its tables use :func:`trainattn.report.tables.markdown_table`.

Every sentence is built from the numbers it is given, so the same code words the
answer of a tiny CI run and of the CPU reference run, whichever way they come out.
Two runs count as different only when their 95 % intervals of Top Acc (bootstrapped over
facts, :func:`trainattn.studies.ablations.ckl_numbers`) are disjoint. A row without an
interval falls back to :func:`accuracy_tolerance`: one probe (1 / n) or two standard errors
of the difference of two proportions, whichever is larger. So a run too small to tell two
methods apart says so instead of wording noise as a finding. :func:`verdict` gives the same
comparison as data (for the results file): above / level / below, the numbers behind it, and
what would change it.
"""

from __future__ import annotations

import math
import statistics

from trainattn.core.intervals import compare as intervals_compare


def compare(a: float, b: float, tol: float) -> str:
    """``"above"``, ``"below"`` or ``"level with"``: ``a`` against ``b`` with tolerance ``tol``."""
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return "not comparable with"
    if a > b + tol:
        return "above"
    if a < b - tol:
        return "below"
    return "level with"


def accuracy_tolerance(a: float | None, b: float | None, n: int) -> float:
    """``max(1/n, 2·sqrt((a(1-a) + b(1-b)) / n))``: below this, accuracies ``a`` and ``b`` are level."""
    if a is None or b is None:
        return 1.0 / n
    return max(1.0 / n, 2.0 * math.sqrt((a * (1 - a) + b * (1 - b)) / n))


def _cmp(a, b, n: int) -> str:
    return compare(a, b, accuracy_tolerance(a, b, n))


def _vs(a: dict, b: dict, n: int) -> str:
    """Row ``a``'s Top Acc against row ``b``'s: by their 95 % intervals when both have one
    (``top_acc_ci95``), else by :func:`accuracy_tolerance`. ``"above"``, ``"below"`` or ``"level with"``."""
    ca, cb = a.get("top_acc_ci95"), b.get("top_acc_ci95")
    if ca is None or cb is None:
        return _cmp(a["top_acc"], b["top_acc"], n)
    if a["top_acc"] is None or b["top_acc"] is None:
        return "not comparable with"
    return {"above": "above", "below": "below", "level": "level with"}[intervals_compare(ca, cb)]


def verdict(a: dict, b: dict, n: int, a_name: str, b_name: str, would_change: str) -> dict:
    """One answer's verdict as data: ``{"verdict": "above" | "level" | "below", "compared": "a vs b",
    "a": {top_acc, top_acc_ci95}, "b": …, "rule", "would_change"}`` (Top Acc of row ``a`` against ``b``)."""
    by_interval = a.get("top_acc_ci95") is not None and b.get("top_acc_ci95") is not None
    word = _vs(a, b, n)
    return {"verdict": {"level with": "level", "not comparable with": "level"}.get(word, word),
            "compared": f"{a_name} vs {b_name}",
            "a": {"top_acc": a["top_acc"], "top_acc_ci95": a.get("top_acc_ci95")},
            "b": {"top_acc": b["top_acc"], "top_acc_ci95": b.get("top_acc_ci95")},
            "rule": ("95 % intervals over facts disjoint" if by_interval
                     else f"difference beyond max(1/n, 2 standard errors), n = {n}"),
            "would_change": would_change}


def _f(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def nothing_learned(rows, tol: float) -> bool:
    """True when no run (the oracle included) got above Top Acc ``tol``: nothing to compare."""
    return all(r["top_acc"] is None or r["top_acc"] <= tol for r in rows)


EMPTY = ("In this run no method, the oracle included, learned more than one probe's worth of the "
         "TO-LEARN facts, so the comparison is empty: the run is too small to answer.")


def _gap_share(row: dict, low: dict, high: dict) -> float | None:
    """Where ``row``'s Top Acc sits between ``low`` (0) and ``high`` (1)."""
    span = high["top_acc"] - low["top_acc"]
    return None if span <= 0 else (row["top_acc"] - low["top_acc"]) / span


def answer_generalisation(rows: dict[str, dict], n_to_learn: int, held_out: list[str]) -> str:
    """Q1 in words. ``rows``: ``phi_seen`` (φ meta-trained without the held-out relations),
    ``phi_all`` (all relations, same budget), ``finetune``, ``oracle``; each with top_acc / nf_acc;
    optionally ``phi_03`` (chapter 03's φ: more meta-examples, all relations)."""
    n = n_to_learn
    seen, full, ft, oracle = (rows[k] for k in ("phi_seen", "phi_all", "finetune", "oracle"))
    text = (f"On TO-LEARN facts of the held-out relations ({', '.join(held_out)}), TAALM with a φ that never saw "
            f"them reached Top Acc {_f(seen['top_acc'])}, {_vs(seen, full, n)} "
            f"the φ meta-trained on all relations ({_f(full['top_acc'])}) and "
            f"{_vs(seen, ft, n)} plain fine-tuning ({_f(ft['top_acc'])}); "
            f"the oracle reached {_f(oracle['top_acc'])}. ")
    share = _gap_share(seen, ft, oracle)
    if share is not None:
        text += f"That closes {share:.0%} of the gap from fine-tuning to the oracle. "
    verdict = _vs(seen, full, n)
    if nothing_learned(rows.values(), 1.0 / n):
        text += EMPTY
    elif verdict == "level with" and _vs(seen, ft, n) == "above":
        text += "So in this run φ transfers to relations it was not meta-trained on."
    elif verdict == "below":
        text += ("So in this run φ transfers only partly: part of what it learned is specific to the "
                 "relations it was meta-trained on.")
    elif _vs(seen, ft, n) != "above":
        text += ("So in this run neither φ beats fine-tuning by more than the noise of "
                 f"{n} facts: the run is too small (or φ too little trained) to tell whether it generalises.")
    else:
        text += "So in this run φ does no worse on relations it never saw."
    if "phi_03" in rows:  # both saw the held-out relations: a gap between them is not about relations
        p03 = rows["phi_03"]
        text += (f" Chapter 03's φ, also meta-trained on all relations but on its own meta pool and with its "
                 f"step chosen on validation, reached {_f(p03['top_acc'])} on the same facts, "
                 f"{_vs(p03, full, n)} the all-relations φ here")
        text += (": since both saw the held-out relations, that gap comes from the pool or the chosen step."
                 if _vs(p03, full, n) != "level with" else ".")
    return text


def answer_freeform(per_doc: list[dict], margin: float = 1.1) -> str:
    """Free-form documents in words: ``per_doc`` rows with ``answer_weight`` / ``other_weight``.

    A document counts as "φ finds the fact" when the fact's mean weight is more than
    ``margin`` times the other tokens'; a median ratio within [1/margin, margin] is "flat".
    The median, not the mean, sums the documents up: a document whose other tokens get almost
    no weight gives a ratio in the hundreds and would carry the mean alone.
    """
    located = [d for d in per_doc if d["answer_weight"] is not None and d["other_weight"]]
    if not located:
        return "No free-form document had its fact inside the kept tokens."
    ratios = [d["answer_weight"] / d["other_weight"] for d in located]
    above = sum(r > margin for r in ratios)
    median = statistics.median(ratios)
    text = (f"On {len(located)} free-form documents, φ's mean weight on the fact's tokens was more than "
            f"{margin:g}× its weight on the other tokens in {above} of them (median ratio {median:.2f})")
    if 1 / margin <= median <= margin and above <= len(located) / 2:
        return text + " — its weights on this text are nearly flat: too little contrast to say it finds the fact."
    if above > len(located) / 2:
        return text + " — it still finds the new fact in prose of another kind."
    return text + " — outside LAMA-style text it does not single out the fact."


def answer_attention(final: dict[str, dict], history: dict[int, dict[str, dict]],
                     min_share: float = 0.01, flat: float = 0.1) -> str:
    """Q2 in words: per corpus the most over- and under-weighted category (weight share ÷ token
    share, among categories with at least ``min_share`` of the tokens), and how the answer's and
    function words' weight share moved over meta-training. Lifts all within ``1 ± flat`` are
    reported as "close to uniform"."""
    parts, lifts_all = [], []
    for corpus, shares in final.items():
        lifts = {c: s["weight"] / s["tokens"] for c, s in shares.items() if s["tokens"] >= min_share}
        lifts_all += lifts.values()
        top = max(lifts, key=lifts.get)
        low = min(lifts, key=lifts.get)
        parts.append(f"on {corpus} documents φ over-weights {top} tokens most ({lifts[top]:.2f}× their share "
                     f"of tokens) and under-weights {low} tokens most ({lifts[low]:.2f}×)")
    text = "At the end of meta-training, " + "; ".join(parts) + ". "
    if all(abs(x - 1) <= flat for x in lifts_all):
        text += (f"Every category's share of φ's weight is within {flat:.0%} of its share of tokens: φ's "
                 "weights are still close to uniform, so these leanings are small. ")
    steps = sorted(history)
    if len(steps) > 1:
        first, last = history[steps[0]], history[steps[-1]]
        moves = []
        for corpus in last:
            for c in ("answer", "function"):
                if c not in last[corpus]:
                    continue
                a, b = first[corpus][c]["weight"], last[corpus][c]["weight"]
                moves.append(f"{c} {a:.3f}→{b:.3f} on {corpus}")
        text += f"From step {steps[0]} to step {steps[-1]} the weight shares moved: " + ", ".join(moves) + "."
    return text


def heuristic_names(rows: dict[str, dict]) -> list[str]:
    """The φ-free importance scores among ``rows``: ``heuristic-*`` and ``rho1``, in their order."""
    return [k for k in rows if k.startswith("heuristic-") or k == "rho1"]


def answer_heuristics(rows: dict[str, dict], phi_keys: str | list[str], n_to_learn: int) -> str:
    """Q3 in words: every heuristic against the first of ``phi_keys`` (the φ meta-trained at the
    chapter's budget; any further φ is described beside it), fine-tuning and the oracle.

    The conclusion reads every heuristic's comparison with that φ, not the best heuristic's: picking
    the best by its Top Acc would select on the test facts."""
    n = n_to_learn
    phi_keys = [phi_keys] if isinstance(phi_keys, str) else list(phi_keys)
    phi_key, phi, ft = phi_keys[0], rows[phi_keys[0]], rows["finetune"]
    names = heuristic_names(rows)
    words = {k: _vs(rows[k], phi, n) for k in names}
    parts = [f"{k} {_f(rows[k]['top_acc'])} (NF {_f(rows[k]['nf_acc'])}), {words[k]} {phi_key}" for k in names]
    text = (f"{phi_key} reached Top Acc {_f(phi['top_acc'])} (NF {_f(phi['nf_acc'])}), "
            f"{_vs(phi, ft, n)} fine-tuning ({_f(ft['top_acc'])}); the oracle reached "
            f"{_f(rows['oracle']['top_acc'])}. The simple scores: " + "; ".join(parts) + ". ")
    for k in phi_keys[1:]:
        text += f"{k} reached {_f(rows[k]['top_acc'])}, {_vs(rows[k], phi, n)} {phi_key}. "
    above = [k for k in names if words[k] == "above"]
    level = [k for k in names if words[k] == "level with"]
    if nothing_learned(rows.values(), 1.0 / n):
        text += EMPTY
    elif above:
        text += f"In this run {', '.join(above)} did better than φ: the meta-learning is not what makes the gain."
    elif not level:
        text += f"In this run meta-learning earns its cost: every heuristic is below {phi_key}."
    elif _vs(phi, ft, n) != "above":
        text += (f"In this run neither the heuristics nor φ beat fine-tuning by more than the noise of {n} "
                 "facts: too small to tell.")
    else:
        text += (f"In this run {', '.join(level)} did as well as φ (within the noise), so the gain over "
                 "fine-tuning cannot be credited to meta-learning alone.")
    return text


def answer_unpaired(rows: dict[str, dict], paired_key: str, finetune: dict, n_to_learn: int,
                    oracle: dict | None = None) -> str:
    """Q4 in words: each probe-free strategy against the paired-data φ and fine-tuning."""
    n = n_to_learn
    paired = rows[paired_key]
    parts = [f"{k} reached Top Acc {_f(r['top_acc'])}, {_vs(r, paired, n)} the "
             f"paired-data φ ({_f(paired['top_acc'])}) and {_vs(r, finetune, n)} "
             f"fine-tuning ({_f(finetune['top_acc'])})" for k, r in rows.items() if k != paired_key]
    good = [k for k, r in rows.items() if k != paired_key and _vs(r, paired, n) != "below"]
    head = "Without hand-written probes: " + "; ".join(parts) + "."
    if nothing_learned([*rows.values(), finetune], 1.0 / n):
        if oracle is not None and not nothing_learned([oracle], 1.0 / n):
            return (head + f" None of these φs, paired or not, took TAALM past one probe's worth of facts while the oracle "
                    f"reached {_f(oracle['top_acc'])}: at this meta-training budget φ is too little trained "
                    "to tell the strategies apart.")
        return head + " " + EMPTY
    tail = (f" So without paired probes, {' and '.join(good)} did as well here." if good
            else " So in this run the hand-written (paired) probes matter: the probe-free φs fall short.")
    return head + tail


def answer_scaling(rows: list[dict], base: str, n_to_learn: int) -> str:
    """Q5 in words: trainable parameters, time and peak memory against Top Acc, relative to ``base``.

    "Cheaper" means fewer trainable φ parameters where every row has them, else less time.

    Memory is ``peak_mb`` (CUDA peak where measured, else extra RSS). Wall-clock times are
    comparable only when the runs had the machine to themselves.
    """
    n = n_to_learn
    ref = next(r for r in rows if r["variant"] == base)

    def times(key, r):
        a, b = r.get(key), ref.get(key)
        return None if a is None or not b else a / b

    parts = []
    for r in rows:
        if r["variant"] == base:
            continue
        costs = [f"{x:.1f}× {what}" for what, x in (
            ("the trainable φ parameters", times("phi_trainable", r)),
            ("the meta-training time", times("meta_seconds", r)),
            ("the peak memory", times("peak_mb", r))) if x is not None]
        parts.append(f"{r['variant']} ({', '.join(costs)}) reached Top Acc "
                     f"{_f(r['top_acc'])}, {_vs(r, ref, n)} the base φ ({_f(ref['top_acc'])})")
    cost = "phi_trainable" if all(r.get("phi_trainable") for r in rows) else "meta_seconds"
    cheaper = [r["variant"] for r in rows if r["variant"] != base and r[cost] < ref[cost]
               and _vs(r, ref, n) != "below"]
    better = [r["variant"] for r in rows if r["variant"] != base and _vs(r, ref, n) == "above"]
    if nothing_learned(rows, 1.0 / n):
        return "; ".join(parts) + ". No φ taught θ anything measurable here, so only the costs can be compared."
    what = "fewer trainable parameters" if cost == "phi_trainable" else "less meta-training time"
    tail = (f" A φ with {what} ({', '.join(cheaper)}) lost nothing measurable here." if cheaper
            else f" No φ with {what} matched the base one here.")
    if better:
        tail += f" Above the base φ: {', '.join(better)}."
    return "; ".join(parts) + "." + tail




VERDICT_COLUMNS = [("question", "question"), ("compared", "compared (Top Acc, a vs b)"), ("verdict", "verdict"),
                   ("a", "a [95 % CI]"), ("b", "b [95 % CI]"), ("rule", "rule"), ("would_change", "what would change it")]


def settings_choice(rows: list[dict], base: str, previous_best: str | None = None) -> dict:
    """Which φ setting meta-pool validation chooses among ``rows`` (question 5's φs) at this budget.

    The score is ``val_phi_nll``: the held-out pool probes' NLL after a fresh θ trains on their
    documents with that φ's weights (lower is better; the same validation documents for every φ,
    never the TO-LEARN facts). Returns ``{"chosen", "by_variant": {variant: nll}, "uniform_nll",
    "previous_best", "previous_best_kept", "text"}``; ``previous_best`` is the variant an earlier,
    smaller budget chose, which this budget either confirms (it is still the lowest) or drops.
    """
    scored = {r["variant"]: r["val_phi_nll"] for r in rows if r.get("val_phi_nll") is not None}
    if base not in scored:
        raise ValueError(f"settings_choice: no validation NLL for the base row {base!r}")
    chosen = min(scored, key=scored.get)
    uniform = next((r.get("val_uniform_nll") for r in rows if r["variant"] == base), None)
    listed = ", ".join(f"{v} {x:.3f}" for v, x in sorted(scored.items(), key=lambda kv: kv[1]))
    text = (f"Meta-pool validation (held-out probe NLL after θ trains with each φ's weights; uniform weights "
            f"{_f(uniform)}): {listed}. Validation chooses {chosen}.")
    kept = None
    if previous_best is not None and previous_best in scored:
        kept = chosen == previous_best
        text += (f" {previous_best}, the validated best at the smaller budget, is "
                 + ("confirmed at this budget." if kept else
                    f"dropped at this budget: {chosen} validates better ({scored[chosen]:.3f} against "
                    f"{scored[previous_best]:.3f})."))
    return {"chosen": chosen, "by_variant": scored, "uniform_nll": uniform, "previous_best": previous_best,
            "previous_best_kept": kept, "text": text}


def verdict_rows(verdicts: dict[str, dict]) -> list[dict]:
    """The chapter's answers at a glance: one row per :func:`verdict` (a question may hold several,
    keyed by what was compared), with each side's Top Acc and interval as text."""

    def side(x: dict) -> str:
        ci = x.get("top_acc_ci95")
        return _f(x.get("top_acc")) + ("" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]")

    rows = []
    for question, v in verdicts.items():
        for one in ([v] if "verdict" in v else list(v.values())):
            if "a" not in one:  # a verdict of another kind (e.g. a weight share): its own numbers
                rows.append({"question": question, **{k: one.get(k) for k in ("compared", "verdict", "rule",
                                                                                 "would_change")},
                             "a": one.get("a_text"), "b": one.get("b_text")})
                continue
            rows.append({"question": question, "compared": one["compared"], "verdict": one["verdict"],
                         "a": side(one["a"]), "b": side(one["b"]), "rule": one["rule"],
                         "would_change": one["would_change"]})
    return rows


def _names(xs: list[str]) -> str:
    return ", ".join(xs[:-1]) + " and " + xs[-1] if len(xs) > 1 else xs[0]


def practical_reading(verdicts: dict[str, dict], scaling_rows: list[dict] | None = None,
                      base: str = "base", n_to_learn: int | None = None) -> list[str]:
    """What the chapter's verdicts mean for someone using Train-Attention outside LAMA-CKL: one
    sentence per question that has a verdict, built from the verdicts alone (``verdicts`` as the
    chapter builds them; ``scaling_rows`` add the φ sizes to question 5). Every sentence holds
    for this run only: a verdict of "level" is no evidence of equality, only of no separation.
    A question whose compared runs all stayed at or below one probe's worth of facts
    (``1 / n_to_learn``; 0 when not given) gets "cannot tell" instead of a reading."""
    tol = 1.0 / n_to_learn if n_to_learn else 0.0

    def empty(*vs):  # every side of every compared pair learned (next to) nothing
        return all((x.get(side) or {}).get("top_acc") is None or x[side]["top_acc"] <= tol
                   for x in vs for side in ("a", "b"))

    def cannot_tell(topic):
        return f"{topic}: no compared run learned more than one probe's worth of facts, so this run cannot tell."

    out = []
    g = verdicts.get("generalisation", {})
    rel = g.get("held-out relations")
    if rel and empty(rel):
        out.append(cannot_tell("Facts of new relations"))
    elif rel:
        out.append({
            "level": "Facts of new relations: a φ meta-trained without them taught θ as much as one that saw them "
                     "(level), so within LAMA-style text φ need not have seen the relation it is used on.",
            "below": "Facts of new relations: a φ meta-trained without them taught θ less than one that saw them, "
                     "so meta-train φ on documents of the relations it will be used on.",
            "above": "Facts of new relations: a φ meta-trained without them taught θ more than one that saw them; "
                     "leaving the target relations out did not hurt here.",
        }[rel["verdict"]])
    free = {k: v["verdict"] for k, v in g.items() if k.startswith("free-form text")}
    if free:
        if set(free.values()) == {"above"}:
            out.append("Other text styles: on free-form documents every φ put more of its weight on the fact than "
                       "the fact's share of the tokens, so its focus carries beyond LAMA's style.")
        elif "above" in free.values():
            out.append("Other text styles: on free-form documents only "
                       + _names([k.split(", ", 1)[-1] for k, v in free.items() if v == "above"])
                       + " put more weight on the fact than its share of the tokens; check φ on your own text first.")
        else:
            out.append("Other text styles: on free-form documents no φ put more weight on the fact than its share "
                       "of the tokens (uniform weights do as much), so φ's focus did not carry to text unlike its "
                       "meta-training documents: meta-train φ on documents and probes of the style it will see.")
    att = verdicts.get("attention_shares")
    if att:
        out.append({
            "above": "What φ looks for: on LAMA-CKL documents it gives the answer span more than its share of the "
                     "tokens; it has learned where a LAMA fact sits.",
            "level": "What φ looks for: on LAMA-CKL documents it gives the answer span no more than its share of "
                     "the tokens.",
            "below": "What φ looks for: on LAMA-CKL documents it gives the answer span less than its share of the "
                     "tokens.",
        }[att["verdict"]])
    heur = verdicts.get("heuristic_weights")
    if heur and empty(*heur.values()):
        out.append(cannot_tell("Simple scores"))
    elif heur:
        by = {k: v["verdict"] for k, v in heur.items()}
        above, level = [k for k, v in by.items() if v == "above"], [k for k, v in by.items() if v == "level"]
        if above:
            out.append(f"Simple scores: {_names(above)} taught θ more than the meta-trained φ here; they need no "
                       "meta-training, so try them first.")
        elif level:
            out.append(f"Simple scores: {_names(level)} did as well as the meta-trained φ here (level); they need "
                       "no meta-training, so try them before meta-training a φ.")
        else:
            out.append("Simple scores: every one tried taught θ less than the meta-trained φ, so the "
                       "meta-training pays for itself here.")
    unpaired = verdicts.get("unpaired")
    if unpaired and empty(*unpaired.values()):
        out.append(cannot_tell("Without hand-written probes"))
    elif unpaired:
        good = [k for k, v in unpaired.items() if v["verdict"] != "below"]
        out.append(f"Without hand-written probes: {_names(good)} did as well as paired probes here, so paired "
                   "document-probe data is not required." if good else
                   "Without hand-written probes: every probe-free φ tried fell below the paired one, so φ's "
                   "meta-training needs paired data: a probe that asks for the fact the document states.")
    scaling = verdicts.get("scaling")
    if scaling and scaling_rows and empty(*scaling.values()):
        out.append(cannot_tell("φ's size"))
    elif scaling and scaling_rows:
        size = {r["variant"]: r.get("phi_trainable") for r in scaling_rows}
        smaller = [k for k, v in scaling.items() if size.get(k) and size.get(base) and size[k] < size[base]
                   and v["verdict"] != "below"]
        larger_better = [k for k, v in scaling.items() if v["verdict"] == "above"]
        text = (f"φ's size: {_names(smaller)} matched the base φ with fewer trainable parameters, so a "
                "smaller φ suffices here." if smaller else
                "φ's size: no smaller φ matched the base one.")
        text += (f" Above the base φ: {_names(larger_better)}." if larger_better
                 else " No φ did better than the base one.")
        out.append(text)
    return out


QUESTION_KEYS = ("generalisation", "attention_shares", "heuristic_weights", "unpaired", "scaling")


def companion_runs(section: dict) -> dict[str, dict]:
    """The run rows of one question's section of ``open_questions.json``: entries with a ``top_acc``
    (a section also holds its ``verdict``, counts such as ``self_probe_documents``, or
    ``settings_choice``, which are not runs)."""
    return {k: v for k, v in section.items() if isinstance(v, dict) and "top_acc" in v}


def companion_verdicts(questions: dict) -> dict[str, dict]:
    """``{question: verdict}`` from ``open_questions.json`` for :func:`verdict_rows`; a file written
    before verdicts existed gives ``{}``."""
    return {k: questions[k]["verdict"] for k in QUESTION_KEYS
            if isinstance(questions.get(k), dict) and "verdict" in questions[k]}
