"""trainattn: Train-Attention (TAALM) reproduced as a tested library.

Glossary (paper symbol -> code name): θ -> ``theta`` (the base LM being
taught); φ -> ``phi`` (Train-Attention); W -> ``token_weights``
(``[batch, seq_len - 1]``, index t weighs predicting ``input_ids[:, t + 1]``);
D -> ``document``; T_D -> ``probe``; α -> ``inner_lr``; β -> ``outer_lr``.
"""

__version__ = "0.1.0"

import warnings as _warnings

# Two library notices that every chapter would otherwise print, neither about our code: tqdm's
# "IProgress not found" (a text bar is what the book wants: it has no widgets) and the
# deprecation that peft triggers inside transformers (`is_gradient_checkpointing`).
_warnings.filterwarnings("ignore", message="IProgress not found")
_warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
