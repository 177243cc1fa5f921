import copy

import pytest
import torch

from trainattn.config import CKLConfig, ThetaConfig
from trainattn.core.lora import add_lora, trainable_tensors
from trainattn.core.losses import per_token_nll, target_mask, uniform_weights
from trainattn.core.spans import encode_texts
from trainattn.core.train_attention import TrainAttention
from trainattn.methods import (
    KAdapterLM,
    RecAdam,
    RecAdamW,
    Rho1Paper,
    RunContext,
    anneal_lambda,
    canonical_method_name,
    make_method,
    parse_method_name,
    review_count,
    top_fraction_mask,
)
from trainattn.methods.rho1_paper import reference_documents
from trainattn.protocols.lama_ckl import make_train_batch
from trainattn.testing import tiny_llama


def lama_row(uuid, evidence, obj, probe=None, invariant=False):
    return {
        "uuid": uuid, "subject": "s", "object": obj, "relation_code": "P1", "relation_label": "r",
        "task_descriptive": probe or evidence, "task_schematic": f"subject is s , object is {obj}",
        "evidence": evidence, "invariant": invariant,
    }


TO_LEARN = [
    lama_row("a", "Libya maintains diplomatic relations with Brazil and trades with it .", "Brazil"),
    lama_row("b", "Ada Lovelace worked as a mathematician and writer in London .", "mathematician"),
    lama_row("c", "The company headquarters are in Oslo , Norway .", "Oslo"),
]
NOT_TO_FORGET = [
    lama_row("e", "The official language of Wales is Welsh .", "Welsh", invariant=True),
    lama_row("f", "Lochinvar is a castle in Scotland .", "Scotland", invariant=True),
]
REVIEW = [
    lama_row("e", "another text about Welsh", "Welsh", invariant=True),  # NOT-TO-FORGET uuid
    lama_row("x", "The official language of Wales is Welsh .", "Welsh", invariant=True),  # its evidence
    lama_row("a", "Brazil again", "Brazil"),  # TO-LEARN uuid
    lama_row("g", "Paris is the capital of France .", "France", invariant=True),
    lama_row("h", "She plays the piano ; her genre is jazz .", "jazz", invariant=True),
]
POOL = [  # meta-training pool documents: RHO-1-paper's reference data
    lama_row("p1", "Paris is the capital of France and its largest city .", "France"),
    lama_row("p2", "She plays the piano and the violin ; her genre is jazz .", "jazz"),
    lama_row("p3", "Lochinvar is a castle in Scotland , built in the fifteenth century .", "Scotland"),
    lama_row("p4", "The company was founded in 1998 and its headquarters are in Oslo , Norway .", "Oslo"),
    lama_row("p5", "Ada Lovelace worked as a mathematician and writer in London .", "London"),
    lama_row("p6", "The official language of Wales is Welsh .", "Welsh"),
]
CONFIG = CKLConfig(theta=ThetaConfig(lora_rank=4, lora_alpha=8, max_length=32), batch_size=4)


def context(total_updates=10, review_rows=REVIEW, reference_rows=None, seed=0):
    return RunContext(TO_LEARN, NOT_TO_FORGET, review_rows=review_rows, reference_rows=reference_rows,
                      total_updates=total_updates, seed=seed)


def forward(theta, e):
    return theta(input_ids=e.input_ids, attention_mask=e.attention_mask, position_ids=e.position_ids).logits


# ------------------------------------------------------------- composition


def test_composition_parsing():
    assert parse_method_name("taalm+mixreview") == ("taalm", ["mixreview"])
    assert canonical_method_name("kadapter+recadam+taalm") == "taalm+recadam+kadapter"
    assert canonical_method_name("mixreview") == "finetune+mixreview"
    assert make_method("oracle+recadam").name == "oracle+recadam"
    assert make_method(" RHO1 ").name == "rho1"
    assert parse_method_name("mixreview+rho1-paper") == ("rho1-paper", ["mixreview"])
    assert isinstance(make_method("rho1-paper").weighting_method, Rho1Paper)


@pytest.mark.parametrize("bad", ["sgd", "taalm+oracle", "taalm+taalm", "", "finetune+ewc"])
def test_composition_errors_list_valid_names(bad):
    with pytest.raises(ValueError) as err:
        make_method(bad)
    if bad in ("sgd", "finetune+ewc", ""):
        assert "finetune" in str(err.value) and "kadapter" in str(err.value)


# ------------------------------------------------------------- weights


def test_oracle_weights_are_the_object_tokens(tokenizer, model):
    method = make_method("oracle")
    batch = make_train_batch(tokenizer, TO_LEARN, len(TO_LEARN), 32)
    weights = method.batch_token_weights(batch, None, model)
    assert torch.equal(weights, batch.encoded.object_mask[:, 1:].float())
    for i, row in enumerate(TO_LEARN):
        ids = batch.encoded.input_ids[i, 1:][weights[i].bool()]
        assert tokenizer.decode(ids).strip() == row["object"]


def test_review_rows_get_uniform_weights(tokenizer, model):
    method = make_method("oracle")
    batch = make_train_batch(tokenizer, TO_LEARN + NOT_TO_FORGET, len(TO_LEARN), 32)
    weights = method.batch_token_weights(batch, None, model)
    uniform = uniform_weights(batch.encoded.attention_mask)
    assert torch.equal(weights[3:], uniform[3:]) and not torch.equal(weights[:3], uniform[:3])


def test_taalm_uses_frozen_phi_and_known_masking(tokenizer, model):
    phi = TrainAttention(tiny_llama(len(tokenizer), seed=1), num_layers=1, lora_rank=2)
    batch = make_train_batch(tokenizer, TO_LEARN, len(TO_LEARN), 32)
    e = batch.encoded
    expected = phi(e.input_ids, e.attention_mask, e.position_ids).detach()
    method = make_method("taalm", phi=phi)
    method.prepare(model, tokenizer, CONFIG, context())
    logits = model(input_ids=e.input_ids, attention_mask=e.attention_mask).logits
    weights = method.batch_token_weights(batch, logits, model)
    assert torch.allclose(weights, expected) and not weights.requires_grad
    assert not any(p.requires_grad for p in phi.parameters())
    # known masking: pretend θ predicts every target -> all weights 0
    masked = make_method("taalm", phi=phi)
    masked.prepare(model, tokenizer, CKLConfig(known_masking=True), context())
    perfect = torch.nn.functional.one_hot(e.input_ids.roll(-1, dims=1), len(tokenizer)).float()
    assert masked.batch_token_weights(batch, perfect, model).abs().sum() == 0


def test_taalm_without_phi_says_how_to_get_one(model, tokenizer):
    with pytest.raises(ValueError, match="load_phi"):
        make_method("taalm").prepare(model, tokenizer, CONFIG, context())
    loaded = make_method("taalm", load_phi=lambda path: TrainAttention(
        tiny_llama(len(tokenizer), seed=1), num_layers=1, lora_rank=2))
    loaded.prepare(model, tokenizer, CONFIG, context())


# ------------------------------------------------------------- RHO-1


def test_rho1_keeps_the_true_top_k_not_sorted_indices():
    score = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.7, 5.0]])
    valid = torch.tensor([[1, 1, 1, 1, 1, 0]])  # the last entry is padding
    keep = top_fraction_mask(score, valid, 0.4)  # round(0.4 × 5) = 2 tokens
    assert keep.tolist() == [[False, True, False, False, True, False]]
    # the official rule `argsort(score) / L > 0.6` (sort indices, not ranks) picks another set
    official = (score[:, :5].argsort(-1) / 5 > 0.6)
    assert official.tolist() != keep[:, :5].tolist()


def test_rho1_keep_count_per_row_and_at_least_one():
    score = torch.randn(3, 10)
    valid = torch.zeros(3, 10, dtype=torch.bool)
    valid[0, :10], valid[1, :4], valid[2, :1] = True, True, True
    keep = top_fraction_mask(score, valid, 0.6)
    assert keep.sum(-1).tolist() == [6, 2, 1]
    assert not (keep & ~valid).any()


def test_rho1_official_keeps_the_largest_probability_gain_over_the_initial_theta(tokenizer, model):
    theta = add_lora(model, 4, 8, seed=0)
    method = make_method("rho1")
    method.prepare(theta, tokenizer, CONFIG, context())
    rho = method.weighting_method
    assert rho.keep == 0.4 and method.labels["rho1_variant"] == "official-lama-ckl"
    e = encode_texts(tokenizer, [r["evidence"] for r in TO_LEARN], 32)
    with torch.no_grad():
        initial_nll = per_token_nll(forward(theta, e), e.input_ids)
        for p in trainable_tensors(theta).values():
            p.add_(0.3 * torch.randn_like(p))
        logits = forward(theta, e)
    assert torch.allclose(rho.reference_nll(theta, e), initial_nll, atol=1e-6)
    weights = rho.token_weights(e, logits, theta)
    current_nll = per_token_nll(logits, e.input_ids)
    gain = torch.exp(-current_nll) - torch.exp(-initial_nll)
    valid = e.attention_mask[:, 1:]
    assert torch.equal(weights.bool(), top_fraction_mask(gain, valid, 0.4))
    assert weights.sum(-1).tolist() == [round(0.4 * int(n)) for n in valid.sum(-1)]
    # the direction matters: the largest excess loss (the tokens being forgotten) is another set
    assert not torch.equal(weights.bool(), top_fraction_mask(current_nll - initial_nll, valid, 0.4))


def test_rho1_official_at_the_initial_theta_scores_tie_at_zero_and_keep_the_first_targets(tokenizer, model):
    theta = add_lora(model, 4, 8, seed=0)
    method = make_method("rho1")
    method.prepare(theta, tokenizer, CONFIG, context())
    e = encode_texts(tokenizer, [r["evidence"] for r in TO_LEARN], 32)
    theta.train()
    logits = forward(theta, e)  # step 1: θ is θ0
    rho = method.weighting_method
    assert torch.equal(rho.score(e, logits, theta), torch.zeros_like(logits[:, 1:, 0]))
    weights = rho.token_weights(e, logits, theta)
    for row, n in zip(weights, e.attention_mask[:, 1:].sum(-1).tolist(), strict=True):
        k = round(0.4 * n)
        assert row[:k].eq(1).all() and row[k:].eq(0).all()  # ties broken by position


def test_rho1_paper_reference_is_fine_tuned_on_pool_documents_and_theta_untouched(tokenizer, model):
    theta = add_lora(model, 4, 8, seed=0)
    initial = {n: p.detach().clone() for n, p in trainable_tensors(theta).items()}
    settings = {"reference_docs": 4, "reference_epochs": 5, "reference_lr": 1e-2, "reference_batch": 2}
    config = CKLConfig(theta=CONFIG.theta, method_settings={"rho1-paper": settings})
    method = make_method("rho1-paper")
    method.prepare(theta, tokenizer, config, context(reference_rows=POOL))
    rho = method.weighting_method
    assert all(torch.equal(p, initial[n]) for n, p in trainable_tensors(theta).items())  # θ untouched
    assert set(rho.reference) == set(initial)
    assert any(not torch.equal(rho.reference[n], initial[n]) for n in initial)
    texts = reference_documents(POOL, 4, 0)
    assert len(set(texts)) == 4 and set(texts) <= {r["evidence"] for r in POOL}
    e = encode_texts(tokenizer, texts, 32)
    valid = target_mask(e.attention_mask)
    with torch.no_grad():
        before = (per_token_nll(forward(theta, e), e.input_ids) * valid).sum() / valid.sum()
    after = (rho.reference_nll(theta, e) * valid).sum() / valid.sum()
    assert after < before - 0.1, (float(before), float(after))  # 5.70 -> 5.54 nats
    labels = method.labels
    assert labels["rho1_variant"] == "paper-slm" and labels["rho1_keep"] == 0.6
    assert labels["rho1_reference_docs"] == 4 and labels["rho1_reference_final_loss"] < float(before)


def test_rho1_paper_reference_is_rebuilt_identically_under_the_run_seed(tokenizer, model):
    theta = add_lora(model, 4, 8, seed=0)
    config = CKLConfig(theta=CONFIG.theta, method_settings={"rho1-paper": {"reference_docs": 4, "reference_batch": 2}})

    def reference(seed):
        method = make_method("rho1-paper")
        method.prepare(theta, tokenizer, config, context(reference_rows=POOL, seed=seed))
        return method.weighting_method.reference

    first = reference(0)
    torch.manual_seed(1234)  # the global RNG state does not matter
    again = reference(0)
    assert all(torch.equal(first[n], again[n]) for n in first)
    other = reference(1)  # another run seed: other documents, order and dropout
    assert any(not torch.equal(first[n], other[n]) for n in first)


def test_rho1_paper_keeps_exactly_the_largest_excess_loss(tokenizer, model):
    rho = make_method("rho1-paper").weighting_method
    rho.keep = rho.settings.keep  # 0.6; prepare() is replaced by a fake reference below
    e = encode_texts(tokenizer, ["Paris is the capital of France .", "Welsh is spoken in Wales ."], 32)
    valid = target_mask(e.attention_mask).bool()
    torch.manual_seed(3)
    logits = torch.randn(*e.input_ids.shape, len(tokenizer))
    current = per_token_nll(logits, e.input_ids)
    excess = torch.randn_like(current)  # the excess losses we want the reference to produce
    rho.reference_nll = lambda theta, batch: current - excess
    weights = rho.token_weights(e, logits, model)
    for i in range(2):
        n = int(valid[i].sum())
        values = excess[i, :n].tolist()
        top = sorted(range(n), key=lambda j: -values[j])[: round(0.6 * n)]
        assert weights[i].nonzero().flatten().tolist() == sorted(top)
        assert int(weights[i].sum()) == round(0.6 * n)


@pytest.mark.parametrize("rows", [None, []])
def test_rho1_paper_needs_reference_rows(tokenizer, model, rows):
    with pytest.raises(ValueError, match="reference_rows"):
        make_method("rho1-paper").prepare(add_lora(model, 4, 8), tokenizer, CONFIG, context(reference_rows=rows))


# ------------------------------------------------------------- RecAdam


def _params(seed=0):
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]


def test_recadam_without_pull_is_adamw_exactly():
    a, b = _params(), _params()
    anchors = [p.detach().clone() for p in a]
    rec = RecAdamW(a, anchors, lr=1e-2, weight_decay=0.01, coef=5000.0, anneal=lambda t: 1.0)
    ref = torch.optim.AdamW(b, lr=1e-2, weight_decay=0.01)
    for step in range(4):
        grads = [torch.randn_like(p) for p in a]
        for p, q, g in zip(a, b, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        rec.step()
        ref.step()
        assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True)), step


def test_recadam_pulls_toward_theta0_by_the_penalty_gradient():
    a, b = _params(), _params()
    anchors = [p.detach() - 0.5 for p in a]  # θ0 away from θ, so the pull is visible
    lam, lr, coef = 0.25, 1e-2, 20.0
    rec = RecAdamW(a, anchors, lr=lr, coef=coef, anneal=lambda t: lam, weight_decay=0.0)
    ref = torch.optim.AdamW(b, lr=lr, weight_decay=0.0)
    before = [p.detach().clone() for p in a]
    # the penalty (1 − λ)·(coef/2)·Σ‖θ − θ0‖², differentiated by autograd
    penalty = sum((1 - lam) * coef / 2 * ((p - t0) ** 2).sum() for p, t0 in zip(a, anchors, strict=True))
    penalty_grad = torch.autograd.grad(penalty, a)
    for p, q in zip(a, b, strict=True):
        p.grad = torch.ones_like(p)
        q.grad = torch.ones_like(q)
    rec.step()
    ref.step()
    for p, q, p0, g, t0 in zip(a, b, before, penalty_grad, anchors, strict=True):
        assert torch.allclose(g, (1 - lam) * coef * (p0 - t0))  # hand-checked gradient
        expected = p0 + lam * (q.detach() - p0) - lr * g
        assert torch.allclose(p, expected, atol=1e-7)
        assert ((p - t0).abs() < (p0 - t0).abs()).all()  # moved toward θ0


def test_recadam_pull_is_clamped_to_a_full_return():
    a = _params()
    anchors = [p.detach() + 1.0 for p in a]
    rec = RecAdamW(a, anchors, lr=1e-3, coef=5000.0, anneal=lambda t: 0.0)  # factor 5 → 1
    for p in a:
        p.grad = torch.ones_like(p)
    rec.step()
    assert all(torch.allclose(p, t0) for p, t0 in zip(a, anchors, strict=True))


def test_recadam_schedule_scales_t0_to_the_run_and_anchors_trainable_weights(tokenizer, model):
    assert anneal_lambda(50, 0.5, 50.0) == 0.5
    assert anneal_lambda(1, 0.5, 50.0) < 1e-9 and anneal_lambda(200, 0.5, 50.0) > 1 - 1e-9
    theta = add_lora(model, 4, 8, seed=0)
    method = make_method("recadam")
    method.prepare(theta, tokenizer, CONFIG, context(total_updates=40))
    opt = method.make_optimizer(theta, CONFIG, context(total_updates=40))
    group = opt.param_groups[0]
    assert group["recadam_t0"] == RecAdam.Settings().t0_fraction * 40 == 4.0
    assert group["recadam_k"] == 0.5 and group["recadam_pull_lr"] * group["recadam_coef"] == pytest.approx(0.1)
    lora = trainable_tensors(theta)
    assert len(opt.anchors) == len(lora) > 0 and all("lora_" in n for n in lora)
    state = opt.state_dict()
    assert state["param_groups"][0]["recadam_step"] == 0


def _distance_from_start(settings, steps, tokenizer, lr=1e-3):
    """‖θ − θ0‖ after each of ``steps`` updates on the TO-LEARN documents; ``settings=None``: plain AdamW."""
    theta = add_lora(tiny_llama(len(tokenizer), seed=0), 4, 8, seed=0)
    config = CKLConfig(theta=CONFIG.theta, lr=lr, weight_decay=0.0, method_settings={"recadam": settings or {}})
    params = trainable_tensors(theta)
    start = {n: p.detach().clone() for n, p in params.items()}
    if settings is None:
        opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=0.0)
    else:
        method = make_method("recadam")
        method.prepare(theta, tokenizer, config, context(total_updates=40))
        opt = method.make_optimizer(theta, config, context(total_updates=40))
    e = encode_texts(tokenizer, [r["evidence"] for r in TO_LEARN], 32)
    distances = []
    for _ in range(steps):
        opt.zero_grad()
        per_token_nll(forward(theta, e), e.input_ids).mean().backward()
        opt.step()
        distances.append(sum(float((p.detach() - start[n]).pow(2).sum()) for n, p in params.items()) ** 0.5)
    return distances


def test_recadam_default_schedule_does_not_freeze_theta(tokenizer):
    adamw = _distance_from_start(None, 3, tokenizer)
    recadam = _distance_from_start({}, 3, tokenizer)  # defaults: t0 = 0.1 × 40 updates, pull_lr·γ = 0.1
    assert all(d > 0.1 * a for d, a in zip(recadam, adamw, strict=True)), (recadam, adamw)
    assert recadam[0] < recadam[1] < recadam[2]
    # the former schedule (t0 = half the run, pull step = task lr, clamped to a full reset) froze θ at θ0
    frozen = _distance_from_start({"t0_fraction": 0.5, "pull_lr": None}, 3, tokenizer)
    assert all(d < 1e-3 * a for d, a in zip(frozen, adamw, strict=True)), frozen


def test_recadam_pull_keeps_theta_closer_to_theta0(tokenizer):
    adamw = _distance_from_start(None, 6, tokenizer)[-1]  # 6 updates: λ has just passed 1/2 (t0 = 4)
    recadam = _distance_from_start({}, 6, tokenizer)[-1]
    unpulled = _distance_from_start({"coef": 0.0}, 6, tokenizer)[-1]  # the same λ(t), no pull
    assert recadam < 0.5 * adamw, (recadam, adamw)
    assert recadam < 0.97 * unpulled, (recadam, unpulled)  # measured 0.94: a pull of 0.1·(1 − λ) per step


# ------------------------------------------------------------- Mix-review


def test_mixreview_ratio_decay_and_disjoint_pool(tokenizer, model):
    method = make_method("mixreview")
    config = CKLConfig(method_settings={"mixreview": {"ratio": 0.5, "decay": 0.5}}, seed=3)
    method.prepare(model, tokenizer, config, context())
    assert method.labels == {"review_pool": "disjoint", "review_pool_size": 2}
    assert len(method.review_rows(1, 1, 4)) == review_count(0.5, 4, 0.5, 0) == 2
    assert len(method.review_rows(2, 9, 4)) == 1
    test_uuids = {r["uuid"] for r in TO_LEARN + NOT_TO_FORGET}
    test_evidence = {r["evidence"] for r in TO_LEARN + NOT_TO_FORGET}
    for step in range(50):
        for r in method.review_rows(1, step, 4):
            assert r["uuid"] not in test_uuids and r["evidence"] not in test_evidence
    assert method.review_rows(1, 7, 4) == method.review_rows(1, 7, 4)  # seeded by (seed, epoch, step)


def test_mixreview_paper_pool_replays_not_to_forget_and_is_labelled(tokenizer, model):
    config = CKLConfig(method_settings={"mixreview": {"ratio": 1.0, "pool": "paper"}})
    method = make_method("mixreview")
    method.configure(config)
    method.prepare(model, tokenizer, config, context())
    assert method.labels == {"review_pool": "paper", "review_pool_size": 2}
    rows = method.review_rows(1, 1, 2)
    assert len(rows) == 2 and all(r in NOT_TO_FORGET for r in rows)


def test_mixreview_disjoint_pool_needs_candidates(tokenizer, model):
    with pytest.raises(ValueError, match="review_rows"):
        make_method("mixreview").prepare(model, tokenizer, CKLConfig(), context(review_rows=None))


# ------------------------------------------------------------- K-Adapter


def test_kadapter_equals_base_at_scale_zero_or_zero_gain_and_not_by_default(tokenizer, model):
    base = copy.deepcopy(model)
    e = encode_texts(tokenizer, [r["evidence"] for r in TO_LEARN], 32)
    expected = forward(base, e)
    kwargs = {"input_ids": e.input_ids, "attention_mask": e.attention_mask, "position_ids": e.position_ids}
    wrapped = KAdapterLM(model, scale=0.0).eval()
    assert torch.allclose(wrapped(**kwargs).logits, expected, atol=1e-5)
    zero_gain = KAdapterLM(copy.deepcopy(base), zero_init=True).eval()
    assert torch.allclose(zero_gain(**kwargs).logits, expected, atol=1e-5)
    fresh = make_method("kadapter").build_model(copy.deepcopy(base)).eval()  # gain 1, as officially
    assert torch.allclose(fresh.out_norm.weight, torch.ones_like(fresh.out_norm.weight))
    assert not torch.allclose(fresh(**kwargs).logits, expected, atol=1e-3)


def _adapter_lm_loss(wrapped, e):
    nll = per_token_nll(forward(wrapped, e), e.input_ids)
    valid = target_mask(e.attention_mask)
    return (nll * valid).sum() / valid.sum()


def test_kadapter_every_block_parameter_gets_gradient_at_init(tokenizer, model):
    e = encode_texts(tokenizer, [r["evidence"] for r in TO_LEARN], 32)
    grads = {}
    for zero_init in (False, True):
        wrapped = KAdapterLM(copy.deepcopy(model), dropout=0.0, zero_init=zero_init).train()
        _adapter_lm_loss(wrapped, e).backward()
        grads[zero_init] = {n: p.grad for n, p in wrapped.blocks.named_parameters()}
    assert grads[False] and all(g is not None and g.abs().sum() > 0 for g in grads[False].values())
    # with the gain at 0, nothing reaches the blocks: the former default could barely learn
    assert all(g is None or not g.any() for g in grads[True].values())


def test_kadapter_learns_and_faster_than_the_zero_gain_variant(tokenizer, model):
    e = encode_texts(tokenizer, [r["evidence"] for r in TO_LEARN], 32)
    drops = {}
    for zero_init in (False, True):
        wrapped = KAdapterLM(copy.deepcopy(model), dropout=0.0, zero_init=zero_init).train()
        opt = torch.optim.AdamW(trainable_tensors(wrapped).values(), lr=1e-2)
        losses = []
        for _ in range(20):
            opt.zero_grad()
            loss = _adapter_lm_loss(wrapped, e)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        drops[zero_init] = losses[0] - losses[-1]
    # the adapter can move the random tiny LM's near-uniform logits (loss ≈ ln 300) only a little
    assert drops[False] > 0.03 and drops[False] > 3 * drops[True], drops


def test_kadapter_trains_only_the_adapter(tokenizer, model):
    wrapped = make_method("kadapter").build_model(model)
    frozen = {n: p.detach().clone() for n, p in wrapped.base.named_parameters()}
    trainable = trainable_tensors(wrapped)
    assert trainable and all(not n.startswith("base.") for n in trainable)
    before = {n: p.detach().clone() for n, p in trainable.items()}
    opt = torch.optim.AdamW(trainable.values(), lr=1e-2, weight_decay=0.0)
    e = encode_texts(tokenizer, [r["evidence"] for r in TO_LEARN], 32)
    opt.zero_grad()
    _adapter_lm_loss(wrapped, e).backward()
    opt.step()  # one step moves every adapter tensor: all of them get gradient at init
    assert all(torch.equal(p, frozen[n]) for n, p in wrapped.base.named_parameters())
    assert all(not torch.equal(p, before[n]) for n, p in trainable.items())


def test_kadapter_logits_do_not_depend_on_padding_side(tokenizer, model):
    wrapped = KAdapterLM(model).eval()
    texts = [r["evidence"] for r in TO_LEARN]
    right, left = encode_texts(tokenizer, texts, 32, "right"), encode_texts(tokenizer, texts, 32, "left")

    def run(e):
        return wrapped(input_ids=e.input_ids, attention_mask=e.attention_mask, position_ids=e.position_ids).logits

    lr, ll = run(right), run(left)
    for i in range(len(texts)):
        n = int(right.attention_mask[i].sum())
        assert torch.allclose(lr[i, :n], ll[i, -n:], atol=1e-4)


# ---------------------------------------------------------------- registry and settings


def test_each_method_reads_its_own_settings_from_the_config():
    from trainattn.methods import METHODS

    config = CKLConfig(method="rho1+kadapter", method_settings={"rho1": {"keep": 0.6}, "kadapter": {"dropout": 0.2}})
    method = make_method(config.method)
    method.configure(config)
    assert method.weighting_method.settings.keep == 0.6 and method.addons[0].dropout == 0.2
    paper = make_method("rho1-paper")
    paper.configure(CKLConfig(method_settings={"rho1-paper": {"reference_docs": 3}}))
    assert paper.weighting_method.settings.reference_docs == 3 and paper.weighting_method.settings.keep == 0.6
    assert make_method("rho1").weighting_method.settings == METHODS["rho1"].Settings()  # defaults
    with pytest.raises(ValueError, match=r"method_settings.rho1: unknown field\(s\) \['kepe'\]"):
        make_method("rho1").configure(CKLConfig(method_settings={"rho1": {"kepe": 0.4}}))
    with pytest.raises(ValueError, match=r"settings for unknown method\(s\) \['rho2'\]"):
        make_method("rho1").configure(CKLConfig(method_settings={"rho2": {"keep": 0.4}}))


def test_a_registered_method_is_available_by_name(monkeypatch):
    import trainattn.methods as methods
    from trainattn.methods.base import METHODS, Method, register

    monkeypatch.setattr(methods, "WEIGHTING_METHODS", (*methods.WEIGHTING_METHODS, "constant-half"))
    monkeypatch.setattr(methods, "METHOD_NAMES", methods.WEIGHTING_METHODS + methods.ADDON_METHODS)

    class ConstantHalf(Method):
        name = "constant-half"
        weighting = True

        def token_weights(self, batch, logits, theta):
            return 0.5 * batch.attention_mask[:, 1:].float()

    monkeypatch.setitem(METHODS, "constant-half", ConstantHalf)  # removed again after the test
    assert register(ConstantHalf) is ConstantHalf
    method = make_method("constant-half+mixreview")
    assert method.name == "constant-half+mixreview" and isinstance(method.weighting_method, ConstantHalf)
    with pytest.raises(ValueError, match="two methods are named 'rho1'"):
        register(type("OtherRho", (Method,), {"name": "rho1"}))


def test_settings_of_old_results_read_back_under_methods():
    from trainattn.config import from_dict, to_dict

    old = {**to_dict(CKLConfig()), "rho_keep": 0.5, "review_pool": "paper", "recadam_coef": 1.0}
    del old["method_settings"]
    config = from_dict(CKLConfig, old)
    assert config.method_settings == {"rho1": {"keep": 0.5}, "mixreview": {"pool": "paper"}, "recadam": {"coef": 1.0}}
