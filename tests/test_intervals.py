"""Tests of trainattn.core.intervals: bootstrap intervals over facts and seeds, and "level"."""

import numpy as np
import pytest

from trainattn.core.intervals import RunFacts, bootstrap, compare, run_metrics


def facts(learn_by_epoch, nf_by_epoch, **kw):
    return RunFacts(np.array(learn_by_epoch, dtype=float), np.array(nf_by_epoch, dtype=float), **kw)


def test_run_metrics_by_hand():
    run = facts([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]][:3] + [[0, 1, 0, 0]],
                [[1, 1], [1, 0], [0, 0], [1, 1]])
    # TO-LEARN means per epoch: 0, .25, .5, .25 -> best epoch 2, where NF is 0
    assert run_metrics(run, np.arange(4), np.arange(2)) == (0.5, 0.0, 0.5)
    # resampled columns: facts 0, 0, 1 -> means 0, 2/3, 1, 1/3 -> epoch 2; NF column 0 twice -> 0
    assert run_metrics(run, np.array([0, 0, 1]), np.array([0, 0])) == (1.0, 0.0, 1.0)
    fixed = facts(run.to_learn, run.not_to_forget, chosen_epoch=1, facts=np.array([0, 1]))
    assert run_metrics(fixed, np.array([0, 1]), np.arange(2)) == (0.5, 0.5, 1.0)


def test_identical_facts_give_a_point_interval_and_noise_gives_a_wide_one():
    same = facts([[0] * 50, [1] * 50], [[1] * 50, [1] * 50])
    b = bootstrap([same], n_boot=200)
    assert b["top_acc"] == 1.0 and b["top_acc_ci95"] == [1.0, 1.0] and b["total_knowledge_ci95"] == [2.0, 2.0]
    rng = np.random.default_rng(0)
    half = facts([[0] * 100, rng.integers(0, 2, 100)], [[1] * 100, [1] * 100])
    lo, hi = bootstrap([half], n_boot=500)["top_acc_ci95"]
    assert lo < half.to_learn[1].mean() < hi and 0.12 < hi - lo < 0.28  # ≈ ±1.96·sqrt(.25/100)


def test_seeds_are_resampled_too():
    a = facts([[0] * 40, [1] * 20 + [0] * 20], [[1] * 40] * 2)
    b = facts([[0] * 40, [0] * 40], [[1] * 40] * 2)
    one = bootstrap([a], n_boot=300)
    both = bootstrap([a, b], n_boot=300)
    assert both["top_acc"] == pytest.approx(0.25)
    assert both["top_acc_ci95"][0] < 0.1 and both["top_acc_ci95"][1] > 0.4  # seed spread dominates
    assert one["top_acc_ci95"][1] - one["top_acc_ci95"][0] < both["top_acc_ci95"][1] - both["top_acc_ci95"][0]
    assert bootstrap([a, b], n_boot=300) == both  # seeded


def test_bootstrap_refuses_runs_on_different_facts():
    with pytest.raises(ValueError, match="different numbers of facts"):
        bootstrap([facts([[0, 1]], [[1]]), facts([[0, 1, 1]], [[1]])])


def test_seeds_with_their_own_validation_slices_each_count_the_facts_outside_theirs():
    per_fact = [[0, 0, 0, 0], [1, 1, 0, 0]]  # epoch 1: facts 0 and 1 learned, 2 and 3 not
    a = facts(per_fact, [[1], [1]], chosen_epoch=1, facts=np.array([0, 1]))  # slice {2, 3}
    b = facts(per_fact, [[1], [1]], chosen_epoch=1, facts=np.array([2, 3]))  # slice {0, 1}
    out = bootstrap([a, b], n_boot=400)
    assert out["top_acc"] == 0.5  # a: 1.0 on its facts, b: 0.0 on its own
    # every draw keeps a at 1 and b at 0, so only the seed draw moves it: AA, AB/BA or BB
    assert out["top_acc_ci95"] == [0.0, 1.0] and out["nf_acc_ci95"] == [1.0, 1.0]
    shared = bootstrap([a, facts(per_fact, [[1], [1]], chosen_epoch=1, facts=np.array([0, 1]))], n_boot=50)
    assert shared["top_acc"] == 1.0 and shared["top_acc_ci95"] == [1.0, 1.0]


def test_from_result_reads_both_readings():
    result = {"curves": {"to_learn": {"acc": [0, 0.5]}, "per_fact": {"to_learn": [[0, 0, 0, 0], [1, 0, 1, None]],
                                                                     "not_to_forget": [[1, 1], [1, 0]]}},
              "val_indices": [1], "metrics": {"val_chosen": {"epoch": 1}}}
    test = RunFacts.from_result(result)
    assert test.to_learn.shape == (2, 4) and np.isnan(test.to_learn[1, 3]) and test.chosen_epoch is None
    val = RunFacts.from_result(result, "val")
    assert val.chosen_epoch == 1 and val.facts.tolist() == [0, 2, 3]
    assert run_metrics(val, val.facts, np.arange(2)) == (1.0, 0.5, 1.5)  # NaN fact ignored
    assert RunFacts.from_result({"curves": {"to_learn": {"acc": [0]}}}) is None  # written before per-fact scores


def test_compare_says_level_unless_intervals_separate():
    assert compare([0.3, 0.4], [0.1, 0.2]) == "above"
    assert compare([0.1, 0.2], [0.3, 0.4]) == "below"
    assert compare([0.1, 0.3], [0.3, 0.4]) == "level"  # touching
    assert compare([0.1, 0.5], [0.2, 0.3]) == "level"
    assert compare(None, [0.2, 0.3]) == "level"


def test_mean_interval_resamples_each_sample_and_leaves_out_missing_items():
    from trainattn.core.intervals import mean_interval

    assert mean_interval([[2.0, 2.0, None, 2.0]]) == [2.0, 2.0]  # no spread, None ignored
    assert mean_interval([[1.0], []]) is None and mean_interval([]) is None
    rng = np.random.default_rng(0)
    a, b = rng.normal(5.0, 1.0, 400), rng.normal(7.0, 1.0, 400)
    lo, hi = mean_interval([a, b])
    assert lo < (a.mean() + b.mean()) / 2 < hi
    # the half-width of a mean of two independent means: 1.96 * sqrt(var_a/n + var_b/n) / 2
    expected = 1.96 * np.sqrt(a.var() / 400 + b.var() / 400) / 2
    assert (hi - lo) / 2 == pytest.approx(expected, rel=0.15)
    assert mean_interval([a]) != mean_interval([a], seed=1)  # seeded draws
