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
    from trainattn.methods import canonical_method_name

    wanted = canonical_method_name(method)
    for table in (LAMA_CKL_TABLE1, LAMA_CKL_COMBINATIONS):
        for name, row in table.items():
            if canonical_method_name(name) == wanted:
                return row
    return None


# TemporalWiki, Table 2 (TinyLlama-1.1B θ with QLoRA; the QLoRA block, from the authors' poster):
# method -> period -> (Unchanged, Changed, Avg) mean object-token NLL (the paper's "ppl"; lower
# is better). The authors' observation_twiki.ipynb prints the same values to 4 decimals.
TWIKI_TABLE2 = {
    "finetune": {"0910": (9.999, 10.057, 10.028), "1011": (9.554, 9.531, 9.543), "1112": (9.736, 9.632, 9.684)},
    "mixreview": {"0910": (9.529, 9.579, 9.554), "1011": (9.514, 9.486, 9.501), "1112": (9.562, 9.452, 9.507)},
    "recadam": {"0910": (9.514, 9.604, 9.559), "1011": (8.992, 9.031, 9.012), "1112": (9.579, 9.479, 9.529)},
    "rho1": {"0910": (4.389, 4.624, 4.507), "1011": (4.360, 4.395, 4.3775), "1112": (4.471, 4.717, 4.594)},
    "taalm": {"0910": (4.019, 4.268, 4.1435), "1011": (4.030, 4.154, 4.092), "1112": (4.036, 4.357, 4.197)},
}

# TWiki-Probes sizes the paper scores after each period (all of them): period -> (changed, unchanged)
TWIKI_PROBE_COUNTS = {"0910": (1732, 7090), "1011": (1108, 7063), "1112": (1701, 7043)}

TWIKI_PAPER_SCALE = ("TinyLlama-1.1B θ (QLoRA r 64) and φ, φ meta-trained on the 0809 period; the filtered "
                     "Wikipedia diff-sets of each period, 1 epoch, batch 64, lr 1e-4, 512 tokens; all "
                     "TWiki-Probes (1,108–1,732 changed, ~7,000 unchanged per period)")
