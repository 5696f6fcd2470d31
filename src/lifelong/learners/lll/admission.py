"""What a receiving agent checks beyond the format: the bundle against its own stream.

:func:`lifelong.learners.lll.bundle.decode` guarantees a well-formed bundle for this backbone and
task mapper. Only the receiver knows whether it *belongs*: its task id must be a strict
``int`` naming a task of the receiver's stream that is not one of the receiver's own tasks;
its class ids and class count must be that task's; a GMMC anchor may not claim more training
samples than the task has (the mixture weights of Eq. 4 are scaled by that count, so an
inflated one steals every input of the real task), and Mahalanobis samples are capped the
same way. Whether the task is already held with other bytes is the learner's check
(:meth:`lifelong.learners.lll.learner.LLL.import_bundle`), since only it holds the bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lifelong.learners.lll.anchors import GMMCAnchor
from lifelong.learners.lll.bundle import Bundle, BundleError, show
from lifelong.learners.lll.lda import LDAAnchor
from lifelong.tasks import TaskStream

__all__ = ["TaskFacts", "Admission", "stream_facts"]


@dataclass(frozen=True)
class TaskFacts:
    """What a receiver knows of one task of its stream without its pixels."""

    class_ids: tuple[int, ...]
    num_train: int


def stream_facts(stream: TaskStream) -> dict[int, TaskFacts]:
    """Task id -> its global class ids and training-set size."""
    return {t.id: TaskFacts(tuple(int(i) for i in t.class_ids), len(t.train)) for t in stream}


@dataclass(frozen=True)
class Admission:
    """A receiver's policy: its stream's tasks and the tasks that are its own."""

    tasks: Mapping[int, TaskFacts]
    own: frozenset[int] = frozenset()

    @classmethod
    def of(cls, stream: TaskStream, own: Iterable[int] = ()) -> Admission:
        return cls(stream_facts(stream), frozenset(int(t) for t in own))

    def check(self, b: Bundle) -> int:
        """The bundle's task id if it belongs in this receiver's bank; BundleError if not."""
        task_id = b.info.get("task_id")
        if type(task_id) is not int:
            raise BundleError(f"bundle refused: task id {show(task_id)} is not an integer")
        facts = self.tasks.get(task_id)
        if facts is None:
            raise BundleError(f"bundle refused: task {task_id} is not in this agent's stream "
                              f"(tasks 0-{max(self.tasks, default=-1)})")
        if task_id in self.own:
            raise BundleError(f"bundle refused: task {task_id} is this agent's own task")
        ids = b.info.get("class_ids")
        if not isinstance(ids, list) or tuple(ids) != facts.class_ids or \
                b.num_classes != len(facts.class_ids):
            raise BundleError(f"bundle refused: class ids {show(ids)} are not those of task "
                              f"{task_id} ({len(facts.class_ids)} classes)")
        a = b.anchor
        if isinstance(a, GMMCAnchor):
            if a.num_samples > facts.num_train:
                raise BundleError(f"bundle refused: anchor claims {show(a.num_samples)} "
                                  f"training samples; task {task_id} has {facts.num_train}")
        elif isinstance(a, LDAAnchor):
            if int(a.counts.sum()) > facts.num_train:
                raise BundleError(f"bundle refused: LDA counts claim {int(a.counts.sum())} "
                                  f"training samples; task {task_id} has {facts.num_train}")
        elif len(a.samples) > facts.num_train:
            raise BundleError(f"bundle refused: {len(a.samples)} Mahalanobis samples; task "
                              f"{task_id} has {facts.num_train} training images")
        return task_id
