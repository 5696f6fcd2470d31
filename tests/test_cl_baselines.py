"""The continual-learning baselines against hand computations on two-parameter models,
their buffers' policies, A-GEM's projection, multi-head correctness and exact resumption."""

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
from lifelong.experiment import make_experiment
from lifelong.learners.cl.agem import agem_project
from lifelong.learners.cl.ewc import add_task, fisher_diagonal, online_update
from lifelong.learners.cl.lwf import distillation_loss
from lifelong.learners.cl.mas import mas_importance
from lifelong.learners.cl.memory import ReservoirBuffer, TensorStore, select_per_class
from lifelong.learners.cl.penalty import QuadraticPenalty
from lifelong.learners.cl.si import PathIntegral
from lifelong.runner import Runner, batch_indices, batches
from lifelong.tasks import Batch


class TwoParam(nn.Module):
    """logits (B, 2) = x (B, 1) * w: two parameters, w1 and w2."""

    def __init__(self, w: tuple[float, float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


X = torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
Y = torch.tensor([0, 1, 1])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


# -- EWC -------------------------------------------------------------------------------------
def test_fisher_matches_hand_computation_on_two_parameters():
    # d log p_c / d w_j = x (1[c = j] - p_j), so g_c = x (e_c - p).
    w = np.array([0.3, -0.7])
    model = TwoParam(tuple(w))
    emp = fisher_diagonal(model, X, Y, "empirical", {}, ["w"])["w"].numpy()
    exp = fisher_diagonal(model, X, Y, "expected", {}, ["w"])["w"].numpy()
    hand_emp, hand_exp = np.zeros(2), np.zeros(2)
    for x, y in zip(X[:, 0].numpy(), Y.numpy(), strict=True):
        p = _softmax(x * w)
        for c in range(2):
            g2 = (x * (np.eye(2)[c] - p)) ** 2
            hand_exp += p[c] * g2
            if c == y:
                hand_emp += g2
    np.testing.assert_allclose(emp, hand_emp / 3, rtol=1e-10)
    np.testing.assert_allclose(exp, hand_exp / 3, rtol=1e-10)


def test_ewc_penalty_is_the_fisher_weighted_squared_distance_summed_over_tasks():
    f1, t1 = torch.tensor([2.0, 0.5], dtype=torch.float64), torch.tensor([1.0, -1.0],
                                                                          dtype=torch.float64)
    f2, t2 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([3.0, 2.0],
                                                                          dtype=torch.float64)
    pen = QuadraticPenalty()
    add_task(pen, {"w": f1}, {"w": t1})
    add_task(pen, {"w": f2}, {"w": t2})
    w = nn.Parameter(torch.tensor([0.5, 4.0], dtype=torch.float64))
    # sum_t sum_i F_t,i (w_i - theta_t,i)^2 = 2*.25 + .5*25 + 1*6.25 + 0 = 19.25
    assert float(pen.value({"w": w})) == pytest.approx(19.25)
    # lambda/2 * that, and its gradient lambda * sum_t F_t (w - theta_t), added to .grad
    w.grad = torch.zeros(2, dtype=torch.float64)
    lam = 3.0
    value = pen.add_grad_({"w": w}, lam / 2)
    assert float(value) == pytest.approx(lam / 2 * 19.25)
    hand = lam * (f1 * (w.detach() - t1) + f2 * (w.detach() - t2))
    torch.testing.assert_close(w.grad, hand)
    # Online EWC: F~ = gamma F1 + F2, anchored at the last task's parameters only
    on = QuadraticPenalty()
    online_update(on, {"w": f1}, {"w": t1}, gamma=0.5)
    online_update(on, {"w": f2}, {"w": t2}, gamma=0.5)
    hand_on = ((0.5 * f1 + f2) * (w.detach() - t2) ** 2).sum()
    assert float(on.value({"w": w})) == pytest.approx(float(hand_on))


# -- SI --------------------------------------------------------------------------------------
def test_si_path_integral_matches_hand_computation():
    # Plain SGD on L(w) = (w1 - 1)^2 + 3 w2^2 from w = (0, 1), lr 0.1: omega_i is
    # sum_k -g_k,i * delta_k,i with delta_k = -lr g_k, i.e. lr * sum_k g_k,i^2.
    w = nn.Parameter(torch.tensor([0.0, 1.0], dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=0.1)
    path = PathIntegral()
    path.begin({"w": w})
    hand_omega = np.zeros(2)
    wn = np.array([0.0, 1.0])
    for _ in range(3):
        opt.zero_grad()
        loss = (w[0] - 1) ** 2 + 3 * w[1] ** 2
        loss.backward()
        path.before_step({"w": w})
        opt.step()
        path.after_step({"w": w})
        g = np.array([2 * (wn[0] - 1), 6 * wn[1]])
        hand_omega += 0.1 * g * g
        wn = wn - 0.1 * g
    np.testing.assert_allclose(path.omega["w"].numpy(), hand_omega, rtol=1e-12)
    pen = QuadraticPenalty()
    path.consolidate({"w": w}, xi=0.1, penalty=pen)
    big = hand_omega / ((wn - np.array([0.0, 1.0])) ** 2 + 0.1)
    np.testing.assert_allclose(pen.importance["w"].numpy(), big, rtol=1e-12)
    np.testing.assert_allclose(pen.anchor["w"].numpy(), wn, rtol=1e-12)
    # the penalty c * sum Omega (w - w~)^2 at a new point
    w2 = nn.Parameter(torch.tensor([2.0, -1.0], dtype=torch.float64))
    assert float(pen.value({"w": w2})) == pytest.approx(float((big * (np.array([2.0, -1.0])
                                                                     - wn) ** 2).sum()))


# -- MAS -------------------------------------------------------------------------------------
def test_mas_importance_matches_hand_computation():
    # ||x w||^2 = x^2 (w1^2 + w2^2): per-example gradient 2 x^2 w, so Omega = mean 2 x^2 |w|.
    w = np.array([0.3, -0.7])
    omega = mas_importance(TwoParam(tuple(w)), X, {}, ["w"])["w"].numpy()
    hand = np.mean([2 * x * x * np.abs(w) for x in X[:, 0].numpy()], axis=0)
    np.testing.assert_allclose(omega, hand, rtol=1e-12)


# -- LwF -------------------------------------------------------------------------------------
def test_lwf_distillation_term_matches_hand_computation():
    old = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    new = torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    T = 2.0
    got = distillation_loss(new, old, T)
    for b in range(2):
        q = _softmax(old[b].numpy() / T)
        logp = np.log(_softmax(new[b].numpy() / T))
        assert float(got[b]) == pytest.approx(float(-(q * logp).sum()))
    # its gradient vanishes where the student matches the teacher
    z = old.clone().requires_grad_(True)
    distillation_loss(z, old, T).sum().backward()
    assert torch.allclose(z.grad, torch.zeros_like(z.grad))
    # the first row by hand: q = softmax(1, 0), log p = log softmax(0, 0.5)
    q0 = 1 / (1 + math.exp(-1))
    lp = [-math.log(1 + math.exp(0.5)), 0.5 - math.log(1 + math.exp(0.5))]
    assert float(got[0]) == pytest.approx(-(q0 * lp[0] + (1 - q0) * lp[1]))


# -- A-GEM -----------------------------------------------------------------------------------
def test_agem_projection_on_hand_made_gradients():
    g, g_ref = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # dot = -1 < 0: g - (-1 / 2) g_ref = (0.5, 0.5), orthogonal to g_ref
    out = agem_project(g, g_ref)
    torch.testing.assert_close(out, torch.tensor([0.5, 0.5]))
    assert float(torch.dot(out, g_ref)) == pytest.approx(0.0)
    # no conflict: unchanged
    same = torch.tensor([1.0, 2.0])
    assert agem_project(same, torch.tensor([1.0, 1.0])) is same


# -- buffers ---------------------------------------------------------------------------------
def _reference_reservoir(stream: list[int], capacity: int, draws: list[float]) -> list[int]:
    """Algorithm R one item at a time, with the same uniform draws."""
    memory: list[int] = []
    for n, (item, u) in enumerate(zip(stream, draws, strict=True)):
        if n < capacity:
            memory.append(item)
        else:
            j = int(u * (n + 1))
            if j < capacity:
                memory[j] = item
    return memory


def test_reservoir_buffer_holds_exactly_what_algorithm_r_keeps():
    gen = torch.Generator().manual_seed(0)
    buf = ReservoirBuffer(7)
    items = torch.arange(100)
    for start in range(0, 100, 10):  # batches of 10, as a learner adds them
        buf.add(gen, y=items[start:start + 10], x=items[start:start + 10, None].float())
    draws = torch.rand(100, generator=torch.Generator().manual_seed(0)).tolist()
    assert len(buf) == 7 and buf.seen == 100
    assert buf.all()["y"].tolist() == _reference_reservoir(items.tolist(), 7, draws)
    assert torch.equal(buf.all()["x"][:, 0].long(), buf.all()["y"])


def test_reservoir_keeps_every_item_with_equal_probability():
    counts = np.zeros(20)
    gen = torch.Generator().manual_seed(1)
    for _ in range(1500):
        buf = ReservoirBuffer(5)
        buf.add(gen, y=torch.arange(20))
        counts[buf.all()["y"].numpy()] += 1
    # each item kept with probability 5/20; 1500 trials: std of a frequency ~0.011
    assert np.all(np.abs(counts / 1500 - 0.25) < 0.06)


def test_growing_store_and_per_class_selection():
    labels = torch.tensor([0] * 30 + [1] * 4 + [2] * 12)
    idx = select_per_class(labels, 10, torch.Generator().manual_seed(0))
    assert sorted(labels[idx].tolist()) == [0] * 10 + [1] * 4 + [2] * 10
    assert len(set(idx.tolist())) == len(idx)  # no duplicates
    store = TensorStore()
    for k in range(50):  # grows past its initial allocation, keeping every row
        store.append(y=torch.tensor([k, k]), logits=torch.full((2, 1 + k % 3), float(k)))
    assert len(store) == 100 and store.all()["y"].tolist() == [k for k in range(50)
                                                                for _ in range(2)]
    logits = store.all()["logits"]
    assert logits.shape == (100, 3)  # widened to the widest row, zero-padded
    assert logits[0].tolist() == [0.0, 0.0, 0.0] and logits[2].tolist() == [1.0, 1.0, 0.0]


# -- learners on the synthetic stream ----------------------------------------------------------
def test_er_memory_holds_per_class_examples_of_each_finished_task():
    _, stream, er = _learner("er", per_class=3)
    for task in list(stream)[:2]:
        er.begin_task(task)
        _train(er, task, 2)
        er.end_task(task)
    mem = er.memory.all()
    pairs = sorted(zip(mem["task"].tolist(), mem["y"].tolist(), strict=True))
    assert pairs == [(0, 0)] * 3 + [(0, 1)] * 3 + [(1, 0)] * 3 + [(1, 1)] * 3
    # the stored images are training images of that task and class
    t0 = stream[0].train
    x0 = mem["x"][0]
    matches = [i for i in range(len(t0)) if torch.equal(t0.images(np.array([i]))[0], x0)]
    assert matches and int(t0.labels[matches[0]]) == int(mem["y"][0])


def test_task_il_loss_uses_only_the_current_head_and_replay_uses_own_heads():
    _, stream, ft = _learner("finetune")
    ft.begin_task(stream[0])
    ft.end_task(stream[0])
    ft.begin_task(stream[1])
    ft.optimizer.zero_grad(set_to_none=True)
    x, y = stream[1].train.images(np.arange(10)), stream[1].train.labels[:10]
    ft.reduce(ft.ce_per_example(ft.net.features(x), y, 1)).backward()
    assert all(p.grad is None for p in ft.net.heads["0"].parameters())
    assert all(p.grad is not None for p in ft.net.heads["1"].parameters())
    # mixed tasks: each example's loss is its own head's cross-entropy
    tasks = torch.tensor([0, 1] * 5)
    h = ft.net.features(x)
    got = ft.ce_per_example(h, y, tasks)
    hand = torch.stack([F.cross_entropy(ft.net.head(h[i:i + 1], int(t)), y[i:i + 1])
                        for i, t in enumerate(tasks)])
    torch.testing.assert_close(got, hand)


def test_lwf_distils_old_heads_on_new_data():
    _, stream, lwf = _learner("lwf")
    lwf.begin_task(stream[0])
    _train(lwf, stream[0], 5)
    lwf.end_task(stream[0])
    lwf.begin_task(stream[1])
    head0 = [p.detach().clone() for p in lwf.net.heads["0"].parameters()]
    _train(lwf, stream[1], 5)
    # the old head is trained (by distillation) while its task's data is never seen
    head_now = lwf.net.heads["0"].parameters()
    assert any(not torch.equal(a, b) for a, b in zip(head0, head_now, strict=True))
    assert lwf.old is not None and lwf.old_tasks == [0]


def _lwf_on_second_task(setting: str, net: str | None = None, current: int = 1):
    """An LwF learner that trained a little on tasks 0..current-1 and has begun task
    ``current``; the same one each call (initial weights, dropout draws and new heads all
    seeded)."""
    torch.manual_seed(3)
    _, stream, lwf = _learner("lwf", setting, net=net)
    for task in stream[:current]:
        lwf.begin_task(task)
        _train(lwf, task, 4)
        lwf.end_task(task)
    lwf.begin_task(stream[current])
    return stream, lwf


@pytest.mark.parametrize(
    "setting,current", [("task-il", 1), ("class-il", 1), ("task-il", 2), ("class-il", 2)]
)
def test_lwf_recorded_targets_give_the_on_the_fly_loss(setting, current, monkeypatch):
    """The old outputs recorded in begin_task and looked up by Batch.index give the same
    distillation loss and step as running the old model on the batch (the mnist net has
    dropout: the old model must be in eval mode both ways); with an index the old model is
    not run at all."""
    idx = torch.tensor([3, 0, 7, 3, 11, 5])
    results = []
    for indexed in (False, True):
        # with two old tasks, task-il slices the second one's columns at a non-zero offset
        stream, lwf = _lwf_on_second_task(setting, net="mnist", current=current)
        train = stream[current].train
        assert lwf.targets is not None and lwf.targets_task == current
        assert lwf.targets.shape == (len(train), sum(stream[t].num_classes for t in range(current)))
        x = train.images(idx.numpy())
        if indexed:

            def not_run(*_args):
                raise AssertionError("the old model ran although the batch has an index")

            monkeypatch.setattr(lwf.old, "features", not_run)
        torch.manual_seed(7)  # the same dropout draws for the trained network
        out = lwf.observe(Batch(x, train.labels[idx], current, index=idx if indexed else None))
        results.append((out, [p.detach().clone() for p in lwf.net.parameters()]))
        monkeypatch.undo()
        # the recorded rows are the old model's outputs on those images
        with torch.no_grad():
            on_the_fly = lwf.old.all_heads(lwf.old.features(x))
        # equal up to float rounding (the recording runs chunks of 128 images, not 6)
        torch.testing.assert_close(lwf.targets[idx], on_the_fly, rtol=1e-6, atol=1e-6)
    (fly, fly_params), (rec, rec_params) = results
    assert float(fly["distill"]) > 0
    torch.testing.assert_close(rec["distill"], fly["distill"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(rec["loss"], fly["loss"], rtol=0, atol=0)
    for p, q in zip(rec_params, fly_params, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_lwf_records_nothing_without_an_old_model_and_drops_targets_after_the_task():
    _, stream, lwf = _learner("lwf")
    lwf.begin_task(stream[0])
    assert lwf.old is None and lwf.targets is None
    _train(lwf, stream[0], 2, indexed=True)  # no old model: plain cross-entropy
    lwf.end_task(stream[0])
    lwf.begin_task(stream[1])
    assert lwf.targets is not None
    lwf.end_task(stream[1])
    assert lwf.targets is None and lwf.method_state()["targets"] is None


@pytest.mark.parametrize("saved", [True, False])
def test_lwf_resuming_mid_task_with_recorded_targets_continues_exactly(saved):
    """A checkpoint taken inside a task holds the recorded targets; one written without
    them (before they existed) has begin_task record them again. Either way the resumed
    learner's indexed steps equal the uninterrupted learner's."""
    stream, a = _lwf_on_second_task("class-il")
    _train(a, stream[1], 3, seed=1, indexed=True)
    tensors: dict[str, torch.Tensor] = {}
    state = unflatten(flatten(a.state_dict(), tensors), tensors)  # as a checkpoint holds it
    if not saved:
        del state["method"]["targets"], state["method"]["targets_task"]
    _, _, b = _learner("lwf", "class-il")
    b.load_state_dict(state)
    assert (b.targets is not None) == saved
    b.begin_task(stream[1])  # the runner re-attaches after a resume
    assert b.targets is not None and torch.equal(a.targets, b.targets)
    torch.manual_seed(5)
    _train(a, stream[1], 3, seed=2, indexed=True)
    torch.manual_seed(5)
    _train(b, stream[1], 3, seed=2, indexed=True)
    for (n, p), q in zip(a.net.named_parameters(), b.net.parameters(), strict=True):
        assert torch.equal(p, q), n


def test_lwf_run_interrupted_inside_a_task_resumes_exactly(tmp_path, monkeypatch):
    """Through the runner (indexed batches, recorded targets): Ctrl-C in task 1's last
    epoch, resume from the mid-task checkpoint; accuracies and training MACs equal an
    uninterrupted run's (the targets come from the checkpoint, not a second recording)."""
    import json

    from lifelong.api import RunInterrupted, run_experiment
    from lifelong.learners.cl.lwf import LwF
    from lifelong.macs import MACS_FILE

    original = LwF.observe

    def interrupt(self, batch):
        if batch.task_id == 1 and self.epoch == 3:  # global epochs 2-3 are task 1's
            raise KeyboardInterrupt
        return original(self, batch)

    raw = {
        "run": {
            "benchmark": "synthetic",
            "learner": "lwf",
            "epochs": 2,
            "checkpoint_every": 1,
            "count_macs": True,
        }
    }
    monkeypatch.setattr(LwF, "observe", interrupt)
    with pytest.raises(RunInterrupted):
        run_experiment(raw, out=tmp_path / "run", progress=False)
    meta = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["meta"]
    assert meta["task"] == 1 and meta["in_task"]  # a checkpoint inside task 1
    monkeypatch.setattr(LwF, "observe", original)
    resumed = run_experiment({}, resume=tmp_path / "run", progress=False)
    full = run_experiment(raw, out=tmp_path / "full", progress=False)
    assert resumed["accuracy_matrix"] == full["accuracy_matrix"]
    macs = [json.loads((d / MACS_FILE).read_text()) for d in (tmp_path / "run", tmp_path / "full")]
    assert macs[0] == macs[1] and macs[0]["tasks"][1]["other_macs"] > 0  # the recording


def test_runner_batches_carry_their_rows_of_the_training_set(tmp_path):
    """The runner's training batches are batches()' batches, each with Batch.index = its
    rows of task.train; other callers of batches() are unchanged."""
    exp = make_experiment(
        {"run": {"benchmark": "synthetic", "learner": "lwf", "epochs": 1, "batch_size": 4}}
    )
    stream = exp.build_stream()
    learner = exp.build_learner(stream, torch.device("cpu"))
    seen: list[Batch] = []
    observe = learner.observe

    def spy(batch: Batch):
        seen.append(batch)
        return observe(batch)

    learner.observe = spy
    Runner(exp, stream, learner, tmp_path, torch.device("cpu"), progress=False).run()
    first = [b for b in seen if b.task_id == 0]
    gen = torch.Generator().manual_seed(exp.run.seed * 1_000_003 + 0)  # epoch 0's shuffle
    expected = list(batches(stream[0].train, 4, gen, drop_last=True))
    assert len(first) == len(expected) == len(stream[0].train) // 4
    for b, (x, y) in zip(first, expected, strict=True):
        assert b.index is not None and b.index.dtype == torch.int64
        assert torch.equal(b.x, x) and torch.equal(b.y, y)
        assert torch.equal(b.x, stream[0].train.images(b.index.numpy()))
    gen = torch.Generator().manual_seed(1)
    assert [i.tolist() for i in batch_indices(10, 4, None)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(list(batch_indices(10, 4, gen, drop_last=True))) == 2


def test_class_il_scores_cover_seen_classes_only():
    _, stream, er = _learner("er", setting="class-il")
    er.begin_task(stream[0])
    _train(er, stream[0], 2)
    scores = er.predict(stream[0].test.images(np.arange(4)), None)
    assert scores.shape == (4, stream.num_global_classes)
    seen = stream[0].class_ids
    assert torch.isfinite(scores[:, seen]).all()
    assert torch.isinf(
        scores[:, [c for c in range(stream.num_global_classes) if c not in seen]]
    ).all()


@pytest.mark.parametrize(
    "name,setting",
    [
        ("si", "task-il"),
        ("ewc", "class-il"),
        ("lwf", "task-il"),
        ("agem", "task-il"),
        ("derpp", "class-il"),
        ("er", "task-il"),
        ("icarl", "class-il"),
        ("psp", "task-il"),
        ("supsup", "task-il"),
    ],
)
def test_resuming_mid_task_continues_exactly(name, setting):
    """Kill after some steps of the second task, restore into a fresh learner: the next
    steps give the same parameters as the uninterrupted learner (buffers, importances,
    old model, optimizer and random stream all restored)."""
    _, stream, a = _learner(name, setting)
    a.begin_task(stream[0])
    _train(a, stream[0], 4)
    a.end_task(stream[0])
    a.begin_task(stream[1])
    _train(a, stream[1], 3, seed=1)
    tensors: dict[str, torch.Tensor] = {}
    state = unflatten(flatten(a.state_dict(), tensors), tensors)  # as a checkpoint holds it
    _, _, b = _learner(name, setting)
    b.load_state_dict(state)
    b.begin_task(stream[1])  # the runner re-attaches after a resume
    torch.manual_seed(5)
    _train(a, stream[1], 3, seed=2)
    torch.manual_seed(5)
    _train(b, stream[1], 3, seed=2)
    for (n, p), q in zip(a.net.named_parameters(), b.net.parameters(), strict=True):
        assert torch.equal(p, q), n
    ta: dict[str, torch.Tensor] = {}
    tb: dict[str, torch.Tensor] = {}
    assert flatten(a.state_dict(), ta) == flatten(b.state_dict(), tb)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    x = stream[1].test.images(np.arange(6))
    assert torch.equal(a.predict(x, 1), b.predict(x, 1))


# The baselines that take a pretrained backbone (PSP and SupSup replace the trunk by their own
# layers and refuse one): each fine-tunes it by default and leaves it alone when frozen.
BACKBONE_BASELINES = [
    "finetune",
    "ewc",
    "online-ewc",
    "si",
    "mas",
    "lwf",
    "er",
    "agem",
    "der",
    "derpp",
    "icarl",
]


@pytest.mark.parametrize("name", BACKBONE_BASELINES)
def test_baselines_fine_tune_a_pretrained_backbone_unless_frozen(name):
    setting = "class-il" if name == "icarl" else "task-il"
    for finetune in (True, False):
        torch.manual_seed(0)
        _, stream, learner = _learner(
            name, setting, backbone="tiny-cnn", finetune_backbone=finetune
        )
        trunk = learner.net.trunk
        before = [p.detach().clone() for p in trunk.parameters()]
        for task in stream[:2]:  # the second task exercises each method's old-task terms
            learner.begin_task(task)
            learner.begin_epoch(0)
            _train(learner, task, 3, indexed=True)
            learner.end_task(task)
        moved = [
            not torch.equal(b, p.detach()) for b, p in zip(before, trunk.parameters(), strict=True)
        ]
        assert all(moved) if finetune else not any(moved), (name, finetune)
