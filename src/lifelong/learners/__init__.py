"""Learners, registered by name in :data:`LEARNERS`.

Selective-transfer learners (LASEM and its comparators) exist once per base learner of the
LASEM paper (hps, tf, dfcnn): ``lasem-dfcnn``, ``bruteforce-hps``, ``darts-tf``,
``static-dfcnn``, ... A static configuration can also be named ``BASE@CONFIG``, e.g.
``dfcnn@top-2`` for ``static-dfcnn`` with ``transfer=top-2`` (see :func:`resolve_learner`).
"""

from __future__ import annotations

from typing import Any

from lifelong.errors import ConfigError

# Every learner registers itself where it is defined (``@LEARNERS.register(NAME)`` above its
# class); importing each module here, explicitly, is what makes the registry complete.
from lifelong.learners import (  # noqa: F401
    apd,
    bruteforce,
    darts,
    den,
    dfcnn,
    hps,
    lasem,
    prognn,
    static,
    stl,
    tf,
)
from lifelong.learners.base import (
    LEARNERS,
    Learner,
    LearnerContext,
    LearnerReport,
    NetLearnerConfig,
    SynonymMatcher,
    TaskMapper,
)
from lifelong.learners.cl import (  # noqa: F401
    agem,
    der,
    er,
    er_ace,
    ewc,
    finetune,
    gdumb,
    gem,
    icarl,
    joint,
    lwf,
    mas,
    psp,
    si,
    supsup,
)
from lifelong.learners.lll import learner as lll  # noqa: F401

__all__ = ["LEARNERS", "Learner", "LearnerContext", "LearnerReport", "NetLearnerConfig",
           "SynonymMatcher", "TaskMapper", "resolve_learner", "is_learner"]


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
