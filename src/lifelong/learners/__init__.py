"""Learners, registered by name in :data:`LEARNERS`.

Selective-transfer learners (LASEM and its comparators) exist once per base learner of the
LASEM paper (hps, tf, dfcnn): ``lasem-dfcnn``, ``bruteforce-hps``, ``darts-tf``,
``static-dfcnn``, ... A static configuration can also be named ``BASE@CONFIG``, e.g.
``dfcnn@top-2`` for ``static-dfcnn`` with ``transfer=top-2`` (see :func:`resolve_learner`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lifelong.errors import ConfigError

# Every learner registers itself where it is defined (``@LEARNERS.register(NAME)`` above its
# class); importing each module here, explicitly, is what makes the registry complete.
from lifelong.learners import apd, den, dfcnn, hps, prognn, stl, tf  # noqa: F401
from lifelong.learners.base import LEARNERS, Learner, LearnerContext, NetLearnerConfig
from lifelong.learners.bruteforce import BruteForce, BruteForceFields
from lifelong.learners.cl import (  # noqa: F401
    agem,
    der,
    er,
    ewc,
    finetune,
    icarl,
    lwf,
    mas,
    psp,
    si,
    supsup,
)
from lifelong.learners.darts import DARTS, DARTSFields
from lifelong.learners.lasem import LASEM, LASEMFields
from lifelong.learners.lll import learner as lll  # noqa: F401
from lifelong.learners.selective import BASE_FIELDS, SelectiveLearner
from lifelong.learners.static import StaticFields, StaticTransfer

__all__ = ["LEARNERS", "Learner", "LearnerContext", "NetLearnerConfig", "resolve_learner",
           "is_learner"]


def _on_base(method: type[SelectiveLearner], fields: type[NetLearnerConfig], base: str,
             summary: str) -> type[SelectiveLearner]:
    """``method`` on base learner ``base``: its config holds the method's and the base's
    fields (e.g. LASEM's ``m_steps`` and DF-CNN's ``deconv_activation``)."""
    cfg: type[NetLearnerConfig] = dataclass(
        type(f"{method.__name__}{base.upper()}Config", (fields, BASE_FIELDS[base]),
             {"__doc__": f"Settings of {method.__name__} on {base}."}))
    doc = f"{summary} on {base.upper() if base != 'dfcnn' else 'DF-CNN'}.\n\n{method.__doc__}"
    return type(f"{method.__name__}{base.upper()}", (method,),
                {"kind": base, "Config": cfg, "__doc__": doc, "__module__": method.__module__})


for _base in ("hps", "tf", "dfcnn"):
    LEARNERS.register(f"lasem-{_base}")(_on_base(LASEM, LASEMFields, _base, "LASEM"))
    LEARNERS.register(f"bruteforce-{_base}")(
        _on_base(BruteForce, BruteForceFields, _base, "Brute-force configuration search"))
    LEARNERS.register(f"darts-{_base}")(_on_base(DARTS, DARTSFields, _base, "DARTS selection"))
    LEARNERS.register(f"static-{_base}")(
        _on_base(StaticTransfer, StaticFields, _base, "A static transfer configuration"))


def resolve_learner(name: str) -> tuple[type[Learner], dict[str, Any]]:
    """The class of learner ``name`` and the settings its name implies: ``BASE@CONFIG`` is
    ``static-BASE`` with ``transfer=CONFIG``."""
    if "@" in name:
        base, _, transfer = name.partition("@")
        if f"static-{base}" not in LEARNERS or not transfer:
            raise ConfigError(f"unknown learner {name!r}: BASE@CONFIG needs a base among "
                              "hps, tf, dfcnn and a configuration, e.g. dfcnn@top-2")
        return LEARNERS.get(f"static-{base}"), {"transfer": transfer}
    return LEARNERS.get(name), {}


def is_learner(name: str) -> bool:
    try:
        resolve_learner(name)
    except ConfigError:
        return False
    return True
