import pytest
import torch

from trainattn.report.figures import token_weight_html
from trainattn.studies.token_stats import pooled_token_stats, token_view

DOCS = ["Lochinvar is a castle in Scotland , built in the fifteenth century .",
        "The official language of Wales is Welsh .",
        "no object in this one"]
OBJECTS = ["castle", "Welsh", "Oslo"]


def test_pooled_stats_equal_the_per_document_views(model, tokenizer):
    views = [token_view(model, tokenizer, d, o) for d, o in zip(DOCS, OBJECTS, strict=True)]
    assert [v.located for v in views] == [True, True, False]
    used = [v for v in views if v.located]
    nll = torch.cat([v.nll for v in used])
    obj = torch.cat([v.on_object for v in used])
    known = torch.cat([v.known for v in used])
    stats = pooled_token_stats(model, tokenizer, DOCS, OBJECTS, batch_size=2)
    assert stats["n_documents"] == 3 and stats["n_located"] == 2 and stats["n_tokens"] == len(nll)
    assert stats["object_token_share"] == pytest.approx(obj.float().mean().item())
    assert stats["object_loss_share"] == pytest.approx((nll[obj].sum() / nll.sum()).item(), rel=1e-5)
    assert stats["mean_nll_object"] == pytest.approx(nll[obj].mean().item(), rel=1e-5)
    assert stats["known_share"] == pytest.approx(known.float().mean().item())
    harder = sum(float(v.nll[v.on_object].mean() > v.nll.mean()) for v in used) / 2
    assert stats["share_docs_object_harder"] == pytest.approx(harder)


def test_token_html_marks_objects_and_escapes():
    out = token_weight_html(["<a>", " b"], [0.0, 2.0], [False, True], scale=2.0, underline=[True, False])
    assert "&lt;a&gt;" in out and "outline" in out and "underline" in out
    assert "rgba(255, 140, 0, 1.00)" in out


class ScaledPhi(torch.nn.Module):
    """A stand-in φ: weight `high` on token ids in `ids`, `low` elsewhere ([B, L-1], read at t+1)."""

    def __init__(self, ids, high=1.0, low=1.0):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.ids, self.high, self.low = set(ids), high, low

    def forward(self, input_ids, attention_mask, position_ids=None):
        nxt = input_ids[:, 1:]
        hit = torch.zeros_like(nxt, dtype=torch.bool)
        for i in self.ids:
            hit |= nxt == i
        return torch.where(hit, self.high, self.low).float()


class MaskPhi(ScaledPhi):
    """A stand-in φ returning a fixed [B, L-1] weight mask (here: the objects' tokens)."""

    def __init__(self, mask):
        super().__init__([])
        self.mask = mask

    def forward(self, input_ids, attention_mask, position_ids=None):
        return self.mask.float()


def test_object_weight_mass_against_hand_counts(tokenizer):
    from trainattn.core.spans import encode_with_objects
    from trainattn.studies.token_stats import object_weight_mass

    docs, objs = ["Ada Lovelace worked in London .", "The capital is Oslo ."], ["London", "Oslo"]
    enc = encode_with_objects(tokenizer, docs, objs)
    n_obj = enc.target_mask.sum(-1).float()
    n_real = enc.attention_mask[:, 1:].sum(-1).float()
    uniform = float((n_obj / n_real).mean())
    flat = object_weight_mass(ScaledPhi([]), tokenizer, docs, objs)
    assert flat["uniform_object_share"] == pytest.approx(uniform)
    assert flat["phi_object_share"] == pytest.approx(uniform)  # constant weights = uniform
    focused = object_weight_mass(MaskPhi(enc.target_mask), tokenizer, docs, objs)
    assert focused["phi_object_share"] == pytest.approx(1.0)  # all weight on the objects, as the oracle
    assert focused["phi_mean_weight_other"] == 0.0 and focused["documents"] == 2
    with pytest.raises(ValueError, match="no document has a located object"):
        object_weight_mass(ScaledPhi([]), tokenizer, ["no object here ."], ["Paris"])
