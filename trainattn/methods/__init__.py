"""CKL methods as small strategies the loop (:mod:`trainattn.protocols.lama_ckl`) composes.

``make_method("taalm+mixreview", phi=phi)`` builds one weighting method
(finetune | taalm | oracle | rho1 | heuristic-loss | heuristic-gradnorm |
heuristic-attention | heuristic-entity; finetune when none is named) plus any of
the add-ons mixreview, recadam, kadapter, in that order.
"""

from __future__ import annotations

from collections.abc import Callable

from trainattn.methods.base import CompositeMethod, Method, RunContext, TrainBatch
from trainattn.methods.heuristics import (
    HEURISTICS,
    HeuristicAttention,
    HeuristicEntity,
    HeuristicGradNorm,
    HeuristicLoss,
)
from trainattn.methods.kadapter import KAdapter, KAdapterLM
from trainattn.methods.mixreview import MixReview, disjoint_pool, review_count
from trainattn.methods.recadam import RecAdam, RecAdamW, anneal_lambda
from trainattn.methods.rho1 import Rho1, top_fraction_mask
from trainattn.methods.weighting import TAALM, Finetune, Oracle

WEIGHTING_METHODS = ("finetune", "taalm", "oracle", "rho1", *HEURISTICS)
ADDON_METHODS = ("mixreview", "recadam", "kadapter")
METHOD_NAMES = WEIGHTING_METHODS + ADDON_METHODS


def parse_method_name(name: str) -> tuple[str, list[str]]:
    """``"recadam+taalm"`` → ``("taalm", ["recadam"])``: validated, add-ons in canonical order."""
    parts = [p.strip().lower() for p in str(name).split("+") if p.strip()]
    if not parts:
        raise ValueError(f"empty method name; valid components: {', '.join(METHOD_NAMES)}")
    unknown = [p for p in parts if p not in METHOD_NAMES]
    if unknown:
        raise ValueError(
            f"unknown method component(s) {unknown} in {name!r}; valid: {', '.join(METHOD_NAMES)} "
            "(combine with '+', at most one of " + "|".join(WEIGHTING_METHODS) + ")"
        )
    if len(set(parts)) != len(parts):
        raise ValueError(f"method {name!r} names a component twice")
    weighting = [p for p in parts if p in WEIGHTING_METHODS]
    if len(weighting) > 1:
        raise ValueError(f"method {name!r} has {len(weighting)} weighting methods {weighting}; at most one")
    addons = [a for a in ADDON_METHODS if a in parts]
    return (weighting[0] if weighting else "finetune"), addons


def canonical_method_name(name: str) -> str:
    """The name :func:`make_method` gives the method, e.g. ``"mixreview"`` → ``"finetune+mixreview"``."""
    weighting, addons = parse_method_name(name)
    return "+".join([weighting, *addons])


def make_method(
    name: str,
    phi=None,
    load_phi: Callable | None = None,
    kadapter_dropout: float = 0.1,
    review_pool: str | None = None,
) -> CompositeMethod:
    """Build a (composite) method from its name.

    Args:
        name: e.g. ``"finetune"``, ``"taalm+kadapter+recadam"``.
        phi: a frozen φ for taalm, or ``load_phi(config.phi_checkpoint)`` to build it.
        kadapter_dropout: adapter dropout (the paper's 0.9 looks like a typo for 0.1).
        review_pool: overrides ``config.review_pool`` for mixreview.

    Other settings (rho_keep, review ratio/decay, RecAdam k/t0/coef, known
    masking) are read from the run's :class:`~trainattn.config.CKLConfig`.
    """
    weighting, addons = parse_method_name(name)
    base: Method = {
        "finetune": Finetune,
        "oracle": Oracle,
        "rho1": Rho1,
        "taalm": lambda: TAALM(phi=phi, load_phi=load_phi),
        **HEURISTICS,
    }[weighting]()
    extra: dict[str, Callable[[], Method]] = {
        "mixreview": lambda: MixReview(pool=review_pool),
        "recadam": RecAdam,
        "kadapter": lambda: KAdapter(dropout=kadapter_dropout),
    }
    return CompositeMethod(base, [extra[a]() for a in addons])


__all__ = [
    "ADDON_METHODS", "HEURISTICS", "METHOD_NAMES", "WEIGHTING_METHODS", "TAALM", "CompositeMethod", "Finetune",
    "HeuristicAttention", "HeuristicEntity", "HeuristicGradNorm", "HeuristicLoss",
    "KAdapter", "KAdapterLM", "Method", "MixReview", "Oracle", "RecAdam", "RecAdamW", "Rho1",
    "RunContext", "TrainBatch", "anneal_lambda", "canonical_method_name", "disjoint_pool",
    "make_method", "parse_method_name", "review_count", "top_fraction_mask",
]
