"""The DF-CNN paper's baselines: TF's factorised filters, ProgNN's frozen columns and
lateral sizes, DEN's expansion, selection and split with time-stamped units."""

from __future__ import annotations

import numpy as np
import torch

from lifelong.experiment import make_experiment
from lifelong.learners import LEARNERS
from lifelong.learners.base import LearnerContext
from lifelong.learners.tf import Factors
from lifelong.nets import get_net
from lifelong.runner import Runner


def _learner(name: str, **run):
    exp = make_experiment({"run": {"benchmark": "synthetic", "learner": name, **run}})
    stream = exp.build_stream()
    return exp, stream, exp.build_learner(stream, torch.device("cpu"))


def test_tf_filters_are_the_mode_products_of_the_core():
    torch.manual_seed(0)
    c_in, c_out, k = 3, 4, 3
    W0 = torch.randn(c_out, c_in, k, k)
    f = Factors(c_in, c_out, k)
    W = f.filters(W0).detach().numpy()
    # The LASEM code: four tensordots over axis 0 of a (k, k, c_in, c_out) tensor, which
    # cycle the axes back to their order.
    w = W0.permute(2, 3, 1, 0).numpy()
    for U in (f.U1, f.U2, f.U3, f.U4):
        w = np.tensordot(w, U.detach().numpy(), axes=([0], [0]))
    np.testing.assert_allclose(W, w.transpose(3, 2, 0, 1), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # identities are orthogonal; 2I gives ||4I - I||_F per matrix
        for U in (f.U1, f.U2, f.U3, f.U4):
            U.copy_(torch.eye(U.shape[0]))
        assert float(f.orthogonality()) == 0.0
        for U in (f.U1, f.U2, f.U3, f.U4):
            U.mul_(2)
        expected = sum(3 * np.sqrt(n) for n in (k, k, c_in, c_out))
        assert float(f.orthogonality()) == np.float32(expected)


def test_prognn_columns_freeze_and_laterals_shrink_with_the_number_of_columns(tmp_path):
    exp, stream, learner = _learner("prognn", epochs=1)
    Runner(exp, stream, learner, tmp_path, torch.device("cpu"), progress=False).run()
    assert [len(learner.task_module(t).laterals[0]) for t in range(3)] == [0, 0, 0]
    # tiny net: one conv layer, so no laterals; check sizes on the CIFAR net instead
    ctx = LearnerContext((3, 32, 32), get_net("cifar"), torch.device("cpu"), net_name="cifar")
    cifar = LEARNERS.get("prognn")(exp.learner, ctx)
    for t in range(10):
        cifar._add_task(t, 10)
    reduced = [[a.V.out_channels for a in layer[:1]] for layer in cifar.task_module(1).laterals]
    assert reduced == [[], [8], [8], [16]]  # c_in / (2 * 2): the DF-CNN code's task 2
    last = [[a.V.out_channels for a in layer[:1]] for layer in cifar.task_module(9).laterals]
    assert last == [[], [1], [1], [3]]  # c_in / (2 * 10)
    assert len(cifar.task_module(9).laterals[1]) == 9


def test_prognn_earlier_columns_do_not_change(tmp_path):
    exp, stream, learner = _learner("prognn", epochs=2)
    snap = {}
    original = learner.end_task

    def end_task(task):
        original(task)
        snap[task.id] = {k: v.clone() for k, v in learner.task_module(task.id).state_dict().items()}

    learner.end_task = end_task
    Runner(exp, stream, learner, tmp_path, torch.device("cpu"), progress=False).run()
    for t, state in snap.items():
        assert all(torch.equal(learner.task_module(t).state_dict()[k], v) for k, v in state.items())


def test_den_new_and_split_units_leave_earlier_tasks_untouched():
    torch.manual_seed(0)
    exp, stream, learner = _learner("den", epochs=6)
    x0 = stream[0].test.images()
    learner.begin_task(stream[0])
    learner.end_task(stream[0])
    before = learner.predict(x0, 0)
    units = [learner.net.units(layer) for layer in range(learner.net.num_layers)]

    learner.begin_task(stream[1])
    masks = learner._expand(1)
    k = learner.expansion
    assert [learner.net.units(layer) for layer in range(learner.net.num_layers)] == \
        [u + k for u in units]
    # new units are invisible to task 0; masks train only weights into or out of new units
    assert torch.equal(learner.predict(x0, 0), before)
    assert float(masks[0][: units[0]].sum()) == 0.0 and float(masks[0][units[0]:].min()) == 1.0

    # Drift one old unit of the first layer far: the split gives task 0 its old weights back.
    with torch.no_grad():
        learner.net.weights[0][0] += 1.0
    drifted = learner.predict(x0, 0)
    assert not torch.equal(drifted, before)
    learner._split(1)
    assert learner.net.retired(0)[0] == 1 and learner.net.born(0)[-1] == 1
    assert torch.allclose(learner.predict(x0, 0), before, atol=1e-6)
    # the copy keeps the drifted weights and serves task 1
    assert torch.allclose(learner.net.weights[0][-1], learner.before[0][0] + 1.0)


def test_den_selection_follows_nonzero_paths_from_the_output_layer():
    exp, stream, learner = _learner("den", epochs=6)
    learner.begin_task(stream[0])
    learner.end_task(stream[0])
    learner.begin_task(stream[1])
    with torch.no_grad():
        head = learner.task_module(1).weight
        head.zero_()
        head[:, 3] = 1.0  # only hidden unit 3 of the last layer feeds the new output
    masks = learner._select_subnetwork(1)
    last = masks[-1].flatten(1).amax(1)
    assert last.nonzero().flatten().tolist() == [3]
