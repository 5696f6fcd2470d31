"""GEM, ER-ACE, GDumb, joint training, PSP's complex contexts, SupSup's task inference,
iCaRL's flipped class means and LwF's warm-up, against hand computations and constructed
cases; and exact resumption of each."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from clhelpers import make_learner as _learner
from clhelpers import train_steps as _train
from lifelong.checkpoint import flatten, unflatten
from lifelong.learners.cl import gem as gem_module
from lifelong.learners.cl.er_ace import present_class_ce
from lifelong.learners.cl.gdumb import GreedyClassBalancedMemory
from lifelong.learners.cl.gem import flat_grad, gem_project
from lifelong.learners.cl.supsup import entropy_gradient

D = torch.float64


# -- GEM -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "memories,margin,expected",
    [
        # one conflicting memory: the projection of g onto the half-plane z2 >= z1
        ([[-1.0, 1.0]], 0.0, [0.5, 0.5]),
        # margin 1 pushes further: v = max(margin, 1/2) = 1, z = g + G'v
        ([[-1.0, 1.0]], 1.0, [0.0, 1.0]),
        # two memories whose cone z1 <= -|z2| is closest to g = (1, 0) at the origin
        ([[-1.0, 1.0], [-1.0, -1.0]], 0.0, [0.0, 0.0]),
    ],
)
def test_gem_projection_on_hand_cases(memories, margin, expected):
    g = torch.tensor([1.0, 0.0], dtype=D)
    G = torch.tensor(memories, dtype=D)
    z = gem_project(g, G, margin=margin, eps=0.0)
    torch.testing.assert_close(z, torch.tensor(expected, dtype=D), atol=1e-10, rtol=0)
    assert (G @ z >= -1e-12).all()


def test_gem_projection_never_increases_a_memory_loss_and_is_the_closest_such_step():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        G = torch.randn(4, 30, generator=gen, dtype=D)
        g = torch.randn(30, generator=gen, dtype=D) - 2 * G[0]  # conflicts with memory 0
        z = gem_project(g, G, margin=0.0, eps=0.0)
        assert (G @ z >= -1e-9).all()  # non-negative dot product with every memory gradient
        # closest: no random feasible direction is nearer to g
        for _ in range(50):
            cand = z + 0.1 * torch.randn(30, generator=gen, dtype=D)
            if (G @ cand >= 0).all():
                assert (cand - g).norm() >= (z - g).norm() - 1e-12


def test_gem_learner_steps_with_the_projected_gradient(monkeypatch):
    _, stream, gem = _learner("gem", eps=0.0, mem_per_task=20)
    gem.begin_task(stream[0])
    _train(gem, stream[0], 5)
    gem.end_task(stream[0])
    assert len(gem.memories[0]) == 20 and gem.memories[0].all()["y"].bincount().tolist() == [10, 10]
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = gem_module.gem_project

    def spy(g, G, margin, eps):
        z = real(g, G, margin, eps)
        seen.append((G, z))
        return z

    monkeypatch.setattr(gem_module, "gem_project", spy)
    gem.begin_task(stream[1])
    step = gem.optimizer.step
    applied: list[torch.Tensor] = []
    gem.optimizer.step = lambda *a, **k: (applied.append(flat_grad(gem.trainable())), step())[1]
    _train(gem, stream[1], 30, seed=1)
    assert seen, "no step conflicted with the memory in 30 steps"
    assert gem.report()["projected_fraction"] == len(seen) / 30
    zs = [z for _, z in seen]
    matched = [a for a in applied if any(torch.allclose(a, z.to(a.dtype)) for z in zs)]
    assert len(matched) == len(seen)  # every projected direction is the one stepped with
    for G, z in seen:
        assert (G @ z >= -1e-6 * G.norm() * z.norm()).all()


def test_gem_equal_memory_gives_each_task_an_equal_class_balanced_share():
    _, stream, gem = _learner("gem", mem_total=24)
    for t, task in enumerate(stream[:3]):
        gem.begin_task(task)
        _train(gem, task, 2)
        gem.end_task(task)
        share = 24 // (t + 1)
        for store in gem.memories.values():
            counts = store.all()["y"].bincount().tolist()
            assert counts == [share // 2, share // 2]
    assert gem.stored_examples() == 24  # 8 per task, 4 per class


# -- ER-ACE ----------------------------------------------------------------------------------
def test_ace_loss_ignores_the_logits_of_absent_classes():
    logits = torch.randn(5, 6, dtype=D, requires_grad=True)
    y = torch.tensor([0, 2, 2, 0, 2])
    loss = present_class_ce(logits, y)
    # the cross-entropy over the present columns only (0 and 2), by hand
    sub = logits[:, [0, 2]]
    hand = -(sub.log_softmax(1)[torch.arange(5), torch.tensor([0, 1, 1, 0, 1])])
    torch.testing.assert_close(loss, hand)
    loss.sum().backward()
    assert logits.grad is not None
    assert (logits.grad[:, [1, 3, 4, 5]] == 0).all() and (logits.grad[:, [0, 2]] != 0).all()
    moved = logits.detach().clone()
    moved[:, [1, 3, 4, 5]] += 100.0
    torch.testing.assert_close(present_class_ce(moved, y), loss.detach())


def test_er_ace_incoming_loss_leaves_old_classes_alone_in_class_il():
    _, stream, ace = _learner("er-ace", setting="class-il")
    ace.begin_task(stream[0])
    _train(ace, stream[0], 3)
    ace.end_task(stream[0])
    ace.begin_task(stream[1])
    ace.net.zero_grad(set_to_none=True)  # the last step's gradients
    task = stream[1]
    x, y = task.train.images(np.arange(10)), task.train.labels[:10]
    h = ace.net.features(x)
    logits, target = ace.incoming_logits(h, y, task.id)
    assert logits.shape[1] == 4 and (target >= 2).all()  # all seen columns, shifted labels
    present_class_ce(logits, target).mean().backward()
    old_head = ace.net.heads["0"]
    assert all(p.grad is None or (p.grad == 0).all() for p in old_head.parameters())
    # plain cross-entropy over the same columns would push the old classes down
    ace.net.zero_grad(set_to_none=True)
    F.cross_entropy(ace.incoming_logits(ace.net.features(x), y, task.id)[0], target).backward()
    assert old_head.weight.grad is not None and old_head.weight.grad.abs().sum() > 0
    # the buffer holds the stream: replayed rows include the first task
    assert (ace.buffer.all()["task"] == 0).any()


# -- GDumb -----------------------------------------------------------------------------------
def test_greedy_sampler_balances_classes_by_the_papers_rule():
    mem = GreedyClassBalancedMemory(6)
    gen = torch.Generator().manual_seed(0)
    stream = [0] * 10 + [1] * 3 + [2] * 3  # a long first class, then two short ones
    for i, c in enumerate(stream):
        mem.offer(gen, x=torch.full((1, 2), float(i)), cls=torch.tensor([c]))
    # traced by hand: 6 of class 0; class 1 takes 3 (quota 3); class 2 takes 2 (quota 2),
    # evicting from class 0 (the lowest id among the largest) and then class 1
    assert mem.counts() == {0: 2, 1: 2, 2: 2} and len(mem) == 6
    kept = sorted(mem.all()["x"][:, 0].long().tolist())
    assert [i for i in kept if i >= 13] == [13, 14]  # the third class-2 example was dropped


def test_gdumb_memory_is_class_balanced_and_observe_does_not_train():
    _, stream, gd = _learner("gdumb", setting="class-il", memory=40)
    for task in stream[:2]:
        gd.begin_task(task)
        before = [p.detach().clone() for p in gd.net.parameters()]
        _train(gd, task, 30)
        if task.id == 0:  # storing is all observe does
            assert all(torch.equal(a, p) for a, p in zip(before, gd.net.parameters(),
                                                           strict=True))
        gd.end_task(task)
    assert sorted(gd.memory.counts().values()) == [10, 10, 10, 10]
    assert gd.stored_examples() == 40 and gd.report()["retrains"] == 2


def test_gdumb_retrains_from_scratch_on_the_memory_only():
    nets = []
    for garbage in (False, True):
        _, stream, gd = _learner("gdumb", memory=100, retrain_epochs=20, retrain_batch=5)
        gd.begin_task(stream[0])
        _train(gd, stream[0], 10)
        if garbage:  # the weights before retraining must not matter
            with torch.no_grad():
                for p in gd.net.parameters():
                    p.normal_(0, 5)
        gd.retrain()
        nets.append(gd.net)
    for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(p, q)
    # and it learned the memory
    mem = gd.memory.all()
    acc = (gd.predict(mem["x"], 0).argmax(1) == mem["y"]).float().mean()
    assert acc > 0.9


def test_gdumb_offers_the_stream_once_per_task():
    _, stream, gd = _learner("gdumb", memory=1000)
    gd.begin_task(stream[0])
    gd.begin_epoch(0)
    _train(gd, stream[0], 5)
    assert len(gd.memory) == 50 and gd.dirty
    gd.begin_epoch(1)  # the second epoch: retrain, and store nothing more
    assert not gd.dirty and gd.report()["retrains"] == 1
    _train(gd, stream[0], 5, seed=3)
    assert len(gd.memory) == 50


# -- joint training --------------------------------------------------------------------------
def test_joint_trains_on_the_union_of_the_tasks_seen():
    _, stream, joint = _learner("joint")
    joint.begin_task(stream[0])
    _train(joint, stream[0], 2)
    joint.end_task(stream[0])
    n0, n1 = len(stream[0].train), len(stream[1].train)
    assert joint.stored_examples() == n0
    torch.testing.assert_close(joint.past.all()["x"], stream[0].train.images())
    joint.begin_task(stream[1])
    drawn: list[torch.Tensor] = []
    tasks_seen: list[torch.Tensor] = []
    rows, ce = joint._past_rows, joint.ce_per_example
    joint._past_rows = lambda r: drawn.append(rows(r)) or drawn[-1]  # type: ignore[method-assign]

    def spy(h, y, tasks):
        tasks_seen.append(tasks)
        return ce(h, y, tasks)

    joint.ce_per_example = spy  # type: ignore[method-assign]
    steps = math.ceil(n1 / 10)
    _train(joint, stream[1], steps, seed=1)
    assert all(len(d) == math.ceil(10 * n0 / n1) for d in drawn)
    # over an epoch of the new task, every earlier image is trained on once
    first = torch.cat(drawn)[:n0]
    assert sorted(first.tolist()) == list(range(n0))
    assert all({0, 1} == set(t.tolist()) for t in tasks_seen)


# -- PSP complex -----------------------------------------------------------------------------
def test_psp_complex_context_is_the_real_part_of_a_complex_layer():
    _, stream, psp = _learner("psp", context="complex")
    psp.begin_task(stream[0])
    net = psp.net
    for i, (m, key) in enumerate(zip(net.weighted(), net.keys[0], strict=True)):
        assert key.shape == (2, *m.weight.shape[1:])
        torch.testing.assert_close(key[0] ** 2 + key[1] ** 2, torch.ones_like(key[0]))
        if isinstance(m, nn.Linear):  # y = Re(W (c ⊙ x)) + b with complex W and c
            x = torch.randn(3, m.weight.shape[1])
            W = torch.complex(m.weight.detach(), net.imag[i].detach())
            c = torch.complex(key[0], key[1])
            hand = (x.to(W.dtype) * c) @ W.T
            torch.testing.assert_close(F.linear(x, net.keyed_weight(i, m, key).detach()),
                                       hand.real)
    # the imaginary part is trained too
    before = [p.detach().clone() for p in net.imag]
    _train(psp, stream[0], 3)
    assert all(not torch.equal(b, p) for b, p in zip(before, net.imag, strict=True))


def test_psp_binary_keys_are_unchanged_by_the_complex_option():
    _, stream, psp = _learner("psp")
    psp.begin_task(stream[0])
    assert len(psp.net.imag) == 0
    for key in psp.net.keys[0]:
        assert set(key.unique().tolist()) == {-1.0, 1.0}


# -- SupSup task inference -------------------------------------------------------------------
def _supsup_with_masks(infer: str = "example"):
    """SupSup on two tasks whose masks are set by hand: the same body mask, task 0's head
    mask all ones, task 1's all zeros (its outputs are constant 0, the uniform softmax)."""
    _, stream, sup = _learner("supsup", setting="class-il", infer=infer)
    for task in stream[:2]:
        sup.begin_task(task)
        sup.end_task(task)
    body = [m.bool() for m in sup.masks[0][:-1]]
    head = sup.masks[0][-1]
    sup.masks[0] = body + [torch.ones_like(head)]
    sup.masks[1] = body + [torch.zeros_like(head)]
    return stream, sup


def test_supsup_inference_picks_the_mask_that_lowers_the_entropy():
    stream, sup = _supsup_with_masks()
    x = stream[0].test.images(np.arange(20))
    masks = {t: [m.float() for m in sup.masks[t]] for t in (0, 1)}
    grad = entropy_gradient(sup.net, x, masks)
    assert grad.shape == (20, 2)
    # raising task 0's weight sharpens its (non-constant) logits: entropy falls
    assert (grad[:, 0] < grad[:, 1]).all()
    assert (sup.infer_task(x) == 0).all()
    # swap the heads' masks: now task 1 is the confident one
    sup.masks[0][-1], sup.masks[1][-1] = sup.masks[1][-1], sup.masks[0][-1]
    assert (sup.infer_task(x) == 1).all()
    scores = sup.predict(x, None)
    assert scores.shape == (20, stream.num_global_classes)
    ids = stream[1].class_ids
    assert torch.isfinite(scores[:, ids]).all()
    assert torch.isinf(scores[:, [c for c in range(scores.shape[1]) if c not in ids]]).all()
    torch.testing.assert_close(scores[:, ids], sup.predict(x, 1))


def test_supsup_gradient_matches_finite_differences_and_batch_mode_picks_one_task():
    stream, sup = _supsup_with_masks("batch")
    x = stream[0].test.images(np.arange(6))
    masks = {t: [m.double() for m in sup.masks[t]] for t in (0, 1)}
    sup.net.double()
    xd = x.double()
    grad = entropy_gradient(sup.net, xd, masks)

    def entropy(alpha):
        logp = F.log_softmax(sup.net.superposed(xd, masks, alpha), dim=1)
        return -(logp.exp() * logp).sum(1)

    for i in range(2):
        step = torch.zeros(6, 2, dtype=D)
        step[:, i] = 1e-6
        base = torch.full((6, 2), 0.5, dtype=D)
        fd = (entropy(base + step) - entropy(base - step)) / 2e-6
        torch.testing.assert_close(grad[:, i], fd, atol=1e-6, rtol=1e-5)
    sup.net.float()
    assert len(set(sup.infer_task(x).tolist())) == 1


# -- iCaRL flipped means ---------------------------------------------------------------------
@pytest.mark.parametrize("flip", [True, False])
def test_icarl_class_means_over_exemplars_and_their_flips(flip):
    _, stream, icarl = _learner("icarl", setting="class-il", flip_means=flip)
    icarl.begin_task(stream[0])
    _train(icarl, stream[0], 3)
    icarl.end_task(stream[0])
    means = icarl.class_means()
    ex = icarl.exemplars.all()
    for c in range(2):
        x = ex["x"][ex["y"] == c]
        f = icarl._normalised_features(x).mean(0)
        f_flip = icarl._normalised_features(x.flip(-1)).mean(0)
        hand = F.normalize((f + f_flip) / 2 if flip else f, dim=0)
        torch.testing.assert_close(means[c], hand)
    assert not torch.equal(x, x.flip(-1))  # the flip changes the images


# -- LwF warm-up -----------------------------------------------------------------------------
@pytest.mark.parametrize("setting", ["task-il", "class-il"])
def test_lwf_warm_up_trains_the_new_head_alone_then_everything(setting):
    _, stream, lwf = _learner("lwf", setting=setting, warmup_epochs=1)
    lwf.begin_task(stream[0])
    lwf.begin_epoch(0)
    trunk = list(lwf.net.trunk.parameters()) + list(lwf.net.hidden.parameters())
    before = [p.detach().clone() for p in trunk]
    _train(lwf, stream[0], 3)  # the first task has no old model: no warm-up
    assert all(not torch.equal(b, p) for b, p in zip(before, trunk, strict=True))
    lwf.end_task(stream[0])
    lwf.begin_task(stream[1])
    lwf.begin_epoch(1)
    shared = trunk + list(lwf.net.heads["0"].parameters())
    new_head = list(lwf.net.heads["1"].parameters())
    before, head_before = [p.detach().clone() for p in shared], [p.detach().clone()
                                                                 for p in new_head]
    for _ in range(3):
        _train(lwf, stream[1], 1)
        assert all(torch.equal(b, p) for b, p in zip(before, shared, strict=True))
    assert all(not torch.equal(b, p) for b, p in zip(head_before, new_head, strict=True))
    lwf.begin_epoch(2)  # warm-up over: joint training with distillation
    out = lwf.observe(_batch(stream[1]))
    assert float(out["distill"]) > 0
    assert all(not torch.equal(b, p) for b, p in zip(before[:len(trunk)], trunk, strict=True))


def _batch(task):
    from lifelong.tasks import Batch

    return Batch(task.train.images(np.arange(10)), task.train.labels[:10], task.id)


# -- resumption ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,setting,settings",
    [
        ("gem", "task-il", {"mem_per_task": 20}),
        ("er-ace", "class-il", {}),
        ("gdumb", "class-il", {"memory": 30}),
        ("joint", "task-il", {}),
        ("psp", "task-il", {"context": "complex"}),
        ("lwf", "task-il", {"warmup_epochs": 1}),
    ],
)
def test_new_methods_resume_mid_task_exactly(name, setting, settings):
    _, stream, a = _learner(name, setting, **settings)
    a.begin_task(stream[0])
    a.begin_epoch(0)
    _train(a, stream[0], 4)
    a.end_task(stream[0])
    a.begin_task(stream[1])
    a.begin_epoch(1)
    _train(a, stream[1], 3, seed=1)
    tensors: dict[str, torch.Tensor] = {}
    state = unflatten(flatten(a.state_dict(), tensors), tensors)
    _, _, b = _learner(name, setting, **settings)
    b.load_state_dict(state)
    b.begin_task(stream[1])
    for learner in (a, b):
        learner.begin_epoch(2)  # GDumb retrains here, LwF's warm-up ends
        torch.manual_seed(5)
        _train(learner, stream[1], 3, seed=2)
    for (n, p), q in zip(a.net.named_parameters(), b.net.parameters(), strict=True):
        assert torch.equal(p, q), n
    x = stream[1].test.images(np.arange(6))
    task_id = 1 if setting == "task-il" else None
    assert torch.equal(a.predict(x, task_id), b.predict(x, task_id))
