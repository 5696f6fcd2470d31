"""The papers' task protocols on files written in the real formats: task counts, split
sizes, classes, pixel ranges and determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fakedata
from lifelong.config import build_config
from lifelong.errors import ConfigError, DataError
from lifelong.protocols import BENCHMARKS
from lifelong.protocols.cifar import PAPER_CIFAR100_TASKS
from lifelong.protocols.folders import PAPER_OFFICE_HOME_CLASSES, PAPER_OFFICE_HOME_GROUPS


def build(name: str, seed: int = 0, **values):
    cls = BENCHMARKS.get(name)
    return cls(build_config(cls.Config, values, section="benchmark")).build(seed)


@pytest.fixture(scope="session")
def cifar100_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar100")
    fakedata.write_cifar100(root)  # full size: 500 train / 100 test images per class
    return root


@pytest.fixture(scope="session")
def stl10_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("stl10")
    fakedata.write_stl10(root)  # full size: 500 train / 800 test images per class
    return root


def _class_sets(task):
    return {s: set(split.labels.tolist()) for s, split in task.splits().items()}


def test_split_cifar100_reproduces_the_dfcnn_protocol(cifar100_root):
    stream = build("split-cifar100", root=str(cifar100_root))
    assert len(stream) == 10 and stream.input_shape == (3, 32, 32)
    seen: set[int] = set()
    for task in stream:
        # DF-CNN 4.2: 4% of the data, 170 training and 30 validation images, 1,000 test images.
        assert (len(task.train), len(task.val), len(task.test)) == (170, 30, 1000)
        assert task.num_classes == 10 and not seen & set(task.class_ids)
        seen |= set(task.class_ids)
        assert all(s == set(range(10)) for s in _class_sets(task).values())
        assert np.bincount(task.train.labels.numpy()).tolist() == [17] * 10
    assert seen == set(range(100))
    # The original code's tasks: one class from each of 10 superclasses.
    assert [tuple(t.class_ids) for t in stream] == list(PAPER_CIFAR100_TASKS)
    # Each split is standardised per channel with its own statistics (original code).
    for split in (stream[0].train, stream[0].test):
        x = split.images()
        channels = x.transpose(0, 1).reshape(3, -1)
        assert torch.allclose(channels.mean(1), torch.zeros(3), atol=1e-4)
        assert torch.allclose(channels.std(1, unbiased=False), torch.ones(3), atol=1e-4)
    random = build("split-cifar100", root=str(cifar100_root), class_order="random")
    assert sorted(c for t in random for c in t.class_ids) == list(range(100))
    assert [tuple(t.class_ids) for t in random] != list(PAPER_CIFAR100_TASKS)


def test_protocols_are_seeded_and_deterministic(cifar100_root):
    a = build("split-cifar100", seed=1, root=str(cifar100_root))
    b = build("split-cifar100", seed=1, root=str(cifar100_root))
    c = build("split-cifar100", seed=2, root=str(cifar100_root))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert torch.equal(a[3].train.images(), b[3].train.images())
    d = build("split-cifar100", seed=2, root=str(cifar100_root), data_seed=1)
    assert d.fingerprint() == a.fingerprint()


def test_protocol_asking_for_more_classes_than_the_data_has(cifar100_root):
    with pytest.raises(DataError):
        build("split-cifar100", root=str(cifar100_root), num_tasks=11, class_order="random")
    with pytest.raises(ConfigError):  # the paper's fixed tasks are exactly 10 x 10
        build("split-cifar100", root=str(cifar100_root), num_tasks=5)


def test_split_cifar10(tmp_path):
    fakedata.write_cifar10(tmp_path, train_per_class=50, test_per_class=10)
    stream = build("split-cifar10", root=str(tmp_path), data_fraction=1.0)
    assert len(stream) == 5 and [t.class_ids for t in stream][:2] == [[0, 1], [2, 3]]
    # 50 images per class cut 5.6:1: round(50 / 6.6) = 8 validation, 42 training per class.
    assert [len(stream[0].train), len(stream[0].val), len(stream[0].test)] == [84, 16, 20]


def test_stl10_lifelong_reproduces_the_lasem_protocol(stl10_root):
    stream = build("stl10-lifelong", root=str(stl10_root))
    assert len(stream) == 20 and stream.input_shape == (3, 96, 96)
    keys = set()
    for task in stream:
        # LASEM appendix A: 25% of the training data, 318 train and 57 validation images;
        # all 800 test images of each of the 3 classes.
        assert (len(task.train), len(task.val), len(task.test)) == (318, 57, 2400)
        assert task.num_classes == 3
        info = task.info
        # LASEM code (gen_data.py): mean 0.025 x {-2..1}, std 0.025 x {0, 1}
        assert info["noise_mean"] in (-0.05, -0.025, 0.0, 0.025)
        assert info["noise_std"] in (0.0, 0.025)
        assert sorted(info["channels"]) == [0, 1, 2]
        keys.add(frozenset(task.class_ids))
    assert len(keys) == 20  # as in the code, no two tasks have the same set of classes


def test_stl10_task_pixels_are_shifted_noisy_and_permuted(stl10_root):
    stream = build("stl10-lifelong", root=str(stl10_root))
    from lifelong.data.stl10 import read_stl10

    raw = read_stl10(stl10_root)
    task = next(t for t in stream if t.info["noise_std"] > 0)
    rows = task.train.rows[:8]
    x = task.train.images(np.arange(8))
    clean = raw.train.read(rows) - 0.5  # [-0.5, 0.5] before noise
    perm = task.info["channels"]
    noise = x - clean[:, perm]
    inside = x.abs() < 0.5  # pixels the clipping to [-0.5, 0.5] left alone
    assert float(x.abs().max()) <= 0.5
    assert abs(float(noise[inside].mean()) - task.info["noise_mean"]) < 0.01
    assert abs(float(noise[inside].std()) - task.info["noise_std"]) < 0.01
    # The noise of an image is fixed: reading it again gives the same pixels.
    assert torch.equal(task.train.images(np.arange(8)), x)


def test_office_home_reproduces_the_dfcnn_protocol(tmp_path):
    layout = {"Product": {c: 10 for c in PAPER_OFFICE_HOME_CLASSES},
              "Real World": {c: 10 for c in PAPER_OFFICE_HOME_CLASSES},
              "Art": {"Bed": 3}}
    fakedata.write_image_tree(tmp_path, layout, size=(20, 14), ext=".jpg")
    stream = build("office-home", root=str(tmp_path))
    assert len(stream) == 10 and stream.input_shape == (3, 128, 128)
    assert [t.info["domain"] for t in stream] == ["Product"] * 5 + ["Real World"] * 5
    paper = [[PAPER_OFFICE_HOME_CLASSES[i] for i in g] for g in PAPER_OFFICE_HOME_GROUPS]
    # The original code's five groups of 13 classes, the same in both domains.
    assert [t.classes for t in stream] == paper + paper
    for d in range(2):
        classes = [c for t in stream.tasks[5 * d:5 * d + 5] for c in t.classes]
        assert len(classes) == 65 and len(set(classes)) == 65  # disjoint groups of 13
    for task in stream:
        # 60/10/30 of each class's 10 images.
        assert (len(task.train), len(task.val), len(task.test)) == (78, 13, 39)
        x = task.test.images(np.arange(4))
        assert x.shape == (4, 3, 128, 128) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    # Class-incremental ids: each domain's classes are numbered apart.
    assert max(max(t.class_ids) for t in stream) == 129


def test_office_home_domain_names_are_matched_loosely(tmp_path):
    fakedata.write_image_tree(tmp_path, {"Real_World": {f"c{i}": 10 for i in range(26)}})
    stream = build("office-home", root=str(tmp_path), domains=["real world"],
                   tasks_per_domain=2, grouping="random")
    assert len(stream) == 2
    with pytest.raises(DataError):
        build("office-home", root=str(tmp_path), domains=["Clipart"], grouping="random")
    with pytest.raises(DataError):  # not the paper's 65 classes: grouping=paper cannot apply
        build("office-home", root=str(tmp_path), domains=["real world"])


def test_folder_protocol_one_task_per_dataset(tmp_path):
    fakedata.write_split_tree(tmp_path, {
        "birds": {"train": {"crow": 10, "owl": 10}, "val": {"crow": 2, "owl": 2},
                  "test": {"crow": 3, "owl": 4}},
        "cars": {"train": {"bus": 10, "taxi": 10, "van": 10}, "test": {"bus": 2, "taxi": 2,
                                                                      "van": 2}},
    })
    stream = build("folder", root=str(tmp_path), image_size=32)
    assert [t.name for t in stream] == ["birds", "cars"]
    birds, cars = stream
    assert birds.classes == ["crow", "owl"] and cars.classes == ["bus", "taxi", "van"]
    assert (len(birds.train), len(birds.val), len(birds.test)) == (20, 4, 7)
    assert (len(cars.train), len(cars.val), len(cars.test)) == (27, 3, 6)  # val carved, 10%
    assert cars.class_ids == [2, 3, 4] and stream.input_shape == (3, 32, 32)
    only = build("folder", root=str(tmp_path), datasets=["cars"])
    assert [t.name for t in only] == ["cars"]
    with pytest.raises(DataError):
        build("folder", root=str(tmp_path), datasets=["boats"])


def test_split_mnist_from_shipped_digits_and_from_idx_files(tmp_path):
    stream = build("split-mnist")
    assert len(stream) == 5 and stream.input_shape == (1, 28, 28)
    assert [t.class_ids for t in stream] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    for task in stream:
        assert (len(task.train), len(task.val), len(task.test)) == (700, 100, 200)
    fakedata.write_mnist_idx(tmp_path, n_train=1000, n_test=200, gz=True)
    idx = build("split-mnist", root=str(tmp_path))
    # 100 training images per digit cut 0.7:0.1 -> 13 validation (12.5 rounded up), 87 train.
    assert (len(idx[0].train), len(idx[0].val), len(idx[0].test)) == (174, 26, 40)
    digits = build("split-digits")
    assert digits.input_shape == (1, 8, 8) and len(digits) == 5


def test_every_benchmark_has_paper_defaults_and_a_summary():
    for name in BENCHMARKS.names():
        cls = BENCHMARKS.get(name)
        assert cls.summary() and cls.defaults.lr > 0 and cls.defaults.epochs >= 1


def test_stl10_noise_differs_between_splits_and_task_counts_are_bounded(stl10_root):
    stream = build("stl10-lifelong", root=str(stl10_root), noise_stds=[0.1])
    task = stream[0]
    zero = torch.zeros(1, 3, 96, 96)
    # Row 5 of the training file and row 5 of the test file are different images: their
    # noise must differ too; the same split and row always gets the same noise.
    train_noise = task.train.transform(zero, np.array([5]))
    assert not torch.allclose(train_noise, task.test.transform(zero, np.array([5])))
    assert torch.equal(train_noise, task.train.transform(zero, np.array([5])))
    # Tasks differ in their class sets (LASEM code): 10 classes in sets of 9 give 10 tasks.
    ten = build("stl10-lifelong", root=str(stl10_root), classes_per_task=9, num_tasks=10)
    assert len({frozenset(t.class_ids) for t in ten}) == 10
    with pytest.raises(DataError):
        build("stl10-lifelong", root=str(stl10_root), classes_per_task=9, num_tasks=11)
