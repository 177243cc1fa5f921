import dataclasses
import math

import pytest
import torch

from trainattn.config import CKLConfig, MetaConfig, PhiConfig, ThetaConfig, to_dict
from trainattn.core.inner import make_inner_optimizer
from trainattn.core.lora import add_lora, trainable_tensors
from trainattn.core.losses import per_token_nll, token_weighted_loss, uniform_weights
from trainattn.core.meta import examples_from_rows, theta_logits
from trainattn.core.spans import encode_with_objects
from trainattn.core.train_attention import TrainAttention
from trainattn.protocols.store import phi_file
from trainattn.report.figures import plot_ablations
from trainattn.report.tables import markdown_table
from trainattn.studies import ablations
from trainattn.studies.ablations import (
    TABLE_COLUMNS,
    TABLE_FORMATS,
    _distance,
    ablation_variants,
    match_sgd_lr,
    meta_owner,
    run_reference,
    run_variant,
    variant_configs,
)
from trainattn.testing import tiny_llama


def row(uuid, evidence, obj, probe):
    return {"uuid": uuid, "object": obj, "evidence": evidence, "task_descriptive": probe,
            "task_schematic": f"Guess the object. \n  subject is s , relation is r , object is {obj}"}


POOL = [
    row("m1", "Libya maintains diplomatic relations with Brazil and trades with it .", "Brazil",
        "Libya maintains diplomatic relations with Brazil ."),
    row("m2", "Ada Lovelace worked as a mathematician and writer in London .", "mathematician",
        "Ada Lovelace is a mathematician ."),
    row("m3", "The company was founded in 1998 ; its headquarters are in Oslo .", "Oslo",
        "The company has its headquarters in Oslo ."),
    row("m4", "She plays the piano and the violin ; her genre is jazz .", "jazz", "Her genre is jazz ."),
]
TO_LEARN = [row("t1", "Lochinvar is a castle in Scotland , built in the fifteenth century .", "castle",
                "Lochinvar is a castle ."),
            row("t2", "The official language of Wales is Welsh .", "Welsh", "Wales speaks Welsh .")]
NOT_TO_FORGET = [row("n1", "Paris is the capital of France .", "France", "Paris is the capital of France .")]


def base_configs(**meta):
    theta = ThetaConfig(model="tiny", lora_rank=2, lora_alpha=4, max_length=40)
    base_meta = MetaConfig(theta=theta, phi=PhiConfig(model="tiny", num_layers=2, lora_rank=2, lora_alpha=4),
                           inner_lr=1e-2, meta_batch=2, meta_steps=1, val_epochs=1, val_batch=2,
                           checkpoint_every=1, **meta)
    base_ckl = CKLConfig(theta=theta, method="taalm", epochs=1, batch_size=2, lr=1e-2, eval_batch_size=4,
                         val_fraction=0.5)
    return base_meta, base_ckl


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ------------------------------------------------------------- the variant table


def test_each_variant_differs_from_the_base_only_in_its_overrides():
    base_meta, base_ckl = base_configs()
    variants = ablation_variants(phi_layers_alt=1, sgd_inner_lr=0.3)
    assert next(iter(variants)) == "base"
    for name, v in variants.items():
        meta, ckl = variant_configs(name, base_meta, base_ckl, variants)
        meta_diff = {k for k, x in flat(to_dict(meta)).items() if flat(to_dict(base_meta))[k] != x}
        ckl_diff = {k for k, x in flat(to_dict(ckl)).items() if flat(to_dict(base_ckl))[k] != x}
        expected_meta = {k for k, x in v.meta.items() if getattr(base_meta, k) != x}
        expected_meta |= {f"phi.{k}" for k, x in v.phi.items() if getattr(base_meta.phi, k) != x}
        assert meta_diff == expected_meta, name
        assert ckl_diff == {k for k, x in v.ckl.items() if getattr(base_ckl, k) != x}, name
        assert (meta_diff or ckl_diff) or name == "base", f"{name} changes nothing"
    assert variant_configs("sgd", base_meta, base_ckl, variants)[0].inner_lr == 0.3
    assert variant_configs("phi_depth", base_meta, base_ckl, variants)[0].phi.num_layers == 1


def test_unknown_variant_and_unknown_field_give_clear_errors():
    base_meta, base_ckl = base_configs()
    with pytest.raises(ValueError, match=r"unknown ablation variant 'dummy_loop'; known: base, untracked_0"):
        variant_configs("dummy_loop", base_meta, base_ckl)
    bad = {"base": ablations.Variant("typo", meta={"untracked_step": 2})}
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['untracked_step'\] of MetaConfig"):
        variant_configs("base", base_meta, base_ckl, bad)


def test_only_theta_training_variants_share_the_base_phi():
    base_meta, base_ckl = base_configs()
    variants = ablation_variants(phi_layers_alt=1)
    owners = {n: meta_owner(n, base_meta, base_ckl, variants) for n in variants}
    assert owners["known_masking"] == "base"
    assert all(owner == name for name, owner in owners.items() if name != "known_masking")
    # a "φ depth" equal to the base's is the base: it would not train a second, identical φ
    same = ablation_variants(phi_layers_alt=base_meta.phi.num_layers)
    assert meta_owner("phi_depth", base_meta, base_ckl, same) == "base"


# ------------------------------------------------------------- SGD step size


def test_matched_sgd_step_moves_theta_as_far_as_the_first_adamw_step(tokenizer):
    theta = add_lora(tiny_llama(len(tokenizer), seed=0), rank=2, alpha=4, seed=0)
    examples = examples_from_rows(POOL[:1])
    lr = match_sgd_lr(theta, tokenizer, examples, adamw_lr=1e-3, max_length=40)
    assert lr > 0 and float(f"{lr:.2g}") == lr  # rounded to 2 significant digits
    # the two steps' sizes agree up to that rounding
    params = {n: p.detach().requires_grad_(True) for n, p in trainable_tensors(theta).items()}
    doc = encode_with_objects(tokenizer, [examples[0].document], [examples[0].object], 40)
    loss = token_weighted_loss(per_token_nll(theta_logits(theta, params, doc), doc.input_ids),
                               uniform_weights(doc.attention_mask), doc.attention_mask)
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
    sizes = []
    for name, step in (("adamw", 1e-3), ("sgd", lr)):
        opt = make_inner_optimizer(name, step)
        new, _ = opt.step(params, grads, opt.init(params))
        sizes.append(_distance({n: t.detach() for n, t in new.items()}, params))
    assert sizes[1] == pytest.approx(sizes[0], rel=0.06)


# ------------------------------------------------------------- running a variant


class Factories:
    """Tiny θ and φ builders that count their calls."""

    def __init__(self, tokenizer):
        self.tokenizer, self.theta_calls, self.phi_calls = tokenizer, 0, 0

    def theta(self):
        self.theta_calls += 1
        return tiny_llama(len(self.tokenizer), seed=0)

    def phi(self, cfg: PhiConfig, seed: int):
        self.phi_calls += 1
        return TrainAttention(tiny_llama(len(self.tokenizer), seed=1), cfg.num_layers, cfg.lora_rank,
                              cfg.lora_alpha, seed=seed)


def run(name, tokenizer, run_dir, factories, base=None, variants=None):
    base_meta, base_ckl = base or base_configs()
    pool = examples_from_rows(POOL)
    return run_variant(name, base_meta, base_ckl, run_dir=run_dir, tokenizer=tokenizer,
                       load_theta=factories.theta, make_phi=factories.phi, train=pool[:2], val=pool[2:],
                       to_learn=TO_LEARN, not_to_forget=NOT_TO_FORGET, variants=variants)


def test_a_finished_variant_is_loaded_not_recomputed(tokenizer, tmp_path):
    f = Factories(tokenizer)
    first = run("base", tokenizer, tmp_path, f)
    assert (f.theta_calls, f.phi_calls) == (2, 1)  # θ for meta-training and for CKL; one φ
    for key in ablations.ROW_KEYS:
        assert key in first
    numbers = [first[k] for k in ablations.ROW_KEYS if first[k] is not None]
    assert all(math.isfinite(x) for x in numbers)
    assert first["meta_steps"] == 1 and first["phi_from"] == "base"
    assert 0 < first["weight_object"] < 1 and 0 < first["weight_other"] < 1
    assert phi_file(tmp_path / "base" / "meta").is_file()
    assert (tmp_path / "base" / "ckl" / "result.json").is_file()
    again = run("base", tokenizer, tmp_path, f)
    assert again == first
    assert (f.theta_calls, f.phi_calls) == (2, 1)  # nothing was built again


def test_known_masking_reuses_the_base_phi_and_changes_only_theta_training(tokenizer, tmp_path):
    f = Factories(tokenizer)
    base = run("base", tokenizer, tmp_path, f)
    masked = run("known_masking", tokenizer, tmp_path, f)
    assert masked["phi_from"] == "base" and not (tmp_path / "known_masking" / "meta").exists()
    # the same φ (its meta-training was resumed as finished, not repeated) ...
    for key in ("meta_seconds", "phi_grad_norm", "outer_loss_first", "weight_object", "weight_other"):
        assert masked[key] == base[key], key
    # ... and its own CKL run
    assert (tmp_path / "known_masking" / "ckl" / "result.json").is_file()


def test_a_changed_setting_is_refused_rather_than_mixed(tokenizer, tmp_path):
    f = Factories(tokenizer)
    run("base", tokenizer, tmp_path, f)
    base_meta, base_ckl = base_configs()
    with pytest.raises(ValueError, match="written by a run with a different"):
        run("base", tokenizer, tmp_path, f, base=(base_meta, dataclasses.replace(base_ckl, lr=0.5)))


def test_untracked_0_gives_almost_no_meta_gradient_when_gradients_are_far_above_eps(tokenizer, tmp_path):
    """A fresh AdamW step is ~lr·sign(g): d(step)/dg = lr·eps/(|g| + eps)² ≈ 0 for |g| >> eps.

    True for the tiny model; a real model's LoRA has weights with |g| near eps, for which this
    derivative is large (chapter 06 reports what happens there).
    """
    f = Factories(tokenizer)
    norms = {n: run(n, tokenizer, tmp_path, f)["phi_grad_norm"] for n in ("base", "untracked_0")}
    assert norms["untracked_0"] < 0.05 * norms["base"], norms


def test_reference_run_table_and_figure(tokenizer, tmp_path):
    f = Factories(tokenizer)
    base_meta, base_ckl = base_configs()
    ref = run_reference("finetune", base_ckl, run_dir=tmp_path, tokenizer=tokenizer, load_theta=f.theta,
                        to_learn=TO_LEARN, not_to_forget=NOT_TO_FORGET)
    assert ref["variant"] == "finetune" and 0 <= ref["top_acc"] <= 1
    assert run_reference("finetune", base_ckl, run_dir=tmp_path, tokenizer=tokenizer, load_theta=None,
                         to_learn=TO_LEARN, not_to_forget=NOT_TO_FORGET) == ref
    rows = [run("base", tokenizer, tmp_path, f)]
    table = markdown_table(TABLE_COLUMNS, rows, TABLE_FORMATS).splitlines()
    assert table[0].startswith("| variant |") and table[2].startswith("| base |")
    assert len(table[0].split("|")) == len(table[2].split("|"))
    path = plot_ablations(rows, tmp_path / "fig.png", reference=ref)
    assert path.stat().st_size > 1000


def test_ckl_numbers_carry_intervals_over_facts_when_the_run_kept_per_fact_scores():
    from trainattn.core.intervals import RunFacts, bootstrap
    from trainattn.studies.ablations import ckl_numbers

    per_fact = {"to_learn": [[0, 0, 0, 0], [1, 0, 1, 0]], "not_to_forget": [[1, 1], [1, 0]]}
    result = {"metrics": {"test_chosen": {"top_acc": 0.5, "epoch": 1, "nf_acc": 0.5, "total_knowledge": 1.0}},
              "timings": [{"train_s": 1.0, "eval_s": 2.0}],
              "curves": {"to_learn": {"acc": [0.0, 0.5]}, "not_to_forget": {"acc": [1.0, 0.5]}, "per_fact": per_fact}}
    row = ckl_numbers(result)
    expected = bootstrap([RunFacts.from_result(result)])
    assert row["top_acc_ci95"] == expected["top_acc_ci95"] and row["nf_acc_ci95"] == expected["nf_acc_ci95"]
    assert row["top_acc_ci95"][0] <= 0.5 <= row["top_acc_ci95"][1] and row["ckl_seconds"] == 3.0
    del result["curves"]["per_fact"]
    assert ckl_numbers(result)["top_acc_ci95"] is None


def test_a_tuned_ckl_run_chooses_its_learning_rate_on_validation(monkeypatch, tmp_path):
    import trainattn.studies.ablations as ab
    from trainattn.config import CKLConfig

    val = {3e-4: (0.2, 5.0), 1e-3: (0.4, 6.0), 3e-3: (0.4, 4.0)}  # 3e-3: as accurate as 1e-3, lower NLL
    made = []

    def fake_run(config, theta, tokenizer, to_learn, not_to_forget, method, out_dir=None, **kw):
        made.append((config.lr, out_dir, method))
        acc, nll = val[config.lr]
        return {"config": {"lr": config.lr}, "epochs_trained": 2,
                "curves": {"val": {"acc": [0.0, acc], "nll": [9.0, nll]}},
                "metrics": {"val_chosen": {"epoch": 1}}}

    monkeypatch.setattr(ab, "run_lama_ckl", fake_run)
    cfg = CKLConfig()
    result = ab.tuned_ckl_run(cfg, lambda: "finetune", lambda: None, None, [], [], tmp_path, [3e-4, 1e-3, 3e-3])
    assert [m[0] for m in made] == [3e-4, 1e-3, 3e-3] and made[2][1] == tmp_path / "lr-0.003"
    assert result["lr_choice"]["chosen"] == 3e-3 and result["config"]["lr"] == 3e-3
    assert [c["val_nll"] for c in result["lr_choice"]["candidates"]] == [5.0, 6.0, 4.0]
    assert ab._lr_keys(result) == {"lr": 3e-3, "lr_choice": result["lr_choice"]}
    made.clear()
    plain = ab.tuned_ckl_run(cfg, lambda: "finetune", lambda: None, None, [], [], tmp_path, None)
    assert made == [(1e-3, tmp_path, "finetune")] and "lr_choice" not in plain and ab._lr_keys(plain) == {}
