"""The LASEM code's protocol details: STL-10 as ``gen_data.py`` builds it (on small files in
the official binary layout), task revisits (``task_order_type``), and the code's DF-CNN
STL-10 and DEN CIFAR sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fakedata
from lifelong.config import build_config
from lifelong.data.stl10 import read_stl10
from lifelong.errors import ConfigError, DataError
from lifelong.experiment import make_experiment
from lifelong.learners import LEARNERS, LearnerContext
from lifelong.learners.den import DENConfig
from lifelong.nets import NetSpec, get_net
from lifelong.nets.dfcnn import dfcnn_sizes
from lifelong.protocols import BENCHMARKS
from lifelong.protocols.base import TASK_ORDERS, check_task_order, task_schedule
from lifelong.protocols.stl10 import STL10LifelongConfig
from lifelong.runner import Runner


@pytest.fixture(scope="module")
def stl_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("stl10-small")
    fakedata.write_stl10(root, train_per_class=20, test_per_class=4)
    return root


def build(seed: int = 0, **values):
    cls = BENCHMARKS.get("stl10-lifelong")
    return cls(build_config(cls.Config, values, section="benchmark")).build(seed)


def _design(stream):
    return [(tuple(t.class_ids), t.info["noise_mean"], t.info["noise_std"],
             tuple(t.info["channels"])) for t in stream]


# --- STL-10 -----------------------------------------------------------------------------

def test_stl10_defaults_are_the_codes():
    cfg = STL10LifelongConfig(root="x")
    # gen_data.py: mean 0.025 * randint(-2, 2), std 0.025 * randint(0, 2); pixels clipped
    assert cfg.noise_means == tuple(0.025 * m for m in range(-2, 2))
    assert cfg.noise_stds == (0.0, 0.025) and cfg.clip
    assert (cfg.num_tasks, cfg.classes_per_task, cfg.data_fraction) == (20, 3, 0.25)
    assert BENCHMARKS.get("stl10-lifelong").defaults.batch_size == 10  # utils_env_cl.py
    assert cfg.data_seed == 0  # one design for every run


def test_stl10_one_task_design_for_every_seed_and_data_seed_draws_another(stl_root):
    s0, s1 = build(0, root=str(stl_root)), build(1, root=str(stl_root))
    design = _design(s0)
    assert design == _design(s1)  # classes, noise and channel order do not follow the seed
    assert len({frozenset(c) for c, *_ in design}) == 20  # distinct class sets, as the code
    assert {m for _, m, _, _ in design} <= {-0.05, -0.025, 0.0, 0.025}
    assert {s for _, _, s, _ in design} <= {0.0, 0.025}
    # what the seed does change: the train/validation rows and the noise values
    assert any(not np.array_equal(a.train.rows, b.train.rows) for a, b in zip(s0, s1, strict=True))
    noisy = next(i for i, d in enumerate(design) if d[2] > 0)
    zero = torch.zeros(1, 3, 96, 96)
    rows = np.array([3])
    assert not torch.equal(s0[noisy].train.transform(zero, rows),
                           s1[noisy].train.transform(zero, rows))
    assert _design(build(0, root=str(stl_root), num_tasks=6)) == design[:6]  # drawn task by task
    other = _design(build(0, root=str(stl_root), data_seed=5))
    assert other != design
    assert _design(build(3, root=str(stl_root), data_seed=5)) == other


def test_stl10_labels_follow_the_drawn_class_order(stl_root):
    raw = read_stl10(stl_root)
    for task in build(0, root=str(stl_root)):
        for split, labels in ((task.train, raw.train_labels), (task.test, raw.test_labels)):
            ids = np.asarray(task.class_ids)[split.labels.numpy()]
            np.testing.assert_array_equal(labels[split.rows], ids)


def test_stl10_pixels_are_shifted_noised_clipped_and_permuted(stl_root):
    raw = read_stl10(stl_root)

    def clean_and_task(**values):
        task = build(0, root=str(stl_root), num_tasks=6, **values)[0]
        rows = task.train.rows[:6]
        perm = task.info["channels"]
        return (raw.train.read(rows) - 0.5)[:, perm], task.train.images(np.arange(6)), task

    # no noise: the shifted image, channels reordered, nothing else
    clean, x, _ = clean_and_task(noise_means=[0.0], noise_stds=[0.0])
    assert torch.equal(x, clean)
    # std 0 (the code's N(mean, 0)): every pixel moves by the mean, then is clipped
    clean, x, _ = clean_and_task(noise_means=[0.3], noise_stds=[0.0])
    assert torch.allclose(x, (clean + 0.3).clamp(-0.5, 0.5), atol=1e-6)
    assert float((x == 0.5).float().mean()) > 0.05  # the clipping was exercised
    clean, x, _ = clean_and_task(noise_means=[0.3], noise_stds=[0.0], clip=False)
    assert float(x.max()) > 0.5
    # Gaussian noise: clipped to [-0.5, 0.5]; unclipped pixels carry N(mean, std)
    clean, x, task = clean_and_task(noise_means=[-0.05], noise_stds=[0.1])
    assert float(x.min()) >= -0.5 and float(x.max()) <= 0.5
    inside = x.abs() < 0.5
    noise = (x - clean)[inside]
    assert abs(float(noise.mean()) + 0.05) < 0.01 and abs(float(noise.std()) - 0.1) < 0.01
    assert torch.equal(task.train.images(np.arange(6)), x)  # an image's noise is fixed


def test_stl10_class_sets_bound_the_task_count(stl_root):
    # 10 classes in sets of 9: exactly 10 distinct sets, hence at most 10 tasks
    ten = build(0, root=str(stl_root), classes_per_task=9, num_tasks=10)
    assert len({frozenset(t.class_ids) for t in ten}) == 10
    with pytest.raises(DataError):
        build(0, root=str(stl_root), classes_per_task=9, num_tasks=11)


# --- task revisits ----------------------------------------------------------------------

def test_named_task_orders_are_the_lasem_codes():
    # main.py, CIFAR-100 / Office-Home: task_order_type 1 and 2
    assert TASK_ORDERS["revisit-half"](10) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert TASK_ORDERS["revisit-all"](10) == list(range(10)) * 2
    assert TASK_ORDERS["once"](4) == [0, 1, 2, 3]
    check_task_order((0, 1, 0, 2, 1))
    for bad in ("sometimes", (), (1, 0), (0, 2, 1), (0, 1, 1)):
        with pytest.raises(ConfigError):
            check_task_order(bad)


def test_task_order_is_a_benchmark_value_and_must_visit_every_task(stl_root):
    stream = build(0, root=str(stl_root), num_tasks=4, task_order="revisit-half")
    assert task_schedule(stream) == [0, 1, 0, 1, 2, 3] and len(stream) == 4
    assert task_schedule(build(0, root=str(stl_root), num_tasks=4)) == [0, 1, 2, 3]
    with pytest.raises(DataError):
        build(0, root=str(stl_root), num_tasks=4, task_order="0,1,2")
    with pytest.raises(ConfigError):
        build(0, root=str(stl_root), num_tasks=4, task_order="0,2,1,3")


def test_runner_trains_revisited_tasks_and_evaluates_every_task_seen(tmp_path, stl_root):
    exp = make_experiment({"run": {"benchmark": "stl10-lifelong", "learner": "hps",
                                   "net": "tiny", "epochs": 1},
                           "benchmark": {"root": str(stl_root), "num_tasks": 3,
                                         "task_order": [0, 1, 0, 2, 1]}})
    stream = exp.build_stream()
    learner = exp.build_learner(stream, torch.device("cpu"))
    heads: list[dict[str, torch.Tensor]] = []
    original = learner.end_task

    def end_task(task):  # task 0's head after each visit
        original(task)
        heads.append({k: v.clone() for k, v in learner.task_module(0).state_dict().items()})

    learner.end_task = end_task
    outcome = Runner(exp, stream, learner, tmp_path, torch.device("cpu"), progress=False).run()
    h = outcome.recorder.to_history()
    assert h.task.tolist() == [0, 1, 0, 2, 1] and h.num_tasks == 3
    seen = np.isfinite(h.test).sum(1).tolist()
    assert seen == [1, 2, 2, 3, 3]  # the revisit of task 0 still evaluates task 1
    assert len(learner.num_classes) == 3  # a revisit reuses the task's head
    assert any(not torch.equal(heads[1][k], heads[2][k]) for k in heads[1])  # trained again
    assert all(torch.equal(heads[2][k], heads[3][k]) for k in heads[2])  # task 2 left it


# --- the code's sizes -------------------------------------------------------------------

def test_dfcnn_uses_the_lasem_codes_stl10_sizes():
    six = dfcnn_sizes("stl10", get_net("stl10"), 3)  # utils_env_cl.py lines 751-752
    assert six.kb_size == (2,) * 6
    assert six.kb_channels == (12, 24, 32, 48, 64, 96)
    assert six.ts_channels == (24, 48, 64, 96, 128, 192)
    nine = dfcnn_sizes("dfcnn-9", get_net("dfcnn-9"), 3)  # lines 755-756
    assert nine.kb_channels == (12, 24, 24, 32, 48, 48, 64, 96, 96)
    assert nine.ts_channels == (24, 48, 48, 64, 96, 96, 128, 192, 192)
    # the size rule where the named net was changed: 5x5 kernels, KB (32 + 32) / 3
    spec = get_net("stl10")
    changed = NetSpec(channels=spec.channels, kernels=(5,) * 6, pools=spec.pools, fc=spec.fc)
    assert dfcnn_sizes("stl10", changed, 3).kb_size == (3,) * 6


def test_den_uses_the_lasem_codes_cifar_sizes():
    def den(net: str, shape: tuple[int, int, int], **values):
        ctx = LearnerContext(shape, get_net(net), torch.device("cpu"), net_name=net)
        return LEARNERS.get("den")(DENConfig(lr=1e-3, lr_decay=0.0, **values), ctx)

    cifar = den("cifar", (3, 32, 32))  # utils_env_cl.py lines 483-486
    assert (cifar.expansion, cifar.fc) == (16, (128,))
    assert cifar.net.units(cifar.net.num_layers - 1) == 128
    mnist = den("mnist", (1, 28, 28))  # elsewhere: LASEM appendix A and the net's FC
    assert (mnist.expansion, mnist.fc) == (32, get_net("mnist").fc)
    chosen = den("cifar", (3, 32, 32), expansion=8, fc=(64, 32))
    assert (chosen.expansion, chosen.fc) == (8, (64, 32))
    assert chosen.report() == {"expansion": 8, "fc": [64, 32]}
