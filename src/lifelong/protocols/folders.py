"""Protocols over image-folder trees: Office-Home (DF-CNN section 4.2) and ``folder``
(one task per dataset directory, the SKILL-102 layout)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lifelong.config import Config, check
from lifelong.data.folders import check_images, find_domain, read_domain_tree, read_split_tree
from lifelong.data.images import FileSource
from lifelong.protocols.base import (
    BENCHMARKS,
    Benchmark,
    TaskOrder,
    TrainingDefaults,
    check_task_order,
    make_task,
    partition_classes,
    require,
    split_class_rows,
    stream,
    task_name,
    with_task_order,
)
from lifelong.tasks import Task, TaskStream

__all__ = ["OfficeHome", "Folder"]


def _source(files_per_class: list[list[Path]], size: int) -> tuple[FileSource, list[np.ndarray]]:
    """One FileSource over the given files; the rows of each class in it."""
    paths = [p for files in files_per_class for p in files]
    check_images(paths)
    starts = np.cumsum([0] + [len(f) for f in files_per_class])
    rows = [np.arange(a, b) for a, b in zip(starts[:-1], starts[1:], strict=True)]
    return FileSource(paths, size=size), rows


#: The original code's Office-Home class list (``gen_data.py``, ``_officehome_class_labels``,
#: the dataset's folder names) and its five groups of 13 classes (``_officehome_task_labels``),
#: used for every domain.
PAPER_OFFICE_HOME_CLASSES = (
    "Alarm_Clock", "Backpack", "Batteries", "Bed", "Bike", "Bottle", "Bucket", "Calculator",
    "Calendar", "Candles", "Chair", "Clipboards", "Computer", "Couch", "Curtains", "Desk_Lamp",
    "Drill", "Eraser", "Exit_Sign", "Fan", "File_Cabinet", "Flipflops", "Flowers", "Folder",
    "Fork", "Glasses", "Hammer", "Helmet", "Kettle", "Keyboard", "Knives", "Lamp_Shade",
    "Laptop", "Marker", "Monitor", "Mop", "Mouse", "Mug", "Notebook", "Oven", "Pan",
    "Paper_Clip", "Pen", "Pencil", "Postit_Notes", "Printer", "Push_Pin", "Radio",
    "Refrigerator", "Ruler", "Scissors", "Screwdriver", "Shelf", "Sink", "Sneakers", "Soda",
    "Speaker", "Spoon", "Table", "Telephone", "ToothBrush", "Toys", "Trash_Can", "TV", "Webcam",
)
PAPER_OFFICE_HOME_GROUPS = (
    (63, 54, 55, 59, 47, 8, 5, 56, 18, 50, 3, 57, 13),
    (62, 19, 21, 35, 64, 46, 27, 10, 39, 17, 22, 34, 30),
    (48, 15, 51, 6, 40, 31, 4, 36, 45, 41, 16, 14, 11),
    (9, 29, 1, 44, 33, 26, 25, 32, 53, 12, 43, 38, 60),
    (28, 2, 49, 37, 20, 23, 58, 24, 52, 61, 7, 0, 42),
)


def _paper_groups(class_names: list[str], domain: str) -> list[list[str]]:
    by_key = {n.lower(): n for n in class_names}
    missing = [c for c in PAPER_OFFICE_HOME_CLASSES if c.lower() not in by_key]
    require(not missing, f"office-home: domain {domain!r} lacks the paper's classes "
                         f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                         "use benchmark.grouping=random for other class sets")
    return [[by_key[PAPER_OFFICE_HOME_CLASSES[i].lower()] for i in g]
            for g in PAPER_OFFICE_HOME_GROUPS]


@dataclass
class OfficeHomeConfig(Config):
    root: str | None = None  # OfficeHomeDataset directory: <root>/<domain>/<class>/*.jpg
    domains: tuple[str, ...] = ("Product", "Real World")
    tasks_per_domain: int = 5
    classes_per_task: int = 13
    # paper: the original code's five fixed groups of 13 classes, the same in every domain;
    # random: a seeded grouping drawn for each domain.
    grouping: Literal["paper", "random"] = "paper"
    split: tuple[float, ...] = (0.6, 0.1, 0.3)  # train/val/test of each class's images
    image_size: int = 128
    data_seed: int | None = None  # None: the run's seed
    # Training order with revisits (protocols.base.TASK_ORDERS): the LASEM code's Office-Home
    # task_order_type 1 is revisit-half, 2 is revisit-all (main.py).
    task_order: TaskOrder = "once"

    def validate(self) -> None:
        check(self.root is not None, "office-home needs the data directory: --root DIR")
        check_task_order(self.task_order)
        check(len(self.domains) >= 1, "domains must not be empty")
        check(self.tasks_per_domain >= 1 and self.classes_per_task >= 2,
              "tasks_per_domain must be >= 1 and classes_per_task >= 2")
        check(len(self.split) == 3 and min(self.split) > 0, "split needs three positive weights")
        check(self.image_size >= 8, "image_size must be >= 8")


@BENCHMARKS.register("office-home")
class OfficeHome(Benchmark[OfficeHomeConfig]):
    """10 tasks x 13 classes: 5 from Product, 5 from Real World; 60/10/30 split, 128x128, [0, 1]."""

    Config = OfficeHomeConfig
    needs_root = True
    # LASEM used lr 2e-5 and decay 1e-4 instead.
    defaults = TrainingDefaults(lr=5e-6, lr_decay=1 / 1000, batch_size=16, epochs=1000,
                                net="office-home", source="DF-CNN paper 4.2 and code (Office-Home)")

    def build(self, seed: int) -> TaskStream:
        cfg = self.cfg
        assert cfg.root is not None  # validate()
        tree = read_domain_tree(cfg.root)
        rng = np.random.default_rng(seed if cfg.data_seed is None else cfg.data_seed)
        tasks: list[Task] = []
        offset = 0
        for dom_name in cfg.domains:
            domain = find_domain(tree, dom_name)
            class_names = sorted(tree[domain])
            if cfg.grouping == "paper":
                require((cfg.tasks_per_domain, cfg.classes_per_task) == (5, 13),
                        "office-home: grouping=paper is 5 tasks of 13 classes per domain")
                named = _paper_groups(class_names, domain)
                groups = [[class_names.index(n) for n in g] for g in named]
            else:  # disjoint random groups, drawn for each domain
                groups = partition_classes(rng, list(range(len(class_names))),
                                           cfg.tasks_per_domain, cfg.classes_per_task,
                                           shuffle=True, what=f"office-home domain {domain!r}")
            for group in groups:
                names = [class_names[c] for c in group]
                source, rows = _source([tree[domain][n] for n in names], cfg.image_size)
                labels = np.concatenate(
                    [np.full(len(r), c) for r, c in zip(rows, group, strict=True)])
                per_class = [
                    split_class_rows(
                        rng,
                        labels,
                        c,
                        fraction=1.0,
                        parts=cfg.split,
                        what=f"office-home {domain}/{class_names[c]}",
                    )
                    for c in group
                ]
                splits = {
                    s: (source, [p[i] for p in per_class])
                    for i, s in enumerate(("train", "val", "test"))
                }
                t = len(tasks)
                tasks.append(
                    make_task(
                        t,
                        f"{domain}:{task_name(names)}",
                        names,
                        [offset + c for c in group],
                        splits,
                        info={"domain": domain},
                    )
                )
            offset += len(class_names)
        return with_task_order(stream("office-home", tasks, offset), cfg.task_order)


@dataclass
class FolderConfig(Config):
    root: str | None = None  # <root>/<dataset>/{train,val,test}/<class>/<image>
    datasets: tuple[str, ...] = ()  # which datasets, in this order; empty: all, sorted
    image_size: int = 128
    val_fraction: float = 0.1  # of train, for datasets that have no val/ directory
    data_seed: int | None = None  # None: the run's seed

    def validate(self) -> None:
        check(self.root is not None, "folder needs the data directory: --root DIR")
        check(self.image_size >= 8, "image_size must be >= 8")
        check(0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)")


@BENCHMARKS.register("folder")
class Folder(Benchmark[FolderConfig]):
    """One task per dataset directory (SKILL-102 layout); class names from folder names."""

    Config = FolderConfig
    needs_root = True
    defaults = TrainingDefaults(
        lr=5e-6,
        lr_decay=1 / 1000,
        batch_size=16,
        epochs=100,
        net="office-home",
        source="Office-Home settings of the DF-CNN code (natural images)",
    )

    def build(self, seed: int) -> TaskStream:
        cfg = self.cfg
        assert cfg.root is not None  # validate()
        tree = read_split_tree(cfg.root)
        names = list(cfg.datasets) or sorted(tree)
        for n in names:
            require(n in tree, f"folder: no dataset {n!r} under {cfg.root}")
        rng = np.random.default_rng(seed if cfg.data_seed is None else cfg.data_seed)
        tasks: list[Task] = []
        offset = 0
        for t, name in enumerate(names):
            splits_in = tree[name]
            classes = sorted(splits_in["train"])
            require(
                len(classes) >= 2,
                f"folder: dataset {name!r} has {len(classes)} class; a task needs at least 2",
            )
            for split in ("val", "test"):
                extra = set(splits_in.get(split, {})) - set(classes)
                require(
                    not extra,
                    f"folder: {name}/{split} has classes not in train: {', '.join(sorted(extra))}",
                )
            files = {s: [splits_in[s].get(c, []) for c in classes] for s in splits_in}
            if "val" not in files:
                # Carve the validation split out of train, per class.
                train, val = [], []
                for f in files["train"]:
                    perm = rng.permutation(len(f))
                    # at least one validation image per class that has two or more
                    n_val = int(round(len(f) * cfg.val_fraction))
                    n_val = max(n_val, 1) if cfg.val_fraction > 0 and len(f) >= 2 else n_val
                    val.append([f[i] for i in sorted(perm[:n_val])])
                    train.append([f[i] for i in sorted(perm[n_val:])])
                files["train"], files["val"] = train, val
            splits = {}
            for s in ("train", "val", "test"):
                require(
                    sum(map(len, files[s])) > 0 or (s == "val" and cfg.val_fraction == 0),
                    f"folder: dataset {name!r} has no {s} images",
                )
                splits[s] = _source(files[s], cfg.image_size)
            tasks.append(
                make_task(t, name, classes, [offset + k for k in range(len(classes))], splits)
            )
            offset += len(classes)
        return stream("folder", tasks, offset)
