"""A base learner (HPS, TF or DF-CNN) with one static transfer configuration for every task,
the comparison of LASEM section 2: ``hps@top-2``, ``dfcnn@alternating``, ``tf@0110``, ..."""

from __future__ import annotations

from dataclasses import dataclass

from lifelong.learners.base import LEARNERS, LearnerContext
from lifelong.learners.selective import (
    DFCNNFields,
    HPSFields,
    SelectiveConfig,
    SelectiveLearner,
    TFFields,
)
from lifelong.learners.transfer import parse_config
from lifelong.tasks import Task

__all__ = ["StaticTransferHPS", "StaticTransferTF", "StaticTransferDFCNN", "StaticTransfer",
           "StaticFields"]


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


# -- StaticTransfer on each base learner of the LASEM paper: named, registered classes --
@dataclass
class StaticTransferHPSConfig(StaticFields, HPSFields):
    """Settings of StaticTransfer on hps: the method's fields and the base's."""


@LEARNERS.register("static-hps")
class StaticTransferHPS(StaticTransfer):
    """A static transfer configuration on HPS.

    The method is :class:`StaticTransfer`; the layers of base ``hps`` are built by
    :class:`~lifelong.learners.selective.SelectiveLearner`."""

    kind = "hps"
    Config = StaticTransferHPSConfig
    cfg: StaticTransferHPSConfig


@dataclass
class StaticTransferTFConfig(StaticFields, TFFields):
    """Settings of StaticTransfer on tf: the method's fields and the base's."""


@LEARNERS.register("static-tf")
class StaticTransferTF(StaticTransfer):
    """A static transfer configuration on TF.

    The method is :class:`StaticTransfer`; the layers of base ``tf`` are built by
    :class:`~lifelong.learners.selective.SelectiveLearner`."""

    kind = "tf"
    Config = StaticTransferTFConfig
    cfg: StaticTransferTFConfig


@dataclass
class StaticTransferDFCNNConfig(StaticFields, DFCNNFields):
    """Settings of StaticTransfer on dfcnn: the method's fields and the base's."""


@LEARNERS.register("static-dfcnn")
class StaticTransferDFCNN(StaticTransfer):
    """A static transfer configuration on DF-CNN.

    The method is :class:`StaticTransfer`; the layers of base ``dfcnn`` are built by
    :class:`~lifelong.learners.selective.SelectiveLearner`."""

    kind = "dfcnn"
    Config = StaticTransferDFCNNConfig
    cfg: StaticTransferDFCNNConfig
