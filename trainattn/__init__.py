"""trainattn: Train-Attention (TAALM) reproduced as a tested library.

Glossary (paper symbol -> code name): θ -> ``theta`` (the base LM being
taught); φ -> ``phi`` (Train-Attention); W -> ``token_weights``
(``[batch, seq_len - 1]``, index t weighs predicting ``input_ids[:, t + 1]``);
D -> ``document``; T_D -> ``probe``; α -> ``inner_lr``; β -> ``outer_lr``.
"""

__version__ = "0.1.0"
