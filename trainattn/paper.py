"""The paper's published LAMA-CKL numbers, for the side-by-side tables of the book.

Seo, Lee & Yeo, NeurIPS 2024: Table 1 (Llama2-7B with QLoRA, 500 TO-LEARN /
500 NOT-TO-FORGET, 30 epochs) and the combination table (Table 6, read from
the authors' ``observation_lamackl.ipynb``, whose TAALM row equals Table 1's).
The paper reports no oracle row. Keys are this package's method names.
"""

from __future__ import annotations

# method -> (Top Acc, Epoch, NF Acc, Total Knowledge)
LAMA_CKL_TABLE1 = {
    "finetune": (0.1150, 16, 0.8174, 0.9324),
    "kadapter": (0.1260, 30, 0.9980, 1.1240),
    "mixreview": (0.0800, 25, 0.7988, 0.8788),
    "recadam": (0.1000, 24, 0.7933, 0.8933),
    "rho1": (0.1410, 18, 0.8223, 0.9633),
    "taalm": (0.4290, 4, 0.8983, 1.3273),
}

LAMA_CKL_COMBINATIONS = {
    "taalm+kadapter": (0.3320, 21, 0.9747, 1.3067),
    "taalm+mixreview": (0.4500, 3, 0.9012, 1.3512),
    "taalm+recadam": (0.4360, 7, 0.8982, 1.3342),
}

PAPER_SCALE = ("Llama2-7B θ (QLoRA r 64), TinyLlama-1.1B φ; 500 TO-LEARN / 500 NOT-TO-FORGET facts; "
               "30 epochs, batch 64, lr 1e-4, 512 tokens")


def paper_row(method: str) -> tuple | None:
    """The paper's (Top Acc, Epoch, NF Acc, Total Knowledge) for a method, or None if not reported.

    Names are compared canonically, so ``"mixreview"`` and ``"finetune+mixreview"`` are the same.
    """
    from .methods import canonical_method_name

    wanted = canonical_method_name(method)
    for table in (LAMA_CKL_TABLE1, LAMA_CKL_COMBINATIONS):
        for name, row in table.items():
            if canonical_method_name(name) == wanted:
                return row
    return None
