"""Every registered learner on a tiny synthetic stream, plus the networks' sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lifelong.api import run_experiment
from lifelong.experiment import make_experiment
from lifelong.learners import LEARNERS
from lifelong.learners.optim import make_optimizer
from lifelong.nets import ConvTrunk, FCHead, get_net
from lifelong.runner import Runner

SYNTHETIC = {"benchmark": "synthetic", "epochs": 3, "checkpoint_every": 100}


def _epochs(name: str) -> int:
    """APD's sigmoid masks start at 0.5, halving every layer's weights: on the tiny net its
    loss sits on a plateau for about three epochs (measured: epoch 4 is 0.28). The sequential
    baselines average the loss (their penalty strengths were published for that), so TF-style
    RMSProp, whose accumulator starts at 1, takes smaller first steps: they reach their peak
    after 3 to 4 epochs here (measured: mean convergence 3.0-3.7 epochs). The selective-
    transfer learners average it too (the LASEM code's loss): at 3 epochs bruteforce-hps,
    darts-hps, darts-dfcnn and static-tf were still at 0.5, at 6 all at 1.0."""
    cls = LEARNERS.get(name)
    slow = name == "apd" or cls.__module__.startswith("lifelong.learners.cl.") \
        or getattr(cls.Config, "loss_reduction", "sum") == "mean"
    return 6 if slow else SYNTHETIC["epochs"]


def _setting(name: str) -> str:
    return "task-il" if "task-il" in LEARNERS.get(name).settings else "class-il"


@pytest.mark.parametrize("name", LEARNERS.names())
def test_every_learner_trains_on_a_tiny_stream(name, tmp_path):
    raw = {"run": dict(SYNTHETIC, learner=name, setting=_setting(name),
                       epochs=_epochs(name))}
    results = run_experiment(raw, out=tmp_path / name, progress=False)
    R = np.array([[np.nan if v is None else v for v in row] for row in results["accuracy_matrix"]])
    assert R.shape == (3, 3)
    assert np.all(np.isfinite(np.tril(R)[np.tril_indices(3)]))
    assert np.all(np.isnan(np.triu(R, 1)[np.triu_indices(3, 1)]))
    # It learns: the first task's training loss falls over its epochs, and the best task
    # is above chance (0.5). (Accuracy floors on real data are in test_runner/test_compare.)
    rows = [r.split(",") for r in (tmp_path / name / "history.csv").read_text().splitlines()[1:]]
    first_task = [float(r[3]) for r in rows if r[1] == "0"]
    if LEARNERS.get(name).evaluate_during_task:
        assert len(first_task) > 1 and first_task[-1] < first_task[0]
    else:  # one row per task: its loss must be below chance-level cross-entropy, ln 2
        assert len(first_task) == 1 and first_task[0] < np.log(2)
    assert max(t["peak_accuracy"] for t in results["tasks"]) > 0.6
    assert results["summary"]["parameters"] > 0
    assert (tmp_path / name / "accuracy.png").is_file()


@pytest.mark.parametrize("name", LEARNERS.names())
def test_every_learner_state_round_trips(name, tmp_path):
    exp = make_experiment({"run": dict(SYNTHETIC, learner=name, setting=_setting(name))})
    stream = exp.build_stream()
    learner = exp.build_learner(stream, torch.device("cpu"))
    Runner(exp, stream, learner, tmp_path, torch.device("cpu"), progress=False).run()
    x = stream[0].test.images()
    task_id = 0 if _setting(name) == "task-il" else None
    before = learner.predict(x, task_id)
    fresh = exp.build_learner(stream, torch.device("cpu"))
    fresh.load_state_dict(learner.state_dict())
    assert torch.equal(fresh.predict(x, task_id), before)
    assert fresh.parameter_count() == learner.parameter_count()


def test_runs_are_deterministic_under_a_seed(tmp_path):
    raw = {"run": dict(SYNTHETIC, learner="hps", seed=3)}
    a = run_experiment(raw, out=tmp_path / "a", progress=False)
    b = run_experiment(raw, out=tmp_path / "b", progress=False)
    assert a["accuracy_matrix"] == b["accuracy_matrix"]
    c = run_experiment({"run": dict(SYNTHETIC, learner="hps", seed=4)}, out=tmp_path / "c",
                       progress=False)
    assert c["accuracy_matrix"] != a["accuracy_matrix"]


def test_paper_network_sizes():
    # DF-CNN paper 4.2: a small STL model for CIFAR-100 has 328k parameters per task (3.28M
    # for 10 tasks); the Office-Home task model has 2.68M.
    def count(net: str, shape: tuple[int, int, int], classes: int) -> int:
        spec = get_net(net)
        trunk = ConvTrunk(spec, shape)
        head = FCHead(trunk.out_features, spec.fc, classes, spec.dropout)
        return sum(p.numel() for m in (trunk, head) for p in m.parameters())

    assert count("cifar", (3, 32, 32), 10) == 328_426
    assert count("office-home", (3, 128, 128), 13) == 2_679_437
    # LASEM Figure 6: the STL-10 trunk flattens to 4x4x128 = 2048 features.
    assert ConvTrunk(get_net("stl10"), (3, 96, 96)).out_features == 2048
    assert ConvTrunk(get_net("office-home"), (3, 128, 128)).out_features == 4096


def test_stl_parameter_count_grows_by_one_network_per_task():
    exp = make_experiment({"run": {"benchmark": "synthetic", "learner": "stl"}})
    stream = exp.build_stream()
    learner = exp.build_learner(stream, torch.device("cpu"))
    sizes = []
    for task in stream:
        learner.begin_task(task)
        learner.end_task(task)
        sizes.append(learner.parameter_count())
    assert sizes[1] - sizes[0] == sizes[0] and sizes[2] == 3 * sizes[0]


def test_hps_shares_the_trunk_and_freezes_nothing_else():
    exp = make_experiment({"run": {"benchmark": "synthetic", "learner": "hps"}})
    stream = exp.build_stream()
    learner = exp.build_learner(stream, torch.device("cpu"))
    learner.begin_task(stream[0])
    learner.end_task(stream[0])
    learner.begin_task(stream[1])
    optimized = {id(p) for g in learner.optimizer.param_groups for p in g["params"]}
    shared = {id(p) for p in learner.model["shared"].parameters()}
    head0 = {id(p) for p in learner.task_module(0).parameters()}
    head1 = {id(p) for p in learner.task_module(1).parameters()}
    assert shared <= optimized and head1 <= optimized and not head0 & optimized


def test_tf_rmsprop_matches_the_tensorflow_update_over_many_steps():
    # TF1: ms <- 0.9 ms + 0.1 g^2 with ms starting at 1; w <- w - lr g / sqrt(ms + 1e-10).
    # Small gradients are where PyTorch's sqrt(ms) + eps would differ (10x after 1000 steps).
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = make_optimizer("rmsprop-tf", [w], lr=1e-3)
    ref_w, ms = np.array([1.0, -2.0]), np.ones(2)
    for step in range(1000):
        g = np.array([0.5, 3.0]) if step < 3 else np.array([1e-6, -1e-7])
        w.grad = torch.tensor(g)
        opt.step()
        ms = 0.9 * ms + 0.1 * g**2
        ref_w = ref_w - 1e-3 * g / np.sqrt(ms + 1e-10)
    np.testing.assert_allclose(w.detach().numpy(), ref_w, rtol=1e-9)
