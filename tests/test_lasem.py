"""LASEM and its comparators: configurations, Eq. 1 and 2 against hand computations, the
posterior-weighted gradients of Eq. 3, brute force, DARTS and group-based LASEM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lifelong.errors import ConfigError
from lifelong.experiment import make_experiment
from lifelong.learners import LEARNERS, resolve_learner
from lifelong.learners.base import LearnerContext
from lifelong.learners.transfer import all_configs, check_groups, parse_config
from lifelong.nets import NetSpec
from lifelong.runner import Runner
from lifelong.tasks import Batch

TINY2 = NetSpec(channels=(3, 4), kernels=(3, 3), pools=(1, 2), fc=(), dropout=0.0)


def test_static_configuration_names():
    assert parse_config("all", 4) == (1, 1, 1, 1) and parse_config("none", 4) == (0, 0, 0, 0)
    assert parse_config("top-2", 4) == (0, 0, 1, 1)
    assert parse_config("bottom-1", 4) == (1, 0, 0, 0)
    assert parse_config("alternating", 4) == (0, 1, 0, 1)  # the paper's Alternating {2, 4}
    assert parse_config("alternating-odd", 4) == (1, 0, 1, 0)
    assert parse_config("0110", 4) == (0, 1, 1, 0)
    for bad in ("top-5", "011", "sideways"):
        with pytest.raises(ConfigError):
            parse_config(bad, 4)
    groups = check_groups([[1, 2, 3], [4, 5, 6], [7, 8, 9]], 9)
    configs = all_configs(9, groups)
    assert len(configs) == 8 and (0, 0, 0, 1, 1, 1, 0, 0, 0) in configs
    with pytest.raises(ConfigError):
        check_groups([[1, 2], [2, 3]], 3)
    cls, implied = resolve_learner("dfcnn@top-2")
    assert cls is LEARNERS.get("static-dfcnn") and implied == {"transfer": "top-2"}
    with pytest.raises(ConfigError):
        resolve_learner("den@top-2")


def _lasem(base: str = "hps", **cfg):
    exp = make_experiment({"run": {"benchmark": "synthetic", "learner": f"lasem-{base}"},
                           "learner": cfg})
    stream = exp.build_stream()
    ctx = LearnerContext((1, 8, 8), TINY2, torch.device("cpu"), net_name="tiny2")
    return LEARNERS.get(f"lasem-{base}")(exp.learner, ctx), stream


def test_prior_and_posterior_match_equations_1_and_2():
    torch.manual_seed(0)
    learner, stream = _lasem(prior="count")  # Eq. 1
    learner.begin_task(stream[0])
    learner.counts = np.array([3.0, 0.0, 1.0, 0.0])  # n_c: batches where c was most probable
    np.testing.assert_allclose(learner.prior_probs(), [4 / 8, 1 / 8, 2 / 8, 1 / 8])
    x, y = stream[0].train.images(np.arange(6)), stream[0].train.labels[:6]
    learner.model.eval()
    with torch.no_grad():
        logits = learner.forward_configs(x, 0, learner.configs)
    lik = learner.likelihood(logits, y).numpy()
    for i, cfg in enumerate(learner.configs):  # each configuration on its own
        with torch.no_grad():
            single = learner.forward_configs(x, 0, [cfg])[0]
        np.testing.assert_allclose(lik[i], float(single.softmax(1)[torch.arange(6), y].mean()),
                                   rtol=1e-5)
    post = np.array([4, 1, 2, 1]) / 8 * lik
    post /= post.sum()
    learner._update_prior(post)
    expected = np.array([3.0, 0.0, 1.0, 0.0])
    expected[int(np.argmax(post))] += 1  # Eq. 1 counts the most probable configuration
    np.testing.assert_array_equal(learner.counts, expected)
    learner.cfg.prior = "average"
    np.testing.assert_allclose(learner.prior_probs(), post)


def test_m_step_gradient_is_posterior_weighted_and_respects_layer_roles():
    torch.manual_seed(1)
    learner, stream = _lasem(optimizer="sgd", lr=0.1, loss_reduction="mean")
    learner.begin_task(stream[0])
    learner.begin_epoch(0)
    learner.counts = np.array([0.0, 2.0, 5.0, 1.0])
    x, y = stream[0].train.images(np.arange(8)), stream[0].train.labels[:8]
    shared = [p for p in learner.model["shared"].parameters()]
    specific = list(learner.task_module(0)["specific"].parameters())
    before = [p.detach().clone() for p in shared + specific]
    prior = learner.prior_probs()
    # By hand: each configuration's gradient, then the posterior-weighted sum (Eq. 3).
    learner.model.train()
    per_cfg, lik = [], []
    for cfg in learner.configs:
        logits = learner.forward_configs(x, 0, [cfg])[0]
        lik.append(float(logits.detach().softmax(1)[torch.arange(8), y].mean()))
        grads = torch.autograd.grad(F.cross_entropy(logits, y), shared + specific,
                                    allow_unused=True)
        per_cfg.append([torch.zeros_like(p) if g is None else g
                        for g, p in zip(grads, shared + specific, strict=True)])
    post = prior * np.array(lik)
    post /= post.sum()
    learner.observe(Batch(x, y, 0))
    for j, (p, old) in enumerate(zip(shared + specific, before, strict=True)):
        step = (old - p.detach()) / 0.1  # SGD: the applied gradient
        expected = sum(float(post[i]) * per_cfg[i][j] for i in range(4))
        torch.testing.assert_close(step, expected, rtol=1e-4, atol=1e-6)
    # Layer 1's shared weights get gradient only from configurations transferring at layer 1
    # (bit 1 in position 0) and its task-specific weights only from the others.
    for i, cfg in enumerate(learner.configs):
        if cfg[0] == 0:
            assert float(per_cfg[i][0].abs().sum()) == 0.0  # shared layer-1 weight
        else:
            assert float(per_cfg[i][len(shared)].abs().sum()) == 0.0  # specific layer-1 weight


def test_e_step_likelihood_is_computed_without_dropout():
    # The LASEM code computes the posterior with dropout off (dropout_prob=1.0) and trains
    # with it on; with dropout 0.9 in the head a train-mode likelihood would differ.
    exp = make_experiment({"run": {"benchmark": "synthetic", "learner": "lasem-hps"},
                           "learner": {}})
    stream = exp.build_stream()
    net = NetSpec(channels=(3, 4), kernels=(3, 3), pools=(1, 2), fc=(6,), dropout=0.9)
    ctx = LearnerContext((1, 8, 8), net, torch.device("cpu"), net_name="tiny2")
    torch.manual_seed(2)
    learner = LEARNERS.get("lasem-hps")(exp.learner, ctx)
    learner.begin_task(stream[0])
    learner.begin_epoch(0)
    x, y = stream[0].train.images(np.arange(8)), stream[0].train.labels[:8]
    learner.model.eval()
    with torch.no_grad():
        lik = learner.likelihood(learner.forward_configs(x, 0, learner.configs), y).numpy()
    post = learner.prior_probs() * lik
    post /= post.sum()
    learner.observe(Batch(x, y, 0))
    np.testing.assert_allclose(learner.epoch_post, post, rtol=1e-5)
    assert all(m.training for m in learner.model.modules())  # dropout is back on


def test_end_of_task_fixes_the_most_probable_configuration_and_drops_the_rest(tmp_path):
    exp = make_experiment({"run": {"benchmark": "synthetic", "learner": "lasem-dfcnn",
                                   "epochs": 2}})
    stream = exp.build_stream()
    learner = exp.build_learner(stream, torch.device("cpu"))
    Runner(exp, stream, learner, tmp_path, torch.device("cpu"), progress=False).run()
    report = learner.learner_report().to_json()
    assert set(report["configurations"]) == {"0", "1", "2"}
    for t in range(3):
        cfg = learner.task_configs[t]
        module = learner.task_module(t)
        for layer, bit in enumerate(cfg):
            assert (len(list(module["transfer"][layer].parameters())) > 0) == bool(bit)
            assert (len(list(module["specific"][layer].parameters())) > 0) == (not bit)
        assert len(report["posterior_trace"][str(t)]) == 2  # one entry per epoch


def test_bruteforce_keeps_the_best_candidate_on_validation(tmp_path):
    exp = make_experiment({"run": {"benchmark": "synthetic", "learner": "bruteforce-hps",
                                   "epochs": 2}})
    stream = exp.build_stream()
    learner = exp.build_learner(stream, torch.device("cpu"))
    chosen = {}
    original = learner.end_task

    def end_task(task):
        learner._score()
        chosen[task.id] = (learner.configs[int(np.argmax(learner.val_accuracy))],
                           list(learner.val_accuracy))
        original(task)

    learner.end_task = end_task
    Runner(exp, stream, learner, tmp_path, torch.device("cpu"), progress=False).run()
    for t, (cfg, accs) in chosen.items():
        assert learner.task_configs[t] == cfg and len(accs) == len(learner.configs)


def test_darts_fixes_the_larger_mixture_weight(tmp_path):
    exp = make_experiment({"run": {"benchmark": "synthetic", "learner": "darts-tf",
                                   "epochs": 2}})
    stream = exp.build_stream()
    learner = exp.build_learner(stream, torch.device("cpu"))
    alphas = {}
    original = learner.end_task

    def end_task(task):
        alphas[task.id] = learner._alpha(task.id).detach().clone()
        original(task)

    learner.end_task = end_task
    Runner(exp, stream, learner, tmp_path, torch.device("cpu"), progress=False).run()
    for t, alpha in alphas.items():
        assert learner.task_configs[t] == tuple(int(i) for i in alpha.argmax(1))
        assert float((alpha - torch.zeros_like(alpha)).abs().sum()) > 0  # alpha was trained
        assert "alpha" not in learner.task_module(t)


def test_group_lasem_runs_a_nine_layer_dfcnn(tmp_path):
    raw = {"run": {"benchmark": "synthetic", "learner": "lasem-dfcnn", "net": "dfcnn-9",
                   "epochs": 1},
           "benchmark": {"image_size": 16, "channels": 3, "num_tasks": 2, "images_per_class": 30},
           "learner": {"groups": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}}
    exp = make_experiment(raw)
    stream = exp.build_stream()
    learner = exp.build_learner(stream, torch.device("cpu"))
    assert learner.num_layers == 9 and len(learner.configs) == 8
    Runner(exp, stream, learner, tmp_path, torch.device("cpu"), progress=False).run()
    for cfg in learner.task_configs.values():
        assert cfg[0] == cfg[1] == cfg[2] and cfg[3] == cfg[4] == cfg[5]


def test_apd_decomposition_and_objective(tmp_path):
    exp = make_experiment({"run": {"benchmark": "split-digits", "learner": "apd", "epochs": 1},
                           "benchmark": {"num_tasks": 2}})
    stream = exp.build_stream()
    learner = exp.build_learner(stream, torch.device("cpu"))
    pruned: dict[int, float] = {}
    original_end = learner.end_task

    def end_task(task):
        original_end(task)
        taus = learner.task_module(task.id).tau
        assert all(bool(((t == 0) | (t.abs() >= 1e-4)).all()) for t in taus)
        pruned[task.id] = float(sum(int((t == 0).sum()) for t in taus))

    learner.end_task = end_task
    Runner(exp, stream, learner, tmp_path, torch.device("cpu"), progress=False).run()
    m = learner.task_module(1)
    sigma, v, tau = learner.model["shared"][0], m.v[0], m.tau[0]
    expected = sigma * torch.sigmoid(v).view(-1, 1, 1, 1) + tau  # theta = sigma (x) M + tau
    torch.testing.assert_close(learner.weights(1)[0], expected)
    # Each task's small tau entries are zeroed when it ends (later tasks then train them
    # retroactively, so whether a zero survives task 1 depends on the last float digits).
    assert pruned[0] > 0 and pruned[1] > 0
    # The objective while task 1 trains, by hand: CE + lambda1 * sum |tau_i| (all tasks)
    # + lambda2 * ||theta_0 - theta_0*||^2, with sigma moved so that the last term is not 0.
    learner.begin_task(stream[1])
    with torch.no_grad():
        sigma.add_(0.01)
    x, y = stream[1].train.images(np.arange(5)), stream[1].train.labels[:5]
    learner.model.eval()
    logits = learner.forward(x, 1)
    ce = F.cross_entropy(logits, y)
    with torch.no_grad():
        l1 = sum(float(t.abs().sum()) for k in (0, 1) for t in learner.task_module(k).tau)
        retro = sum(float((now - old).square().sum())
                    for now, old in zip(learner.weights(0), learner.stored[0], strict=True))
    assert retro > 0
    total = learner.loss(logits, Batch(x, y, 1))
    by_hand = float(ce.detach()) + 4e-4 * l1 + 100.0 * retro
    assert float(total.detach()) == pytest.approx(by_hand, rel=1e-5)
    # Earlier tasks' tau are trained (retroactively); their masks and heads are not.
    optimized = {id(p) for p in learner.trainable_parameters(1)}
    assert all(id(t) in optimized for t in learner.task_module(0).tau)
    assert not any(id(p) in optimized for p in learner.task_module(0).v)
