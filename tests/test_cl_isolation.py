"""iCaRL (herding, exemplar memory, nearest-mean classification, its sigmoid distillation
loss), PSP (context keys, superposition) and SupSup (fixed weights, per-task supermasks):
hand computations, invariants and exact resumption."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from clhelpers import make_learner as _learner
from clhelpers import train_steps as _train
from lifelong.learners.cl.icarl import herding, nme_scores
from lifelong.learners.cl.supsup import top_k_mask
from lifelong.tasks import Batch


def _accuracy(learner, task) -> float:
    x, y = task.test.images(), task.test.labels
    return float((learner.predict(x, task.id).argmax(1) == y).float().mean())


# -- iCaRL -------------------------------------------------------------------------------------
def test_herding_picks_what_the_greedy_rule_says():
    # 1-D by hand: mu = 3.2. k=1: nearest to 3.2 is 3 (index 3). k=2: (3 + x)/2 nearest 3.2,
    # x nearest 3.4 -> 2. k=3: (5 + x)/3, x nearest 4.6 among {0, 1, 10} -> 1. k=4: (6 + x)/4,
    # x nearest 6.8 among {0, 10} -> 10. Then 0.
    f = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    assert herding(f, 5).tolist() == [3, 2, 1, 4, 0]
    assert herding(f, 2).tolist() == [3, 2]  # a prefix: m only truncates the order
    assert herding(f, 9).tolist() == [3, 2, 1, 4, 0]  # never more than there are
    # normalised 2-D features against a direct numpy transcription of the rule
    rng = np.random.default_rng(0)
    g = rng.normal(size=(12, 2))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    mu, chosen, running = g.mean(0), [], np.zeros(2)
    for k in range(1, 7):
        cost = [np.inf if i in chosen else np.linalg.norm(mu - (running + g[i]) / k)
                for i in range(12)]
        chosen.append(int(np.argmin(cost)))
        running += g[chosen[-1]]
    assert herding(torch.tensor(g), 6).tolist() == chosen


def test_icarl_memory_holds_m_per_class_after_each_task_and_reduces_by_prefix():
    _, stream, icarl = _learner("icarl", setting="class-il", memory=24)
    order_after_first = None
    for t, task in enumerate(stream):
        icarl.begin_task(task)
        _train(icarl, task, 3)
        icarl.end_task(task)
        m = 24 // (2 * (t + 1))  # two classes per task: m = 12, 6, 4
        mem = icarl.exemplars.all()
        pairs = sorted(zip(mem["task"].tolist(), mem["y"].tolist(), strict=True))
        assert pairs == sorted((s, c) for s in range(t + 1) for c in range(2) for _ in range(m))
        for s in range(t + 1):
            for c in range(2):
                rows = ((mem["task"] == s) & (mem["y"] == c)).nonzero().flatten()
                assert sorted(mem["rank"][rows].tolist()) == list(range(m))
        if t == 0:
            rows = (mem["y"] == 0).nonzero().flatten()
            order_after_first = mem["x"][rows][mem["rank"][rows].argsort()]
        else:  # reduction keeps the first m of the herding order
            rows = ((mem["task"] == 0) & (mem["y"] == 0)).nonzero().flatten()
            kept = mem["x"][rows][mem["rank"][rows].argsort()]
            assert torch.equal(kept, order_after_first[:m])
    assert len(icarl.exemplars) == 4 * 6  # 6 classes x 4


def test_icarl_nme_prediction_matches_hand_computation():
    _, stream, icarl = _learner("icarl", setting="class-il", memory=20)
    icarl.begin_task(stream[0])
    _train(icarl, stream[0], 5)
    icarl.end_task(stream[0])
    net = icarl.net.eval()
    mem = icarl.exemplars.all()
    x = stream[0].test.images(np.arange(8))
    with torch.no_grad():
        h = F.normalize(net.features(x), dim=1)
        # flip_means (the default, as in the iCaRL code): each exemplar counts as itself
        # and its horizontal flip
        ex = 0.5 * (F.normalize(net.features(mem["x"]), dim=1)
                    + F.normalize(net.features(mem["x"].flip(-1)), dim=1))
    means = []
    for c in range(2):
        mu = ex[mem["y"] == c].mean(0)
        means.append(mu / mu.norm())
    hand = torch.stack([torch.stack([-((h[b] - means[c]) ** 2).sum() for c in range(2)])
                        for b in range(len(x))])  # (8, 2)
    got = icarl.predict(x, None)
    ids = stream[0].class_ids
    torch.testing.assert_close(got[:, ids], hand, rtol=1e-5, atol=1e-5)
    assert torch.isinf(got[:, [c for c in range(stream.num_global_classes) if c not in ids]]).all()
    torch.testing.assert_close(icarl.predict(x, 0), hand, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(nme_scores(h, torch.stack(means)), hand, rtol=1e-5, atol=1e-5)


def test_icarl_loss_is_bce_with_old_model_targets_for_old_classes():
    _, stream, icarl = _learner("icarl", setting="class-il", replay_batch=0)
    icarl.begin_task(stream[0])
    _train(icarl, stream[0], 3)
    icarl.end_task(stream[0])
    icarl.begin_task(stream[1])
    assert icarl.old is not None and icarl.old_tasks == [0]
    x, y = stream[1].train.images(np.arange(10)), stream[1].train.labels[:10]
    with torch.no_grad():
        logits = icarl.net.all_heads(icarl.net.features(x))  # (10, 4): task 0's, then task 1's
        q = torch.sigmoid(icarl.old(x))  # (10, 2)
    target = torch.cat([q, F.one_hot(y, 2).float()], dim=1)
    p = torch.sigmoid(logits)
    hand = -(target * p.log() + (1 - target) * (1 - p).log()).sum(1).mean()
    out = icarl.observe(Batch(x, y, 1))
    torch.testing.assert_close(out["bce"], hand, rtol=1e-5, atol=1e-5)


# -- PSP ---------------------------------------------------------------------------------------
def test_psp_keys_are_fixed_binary_and_differ_between_tasks():
    _, stream, psp = _learner("psp", net="mlp")
    psp.begin_task(stream[0])
    keys0 = [k.clone() for k in psp.net.keys[0]]
    assert [tuple(k.shape) for k in keys0] == [(64,), (256,)]  # inputs of each hidden layer
    assert all(set(k.unique().tolist()) == {-1.0, 1.0} for k in keys0)
    _train(psp, stream[0], 3)
    psp.end_task(stream[0])
    psp.begin_task(stream[1])
    _train(psp, stream[1], 3)
    # the keys never change
    assert all(torch.equal(a, b) for a, b in zip(keys0, psp.net.keys[0], strict=True))
    assert not torch.equal(psp.net.keys[0][0], psp.net.keys[1][0])
    # the same weights, two keys: two different functions of the same input
    x = stream[0].test.images(np.arange(5))
    with torch.no_grad():
        assert not torch.allclose(psp.net.features(x, 0), psp.net.features(x, 1))
    # a fresh learner with the same seed draws the same keys
    _, _, again = _learner("psp", net="mlp")
    again.begin_task(stream[0])
    assert all(torch.equal(a, b) for a, b in zip(keys0, again.net.keys[0], strict=True))


def test_psp_superposition_nearly_preserves_earlier_tasks():
    """The same training of task 1 moves task 0's outputs far less with keys than without
    (fine-tuning the same MLP), and task 0's accuracy stays."""
    changes, acc = {}, {}
    for name in ("psp", "finetune"):
        torch.manual_seed(0)
        _, stream, lrn = _learner(name, net="mlp")
        lrn.begin_task(stream[0])
        _train(lrn, stream[0], 30)
        lrn.end_task(stream[0])
        x = stream[0].test.images()
        before = lrn.predict(x, 0)
        acc[name] = (_accuracy(lrn, stream[0]),)
        for task in list(stream)[1:]:
            lrn.begin_task(task)
            _train(lrn, task, 30, seed=task.id)
            lrn.end_task(task)
        after = lrn.predict(x, 0)
        changes[name] = float((after - before).norm() / before.norm())
        acc[name] += (_accuracy(lrn, stream[0]),)
    assert changes["psp"] < 0.5 * changes["finetune"], changes
    assert acc["psp"][1] >= acc["psp"][0] - 0.05, acc


# -- SupSup ------------------------------------------------------------------------------------
def test_top_k_mask_keeps_the_largest_magnitudes_and_passes_gradients_through():
    s = torch.tensor([[0.3, -0.9], [0.1, -0.2]], requires_grad=True)
    m = top_k_mask(s, 0.5)
    assert m.tolist() == [[1.0, 1.0], [0.0, 0.0]]  # |s| = .3 .9 .1 .2: top 2 are .9 and .3
    (m * torch.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    # straight through top-k, then through abs: g * sign(s)
    assert s.grad.tolist() == [[1.0, -2.0], [3.0, -4.0]]


def test_supsup_weights_never_change_masks_stay_and_old_predictions_are_identical():
    _, stream, sup = _learner("supsup", net="mlp")
    weights = {n: b.clone() for n, b in sup.net.named_buffers()}
    x0 = stream[0].test.images()
    masks0, pred0 = None, None
    for task in stream:
        sup.begin_task(task)
        scores0 = [s.detach().clone() for s in sup.scores]
        _train(sup, task, 5, seed=task.id)
        assert any(
            not torch.equal(a, b) for a, b in zip(scores0, sup.scores, strict=True)
        )  # scores learn
        sup.end_task(task)
        if task.id == 0:
            masks0 = [m.clone() for m in sup.masks[0]]
            pred0 = sup.predict(x0, 0)
            # each layer keeps exactly half its weights
            assert all(int(m.sum()) == m.numel() // 2 for m in masks0)
            assert all(m.dtype == torch.bool for m in masks0)
    assert len(sup.masks) == 3 and sup.scores is None
    for n, b in sup.net.named_buffers():
        if n in weights:  # the body and task 0's head: bit-identical after three tasks
            assert torch.equal(b, weights[n]), n
    assert sup.net.body[0].weight.abs().unique().numel() == 1  # signed constants
    assert all(torch.equal(a, b) for a, b in zip(masks0, sup.masks[0], strict=True))
    assert torch.equal(sup.predict(x0, 0), pred0)
    assert not all(torch.equal(a, b) for a, b in zip(sup.masks[0], sup.masks[1], strict=True))
