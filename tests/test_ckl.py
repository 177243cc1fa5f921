import json
import math

import pytest
import torch

import trainattn.protocols.lama_ckl as ckl
from trainattn.config import CKLConfig, ThetaConfig
from trainattn.core.lora import trainable_tensors
from trainattn.errors import NonFiniteLossError
from trainattn.methods import Method, make_method
from trainattn.protocols.lama_ckl import (
    ckl_metrics,
    epoch_order,
    run_lama_ckl,
    run_metrics,
    val_chosen_metrics,
    validation_indices,
)
from trainattn.testing import tiny_llama


def lama_row(uuid, evidence, obj, probe, invariant=False):
    return {
        "uuid": uuid, "subject": "s", "object": obj, "relation_code": "P1", "relation_label": "r",
        "task_descriptive": probe, "task_schematic": f"subject is s , object is {obj}",
        "evidence": evidence, "invariant": invariant,
    }


TO_LEARN = [
    lama_row("a", "Libya maintains diplomatic relations with Brazil and trades with it .", "Brazil",
             "Libya maintains diplomatic relations with Brazil ."),
    lama_row("b", "Ada Lovelace worked as a mathematician and writer in London .", "mathematician",
             "Ada Lovelace is a mathematician ."),
    lama_row("c", "The company was founded in 1998 ; its headquarters are in Oslo .", "Oslo",
             "The company has its headquarters in Oslo ."),
    lama_row("d", "She plays the piano and the violin ; her genre is jazz .", "jazz", "Her genre is jazz ."),
]
NOT_TO_FORGET = [
    lama_row("e", "The official language of Wales is Welsh .", "Welsh",
             "The official language of Wales is Welsh .", True),
    lama_row("f", "Lochinvar is a castle in Scotland .", "Scotland", "Lochinvar is in Scotland .", True),
]
REVIEW = [
    lama_row("g", "Paris is the capital of France .", "France", "Paris is the capital of France .", True),
    lama_row("h", "Lochinvar was built in the fifteenth century .", "century", "It is old .", True),
]


def config(method="finetune", epochs=2, **kw):
    theta = ThetaConfig(model="tiny", lora_rank=4, lora_alpha=8, lora_dropout=kw.pop("lora_dropout", 0.0),
                        max_length=32)
    settings = {"batch_size": 2, "lr": 1e-2, "eval_batch_size": 8, "val_fraction": 0.5, **kw}
    return CKLConfig(theta=theta, method=method, epochs=epochs, **settings)


def run(tokenizer, cfg, out_dir=None, method=None, **kw):
    model = tiny_llama(len(tokenizer), seed=0)
    result = run_lama_ckl(cfg, model, tokenizer, TO_LEARN, NOT_TO_FORGET, method or cfg.method,
                          out_dir=out_dir, review_rows=REVIEW, progress=False, **kw)
    return result, model


# ------------------------------------------------------------- metrics


def test_metrics_on_a_handcrafted_curve():
    learn = [0.0, 0.3, 0.5, 0.5, 0.4]
    nf = [1.0, 0.9, 0.8, 0.7, 0.6]
    m = ckl_metrics(learn, nf)
    assert m == {"top_acc": 0.5, "epoch": 2, "nf_acc": 0.8, "total_knowledge": pytest.approx(1.3)}
    assert ckl_metrics([None, 0.2, None], [1.0, 0.5, None])["epoch"] == 1
    assert ckl_metrics([None, None], [1.0, 1.0])["top_acc"] is None


def test_validation_chosen_epoch_uses_the_validation_curve():
    curves = {
        "to_learn": {"acc": [0.0, 0.2, 0.6, 0.4]},
        "not_to_forget": {"acc": [1.0, 0.9, 0.5, 0.7]},
        "val": {"acc": [0.0, 0.5, 0.3, 0.5], "nll": [9.0, 7.0, 6.0, 7.0]},  # first best at epoch 1
        "to_learn_rest": {"acc": [0.0, 0.1, 0.7, 0.3]},
    }
    m = val_chosen_metrics(curves)
    assert m["epoch"] == 1 and m["to_learn_acc"] == 0.2 and m["nf_acc"] == 0.9
    assert m["to_learn_rest_acc"] == 0.1 and m["total_knowledge"] == pytest.approx(1.1)
    assert ckl_metrics(curves["to_learn"]["acc"], curves["not_to_forget"]["acc"])["epoch"] == 2
    assert val_chosen_metrics({**curves, "val": {"acc": [None] * 4, "nll": [None] * 4}}) is None


def test_validation_chosen_epoch_breaks_accuracy_ties_by_nll_like_early_stopping():
    # Accuracy ties at epochs 1 and 3; the NLL is lower at 3, so early stopping counts from 3
    # and the reported epoch must be 3 as well (the old rule took the first accuracy maximum).
    curves = {
        "to_learn": {"acc": [0.0, 0.2, 0.6, 0.4, 0.4]},
        "not_to_forget": {"acc": [1.0, 0.9, 0.5, 0.7, 0.6]},
        "val": {"acc": [0.0, 0.5, 0.3, 0.5, 0.4], "nll": [9.0, 7.0, 6.0, 6.5, 6.4]},
        "to_learn_rest": {"acc": [0.0, 0.1, 0.7, 0.3, 0.2]},
    }
    assert val_chosen_metrics(curves)["epoch"] == 3
    assert ckl.epochs_without_improvement(curves) == 1
    assert run_metrics(curves)["val_chosen"] == val_chosen_metrics(curves)


def test_seeded_orders():
    assert epoch_order(10, 0, 1) == epoch_order(10, 0, 1) != epoch_order(10, 0, 2)
    assert sorted(epoch_order(10, 0, 3)) == list(range(10))
    val = validation_indices(10, 0.2, 0)
    assert len(val) == 2 and val == validation_indices(10, 0.2, 0)
    assert validation_indices(10, 0.0, 0) == [] and len(validation_indices(3, 0.01, 0)) == 1


# ------------------------------------------------------------- the loop


def test_run_writes_a_complete_result(tokenizer, tmp_path, monkeypatch):
    cfg = config("finetune+mixreview", method_settings={"mixreview": {"pool": "paper"}})
    result, _ = run(tokenizer, cfg, tmp_path)
    monkeypatch.setattr(ckl, "train_epoch", None)  # a finished run is not trained again
    monkeypatch.setattr(ckl, "versions", lambda: {"hardware": "another machine"})
    again, _ = run(tokenizer, cfg, tmp_path)
    assert again == result  # versions included: they name the machine that trained it
    saved = json.loads((tmp_path / "result.json").read_text())
    identity = saved.pop("identity")  # the run store's: config, method and the data's fingerprint
    assert identity["method"] == "finetune+mixreview" and identity["config"]["lr"] == saved["config"]["lr"]
    assert identity["config"]["method_settings"]["mixreview"]["pool"] == "paper"  # resolved settings
    assert saved == json.loads(json.dumps(result))
    assert saved["method"] == "finetune+mixreview" and saved["labels"] == {"review_pool": "paper", "review_pool_size": 2}
    assert {"torch", "transformers", "trainattn"} <= set(saved["versions"])
    assert saved["config"]["method"] == "finetune+mixreview" and saved["seed"] == 0
    for name in ("to_learn", "not_to_forget", "val", "to_learn_rest"):
        assert len(saved["curves"][name]["acc"]) == len(saved["curves"][name]["nll"]) == 3
    assert saved["curves"]["train_loss"][0] is None and len(saved["timings"]) == 3
    assert saved["sizes"] == {"to_learn": 4, "not_to_forget": 2, "val": 2, "updates": 4}
    curves = saved["curves"]
    assert saved["metrics"]["test_chosen"] == ckl_metrics(curves["to_learn"]["acc"], curves["not_to_forget"]["acc"])
    assert saved["metrics"] == run_metrics(curves)
    assert saved["provenance"]["date"].endswith("+00:00") and "hardware" in saved["provenance"]


def test_mixreview_batches_have_the_stated_ratio(tokenizer, monkeypatch):
    seen = []
    original = ckl.train_step

    def spy(theta, method, optimizer, batch, step, backward=None):
        seen.append((batch.n_to_learn, [r["uuid"] for r in batch.rows[batch.n_to_learn:]]))
        return original(theta, method, optimizer, batch, step, backward)

    monkeypatch.setattr(ckl, "train_step", spy)
    run(tokenizer, config("finetune+mixreview", epochs=2, method_settings={"mixreview": {"ratio": 1.0, "decay": 0.5}}))
    assert [(n, len(r)) for n, r in seen] == [(2, 2), (2, 2), (2, 1), (2, 1)]
    assert all(u in {"g", "h"} for _, uuids in seen for u in uuids)  # never a test fact


@pytest.mark.parametrize("method,dropout", [("rho1+mixreview+recadam", 0.1), ("oracle+kadapter", 0.0)])
def test_resume_reproduces_the_uninterrupted_run(tokenizer, tmp_path, monkeypatch, method, dropout):
    cfg = config(method, epochs=2, lora_dropout=dropout)
    straight, straight_model = run(tokenizer, cfg, tmp_path / "straight")

    original = ckl.train_epoch

    def crash_in_epoch_2(*args, **kwargs):
        if args[6] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(ckl, "train_epoch", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(tokenizer, cfg, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "checkpoint" / "latest").read_text() == "epoch-0001"
    trained = []

    def record(*args, **kwargs):
        trained.append(args[6])
        return original(*args, **kwargs)

    monkeypatch.setattr(ckl, "train_epoch", record)
    resumed, resumed_model = run(tokenizer, cfg, tmp_path / "resumed")
    assert trained == [2]  # continued from the checkpoint, not from scratch

    assert resumed["curves"] == straight["curves"]
    a, b = trainable_tensors(straight_model), trainable_tensors(resumed_model)
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def test_resume_refuses_a_different_config(tokenizer, tmp_path):
    run(tokenizer, config(epochs=1), tmp_path)
    with pytest.raises(ValueError, match="different config"):
        run(tokenizer, config(epochs=1, lr=5e-3), tmp_path)


def test_method_must_match_config(tokenizer):
    with pytest.raises(ValueError, match="config.method"):
        run(tokenizer, config("finetune"), method=make_method("oracle"))


class _NaNPenalty(Method):
    name = "finetune"
    weighting = True

    def extra_loss(self, theta, step):
        return torch.tensor(math.nan)


def test_non_finite_loss_stops_with_a_clear_message(tokenizer, tmp_path):
    with pytest.raises(NonFiniteLossError, match="step 1"):
        run(tokenizer, config(), tmp_path, method=_NaNPenalty())
    assert (tmp_path / "checkpoint" / "latest").read_text() == "epoch-0000"


def test_oracle_learns_the_objects_faster_than_finetuning(tokenizer):
    # Deterministic on CPU (fixed seeds and data). The oracle spends every
    # update on the object tokens; uniform fine-tuning spreads it over the
    # whole document, so the oracle's probe NLL falls further and its accuracy
    # rises first (here: 0.23 vs 0 top accuracy, min NLL 5.54 vs 5.66).
    oracle, _ = run(tokenizer, config("oracle", epochs=4, lr=3e-2, batch_size=4))
    finetune, _ = run(tokenizer, config("finetune", epochs=4, lr=3e-2, batch_size=4))
    o, f = oracle["curves"]["to_learn"], finetune["curves"]["to_learn"]
    assert o["nll"][0] == pytest.approx(f["nll"][0])
    assert min(o["nll"]) < min(f["nll"]) - 0.05
    assert oracle["metrics"]["test_chosen"]["top_acc"] > finetune["metrics"]["test_chosen"]["top_acc"]


# ------------------------------------------------------------- early stopping and per-fact scores


def test_epochs_without_improvement_uses_accuracy_then_nll():
    def curves(acc, nll):
        return {"val": {"acc": acc, "nll": nll}}

    assert ckl.epochs_without_improvement(curves([0.0, 0.5, 0.5, 0.5], [3.0, 2.0, 1.0, 1.5])) == 1  # NLL breaks ties
    assert ckl.epochs_without_improvement(curves([0.0, 0.5, 0.2, 0.5], [3.0, 2.0, 1.0, 2.0])) == 2  # equal: not better
    assert ckl.epochs_without_improvement(curves([0.0, 0.0, 0.0], [3.0, 2.5, 2.0])) == 0  # slow learner improving
    assert ckl.should_stop(curves([0.1, 0.5, 0.2, 0.3, 0.4], [1.0] * 5), 3)
    assert not ckl.should_stop(curves([0.1, 0.5, 0.2, 0.3], [1.0] * 4), 3)
    assert not ckl.should_stop(curves([0.1, 0.0, 0.0, 0.0, 0.0], [1.0] * 5), None)


def test_early_stopping_ends_the_run_and_keeps_per_fact_scores(tokenizer, monkeypatch):
    scored = []
    real = ckl.evaluate_theta

    def flat_validation(*args, **kw):  # the validation slice never improves after epoch 0
        out = real(*args, **kw)
        out["val"] = {"acc": 0.0, "nll": 5.0}
        scored.append(1)
        return out

    monkeypatch.setattr(ckl, "evaluate_theta", flat_validation)
    result, _ = run(tokenizer, config(epochs=6, patience=2))
    assert result["epochs_trained"] == 2 and result["stopped_early"] and len(scored) == 3
    per_fact = result["curves"]["per_fact"]
    assert len(per_fact["to_learn"]) == 3 and all(len(row) == len(TO_LEARN) for row in per_fact["to_learn"])
    assert len(per_fact["not_to_forget"][0]) == len(NOT_TO_FORGET)
    for epoch, row in enumerate(per_fact["to_learn"]):  # the curve is the mean of the per-fact scores
        assert result["curves"]["to_learn"]["acc"][epoch] == pytest.approx(sum(row) / len(row))
