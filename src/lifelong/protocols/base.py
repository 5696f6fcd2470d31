"""What every benchmark protocol shares: the registry entry, paper training defaults and
the seeded, stratified sampling helpers that reproduce the papers' split sizes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from lifelong.config import Config, check
from lifelong.data.images import ImageSet, PixelSource, Transform
from lifelong.errors import DataError
from lifelong.registry import Registry
from lifelong.tasks import Task, TaskStream

__all__ = ["BENCHMARKS", "Benchmark", "TrainingDefaults", "TransformFactory", "split_class_rows",
           "require", "make_task", "partition_classes", "TaskOrder", "TASK_ORDERS",
           "check_task_order", "task_schedule", "with_task_order"]


@dataclass(frozen=True)
class TrainingDefaults:
    """The paper's training settings for a benchmark (used where a config leaves them None).

    ``lr / (1 + epoch * lr_decay)`` is the learning rate at (global) epoch ``epoch``, of
    ``optimizer`` (the papers' TF-style RMSProp unless the benchmark says otherwise).
    """

    lr: float
    lr_decay: float
    batch_size: int
    epochs: int  # per task
    net: str
    source: str  # where the values come from
    optimizer: str = "rmsprop-tf"  # for learners whose config leaves it None


#: A protocol's config type: ``Benchmark[SplitMNISTConfig]`` types ``self.cfg``.
BC = TypeVar("BC", bound=Config)


class Benchmark(ABC, Generic[BC]):
    """A protocol that turns a dataset into a seeded, deterministic :class:`TaskStream`."""

    Config: ClassVar[type[Config]]
    defaults: ClassVar[TrainingDefaults]
    #: True when the data must be given with ``--root`` (nothing ships with a package).
    needs_root: ClassVar[bool] = False

    cfg: BC

    def __init__(self, cfg: BC) -> None:
        self.cfg = cfg

    @abstractmethod
    def build(self, seed: int) -> TaskStream:
        """Read the data and build the stream; raises DataError for unusable data."""

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]


def require(cond: bool, message: str) -> None:
    """Raise DataError(message) unless ``cond``."""
    if not cond:
        raise DataError(message)


def partition_classes(rng: np.random.Generator, classes: Sequence[int], num_groups: int,
                      per_group: int, *, shuffle: bool, what: str) -> list[list[int]]:
    """``num_groups`` disjoint groups of ``per_group`` classes, drawn at random or in order."""
    need = num_groups * per_group
    require(len(classes) >= need,
            f"{what}: the protocol needs {num_groups} x {per_group} = {need} classes "
            f"but the data has {len(classes)}")
    order = list(rng.permutation(classes)) if shuffle else list(classes)
    return [[int(c) for c in order[i * per_group:(i + 1) * per_group]] for i in range(num_groups)]


def split_class_rows(rng: np.random.Generator, labels: np.ndarray, cls: int, *, fraction: float,
                     parts: Sequence[float], what: str) -> list[np.ndarray]:
    """Sample ``fraction`` of class ``cls``'s rows and cut them into ``parts`` (weights).

    Rounding follows the papers' numbers: with 500 CIFAR images per class, 4% and
    parts (5.6, 1) give 17 train + 3 validation rows per class, i.e. 170 + 30 per task;
    with 500 STL-10 images, 25% and (5.7, 1) give 106 + 19 rows, i.e. 318 + 57 per task.
    Every part but the first is rounded; the first gets the rest.
    """
    rows = np.flatnonzero(labels == cls)
    n = int(round(len(rows) * fraction))
    require(n >= len(parts), f"{what}: class {cls} has {len(rows)} images, too few to split")
    chosen = rng.permutation(rows)[:n]
    total = float(sum(parts))
    sizes = [int(round(n * p / total)) for p in parts[1:]]
    sizes = [max(1, s) for s in sizes]
    first = n - sum(sizes)
    require(first >= 1, f"{what}: class {cls} has too few images for the split {list(parts)}")
    bounds = np.cumsum([first, *sizes])
    return [np.sort(chosen[a:b]) for a, b in zip([0, *bounds[:-1]], bounds, strict=True)]


#: Builds the transform of one split: (task index, split name, source, rows) -> transform.
TransformFactory = Callable[[int, str, PixelSource, np.ndarray], "Transform | None"]


def make_task(task_id: int, name: str, class_names: Sequence[str], class_ids: Sequence[int],
              splits: Mapping[str, tuple[PixelSource, Sequence[np.ndarray]]],
              transform: TransformFactory | None = None, info: dict | None = None) -> Task:
    """Build a Task from per-class row lists of each split: split -> (source, rows per class).

    Labels are positions in ``class_ids`` (0..C-1, task-incremental). ``transform`` gives
    each split its own transform (e.g. split statistics, or noise seeded per split).
    """
    sets = {}
    for split, (source, per_class) in splits.items():
        rows = np.concatenate(per_class) if per_class else np.zeros(0, dtype=np.int64)
        labels = np.concatenate([np.full(len(r), k) for k, r in enumerate(per_class)])
        tf = transform(task_id, split, source, rows) if transform else None
        sets[split] = ImageSet(source, rows, labels, tf)
    return Task(id=task_id, name=name, classes=list(class_names), class_ids=list(class_ids),
                train=sets["train"], val=sets["val"], test=sets["test"], info=info or {})


def task_name(class_names: Sequence[str]) -> str:
    """A short display name: the class names, or the first two and a count."""
    if len(class_names) <= 3:
        return "/".join(class_names)
    return f"{class_names[0]}/{class_names[1]}/+{len(class_names) - 2}"


def stream(name: str, tasks: list[Task], num_global_classes: int, **info) -> TaskStream:
    return TaskStream(name=name, tasks=tasks, num_global_classes=num_global_classes, info=info)


def class_split_tasks(*, what: str, groups: list[list[int]], class_names: Sequence[str],
                      pool: tuple[PixelSource, np.ndarray],
                      test: tuple[PixelSource, np.ndarray] | None, fraction: float,
                      parts: Sequence[float], rng: np.random.Generator,
                      transform: TransformFactory | None = None,
                      infos: Sequence[dict] | None = None) -> list[Task]:
    """Tasks made of groups of classes of one labelled dataset (the split-X protocols).

    Each class's rows in ``pool`` are sampled (``fraction``) and cut by ``parts``: into
    (train, val) when the dataset has its own ``test`` split, whose rows of the task's classes
    are then all used, or into (train, val, test) when it has none.
    """
    pool_src, pool_labels = pool
    tasks = []
    for t, group in enumerate(groups):
        per_class = [split_class_rows(rng, pool_labels, c, fraction=fraction, parts=parts,
                                      what=what) for c in group]
        splits = {"train": (pool_src, [p[0] for p in per_class]),
                  "val": (pool_src, [p[1] for p in per_class])}
        if test is None:
            require(len(parts) == 3, f"{what}: need train/val/test parts")
            splits["test"] = (pool_src, [p[2] for p in per_class])
        else:
            test_src, test_labels = test
            test_rows = [np.flatnonzero(test_labels == c) for c in group]
            for c, rows in zip(group, test_rows, strict=True):
                require(len(rows) > 0, f"{what}: class {class_names[c]!r} has no test images")
            splits["test"] = (test_src, test_rows)
        names = [class_names[c] for c in group]
        tasks.append(make_task(t, task_name(names), names, group, splits, transform,
                               infos[t] if infos else None))
    return tasks


# --- task order: revisiting tasks ----------------------------------------------------------

#: A benchmark's ``task_order``: a name from :data:`TASK_ORDERS` or the positions of the
#: stream's tasks in training order, e.g. ``(0, 1, 2, 0, 1, 2)``.
TaskOrder = tuple[int, ...] | str


def _revisit_half(num_tasks: int) -> list[int]:
    half = num_tasks // 2
    return [*range(half), *range(num_tasks)]


def _revisit_all(num_tasks: int) -> list[int]:
    return [*range(num_tasks), *range(num_tasks)]


#: Named training orders for ``num_tasks`` tasks. The LASEM code's ``--task_order_type``
#: (``main.py``, CIFAR-100 and Office-Home, 10 tasks): 1 trains tasks 0-4, then 0-4 again,
#: then 5-9 (``revisit-half``); 2 trains all ten tasks twice (``revisit-all``); 0 is ``once``.
TASK_ORDERS: dict[str, Callable[[int], list[int]]] = {
    "once": lambda n: list(range(n)),
    "revisit-half": _revisit_half,
    "revisit-all": _revisit_all,
}


def check_task_order(order: TaskOrder) -> None:
    """ConfigError unless ``order`` is a known name or a valid explicit order: tasks first
    appear as 0, 1, 2, ... (so "the tasks seen so far" are always 0..k), and no task follows
    itself (train it for more epochs instead; a learner could not tell that from a resume)."""
    if isinstance(order, str):
        check(order in TASK_ORDERS, f"task_order must be one of {', '.join(TASK_ORDERS)} or "
                                    f"a list of task positions, not {order!r}")
        return
    check(len(order) >= 1, "task_order must not be empty")
    seen = 0
    for i, t in enumerate(order):
        check(0 <= t <= seen, f"task_order: a task's first visit must come in order 0, 1, 2, "
                              f"...; position {i} is task {t} before task {seen}")
        seen = max(seen, t + 1)
        check(i == 0 or order[i - 1] != t, f"task_order: task {t} follows itself at "
                                           f"position {i}")


def with_task_order(stream_: TaskStream, order: TaskOrder) -> TaskStream:
    """``stream_`` with its training order set (``info["task_order"]``, read by the runner
    through :func:`task_schedule`); ``once`` leaves it unchanged.

    Raises:
        DataError: The order names a task the stream does not have, or leaves one out.
    """
    check_task_order(order)
    n = len(stream_)
    schedule = TASK_ORDERS[order](n) if isinstance(order, str) else [int(t) for t in order]
    require(sorted(set(schedule)) == list(range(n)),
            f"{stream_.name}: task_order {schedule} must visit each of the {n} tasks "
            f"(positions 0..{n - 1}) at least once")
    if schedule != list(range(n)):
        stream_.info["task_order"] = schedule
    return stream_


def task_schedule(stream_: TaskStream) -> list[int]:
    """The positions of ``stream_``'s tasks in the order they are trained: each task once,
    in order, unless the benchmark's ``task_order`` revisits tasks."""
    return list(stream_.info.get("task_order", range(len(stream_))))


#: Every benchmark, by name; each registers itself where it is defined.
BENCHMARKS: Registry[type[Benchmark[Any]]] = Registry("benchmark")
