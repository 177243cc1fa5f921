import pytest
import torch
import torch.nn.functional as F

from trainattn.core.losses import (
    check_finite,
    known_token_mask,
    mask_known_tokens,
    oracle_weights,
    per_token_nll,
    token_weighted_loss,
    uniform_weights,
)
from trainattn.core.spans import encode_with_objects
from trainattn.errors import NonFiniteLossError


def test_per_token_nll_matches_cross_entropy():
    logits = torch.randn(2, 5, 7, dtype=torch.float64)
    ids = torch.randint(0, 7, (2, 5))
    nll = per_token_nll(logits, ids)
    assert nll.shape == (2, 4)
    expected = -torch.log_softmax(logits, -1)[0, 2, ids[0, 3]]
    torch.testing.assert_close(nll[0, 2], expected)


def test_uniform_twl_equals_per_sequence_mean_cross_entropy():
    logits = torch.randn(3, 6, 11, dtype=torch.float64)
    ids = torch.randint(0, 11, (3, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    loss = token_weighted_loss(per_token_nll(logits, ids), uniform_weights(mask).double(), mask)
    per_seq = []
    for i in range(3):
        n = int(mask[i].sum())
        per_seq.append(F.cross_entropy(logits[i, : n - 1], ids[i, 1:n]))
    torch.testing.assert_close(loss, torch.stack(per_seq).mean(), rtol=0, atol=1e-14)


def test_twl_only_relative_weights_matter_and_zero_rows_give_zero():
    nll = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.ones(2, 4, dtype=torch.long)
    w = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    # row 0: (1 + 3) / 2 = 2, row 1: no weight -> 0; mean = 1
    assert token_weighted_loss(nll, w, mask).item() == pytest.approx(1.0)
    assert token_weighted_loss(nll, 5 * w, mask).item() == pytest.approx(1.0)


def test_twl_rejects_misaligned_weights():
    with pytest.raises(ValueError, match=r"expected \(2, 3\)"):
        token_weighted_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 4))


def test_known_token_masking_zeroes_tokens_already_predicted():
    vocab = 5
    ids = torch.tensor([[0, 1, 2, 3]])
    logits = torch.zeros(1, 4, vocab)
    logits[0, 0, 1] = 9.0  # predicts ids[1] = 1: known
    logits[0, 1, 4] = 9.0  # predicts 4, target 2: unknown
    logits[0, 2, 3] = 9.0  # predicts ids[3] = 3: known
    known = known_token_mask(logits, ids)
    assert known.tolist() == [[True, False, True]]
    assert mask_known_tokens(torch.full((1, 3), 0.5), known).tolist() == [[0.0, 0.5, 0.0]]


def test_oracle_weights_cover_exactly_the_object_tokens(tokenizer):
    doc = "Lochinvar is a castle in Scotland , built in the fifteenth century ."
    batch = encode_with_objects(tokenizer, [doc, doc], ["castle", "Scotland"], padding_side="left")
    w = oracle_weights(batch.object_mask)
    assert w.shape == (2, batch.input_ids.shape[1] - 1)
    for i, obj in enumerate(["castle", "Scotland"]):
        targets = batch.input_ids[i, 1:][w[i] == 1]
        assert tokenizer.decode(targets).strip() == obj
        assert int(w[i].sum()) == int(batch.object_mask[i].sum())


def test_nan_loss_stops_with_a_message():
    with pytest.raises(NonFiniteLossError, match="meta-step 3: loss is \\[nan\\]"):
        check_finite(torch.tensor(float("nan")), "meta-step 3")
