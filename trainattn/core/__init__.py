"""The paper's algorithm, with no file I/O: token-weighted losses, the functional inner update, the
meta-learner, φ (:class:`~trainattn.core.train_attention.TrainAttention`), LoRA, encoding with
object spans, probe scoring. Nothing here imports the layers above (``tests/test_layers.py``)."""
