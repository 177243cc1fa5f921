import pytest
import torch

from trainattn.plots import token_weight_html
from trainattn.token_stats import pooled_token_stats, token_view

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
