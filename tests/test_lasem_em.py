"""LASEM's EM against hand computations: the epsilon-truncated E-step (kept set, weights
within epsilon of the exact posterior, the applied gradient), the priors and their per-epoch
reset, the posterior-weighted orthogonality penalty, the fixed-posterior ablation, and the
roll-back of the shared parameters a finished task did not transfer (LASEM, DARTS, brute
force, static)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lifelong.experiment import make_experiment
from lifelong.learners import LEARNERS
from lifelong.learners.base import LearnerContext
from lifelong.learners.lasem import kept_set
from lifelong.nets import NetSpec
from lifelong.tasks import Batch

TINY2 = NetSpec(channels=(3, 4), kernels=(3, 3), pools=(1, 2), fc=(), dropout=0.0)


def _learner(name: str, **cfg):
    exp = make_experiment({"run": {"benchmark": "synthetic", "learner": name}, "learner": cfg})
    stream = exp.build_stream()
    ctx = LearnerContext((1, 8, 8), TINY2, torch.device("cpu"), net_name="tiny2")
    return LEARNERS.get(name)(exp.learner, ctx), stream


def _batch(stream, task: int = 0, n: int = 8, start: int = 0) -> Batch:
    rows = np.arange(start, start + n)
    return Batch(stream[task].train.images(rows), stream[task].train.labels[rows], task)


def _exact_posterior(learner, batch: Batch) -> np.ndarray:
    """Eq. 2 by hand: prior x mean true-class probability (head in eval mode), normalised."""
    learner.model.eval()
    with torch.no_grad():
        logits = learner.forward_configs(batch.x, batch.task_id, learner.configs)
    learner.model.train()
    lik = logits.softmax(-1)[:, torch.arange(len(batch.y)), batch.y].mean(1).double().numpy()
    post = learner.prior_probs() * lik
    return post / post.sum()


def test_kept_set_by_hand():
    pl = np.array([0.05, 0.6, 0.3, 0.05])
    everything = np.arange(4)
    # Sorted 0.6, 0.3, 0.05, 0.05: outside the first one 0.4, first two 0.1, first three 0.05.
    assert kept_set(pl, everything, 0.0, 0.5).tolist() == [1]
    assert kept_set(pl, everything, 0.0, 0.11).tolist() == [1, 2]
    assert kept_set(pl, everything, 0.0, 0.09).tolist() == [1, 2, 0]
    assert kept_set(pl, everything, 0.0, 0.0).tolist() == [1, 2, 0, 3]
    # Configuration 3 not evaluated, prior mass 0.05: it may hold up to 0.05 / 1.0 of the
    # mass, so with epsilon 0.11 the other two small ones can be dropped, with 0.09 not.
    assert kept_set(pl, np.arange(3), 0.05, 0.11).tolist() == [1, 2]
    assert kept_set(pl, np.arange(3), 0.05, 0.09).tolist() == [1, 2, 0]


def _hand_gradients(learner, batch: Batch, params: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Per configuration, the gradient of its mean cross-entropy w.r.t. ``params``."""
    out = []
    for cfg in learner.configs:
        logits = learner.forward_configs(batch.x, batch.task_id, [cfg])[0]
        grads = torch.autograd.grad(F.cross_entropy(logits, batch.y), params, allow_unused=True)
        out.append(
            [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]
        )
    return out


@pytest.mark.parametrize("epsilon", [0.0, 0.3])
def test_m_step_weights_and_gradient_with_and_without_truncation(epsilon):
    torch.manual_seed(3)
    learner, stream = _learner(
        "lasem-hps", optimizer="sgd", lr=0.1, epsilon=epsilon, prior="average"
    )
    learner.begin_task(stream[0])
    learner.begin_epoch(0)
    # An average prior that favours configurations 2 and 1 (Eq. 2's pi).
    learner.post_sum, learner.post_batches = np.array([0.05, 0.25, 0.65, 0.05]), 1
    batch = _batch(stream)
    exact = _exact_posterior(learner, batch)
    params = [*learner.model["shared"].parameters(), *learner.task_module(0).parameters()]
    before = [p.detach().clone() for p in params]
    per_cfg = _hand_gradients(learner, batch, params)
    # The kept set by hand: the fewest configurations, most probable first, holding
    # >= 1 - epsilon of the exact posterior.
    order = np.argsort(-exact, kind="stable")
    k = int(np.flatnonzero(1 - np.cumsum(exact[order]) <= epsilon + 1e-12)[0]) + 1
    kept = order[:k]
    weights = np.zeros(4)
    weights[kept] = exact[kept] / exact[kept].sum()
    if epsilon:
        assert 0 < len(kept) < 4  # the truncation is exercised
    seen = {}
    original = learner.penalty

    def spy(t, transfer_weight=None):
        seen["transfer_weight"] = transfer_weight
        return original(t, transfer_weight)

    learner.penalty = spy
    learner.observe(batch)
    # The weights differ from the exact posterior by at most epsilon in total variation.
    assert 0.5 * np.abs(weights - exact).sum() <= epsilon + 1e-9
    for j, (p, old) in enumerate(zip(params, before, strict=True)):
        step = (old - p.detach()) / 0.1  # SGD: the applied gradient
        expected = sum(float(weights[i]) * per_cfg[i][j] for i in range(4))
        torch.testing.assert_close(step, expected, rtol=1e-4, atol=1e-6)
    # The prior update sees the posterior: exact without truncation, within epsilon (total
    # variation) with it (unevaluated configurations count as 0).
    if epsilon:
        assert 0.5 * np.abs(learner.epoch_post - exact).sum() <= epsilon
    else:
        np.testing.assert_allclose(learner.epoch_post, exact, rtol=1e-5)
    # Per layer, the posterior mass of the trained configurations that transfer there.
    bits = np.array(learner.configs, dtype=float)
    np.testing.assert_allclose(seen["transfer_weight"].numpy(), weights @ bits, rtol=1e-5)


def test_truncation_certified_from_the_prior_evaluates_fewer_configurations():
    torch.manual_seed(4)
    learner, stream = _learner("lasem-hps", epsilon=0.01, prior="average")
    learner.begin_task(stream[0])
    learner.begin_epoch(0)
    learner.post_sum, learner.post_batches = np.array([0.0004, 0.0003, 0.9990, 0.0003]), 1
    learner.last_pl_sum = 0.5  # as after a batch where the favourite had likelihood ~0.5
    batch = _batch(stream)
    exact = _exact_posterior(learner, batch)
    evaluated: list[int] = []
    original = learner.config_features

    def spy(x, t, configs):
        evaluated.append(len(configs))
        return original(x, t, configs)

    learner.config_features = spy
    learner.observe(batch)
    # One configuration evaluated and trained: the others' prior mass (0.001) is below
    # epsilon x its prior x likelihood, so they cannot hold more than epsilon ...
    assert evaluated == [1]
    assert learner.cost["trained"] == 1 and learner.cost["evaluated"] == 1
    # ... and indeed they do not (the exact posterior, computed with all four).
    assert exact[2] >= 1 - 0.01


def test_truncation_evaluates_more_when_the_prior_cannot_certify():
    torch.manual_seed(4)
    learner, stream = _learner("lasem-hps", epsilon=0.01, prior="average")
    learner.begin_task(stream[0])
    learner.begin_epoch(0)
    learner.post_sum, learner.post_batches = np.array([0.004, 0.003, 0.99, 0.003]), 1
    batch = _batch(stream)
    exact = _exact_posterior(learner, batch)
    learner.observe(batch)
    # 0.01 of the prior outside configuration 2 cannot be certified by its likelihood alone
    # (<= 1): more are evaluated (forward only), and the posterior update is within epsilon.
    assert learner.cost["evaluated"] > 1
    assert 0.5 * np.abs(learner.epoch_post - exact).sum() <= 0.01


def test_truncation_that_drops_nothing_is_exact_lasem_bit_for_bit():
    """With a flat posterior (a task's start) epsilon-truncation must keep every
    configuration; it then evaluates them all in one pass, like exact LASEM, and trains
    exactly the same parameters (no second pass, no recomputed forward)."""
    states, passes = [], []
    for eps in (0.0, 1e-3):
        torch.manual_seed(5)
        learner, stream = _learner("lasem-hps", epsilon=eps)
        calls: list[int] = []
        original = learner.config_features

        def spy(x, t, configs, original=original, calls=calls):
            calls.append(len(configs))
            return original(x, t, configs)

        learner.config_features = spy
        learner.begin_task(stream[0])
        learner.begin_epoch(0)
        for start in (0, 8, 16, 24):
            learner.observe(_batch(stream, start=start))
        states.append({k: v.clone() for k, v in learner.model.state_dict().items()})
        passes.append(calls)
    assert passes[0] == passes[1] == [4] * 4  # one pass of all four per batch
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_count_and_average_priors_and_their_per_epoch_reset():
    learner, stream = _learner("lasem-hps", prior="count", reset_prior=True)
    learner.begin_task(stream[0])
    learner.begin_epoch(0)
    np.testing.assert_allclose(learner.prior_probs(), np.full(4, 0.25))
    learner._update_prior(np.array([0.1, 0.6, 0.2, 0.1]))
    learner._update_prior(np.array([0.1, 0.5, 0.3, 0.1]))
    learner._update_prior(np.array([0.1, 0.2, 0.6, 0.1]))
    np.testing.assert_allclose(learner.prior_probs(), np.array([1, 3, 2, 1]) / 7)  # Eq. 1
    learner.cfg.prior = "average"  # the code's default: the mean of the posteriors
    np.testing.assert_allclose(learner.prior_probs(), [0.1, 1.3 / 3, 1.1 / 3, 0.1])
    learner.begin_epoch(1)  # --reset_prior: uniform again
    np.testing.assert_allclose(learner.prior_probs(), np.full(4, 0.25))
    learner.cfg.prior = "count"
    np.testing.assert_allclose(learner.prior_probs(), np.full(4, 0.25))
    kept, _ = _learner("lasem-hps", prior="count")
    kept.begin_task(stream[0])
    kept.begin_epoch(0)
    kept._update_prior(np.array([0.1, 0.6, 0.2, 0.1]))
    kept.begin_epoch(1)  # no reset by default
    np.testing.assert_allclose(kept.prior_probs(), np.array([1, 2, 1, 1]) / 5)


def test_orthogonality_penalty_is_weighted_by_the_transferring_posterior():
    torch.manual_seed(5)
    learner, stream = _learner("lasem-tf")
    assert learner.cfg.orthogonality == 0.1 and learner.cfg.loss_reduction == "mean"
    learner.begin_task(stream[0])
    factors = learner.task_module(0)["transfer"]
    w = torch.tensor([0.3, 0.8])
    by_hand = 0.1 * sum(
        float(w[layer])
        * sum(
            float(torch.linalg.matrix_norm(U.T @ U - torch.eye(U.shape[0])).detach())
            for U in (f.U1, f.U2, f.U3, f.U4)
        )
        for layer, f in enumerate(factors)
    )
    assert float(learner.penalty(0, w).detach()) == pytest.approx(by_hand, rel=1e-5)
    unweighted = 0.1 * sum(float(f.orthogonality().detach()) for f in factors)
    assert float(learner.penalty(0).detach()) == pytest.approx(unweighted, rel=1e-5)
    assert by_hand < unweighted * 0.81  # the weights matter
    assert float(learner.penalty(0, torch.zeros(2)).detach()) == 0.0


def test_fixed_posterior_ablation():
    learner, stream = _learner("lasem-hps", fixed_posterior="top-1", fixed_posterior_prob=0.7)
    learner.begin_task(stream[0])
    learner.begin_epoch(0)
    top1 = learner.configs.index((0, 1))
    expected = np.full(4, 0.1)
    expected[top1] = 0.7
    np.testing.assert_allclose(learner.prior_probs(), expected)
    learner.observe(_batch(stream))
    np.testing.assert_allclose(learner.epoch_post, expected)
    assert learner.cost["evaluated"] == 0 and learner.cost["trained"] == 4
    learner.end_task(stream[0])
    assert learner.task_configs[0] == (0, 1)


def _shared_copy(learner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learner.model["shared"].state_dict().items()}


def _train_and_force(learner, stream, task: int, config: tuple[int, ...]) -> None:
    """Train ``task`` for a few batches, then make ``config`` the one it ends with."""
    learner.begin_task(stream[task])
    learner.begin_epoch(task)
    for start in (0, 8, 16):
        learner.observe(_batch(stream, task, start=start))
    if hasattr(learner, "counts"):  # LASEM: the prior's argmax, under either prior
        k = learner.configs.index(config)
        learner.counts[:] = 0
        learner.counts[k] = 100
        learner.post_sum[:] = 0
        learner.post_sum[k] = learner.post_batches = max(learner.post_batches, 1)
    else:  # DARTS: the architecture logits' argmax
        with torch.no_grad():
            alpha = learner._alpha(task)
            alpha.copy_(torch.tensor([[1.0 - b, float(b)] for b in config]))
    learner.end_task(stream[task])


@pytest.mark.parametrize(
    "name", ["lasem-hps", "lasem-tf", "lasem-dfcnn", "darts-hps", "darts-dfcnn"]
)
def test_end_task_restores_the_shared_parameters_of_layers_not_transferred(name):
    torch.manual_seed(6)
    learner, stream = _learner(name, lr=1e-2)
    for task, config in ((0, (1, 1)), (1, (0, 1)), (2, (1, 0))):
        before = _shared_copy(learner)
        _train_and_force(learner, stream, task, config)
        after = _shared_copy(learner)
        for key, old in before.items():
            layer = int(key.split(".")[0])
            if config[layer]:
                assert not torch.equal(after[key], old), (task, key)  # the task trained it
            else:
                assert torch.equal(after[key], old), (task, key)  # bit-identical


def test_static_and_bruteforce_restore_the_layers_they_do_not_transfer(tmp_path):
    # static-dfcnn@01: layer 1's KB gets no gradient from the loss but does from kb_l2.
    for name, cfg in (
        ("static-dfcnn", {"transfer": "01", "kb_l2": 1.0}),
        ("bruteforce-dfcnn", {"kb_l2": 1.0}),
    ):
        torch.manual_seed(7)
        learner, stream = _learner(name, lr=1e-2, **cfg)
        before = _shared_copy(learner)
        learner.begin_task(stream[0])
        learner.begin_epoch(0)
        for start in (0, 8):
            learner.observe(_batch(stream, 0, start=start))
        learner.end_task(stream[0])
        config = learner.task_configs[0]
        after = _shared_copy(learner)
        for key, old in before.items():
            layer = int(key.split(".")[0])
            assert torch.equal(after[key], old) == (not config[layer]), (name, key, config)


def test_roll_back_survives_a_checkpoint_inside_the_task():
    torch.manual_seed(8)
    learner, stream = _learner("lasem-hps", lr=1e-2)
    before = _shared_copy(learner)
    learner.begin_task(stream[0])
    learner.begin_epoch(0)
    learner.observe(_batch(stream))
    state = learner.state_dict()
    resumed, _ = _learner("lasem-hps", lr=1e-2)
    resumed.load_state_dict(state)
    resumed.begin_task(stream[0])  # re-attaches, does not take a new snapshot
    resumed.observe(_batch(stream, start=8))
    k = resumed.configs.index((0, 0))  # make (0, 0) the choice under either prior
    resumed.counts[:] = 0
    resumed.counts[k] = 5
    resumed.post_sum[:] = 0
    resumed.post_sum[k] = resumed.post_batches = max(resumed.post_batches, 1)
    resumed.end_task(stream[0])
    assert resumed.task_configs[0] == (0, 0)
    assert all(torch.equal(v, before[k]) for k, v in _shared_copy(resumed).items())


def test_bruteforce_scores_each_configuration_by_its_best_validation_epoch():
    learner, stream = _learner("bruteforce-hps")
    learner.begin_task(stream[0])
    learner.begin_epoch(0)
    learner.observe(_batch(stream))
    learner._score()  # on the real validation split
    assert learner.best_val == learner.val_accuracy and learner.task_epochs == 0
    # Then two more epochs with fixed accuracies per candidate.
    table = iter([0.5, 0.9, 0.6, 0.7, 0.55, 0.4, 0.8, 0.75])
    learner.candidate_accuracy = lambda k: next(table)
    learner.best_val = []
    learner.begin_epoch(1)  # nothing trained since the last scoring: no scoring
    assert learner.best_val == []
    for epoch in (1, 2):
        learner.observe(_batch(stream))
        learner.begin_epoch(epoch + 1) if epoch == 1 else learner.end_task(stream[0])
    # The last epoch's best is configuration 2 (0.8), but configuration 1 reached 0.9 earlier.
    assert learner.best_val == [0.55, 0.9, 0.8, 0.75]
    assert learner.task_configs[0] == learner.configs[1]
