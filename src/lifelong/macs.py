"""Training multiply-accumulates (MACs) of a run: the SKILL paper's Table 1 measure.

Counted with ``torch.utils.flop_counter.FlopCounterMode`` (not by hand), per task:

- **Training steps.** In every epoch the runner's own steps number 1, ``1 + EVERY``,
  ``1 + 2 * EVERY``, ... run under the counter; the epoch's step MACs are the mean of its
  measured steps times the number of steps it took. Step 0 is left out of the sample: the
  first step of a task is often atypical (an empty replay buffer, LASEM still evaluating
  every configuration); it is measured only in case it is the epoch's only step (in a
  task's first epoch, and later only if that epoch had a single step). A step is
  whatever ``learner.observe(batch)`` does: forward and backward, and the method's extra
  passes (replayed examples, distillation through the old model, LASEM's configurations,
  DARTS's architecture step, ...). Measuring the real steps rather than a copy's means no
  extra step, no disturbed state or random numbers, and a cost that follows the learner
  through a task (a replay buffer filling up, LASEM dropping configurations, DEN's phases).
- **The learner's own per-task and per-epoch work**, in full: ``begin_task``,
  ``begin_epoch`` and ``end_task`` (EWC's Fisher, MAS's importances, a brute-force search
  scoring its candidates on validation data, ...).
- **Not counted:** the runner's evaluation of the tasks seen so far (testing, not training),
  data loading, and element-wise work such as optimizer updates and activations:
  ``FlopCounterMode`` counts matrix products, convolutions and attention only.

MACs are FLOPs / 2 (the counter counts a multiply-add as two FLOPs). For a linear layer on a
(B, in) batch the forward is ``B * in * out`` MACs and the backward ``2 * B * in * out``
(gradients of its input and its weight; only the weight's when the input needs no gradient,
as for a network's first layer).

One correction to torch's formulas (torch 2.13): the weight gradient of a *grouped*
convolution is counted as if the convolution were dense, ``groups`` times too many. That
inflates depthwise convolutions (MobileNet/EfficientNet backbones being fine-tuned, by the
number of channels) and per-example gradients under ``vmap`` (EWC's Fisher: the batch
becomes the groups). :func:`counter` divides that term by ``groups``.

Learners that count their own training MACs are not measured: LLL caches backbone features
and counts each image's pass once (``learner_report.train_macs``), which no sampled step can
represent. :func:`total_train_macs` picks the learner's count where it has one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry

__all__ = ["EVERY", "MACS_FILE", "TrainMacs", "count_macs", "counter",
           "is_measured", "learner_train_macs", "total_train_macs"]

#: Steps between measured steps within an epoch. Prime, so that the sample does not lock
#: onto a learner's periodic schedule (LASEM re-checks skipped configurations every 20
#: batches). A measured step costs a few milliseconds more (the counter runs in Python per
#: operation): one step per epoch and then 1 in 31, within the noise of a run's time.
EVERY = 31

#: Written by the runner into the run directory for the user (per-task detail).
MACS_FILE = "train_macs.json"

T = TypeVar("T")


_TORCH_CONV_BACKWARD = flop_registry[torch.ops.aten.convolution_backward]


def _conv_backward_flop(grad_out: Any, x: Any, w: Any, bias_sizes: Any, stride: Any,
                        padding: Any, dilation: Any, transposed: bool, output_padding: Any,
                        groups: int, output_mask: list[bool], out_val: Any = None) -> int:
    """torch's FLOPs of ``aten.convolution_backward`` with the weight-gradient term divided
    by ``groups``: torch counts it as conv(input^T, grad_out^T) with the channels of all
    groups mixed, i.e. dense; each output channel only sees its group's input channels."""
    args = (grad_out, x, w, bias_sizes, stride, padding, dilation, transposed, output_padding,
            groups)
    grad_input = _TORCH_CONV_BACKWARD(*args, [output_mask[0], False, False], out_val=out_val)
    grad_weight = _TORCH_CONV_BACKWARD(*args, [False, output_mask[1], False], out_val=out_val)
    return grad_input + grad_weight // max(int(groups), 1)


_conv_backward_flop._get_raw = True  # type: ignore[attr-defined]  # gets tensors, not shapes


def counter() -> FlopCounterMode:
    """A ``FlopCounterMode`` with grouped convolutions' weight gradients counted right."""
    return FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten.convolution_backward: _conv_backward_flop})


def count_macs(fn: Callable[[], T]) -> tuple[T, int]:
    """Call ``fn()`` under :func:`counter`; return its result and the MACs it spent."""
    with counter() as c:
        result = fn()
    return result, c.get_total_flops() // 2


@dataclass
class _TaskMacs:
    """One task's count so far."""

    steps: int = 0  # training steps (observe calls) taken
    measured_steps: int = 0  # of which measured and in the sample
    step_macs: int = 0  # estimated MACs of all its steps (finished epochs)
    other_macs: int = 0  # begin_task, begin_epoch and end_task, counted in full
    epoch_steps: int = 0  # steps of its last finished epoch (0: none finished yet)

    @property
    def train_macs(self) -> int:
        return self.step_macs + self.other_macs


class _Measured:
    """Context of one measured step: adds its MACs to the open epoch's sample."""

    __slots__ = ("meter", "first", "counter")

    def __init__(self, meter: TrainMacs, first: bool) -> None:
        self.meter = meter
        self.first = first  # step 0 of the epoch: kept apart, a fallback only
        self.counter = counter()

    def __enter__(self) -> None:
        self.counter.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.counter.__exit__(*exc)
        if exc[0] is not None:  # an interrupted step (Ctrl-C) is not part of the sample
            return
        macs = self.counter.get_total_flops() // 2
        if self.first:
            self.meter._first_macs = macs
        else:
            self.meter._sample_macs += macs
            self.meter._sample_steps += 1


class _Unmeasured:
    """Context of a step that is only counted, not measured (kept free of work)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


_UNMEASURED = _Unmeasured()


def is_measured(ctx: object) -> bool:
    """Whether a :meth:`TrainMacs.step` context runs its step under the flop counter."""
    return isinstance(ctx, _Measured)


class TrainMacs:
    """Per-task training MACs of one run (see the module docstring for what is counted).

    The runner calls, per epoch of task ``t``::

        meter.begin_epoch(t)
        for batch in epoch:
            with meter.step():
                learner.observe(batch)
        meter.end_epoch()

    and wraps the learner's ``begin_task``/``begin_epoch``/``end_task`` in
    ``meter.work(t)``. The state (:meth:`to_json`) goes into the runner's checkpoints, so a
    resumed run ends with the same count as an uninterrupted one.
    """

    def __init__(self, enabled: bool = True, every: int = EVERY) -> None:
        self.enabled = enabled
        self.every = every
        self.tasks: dict[int, _TaskMacs] = {}
        self._task: int | None = None  # task of the open epoch
        self._epoch_steps = 0  # steps of the open epoch
        self._sample_macs = 0  # MACs of its measured steps 1, 1 + every, ...
        self._sample_steps = 0  # number of those
        self._first_macs: int | None = None  # MACs of its step 0, if measured

    def _of(self, task_id: int) -> _TaskMacs:
        return self.tasks.setdefault(int(task_id), _TaskMacs())

    # -- the runner's calls -----------------------------------------------------------------
    def begin_epoch(self, task_id: int) -> None:
        """Open an epoch of task ``task_id``."""
        self._task, self._epoch_steps = int(task_id), 0
        self._sample_macs = self._sample_steps = 0
        self._first_macs = None

    def step(self) -> _Measured | _Unmeasured:
        """Context manager around one ``observe``: counts the step, measures some."""
        i = self._epoch_steps
        self._epoch_steps += 1
        if not self.enabled:
            return _UNMEASURED
        if i == 0:  # a fallback, needed only if the epoch may have this one step
            if self._task is not None and self._of(self._task).epoch_steps <= 1:
                return _Measured(self, first=True)
            return _UNMEASURED
        if i % self.every == 1 % self.every:
            return _Measured(self, first=False)
        return _UNMEASURED

    def end_epoch(self) -> None:
        """Close the epoch: its steps' MACs = mean of the measured steps x steps taken
        (step 0 stands for the epoch only when it was the only step measured)."""
        if self._task is None:
            return
        t = self._of(self._task)
        t.steps += self._epoch_steps
        t.epoch_steps = self._epoch_steps
        if self._sample_steps:
            t.measured_steps += self._sample_steps
            t.step_macs += round(self._sample_macs / self._sample_steps * self._epoch_steps)
        elif self._first_macs is not None:
            t.measured_steps += 1
            t.step_macs += self._first_macs * self._epoch_steps
        self.begin_epoch(0)
        self._task = None

    def work(self, task_id: int) -> _Work:
        """Context manager counting everything inside it in full for ``task_id``."""
        return _Work(self, int(task_id))

    # -- results ----------------------------------------------------------------------------
    def total(self) -> int | None:
        """Training MACs of all tasks; None when not measured (a learner counting its own)."""
        if not self.enabled:
            return None
        return sum(t.train_macs for t in self.tasks.values())

    def report(self) -> dict[str, Any]:
        """What ``train_macs.json`` holds: per task and in total."""
        return {
            "measured": self.enabled,
            "counted": "MACs (FLOPs / 2, torch FlopCounterMode) of training steps, estimated "
                       f"per epoch from its steps 1, 1 + {self.every}, ... (step 0 if the only "
                       "one) times the steps taken, plus begin_task, begin_epoch and end_task "
                       "in full; evaluation excluded",
            "every": self.every,
            "train_macs": self.total(),
            "tasks": [{"task": k, "steps": t.steps, "measured_steps": t.measured_steps,
                       "step_macs": t.step_macs, "other_macs": t.other_macs,
                       "train_macs": t.train_macs} if self.enabled else
                      {"task": k, "steps": t.steps} for k, t in sorted(self.tasks.items())],
        }

    # -- checkpoints ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """JSON-able state (plain ints: MAC counts exceed float precision only past 2^53)."""
        return {"every": self.every,
                "tasks": [[k, t.steps, t.measured_steps, t.step_macs, t.other_macs,
                           t.epoch_steps] for k, t in sorted(self.tasks.items())],
                "open": [self._task, self._epoch_steps, self._sample_macs, self._sample_steps,
                         self._first_macs]}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, enabled: bool = True) -> TrainMacs:
        """Inverse of :meth:`to_json`; None (a checkpoint from before MACs were counted)
        gives an empty count."""
        meter = cls(enabled=enabled)
        if not data:
            return meter
        meter.every = int(data.get("every", EVERY))
        for k, steps, measured, step_macs, other, epoch_steps in data.get("tasks", []):
            meter.tasks[int(k)] = _TaskMacs(int(steps), int(measured), int(step_macs),
                                            int(other), int(epoch_steps))
        task, meter._epoch_steps, meter._sample_macs, meter._sample_steps, \
            meter._first_macs = data.get("open", [None, 0, 0, 0, None])
        meter._task = None if task is None else int(task)
        return meter


class _Work:
    """Context counting a learner's per-task or per-epoch work in full."""

    __slots__ = ("meter", "task_id", "counter")

    def __init__(self, meter: TrainMacs, task_id: int) -> None:
        self.meter, self.task_id = meter, task_id
        self.counter = counter() if meter.enabled else None

    def __enter__(self) -> None:
        if self.counter is not None:
            self.counter.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self.counter is None:
            return
        self.counter.__exit__(*exc)
        if exc[0] is None:
            self.meter._of(self.task_id).other_macs += self.counter.get_total_flops() // 2


def learner_train_macs(learner_report: dict[str, Any] | None) -> int | None:
    """The learner's own count of training MACs (``learner_report["train_macs"]``, task ->
    MACs, as LLL reports it), summed over tasks; None if it keeps none."""
    own = (learner_report or {}).get("train_macs")
    if isinstance(own, dict) and own:
        return int(sum(int(m) for m in own.values()))
    return None


def total_train_macs(runner_report: dict[str, Any] | None,
                     learner_report: dict[str, Any] | None) -> int | None:
    """A finished run's training MACs: the learner's own count where it keeps one
    (:func:`learner_train_macs`), else the runner's measurement (``TrainMacs.report()``);
    None when neither has one."""
    own = learner_train_macs(learner_report)
    if own is not None:
        return own
    value = (runner_report or {}).get("train_macs")
    return int(value) if isinstance(value, (int, float)) else None
