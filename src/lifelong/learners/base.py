"""The learner contract and the pieces every network learner shares.

A learner is a plain class. The runner calls, in order::

    begin_task(task)              # new task: build its parameters, make its optimizer
    begin_epoch(epoch)            # global epoch index (0-based), e.g. for the lr schedule
    observe(batch) -> losses      # one mini-batch: forward, backward and optimizer step
    end_task(task)                # consolidate (freeze, compute importances, ...)
    predict(x, task_id) -> scores # task_id given: that task's classes; None: no oracle

and ``state_dict()`` / ``load_state_dict()`` for checkpoints. No hooks, no event bus: a
method's algorithm reads top to bottom in its own file.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, runtime_checkable

import torch

from lifelong.config import Config, check
from lifelong.config import Config as BaseConfig  # the name Config is a class attribute below
from lifelong.learners.optim import decayed_lr
from lifelong.nets import NetSpec
from lifelong.registry import Registry
from lifelong.tasks import Batch, Task

__all__ = ["LEARNERS", "Learner", "LearnerContext", "LearnerReport", "NetLearnerConfig",
           "SynonymMatcher", "TaskMapper"]

#: The config type of a learner: ``Learner[EWCConfig]`` types ``self.cfg`` as ``EWCConfig``.
C = TypeVar("C", bound=Config)


@dataclass(frozen=True)
class LearnerContext:
    """What a learner may know before any task arrives (not the number of tasks)."""

    input_shape: tuple[int, int, int]
    net: NetSpec
    device: torch.device
    net_name: str = ""  # the preset's registry name (DF-CNN looks up the paper's sizes by it)
    epochs: int = 1  # training epochs per task (DEN divides them into its phases)
    seed: int = 0  # the run's seed (e.g. for LLL's mixture fits)
    setting: str = "task-il"
    num_global_classes: int = 0  # for class-incremental learners


@dataclass(frozen=True)
class LearnerReport:
    """What a finished learner tells ``results.json`` about itself (``learner_report``).

    The fields the runner, the outputs and ``compare`` act on are typed here; whatever else
    a method wants to show (LASEM's posterior trace, LLL's bundle sizes) is in ``details``.
    """

    #: task id -> the chosen transfer configuration's name, e.g. ``"0011"`` (selective
    #: transfer: LASEM, brute force, DARTS, static; the LASEM paper's Figures 4 and 8)
    configurations: dict[int, str] | None = None
    #: task id -> training MACs the learner counted itself (``Learner.counts_own_macs``)
    train_macs: dict[int, int] | None = None
    #: method-specific values, JSON-able
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``learner_report`` mapping of results.json (task ids as strings)."""
        out = dict(self.details)
        if self.configurations is not None:
            out["configurations"] = {str(t): c for t, c in sorted(self.configurations.items())}
        if self.train_macs is not None:
            out["train_macs"] = {str(t): int(m) for t, m in sorted(self.train_macs.items())}
        return out

    def total_train_macs(self) -> int | None:
        """The learner's own count summed over tasks; None if it keeps none."""
        return int(sum(self.train_macs.values())) if self.train_macs else None


@runtime_checkable
class TaskMapper(Protocol):
    """A learner that infers which task an input belongs to (SKILL's GMMC/Mahalanobis
    anchors). In class-il the runner then also records the ``mapper`` view: how often the
    inferred task is the right one."""

    def map_task(self, x: torch.Tensor) -> torch.Tensor:
        """Task ids (B,) for inputs ``x`` (B, C, H, W)."""
        ...


@runtime_checkable
class SynonymMatcher(Protocol):
    """A learner that can say when a predicted class is a near-synonym of the target by
    name (SKILL: the same concept under two tasks' labels). When ``matches_synonyms`` is
    true the runner records the ``synonym`` view."""

    @property
    def matches_synonyms(self) -> bool:
        """Whether synonym matching is on for this run."""
        ...

    def synonym_match(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Bool (B,): global class ``pred`` is ``target`` or a near-synonym of it."""
        ...


@dataclass
class NetLearnerConfig(Config):
    """Optimisation settings of the papers' CNN learners.

    ``lr``, ``lr_decay`` and ``optimizer`` default (None) to the benchmark's values
    (:class:`lifelong.protocols.base.TrainingDefaults`: the papers' for the papers'
    benchmarks, ``rmsprop-tf`` unless a benchmark says otherwise); the learning rate at
    global epoch e is ``lr / (1 + e * lr_decay)`` as in the DF-CNN/LASEM code.
    ``rmsprop-tf`` is RMSProp as TensorFlow 1 defines it (``lifelong.learners.optim.TFRMSprop``),
    which the papers' learning rates were tuned for; ``rmsprop`` is PyTorch's.
    ``loss_reduction`` matters with ``rmsprop-tf``: its accumulator starts at 1, so early
    steps scale with the gradient.
    """

    lr: float | None = None
    lr_decay: float | None = None
    optimizer: Literal["rmsprop-tf", "rmsprop", "adam", "sgd"] | None = None
    # "sum": the DF-CNN code minimises the per-example cross-entropy summed over the batch;
    # "mean": the LASEM code averages it.
    loss_reduction: Literal["sum", "mean"] = "sum"

    def epoch_lr(self, epoch: int) -> float:
        """The learning rate at global epoch ``epoch``: ``lr / (1 + epoch * lr_decay)``.
        ``Learner.resolve_config`` fills ``lr`` and ``lr_decay`` before any training."""
        assert self.lr is not None and self.lr_decay is not None, "config not resolved"
        return decayed_lr(self.lr, self.lr_decay, epoch)

    def validate(self) -> None:
        check(self.lr is None or self.lr > 0, "lr must be > 0")
        check(self.lr_decay is None or self.lr_decay >= 0, "lr_decay must be >= 0")


class Learner(ABC, Generic[C]):
    """Base class of all learners; see the module docstring for the call order."""

    Config: ClassVar[type[Config]] = Config
    #: False for learners whose task model only exists once the task ends (LLL builds its
    #: task anchor in end_task): the runner then evaluates at task ends only.
    evaluate_during_task: ClassVar[bool] = True
    #: Evaluation settings the learner supports: "task-il" (a task oracle gives the head),
    #: "class-il" (predict over all classes seen so far, without the task id).
    settings: ClassVar[frozenset[str]] = frozenset({"task-il"})

    cfg: C

    def __init__(self, cfg: C, ctx: LearnerContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.device = ctx.device

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]

    @classmethod
    def resolve_config(cls, cfg: BaseConfig, defaults: Any) -> BaseConfig:
        """Fill config fields left None (lr, lr_decay, optimizer) from the benchmark's
        defaults."""
        changes = {k: getattr(defaults, k) for k in ("lr", "lr_decay", "optimizer")
                   if hasattr(cfg, k) and getattr(cfg, k) is None}
        return dataclasses.replace(cfg, **changes) if changes else cfg

    @abstractmethod
    def begin_task(self, task: Task) -> None:
        """Start training on ``task``. Also called when a run resumes from a checkpoint taken
        inside ``task``: the learner's state is restored by then, so it only re-attaches
        what it keeps of the task (e.g. its validation data) and must not start over."""

    def begin_epoch(self, epoch: int) -> None:
        """Called before each training epoch with the global 0-based epoch index. Optional:
        the default does nothing."""
        return None

    @abstractmethod
    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Train on one mini-batch; return detached scalar losses for logging."""

    def end_task(self, task: Task) -> None:
        """Finish ``task``; its data will not be seen again. Optional: the default does
        nothing."""
        return None

    @abstractmethod
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Scores (B, C): over task ``task_id``'s classes, or over all classes when None."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly: tensors and plain values."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output into a freshly constructed learner."""

    @abstractmethod
    def parameter_count(self) -> int:
        """Number of learned parameters over all tasks seen so far."""

    def task_done(self) -> bool:
        """True to end the current task before its epoch budget (early stopping); the
        papers' CNN learners always train the full budget."""
        return False

    def needs_pixels(self, task: Task) -> bool:
        """False while the learner trains ``task`` on data it computed in ``begin_task``
        and finds by ``Batch.index`` (LLL without biases: cached backbone features): the
        training loop then decodes no images and passes ``Batch.x`` of shape (B, 0)."""
        return True

    #: True for a learner that counts its own training MACs (:meth:`learner_report`'s
    #: ``train_macs``, e.g. LLL: its cached features cost one backbone pass per image, which
    #: no sampled step can see); the runner then measures none.
    counts_own_macs: ClassVar[bool] = False

    #: Benchmark name -> batch size, where the learner's own paper trained with another batch
    #: size than the benchmark's default (which comes from another paper's code), e.g. LLL
    #: under ``folder``: the SKILL code's 32, not DF-CNN's 16. A run's ``batch_size`` wins.
    batch_sizes: ClassVar[dict[str, int]] = {}

    def report(self) -> dict[str, Any]:
        """Method-specific values results.json should show (``LearnerReport.details``);
        JSON-able. Optional: the default has none."""
        return {}

    def chosen_configurations(self) -> dict[int, str] | None:
        """Task id -> chosen transfer configuration, for a learner that chooses one per
        task (selective transfer); None otherwise."""
        return None

    def own_train_macs(self) -> dict[int, int] | None:
        """Task id -> training MACs, where ``counts_own_macs``; None otherwise."""
        return None

    def learner_report(self) -> LearnerReport:
        """The typed report of a finished run (what ``results.json`` calls
        ``learner_report``)."""
        return LearnerReport(configurations=self.chosen_configurations(),
                             train_macs=self.own_train_macs(), details=self.report())


#: Every learner, by name. A learner registers itself where it is defined
#: (``@LEARNERS.register("ewc")`` above the class); ``lifelong.learners`` imports every module
#: so the registry is complete once the package is imported.
LEARNERS: Registry[type[Learner[Any]]] = Registry("learner")
