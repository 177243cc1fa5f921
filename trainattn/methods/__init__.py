"""CKL methods as small strategies the loop (:mod:`trainattn.protocols.lama_ckl`) composes.

``make_method("taalm+mixreview", phi=phi)`` builds one weighting method
(finetune | taalm | oracle | rho1 | rho1-paper | heuristic-loss | heuristic-gradnorm |
heuristic-attention | heuristic-entity; finetune when none is named) plus any of
the add-ons mixreview, recadam, kadapter, in that order.

Every module of this package is imported here, and each method registers
itself by name (:func:`~trainattn.methods.base.register`), so a new method is
one new module (plus its test); its settings live on its own ``Settings``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from trainattn.methods.base import (
    METHODS,
    CompositeMethod,
    Method,
    RunContext,
    TrainBatch,
    register,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from trainattn.methods.heuristics import HEURISTICS  # noqa: E402
from trainattn.methods.kadapter import KAdapter, KAdapterLM  # noqa: E402
from trainattn.methods.mixreview import MixReview, disjoint_pool, review_count  # noqa: E402
from trainattn.methods.recadam import RecAdam, RecAdamW, anneal_lambda  # noqa: E402
from trainattn.methods.rho1 import Rho1, top_fraction_mask  # noqa: E402
from trainattn.methods.rho1_paper import Rho1Paper  # noqa: E402
from trainattn.methods.weighting import TAALM, Finetune, Oracle  # noqa: E402

WEIGHTING_METHODS = tuple(n for n, m in METHODS.items() if m.weighting)
ADDON_METHODS = tuple(sorted((n for n, m in METHODS.items() if not m.weighting),
                             key=lambda n: METHODS[n].addon_order))
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


def uses_phi(name: str) -> bool:
    """True if the (possibly composite) method weights tokens with φ."""
    return any(METHODS[part].uses_phi for part in canonical_method_name(name).split("+"))


def method_pools(name: str) -> tuple[str, ...]:
    """The :class:`RunContext` row pools a (possibly composite) method reads, e.g. ``("review_rows",)``."""
    parts = canonical_method_name(name).split("+")
    return tuple(sorted({pool for part in parts for pool in METHODS[part].pools}))


def make_method(name: str, phi=None, load_phi: Callable | None = None) -> CompositeMethod:
    """Build a (composite) method from its name.

    Args:
        name: e.g. ``"finetune"``, ``"taalm+kadapter+recadam"``.
        phi: a frozen φ for methods that use one, or ``load_phi(config.phi_checkpoint)`` to build it.

    Each component's settings (RHO-1's ``keep``, Mix-review's ``ratio``/``decay``/``pool``,
    RecAdam's ``k``/``t0_fraction``/``coef``/``pull_lr``, K-Adapter's ``dropout``) are read from
    ``CKLConfig.method_settings[<name>]`` when the run starts (:meth:`CompositeMethod.configure`).
    """
    weighting, addons = parse_method_name(name)
    cls = METHODS[weighting]
    base: Method = cls(phi=phi, load_phi=load_phi) if cls.uses_phi else cls()
    return CompositeMethod(base, [METHODS[a]() for a in addons])


__all__ = [
    "ADDON_METHODS", "HEURISTICS", "METHODS", "METHOD_NAMES", "WEIGHTING_METHODS", "TAALM", "CompositeMethod",
    "Finetune", "KAdapter", "KAdapterLM", "Method", "MixReview", "Oracle", "RecAdam", "RecAdamW", "Rho1", "Rho1Paper",
    "RunContext", "TrainBatch", "anneal_lambda", "canonical_method_name", "disjoint_pool",
    "make_method", "method_pools", "parse_method_name", "register", "review_count", "top_fraction_mask", "uses_phi",
]
