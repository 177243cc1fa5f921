import math

import numpy as np
import pytest
import torch

from trainattn.core.evaluate import object_token_scores, score_probes

PROBES = [
    "Libya maintains diplomatic relations with Brazil .",
    "The official language of Wales is Welsh .",
    "Lochinvar is a castle in Scotland , built in the fifteenth century .",
    "Ada Lovelace worked as a mathematician and writer in London .",
    "no such thing here",
    "She plays the piano and the violin ; her genre is jazz .",
]
OBJECTS = ["Brazil", "Welsh", "castle", "mathematician", "Oslo", "jazz"]


def test_scores_on_handcrafted_logits():
    # seq of 4 tokens; object = tokens 2 and 3 -> predicted from logits at 1 and 2
    ids = torch.tensor([[0, 1, 2, 3]])
    object_mask = torch.tensor([[False, False, True, True]])
    logits = torch.full((1, 4, 4), -100.0, dtype=torch.float64)
    logits[0, 1, 2] = 0.0  # correct, p(2) = 1 (others ~e^-100)
    logits[0, 2, 1] = 0.0  # wrong argmax; target 3 has logit ln(1/3) relative
    logits[0, 2, 3] = math.log(1 / 3)
    acc, nll = object_token_scores(logits, ids, object_mask)
    assert acc.item() == pytest.approx(0.5)
    p3 = (1 / 3) / (1 + 1 / 3)
    assert nll.item() == pytest.approx((0.0 + -math.log(p3)) / 2, abs=1e-9)


def test_rows_without_object_are_nan_not_zero():
    logits = torch.randn(2, 3, 5)
    ids = torch.zeros(2, 3, dtype=torch.long)
    mask = torch.tensor([[False, True, False], [False, False, False]])
    acc, nll = object_token_scores(logits, ids, mask)
    assert not math.isnan(acc[0].item()) and math.isnan(acc[1].item())
    assert math.isnan(nll[1].item())


def test_not_located_rows_are_counted_and_excluded(model, tokenizer):
    scores = score_probes(model, tokenizer, PROBES, OBJECTS, batch_size=4)
    assert scores.n_not_located == 1 and not scores.located[4]
    assert np.isnan(scores.accuracy[4])
    assert scores.mean_accuracy == pytest.approx(np.mean(np.delete(scores.accuracy, 4)))


@pytest.mark.parametrize("batch_size,padding_side", [(1, "right"), (4, "left"), (6, "right"), (6, "left")])
def test_scores_do_not_depend_on_batch_size_or_padding_side(model, tokenizer, batch_size, padding_side):
    reference = score_probes(model, tokenizer, PROBES, OBJECTS, batch_size=1)
    scores = score_probes(model, tokenizer, PROBES, OBJECTS, batch_size, padding_side=padding_side)
    np.testing.assert_array_equal(scores.located, reference.located)
    np.testing.assert_allclose(scores.nll, reference.nll, rtol=1e-5)
    np.testing.assert_array_equal(scores.accuracy, reference.accuracy)


def test_a_model_that_knows_the_answer_scores_one(tokenizer):
    from trainattn.core.spans import encode_with_objects

    batch = encode_with_objects(tokenizer, PROBES[:2], OBJECTS[:2])
    logits = torch.full((*batch.input_ids.shape, len(tokenizer)), -5.0)
    logits[:, :-1].scatter_(-1, batch.input_ids[:, 1:, None], 5.0)
    acc, _ = object_token_scores(logits, batch.input_ids, batch.object_mask)
    assert acc.tolist() == [1.0, 1.0]
