import json

import pytest
import torch

from trainattn.config import MetaConfig, PhiConfig, ThetaConfig
from trainattn.core.lora import add_lora, trainable_tensors
from trainattn.core.meta import MetaExample, MetaLearner, outer_objective
from trainattn.core.train_attention import TrainAttention
from trainattn.files import read_json
from trainattn.protocols.meta_training import batch_indices, meta_train
from trainattn.protocols.store import latest_checkpoint, phi_file
from trainattn.testing import tiny_llama

DOC = "Lochinvar is a castle in Scotland , built in the fifteenth century ."
PROBE = "Guess the object. \n  subject is Lochinvar , relation is instance of , object is castle"
EXAMPLE = MetaExample(DOC, PROBE, "castle", "u1")


def make_learner(tokenizer, dtype=torch.float64, **overrides):
    config = MetaConfig(
        theta=ThetaConfig(lora_rank=2, max_length=40),
        phi=PhiConfig(num_layers=1, lora_rank=2),
        inner_lr=overrides.pop("inner_lr", 1e-2),
        **overrides,
    )
    theta = add_lora(tiny_llama(len(tokenizer), seed=0, dtype=dtype), rank=2, alpha=4, seed=0)
    with torch.no_grad():  # a non-zero B, like the paper's released adapter
        g = torch.Generator().manual_seed(5)
        for n, p in theta.named_parameters():
            if "lora_B" in n:
                p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=dtype))
    phi = TrainAttention(tiny_llama(len(tokenizer), seed=1, dtype=dtype), num_layers=1, lora_rank=2)
    return MetaLearner(config, theta, phi, tokenizer)


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def directional_checks(f, x, analytic, n_directions=3, n_coordinates=6, h=1e-6, seed=0):
    """Relative errors of <analytic, v> against central differences of f along v."""
    g = torch.Generator().manual_seed(seed)
    directions = [torch.randn(x.shape, generator=g, dtype=x.dtype) for _ in range(n_directions)]
    for k in torch.randperm(x.numel(), generator=g)[:n_coordinates].tolist():
        e = torch.zeros_like(x)
        e.view(-1)[k] = 1.0
        directions.append(e)
    errors = []
    for v in directions:
        numeric = (f(x + h * v) - f(x - h * v)) / (2 * h)
        exact = (analytic * v).sum().item()
        errors.append(abs(numeric - exact) / max(abs(exact), 1e-8))
    return errors


@pytest.mark.parametrize("inner_optimizer,untracked_steps", [("adamw", 1), ("sgd", 0), ("sgd", 1)])
def test_meta_gradient_wrt_token_weights_matches_finite_differences(tokenizer, inner_optimizer, untracked_steps):
    learner = make_learner(tokenizer, inner_optimizer=inner_optimizer, untracked_steps=untracked_steps)
    doc, probe = learner.encode(EXAMPLE)
    g = torch.Generator().manual_seed(3)
    w0 = 0.2 + 0.7 * torch.rand(1, doc.input_ids.shape[1] - 1, generator=g, dtype=torch.float64)
    fixed = w0.clone()  # the dummy steps' weights: constants for φ, held fixed here too
    w = w0.clone().requires_grad_(True)
    loss, _ = learner.loss_given_weights(doc, probe, w, untracked_weights=fixed)
    (analytic,) = torch.autograd.grad(loss, w)
    assert analytic.abs().max() > 0

    def f(x):
        return learner.loss_given_weights(doc, probe, x, untracked_weights=fixed)[0].item()

    assert max(directional_checks(f, w0, analytic)) < 1e-4


def test_first_adamw_step_from_a_fresh_state_gives_almost_no_meta_gradient(tokenizer):
    """A fresh AdamW step is lr·g/(|g|+eps) ≈ lr·sign(g): its derivative w.r.t. the weights is ~0.

    That holds where |g| >> eps, as in this tiny model. Where |g| < eps the
    derivative is lr/eps instead (huge): on SmolLM2 a few LoRA gradients are
    that small, and chapter 06 measures a larger, noisier meta-gradient without
    the untracked step. Either way the paper runs an untracked (dummy) step first.
    """
    norms = {}
    for untracked in (0, 1):
        learner = make_learner(tokenizer, inner_optimizer="adamw", untracked_steps=untracked)
        doc, probe = learner.encode(EXAMPLE)
        w = torch.full((1, doc.input_ids.shape[1] - 1), 0.5, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(learner.loss_given_weights(doc, probe, w)[0], w)
        norms[untracked] = grad.norm().item()
    assert norms[0] < 0.1 * norms[1]


def test_meta_gradient_wrt_phi_head_matches_finite_differences(tokenizer):
    learner = make_learner(tokenizer, inner_optimizer="adamw", untracked_steps=1)
    doc, probe = learner.encode(EXAMPLE)
    phi, head = learner.phi, learner.phi.head
    with torch.no_grad():
        fixed = phi(doc.input_ids, doc.attention_mask)  # the dummy step's weights, held fixed

    def outer(x):
        weight, bias = x[:-1].view_as(head.weight), x[-1:]
        hidden = phi.body(input_ids=doc.input_ids, attention_mask=doc.attention_mask).last_hidden_state
        w = torch.sigmoid(torch.nn.functional.linear(hidden, weight, bias).squeeze(-1))[:, 1:]
        return learner.loss_given_weights(doc, probe, w, untracked_weights=fixed)[0]

    x0 = torch.cat([head.weight.detach().flatten(), head.bias.detach().flatten()])
    x = x0.clone().requires_grad_(True)
    (analytic,) = torch.autograd.grad(outer(x), x)
    assert analytic.abs().max() > 0
    with torch.no_grad():
        assert max(directional_checks(lambda v: outer(v).item(), x0, analytic)) < 1e-4


def test_untracked_steps_alone_give_phi_no_gradient(tokenizer):
    learner = make_learner(tokenizer, untracked_steps=2, tracked_steps=0)
    loss, _ = learner.example_loss(EXAMPLE)
    assert not loss.requires_grad  # nothing connects the outer loss to φ


def test_objectives():
    after = torch.tensor([1.0, 3.0])
    before = torch.tensor([2.0, 2.0])
    assert outer_objective("nll", after, before).item() == 2.0
    assert outer_objective("change3", after, before).item() == 0.0  # (-1 + 1) / 2
    assert outer_objective("change2", torch.tensor([0.0]), torch.tensor([2.0])).item() == -4.0
    with pytest.raises(ValueError, match="objective must be one of"):
        outer_objective("kl", after, before)


def test_batch_indices_cover_the_pool_once_per_pass():
    seen = [i for s in range(5) for i in batch_indices(10, 2, s, seed=0)]
    assert sorted(seen) == list(range(10))
    assert batch_indices(10, 2, 7, seed=0) == batch_indices(10, 2, 7, seed=0)
    assert batch_indices(10, 4, 0, seed=0) != batch_indices(10, 4, 0, seed=1)


def _pool():
    facts = [("Lochinvar", "castle"), ("Wales", "Welsh"), ("Oslo", "Norway"), ("Ada", "London")]
    return [
        MetaExample(f"{s} is known ; the answer is {o} , they say .",
                    f"Guess the object. \n  subject is {s} , relation is r , object is {o}", o, s)
        for s, o in facts
    ]


def test_resume_after_2_of_4_steps_gives_the_same_phi(tokenizer, tmp_path):
    kwargs = dict(meta_steps=4, meta_batch=2, checkpoint_every=1, val_every=0, outer_lr=1e-2)
    straight = make_learner(tokenizer, dtype=torch.float32, **kwargs)
    meta_train(straight.config, straight, _pool(), out_dir=tmp_path / "a", progress=False)

    first = make_learner(tokenizer, dtype=torch.float32, **kwargs)
    partial = meta_train(first.config, first, _pool(), out_dir=tmp_path / "b", stop_after=2, progress=False)
    assert partial["step"] == 2 and not partial["finished"]
    resumed = make_learner(tokenizer, dtype=torch.float32, **kwargs)  # a fresh process
    result = meta_train(resumed.config, resumed, _pool(), out_dir=tmp_path / "b", progress=False)
    assert result["step"] == 4 and result["finished"]
    a, b = trainable_tensors(straight.phi), trainable_tensors(resumed.phi)
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=0)


def test_resume_refuses_a_different_config(tokenizer, tmp_path):
    learner = make_learner(tokenizer, dtype=torch.float32, meta_steps=1, meta_batch=1, val_every=0)
    meta_train(learner.config, learner, _pool(), out_dir=tmp_path, progress=False)
    other = make_learner(tokenizer, dtype=torch.float32, meta_steps=2, meta_batch=1, val_every=0)
    with pytest.raises(ValueError, match="different config"):
        meta_train(other.config, other, _pool(), out_dir=tmp_path, progress=False)


def test_nan_loss_stops_the_run(tokenizer):
    learner = make_learner(tokenizer, dtype=torch.float32, meta_steps=1, meta_batch=1, inner_lr=float("nan"))
    with pytest.raises(FloatingPointError, match="not finite"):
        meta_train(learner.config, learner, _pool(), progress=False)


def test_toy_task_phi_learns_to_weight_the_answer(tokenizer):
    """The probe's answer appears in the document; after meta-training φ weights the
    answer tokens above the rest (they start equal).

    float64 and full-pool meta-batches make the trajectory deterministic and
    independent of thread count; a small outer step keeps Adam from overshooting.
    """
    facts = [("Lochinvar", "castle"), ("Wales", "Welsh"), ("Oslo", "Norway"),
             ("Ada", "London"), ("Paris", "France"), ("She", "jazz")]
    pool = [MetaExample(f"{s} was built in the fifteenth century ; object is {o} . It is known .",
                        f"subject is {s} , object is {o}", o, s) for s, o in facts]
    learner = make_learner(tokenizer, dtype=torch.float64, meta_steps=10, meta_batch=6, val_every=0,
                           outer_lr=3e-3, inner_lr=3e-2, inner_optimizer="adamw", untracked_steps=1)
    before = validate_weights(learner, pool)
    meta_train(learner.config, learner, pool, progress=False)
    after = validate_weights(learner, pool)
    assert abs(before["object"] - before["other"]) < 1e-3
    assert after["object"] - after["other"] > 5e-3


def validate_weights(learner, pool):
    on, off = [], []
    with torch.no_grad():
        for e in pool:
            doc, _ = learner.encode(e)
            w = learner.phi(doc.input_ids, doc.attention_mask)[0]
            on.append(w[doc.target_mask[0]].mean())
            off.append(w[~doc.target_mask[0]].mean())
    return {"object": torch.stack(on).mean().item(), "other": torch.stack(off).mean().item()}




def test_best_validated_phi_is_kept_as_its_own_run(tokenizer, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import trainattn.protocols.meta_training as mt

    # scripted validations: the NLL is lowest at step 2 of 4
    nlls = iter([5.0, 4.0, 3.0, 3.5, 4.5])

    def fake_validate(learner, examples):
        return {"phi": {"accuracy": 0.0, "nll": next(nlls)}, "uniform": {"accuracy": 0.0, "nll": 5.0},
                "weight_object": 0.5, "weight_other": 0.5}

    monkeypatch.setattr(mt, "validate", fake_validate)
    learner = make_learner(tokenizer, dtype=torch.float32, meta_steps=4, meta_batch=1, val_every=1,
                           checkpoint_every=1, outer_lr=1e-2)
    snapshots = {}
    original = mt.save_checkpoint

    def spy(folder, lrn, state):  # φ after each step, to compare with the kept one
        snapshots[state["step"]] = {n: p.detach().clone() for n, p in lrn.phi_params.items()}
        original(folder, lrn, state)

    monkeypatch.setattr(mt, "save_checkpoint", spy)
    meta_train(learner.config, learner, _pool(), val_examples=_pool()[:1], out_dir=tmp_path, progress=False)
    best = read_json(latest_checkpoint(tmp_path / "best") / "state.json")
    assert best["step"] == 2 and best["validation"]["phi"]["nll"] == 3.0
    assert best["config"] == read_json(latest_checkpoint(tmp_path) / "state.json")["config"]
    kept = load_file(phi_file(tmp_path / "best"))
    for n, t in kept.items():
        torch.testing.assert_close(t, snapshots[2][n], rtol=0, atol=0)
    assert any(not torch.equal(kept[n], snapshots[4][n]) for n in kept)  # φ moved on after step 2


def test_best_validation_prefers_lowest_nll_then_earliest():
    from trainattn.protocols.meta_training import best_validation

    vals = [{"step": s, "phi": {"nll": n}} for s, n in [(0, 5.0), (2, 3.0), (4, 3.0), (6, 4.0)]]
    assert best_validation(vals)["step"] == 2


def test_a_finished_meta_training_reads_back_without_its_optimizer(tokenizer, tmp_path, monkeypatch):
    import trainattn.protocols.meta_training as mt
    from trainattn.protocols.store import latest_checkpoint

    learner = make_learner(tokenizer, dtype=torch.float32, meta_steps=2, meta_batch=1, val_every=0,
                           checkpoint_every=1, outer_lr=1e-2)
    done = meta_train(learner.config, learner, _pool(), out_dir=tmp_path, progress=False)
    trained = {n: p.detach().clone() for n, p in learner.phi_params.items()}
    (latest_checkpoint(tmp_path) / "phi_optimizer.pt").unlink()  # a shipped record has no optimizer
    fresh = make_learner(tokenizer, dtype=torch.float32, meta_steps=2, meta_batch=1, val_every=0,
                         checkpoint_every=1, outer_lr=1e-2)
    monkeypatch.setattr(fresh, "meta_step", None)  # nothing is trained again
    again = mt.meta_train(fresh.config, fresh, _pool(), out_dir=tmp_path, progress=False)
    assert again["history"] == json.loads(json.dumps(done["history"]))
    for n, t in trained.items():
        torch.testing.assert_close(fresh.phi_params[n].detach(), t, rtol=0, atol=0)


def test_a_finished_record_that_ships_only_its_best_phi_reads_that_phi_back(tokenizer, tmp_path, monkeypatch):
    import shutil

    from safetensors.torch import load_file

    import trainattn.protocols.meta_training as mt
    from trainattn.protocols.store import latest_checkpoint

    learner = make_learner(tokenizer, dtype=torch.float32, meta_steps=2, meta_batch=1, val_every=1,
                           checkpoint_every=1, outer_lr=1e-2)
    meta_train(learner.config, learner, _pool(), val_examples=_pool()[:1], out_dir=tmp_path, progress=False)
    best = load_file(phi_file(tmp_path / "best"))
    shutil.rmtree(tmp_path / "checkpoint")  # a split's record: result.json and best/ only
    assert latest_checkpoint(tmp_path) is None
    fresh = make_learner(tokenizer, dtype=torch.float32, meta_steps=2, meta_batch=1, val_every=1,
                         checkpoint_every=1, outer_lr=1e-2)
    monkeypatch.setattr(fresh, "meta_step", None)  # nothing is trained again
    again = mt.meta_train(fresh.config, fresh, _pool(), val_examples=_pool()[:1], out_dir=tmp_path, progress=False)
    assert again["finished"]
    for n, t in best.items():
        torch.testing.assert_close(fresh.phi_params[n].detach(), t, rtol=0, atol=0)
    shutil.rmtree(tmp_path / "best")  # nothing holds φ: the exact error
    with pytest.raises(FileNotFoundError, match="result.json says finished, but no checkpoint holds φ"):
        mt.meta_train(fresh.config, fresh, _pool(), val_examples=_pool()[:1], out_dir=tmp_path, progress=False)
