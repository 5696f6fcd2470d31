"""A base learner (HPS, TF or DF-CNN) with one static transfer configuration for every task,
the comparison of LASEM section 2: ``hps@top-2``, ``dfcnn@alternating``, ``tf@0110``, ..."""

from __future__ import annotations

from dataclasses import dataclass

from lifelong.learners.base import LearnerContext
from lifelong.learners.selective import SelectiveConfig, SelectiveLearner
from lifelong.learners.transfer import parse_config
from lifelong.tasks import Task

__all__ = ["StaticTransfer", "StaticFields"]


@dataclass
class StaticFields(SelectiveConfig):
    # all, none, top-K, bottom-K, alternating, alternating-odd or bits such as 0101
    transfer: str = "all"


class StaticTransfer(SelectiveLearner):
    """A base learner with the same transfer configuration for every task."""

    def __init__(self, cfg: StaticFields, ctx: LearnerContext) -> None:
        super().__init__(cfg, ctx)
        self.bits = parse_config(cfg.transfer, self.num_layers)

    def begin_task(self, task: Task) -> None:
        # Fixed before the task's parameters are built: only the used kind is created.
        self.task_configs.setdefault(task.id, self.bits)
        super().begin_task(task)

    def report(self) -> dict:
        return self.config_report()
