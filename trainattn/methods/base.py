"""The strategy protocol every CKL method implements, the registry of methods, and the composite.

A method is a :class:`Method` subclass decorated with :func:`register`. It owns
its settings: a frozen dataclass ``Settings`` whose values a run sets under
``CKLConfig.method_settings[<name>]`` (``--set method_settings.rho1.keep=0.4``), read by
:meth:`Method.configure` before the run starts. So adding a method touches its
own module and its test only (``CONTRIBUTING.md``).

A CKL run (:mod:`trainattn.protocols.lama_ckl`) calls these hooks, in this order:

1. ``build_model(model)`` once: a method may replace θ by its own trainable
   wrapper (K-Adapter); ``None`` means "let the loop add LoRA".
2. ``prepare(theta, tokenizer, config, context)`` once, before any checkpoint
   is loaded, so what it captures (θ₀, φ, the review pool) is the run's start.
3. ``make_optimizer(theta, config, context)`` once; ``None`` means plain AdamW.
4. Per training step: ``review_rows(epoch, step, n_to_learn)`` (rows appended
   to the batch), ``token_weights(batch, logits, theta)`` (TWL weights) and
   ``extra_loss(theta, step)`` (a penalty added to the loss, or ``None``).
5. ``state_dict()`` / ``load_state_dict()``: JSON-ready state saved with every
   epoch checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from trainattn.core.losses import uniform_weights
from trainattn.core.spans import EncodedBatch


@dataclass
class RunContext:
    """What a method may know about the run it is part of."""

    to_learn_rows: list[dict]
    not_to_forget_rows: list[dict]
    review_rows: list[dict] | None = None  # candidate replay rows (Mix-review)
    total_updates: int = 0  # optimizer steps of the whole run
    seed: int = 0
    reference_rows: list[dict] | None = None  # in-domain clean documents (RHO-1's reference model): the meta pool


@dataclass
class TrainBatch:
    """One training batch: TO-LEARN documents first, then replayed review documents.

    ``encoded`` tensors are ``[batch, seq_len]``; rows ``[:n_to_learn]`` are the
    TO-LEARN documents, the rest review rows (trained with uniform weights).
    """

    encoded: EncodedBatch
    rows: list[dict]
    n_to_learn: int

    def to_learn_part(self) -> EncodedBatch:
        """The TO-LEARN rows only (same ``seq_len``)."""
        e, n = self.encoded, self.n_to_learn
        return EncodedBatch(*(t[:n] for t in (
            e.input_ids, e.attention_mask, e.position_ids, e.object_mask, e.located
        )))


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available to :func:`~trainattn.methods.make_method` by ``cls.name``."""
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"two methods are named {cls.name!r}: {METHODS[cls.name].__name__} and {cls.__name__}")
    METHODS[cls.name] = cls
    return cls


@dataclass(frozen=True)
class NoSettings:
    """A method without settings of its own."""


class Method:
    """A no-op method: subclasses override the hooks they need.

    Attributes:
        name: the method's name in :func:`~trainattn.methods.make_method` syntax.
        weighting: True for methods that decide TO-LEARN token weights
            (finetune, taalm, oracle, rho1); at most one per composition.
        addon_order: an add-on's place in a canonical composite name
            (``taalm+mixreview+recadam+kadapter``).
        uses_phi: the method weights tokens with a trained φ.
        pools: the row pools of :class:`RunContext` the method reads; a run's identity counts
            their rows, so a run made with another pool is not read back.
        Settings: the method's settings (a frozen dataclass with defaults).
        labels: JSON-ready values recorded in the results (e.g. ``{"review_pool": "paper"}``).
    """

    name = "base"
    weighting = False
    addon_order = 0
    uses_phi = False
    pools: tuple[str, ...] = ()  # RunContext row pools the method reads ("review_rows", "reference_rows")
    Settings: type = NoSettings

    def __init__(self):
        self.labels: dict[str, object] = {}
        self.settings = self.Settings()

    def configure(self, config) -> None:
        """Read this method's settings from ``config.method_settings[self.name]`` (defaults where absent)."""
        from trainattn.config import from_dict

        self.settings = from_dict(self.Settings, (getattr(config, "method_settings", None) or {}).get(self.name, {}),
                                  where=f"method_settings.{self.name}")

    @classmethod
    def setting_names(cls) -> list[str]:
        return [f.name for f in fields(cls.Settings)]

    def build_model(self, model):
        return None

    def prepare(self, theta, tokenizer, config, context: RunContext) -> None:
        pass

    def make_optimizer(self, theta, config, context: RunContext) -> torch.optim.Optimizer | None:
        return None

    def token_weights(self, batch: EncodedBatch, logits: torch.Tensor, theta) -> torch.Tensor:
        """``[batch, seq_len - 1]`` detached weights for TO-LEARN rows (uniform by default).

        ``logits`` (``[batch, seq_len, vocab]``) are θ's current output on
        ``batch``, tracked; implementations must not backpropagate through them.
        """
        return uniform_weights(batch.attention_mask)

    def extra_loss(self, theta, step: int) -> torch.Tensor | None:
        return None

    def review_rows(self, epoch: int, step: int, n_to_learn: int) -> list[dict]:
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class CompositeMethod(Method):
    """One weighting method plus add-ons (mixreview, recadam, kadapter), in a fixed order.

    Each hook is delegated: ``build_model``/``make_optimizer`` to the first
    component that returns something, ``review_rows`` and ``extra_loss`` summed
    over components, ``token_weights`` to the weighting method on the TO-LEARN
    rows (review rows always get uniform weights).
    """

    def __init__(self, weighting_method: Method, addons: list[Method] | None = None):
        super().__init__()
        self.weighting_method = weighting_method
        self.addons = list(addons or [])
        self.components = [weighting_method, *self.addons]
        self.name = "+".join(c.name for c in self.components)
        for c in self.components:
            self.labels.update(c.labels)

    def configure(self, config) -> None:
        """Every component reads its settings; settings for a method that does not exist are an error."""
        unknown = sorted(set(getattr(config, "method_settings", None) or {}) - set(METHODS))
        if unknown:
            raise ValueError(f"method_settings: settings for unknown method(s) {unknown}; known: {', '.join(METHODS)}")
        for c in self.components:
            c.configure(config)

    def build_model(self, model):
        return _first(c.build_model(model) for c in self.components)

    def prepare(self, theta, tokenizer, config, context: RunContext) -> None:
        self.configure(config)
        for c in self.components:
            c.prepare(theta, tokenizer, config, context)
            self.labels.update(c.labels)

    def make_optimizer(self, theta, config, context: RunContext):
        return _first(c.make_optimizer(theta, config, context) for c in self.components)

    def batch_token_weights(self, batch: TrainBatch, logits: torch.Tensor, theta) -> torch.Tensor:
        """``[batch, seq_len - 1]`` detached weights: the weighting method's on TO-LEARN rows, 1 on review rows."""
        weights = uniform_weights(batch.encoded.attention_mask).clone()
        n = batch.n_to_learn
        if n:
            part = None if logits is None else logits[:n]
            learned = self.weighting_method.token_weights(batch.to_learn_part(), part, theta)
            weights[:n] = learned.detach().to(weights.dtype)
        return weights

    def token_weights(self, batch, logits, theta):
        if isinstance(batch, TrainBatch):
            return self.batch_token_weights(batch, logits, theta)
        return self.weighting_method.token_weights(batch, logits, theta)

    def extra_loss(self, theta, step: int):
        terms = [t for t in (c.extra_loss(theta, step) for c in self.components) if t is not None]
        return sum(terms) if terms else None

    def review_rows(self, epoch: int, step: int, n_to_learn: int) -> list[dict]:
        return [r for c in self.components for r in c.review_rows(epoch, step, n_to_learn)]

    def state_dict(self) -> dict:
        return {c.name: c.state_dict() for c in self.components}

    def load_state_dict(self, state: dict) -> None:
        for c in self.components:
            c.load_state_dict(state.get(c.name, {}))


def _first(values):
    for v in values:
        if v is not None:
            return v
    return None
