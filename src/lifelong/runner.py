"""The one training loop: tasks in order, a fixed epoch budget each, evaluation of every
task seen so far every ``eval_every`` epochs, checkpoints, and the recorded history.

    for task in stream:
        learner.begin_task(task)
        for epoch in 1..epochs (or until learner.task_done()):
            learner.begin_epoch(global_epoch)
            for batch in task.train (shuffled): learner.observe(batch)
            at the task's last epoch: learner.end_task(task)
            every eval_every epochs and at the last: accuracy of tasks 0..current
            every checkpoint_every epochs: checkpoint
        checkpoint

The papers switch tasks after a fixed number of epochs regardless of convergence, and the
original code evaluated every task every epoch; both are reproduced here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lifelong.checkpoint import load_checkpoint, save_checkpoint
from lifelong.data.images import ImageSet
from lifelong.errors import RunError
from lifelong.experiment import Experiment
from lifelong.history import HistoryRecorder
from lifelong.io import atomic_write_json
from lifelong.learners import Learner, SynonymMatcher, TaskMapper
from lifelong.macs import MACS_FILE, TrainMacs, is_measured
from lifelong.progress import Progress
from lifelong.protocols.base import task_schedule
from lifelong.tasks import Batch, Task, TaskStream

__all__ = ["EpochResult", "RunOutcome", "RunState", "Runner", "batch_indices", "batches",
           "evaluate", "train_epoch"]

EVAL_BATCH = 256


def batch_indices(n: int, batch_size: int, generator: torch.Generator | None, *,
                  drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Row indices (B,) int64 of each mini-batch of a split of ``n`` rows; shuffled with
    ``generator`` (one ``randperm``), in order if None.

    ``drop_last`` drops a final partial batch (the original code trained on
    ``n // batch_size`` batches per epoch) unless it would be the only one.
    """
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        yield order[i:i + batch_size]


def batches(split: ImageSet, batch_size: int, generator: torch.Generator | None, *,
            drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches (x (B, C, H, W), y (B,)) of :func:`batch_indices`' rows (same order,
    same random draws); the runner's training loop uses the indices themselves."""
    for idx in batch_indices(len(split), batch_size, generator, drop_last=drop_last):
        yield split.images(idx.numpy()), split.labels[idx]


@dataclass
class EpochResult:
    """One epoch of :func:`train_epoch`: the mean loss, and the seconds the flop counter
    added to the steps it measured (their time minus what unmeasured steps took on average;
    the runner leaves it out of ``train_seconds``)."""

    loss: float
    counter_seconds: float = 0.0


def train_epoch(learner: Learner, task: Task, batch_size: int,
                generator: torch.Generator | None, device: torch.device, *,
                drop_last: bool, macs: TrainMacs | None = None) -> EpochResult:
    """One pass of ``learner`` over ``task.train``: the training loop of every caller (the
    runner and the SKILL agents). Batches are :func:`batch_indices`' rows, each with its
    rows as ``Batch.index``; pixels are decoded only if the learner needs them
    (:meth:`Learner.needs_pixels`). ``macs`` measures some steps (lifelong.macs)."""
    split = task.train
    pixels = learner.needs_pixels(task)
    total, count = torch.zeros((), device=device), 0
    measured = [0.0, 0]  # seconds and number of steps under the flop counter
    plain = [0.0, 0]  # the same for the other steps
    for idx in batch_indices(len(split), batch_size, generator, drop_last=drop_last):
        # (B, C, H, W), or (B, 0) for a learner that looks its inputs up by row
        x = split.images(idx.numpy()) if pixels else torch.zeros(len(idx), 0)
        y = split.labels[idx]
        ctx = macs.step() if macs is not None else nullcontext()
        start = time.perf_counter()
        with ctx:
            losses = learner.observe(Batch(x.to(device), y.to(device), task.id,
                                           index=idx.to(device)))
        spent = measured if is_measured(ctx) else plain
        spent[0] += time.perf_counter() - start
        spent[1] += 1
        total += losses["loss"] * len(y)
        count += len(y)
    # a measured step's own cost is estimated by the unmeasured steps' mean
    extra = measured[0] - measured[1] * plain[0] / plain[1] if plain[1] else 0.0
    return EpochResult(float(total) / max(count, 1), max(extra, 0.0))


@torch.no_grad()
def evaluate(learner: Learner, task: Task, split: ImageSet, device: torch.device,
             setting: str, views: bool = False) -> dict[str, float]:
    """Accuracies (fractions) of ``learner`` on ``split`` of ``task``.

    ``acc`` is the run's setting. task-il: the task id is given and scores cover the task's
    classes. class-il: no task id; scores cover all classes of the stream and the target is
    the class's global id (for a learner with a task mapper: correct only if both the task
    and the class are right). With ``views`` in class-il, also ``oracle`` (the same learner
    given the task id) when it supports task-il, and what the learner declares: ``mapper``
    (a :class:`~lifelong.learners.TaskMapper`: its task mapper picks the right task) and
    ``synonym`` (a :class:`~lifelong.learners.SynonymMatcher`: the predicted class is the
    right one or a near-synonym of it by name).
    """
    names = ["acc"]
    if views and setting == "class-il":
        if "task-il" in learner.settings:
            names.append("oracle")
        if isinstance(learner, TaskMapper):
            names.append("mapper")
        if isinstance(learner, SynonymMatcher) and learner.matches_synonyms:
            names.append("synonym")
    if len(split) == 0:
        return {n: float("nan") for n in names}
    correct = dict.fromkeys(names, 0)
    class_ids = torch.tensor(task.class_ids, device=device)
    for x, y in batches(split, EVAL_BATCH, None):
        x, y = x.to(device), y.to(device)
        if setting == "task-il":
            correct["acc"] += int((learner.predict(x, task.id).argmax(1) == y).sum())
            continue
        pred, target = learner.predict(x, None).argmax(1), class_ids[y]
        correct["acc"] += int((pred == target).sum())
        if "oracle" in correct:
            correct["oracle"] += int((learner.predict(x, task.id).argmax(1) == y).sum())
        if "mapper" in correct:
            assert isinstance(learner, TaskMapper)
            correct["mapper"] += int((learner.map_task(x) == task.id).sum())
        if "synonym" in correct:
            assert isinstance(learner, SynonymMatcher)
            correct["synonym"] += int(learner.synonym_match(pred, target).sum())
    return {n: c / len(split) for n, c in correct.items()}


@dataclass
class RunOutcome:
    """What :meth:`Runner.run` hands back, in memory: the recorded history, the training
    MACs (``TrainMacs.report()``: per task and in total; None where the learner counts its
    own) and the training seconds of all tasks."""

    recorder: HistoryRecorder
    train_macs: dict[str, Any]
    train_seconds: float


@dataclass
class RunState:
    """Where a run stands: the next (task, epoch) to train and what was recorded so far."""

    task: int = 0
    task_epoch: int = 1  # next epoch to train, 1-based
    in_task: bool = False  # begin_task(task) has been called
    global_epoch: int = 0  # epochs trained so far, all tasks
    train_seconds: float = 0.0
    recorder: HistoryRecorder | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    macs: TrainMacs = field(default_factory=TrainMacs)  # training MACs (lifelong.macs)

    def meta(self) -> dict[str, Any]:
        assert self.recorder is not None
        return {"task": self.task, "task_epoch": self.task_epoch, "in_task": self.in_task,
                "global_epoch": self.global_epoch, "train_seconds": self.train_seconds,
                "history": self.recorder.to_json(), "train_macs": self.macs.to_json()}


class Runner:
    """Trains ``learner`` on ``stream`` as ``exp`` says; checkpoints go to ``out/checkpoint``."""

    def __init__(self, exp: Experiment, stream: TaskStream, learner: Learner, out: Path,
                 device: torch.device, *, progress: bool = True) -> None:
        self.exp = exp
        self.stream = stream
        self.learner = learner
        self.out = Path(out)
        self.device = device
        self.progress = progress
        # Training MACs (SKILL Table 1): measured here when asked, unless the learner counts
        # its own.
        self.state = RunState(recorder=HistoryRecorder(len(stream)),
                              macs=TrainMacs(enabled=exp.run.count_macs
                                             and not learner.counts_own_macs))
        self._cache_left = exp.run.cache_mb << 20

    # -- checkpoints ------------------------------------------------------------------------
    def checkpoint(self) -> None:
        state = {"learner": self.learner.state_dict(), "torch_rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        meta = dict(self.state.meta(), config=self.exp.comparable(),
                    stream=self.stream.fingerprint())
        save_checkpoint(self.out / "checkpoint", state, meta)

    def restore(self) -> None:
        """Continue from ``out/checkpoint``; RunError if it belongs to another config or data."""
        state, meta = load_checkpoint(self.out / "checkpoint")
        needed = ("task", "task_epoch", "in_task", "global_epoch", "train_seconds", "history")
        if not isinstance(state, dict) or "learner" not in state or "torch_rng" not in state \
                or not isinstance(meta, dict) or any(k not in meta for k in needed):
            raise RunError(f"{self.out}: the checkpoint is incomplete")
        if meta.get("config") != self.exp.comparable():
            raise RunError(f"{self.out}: the checkpoint was made with a different config")
        if meta.get("stream") != self.stream.fingerprint():
            raise RunError(f"{self.out}: the data differs from the data the run started with")
        try:
            self.learner.load_state_dict(state["learner"])
            torch.set_rng_state(state["torch_rng"])
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise RunError(f"{self.out}: the checkpoint does not fit this learner ({first})") \
                from None
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(state["cuda_rng"]))
        self.state = RunState(task=meta["task"], task_epoch=meta["task_epoch"],
                              in_task=meta["in_task"], global_epoch=meta["global_epoch"],
                              train_seconds=meta["train_seconds"],
                              recorder=HistoryRecorder.from_json(len(self.stream),
                                                                 meta["history"]),
                              macs=TrainMacs.from_json(meta.get("train_macs"),
                                                       enabled=self.state.macs.enabled))

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        run, st, learner = self.exp.run, self.state, self.learner
        assert run.epochs is not None  # filled by make_experiment
        assert st.recorder is not None
        # st.task counts positions in the schedule: a benchmark's task_order may revisit tasks
        schedule = task_schedule(self.stream)
        with Progress(self.stream, run.epochs, enabled=self.progress,
                      done=st.global_epoch) as bar:
            while st.task < len(schedule):
                task = self.stream[schedule[st.task]]
                seen = max(schedule[: st.task + 1])  # tasks 0..seen have been trained
                self._cache(task)
                if not st.in_task:
                    st.task_epoch = 1
                with self._timed(), st.macs.work(task.id):  # the learner's own work, in full
                    learner.begin_task(task)  # after a resume inside the task: re-attaches
                st.in_task = True
                while st.task_epoch <= run.epochs:
                    loss = self._train_epoch(task)
                    st.global_epoch += 1
                    # The papers switch tasks after a fixed budget; a learner with early
                    # stopping (LLL) may end its task sooner.
                    last = st.task_epoch == run.epochs or learner.task_done()
                    if last:
                        # The task's last row shows the model as the task leaves it (a
                        # learner may fix its choices or pick its best state in end_task).
                        with self._timed(), st.macs.work(task.id):  # e.g. EWC's Fisher
                            learner.end_task(task)
                    mid_task = learner.evaluate_during_task and \
                        st.task_epoch % run.eval_every == 0
                    if last or mid_task:
                        val, test, views = self._evaluate_seen(seen)
                        st.recorder.add(epoch=st.global_epoch, task=task.id,
                                        task_epoch=st.task_epoch, val=val, test=test, loss=loss,
                                        seconds=st.train_seconds, views=views)
                        bar.update(task, st.task_epoch, loss, test[task.id])
                    else:
                        bar.update(task, st.task_epoch, loss, None)
                    st.task_epoch += 1
                    if last:
                        break
                    if st.global_epoch % run.checkpoint_every == 0:
                        self.checkpoint()
                bar.task_done(task, st.recorder.rows[-1]["test"])
                st.task, st.task_epoch, st.in_task = st.task + 1, 1, False
                self.checkpoint()
        report = st.macs.report()
        atomic_write_json(self.out / MACS_FILE, report)  # an output for the user, not read back
        return RunOutcome(st.recorder, report, st.train_seconds)

    def _cache(self, task: Task) -> None:
        """Keep the task's splits decoded in memory while the run's budget lasts (training
        data first: it is read every epoch; test data of earlier tasks is read at each
        evaluation)."""
        for split in (task.train, task.val, task.test):
            if not split.cached and split.nbytes <= self._cache_left:
                split.cache()
                self._cache_left -= split.nbytes

    @contextmanager
    def _timed(self) -> Iterator[None]:
        """Count the time inside as training time: a task's training is all its work
        (``begin_task``, ``begin_epoch``, the steps, ``end_task``), evaluation is not."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.state.train_seconds += time.perf_counter() - start

    def _train_epoch(self, task: Task) -> float:
        """One pass over the task's training data; returns the mean loss."""
        st, run = self.state, self.exp.run
        assert run.batch_size is not None  # filled by make_experiment
        with self._timed(), st.macs.work(task.id):
            self.learner.begin_epoch(st.global_epoch)
        # Training MACs: every step counts; a sample of them (steps 1, 1 + EVERY, ...) is
        # measured under FlopCounterMode and the epoch's MACs are their mean times its steps
        # (forward, backward and a method's extra passes; evaluation excluded; lifelong.macs).
        st.macs.begin_epoch(task.id)
        # Shuffling depends only on (seed, epoch), so a resumed run sees the same batches.
        gen = torch.Generator().manual_seed(run.seed * 1_000_003 + st.global_epoch)
        start = time.perf_counter()
        res = train_epoch(self.learner, task, run.batch_size, gen, self.device,
                          drop_last=run.drop_last, macs=st.macs)
        st.macs.end_epoch()
        st.train_seconds += time.perf_counter() - start - res.counter_seconds
        return res.loss

    def _evaluate_seen(self, current: int
                       ) -> tuple[list[float], list[float], dict[str, list[float]]]:
        """Validation and test accuracy of every task seen so far, and the extra views of
        the test accuracy (oracle, mapper) where the setting has them."""
        setting = self.exp.run.setting
        val: list[float] = []
        test: list[float] = []
        views: dict[str, list[float]] = {}
        for t in self.stream.tasks[: current + 1]:
            val.append(evaluate(self.learner, t, t.val, self.device, setting)["acc"])
            if not self.exp.run.evaluate_test:  # model selection: the test split is not read
                test.append(float("nan"))
                continue
            res = evaluate(self.learner, t, t.test, self.device, setting, views=True)
            test.append(res.pop("acc"))
            for name, value in res.items():
                views.setdefault(name, []).append(value)
        return val, test, views
