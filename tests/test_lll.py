"""Lightweight Lifelong Learner: a frozen backbone, the task mappers against reference
computations, bundles that round-trip and are refused when damaged or foreign."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from lifelong.backbones import BACKBONES
from lifelong.experiment import make_experiment
from lifelong.learners.lll.anchors import GMMCMapper, MahaMapper, fit_gmmc, fit_maha
from lifelong.learners.lll.bundle import BundleError, decode, encode
from lifelong.runner import Runner


def _run(tmp_path, bb: str, backbone: str = "tiny-cnn", tasks: int = 3, epochs: int = 3,
         **learner):
    raw = {"run": {"benchmark": "split-digits", "learner": "lll", "epochs": epochs,
                   "setting": "class-il", "batch_size": 32},
           "benchmark": {"num_tasks": tasks, "data_fraction": 1.0 if tasks > 2 else 0.4},
           "learner": {"backbone": backbone, "bb": bb, "image_size": 32,
                       "gmm_components": 3, **learner}}
    exp = make_experiment(raw)
    stream = exp.build_stream()
    learner_ = exp.build_learner(stream, torch.device("cpu"))
    before = {k: v.clone() for k, v in learner_.backbone.state_dict().items()}
    Runner(exp, stream, learner_, tmp_path, torch.device("cpu"), progress=False).run()
    return learner_, stream, before


@pytest.mark.parametrize("backbone,bb", [("tiny-cnn", "none"), ("tiny-cnn", "full"),
                                         ("tiny-cnn", "partial"),
                                         ("efficientnet-lite0", "full")])
def test_backbone_weights_are_bit_identical_after_learning_tasks(tmp_path, backbone, bb):
    small = backbone == "efficientnet-lite0"  # 4.65M weights: two short tasks suffice
    learner, stream, before = _run(tmp_path, bb, backbone, tasks=2 if small else 3,
                                   epochs=1 if small else 3, bb_stages=1)
    after = learner.backbone.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert not any(p.requires_grad for p in learner.backbone.parameters())
    if bb != "none":  # the biases did train, and only where asked
        for b in learner.bundles.values():
            start = learner.backbone.bb_offset(b.bb_from_stage)
            assert float(b.bb[start:].abs().sum()) > 0
            assert float(b.bb[:start].abs().sum()) == 0


def test_efficientnet_has_one_bias_per_conv_output_channel():
    net = BACKBONES.get("efficientnet-lite0")(image_size=32)
    assert net.bb_size == 21008 and net.num_features == 1280
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert net.bb_size == sum(c.out_channels for c in convs)
    x = torch.rand(2, 1, 28, 28)
    plain = net(x)
    net.use_bb(torch.zeros(net.bb_size))  # zero biases change nothing
    assert torch.allclose(net(x), plain)
    h = net.stage_input(x, net.num_stages - 3)  # partial BB starts from cached activations
    assert torch.allclose(net.forward_from(h, net.num_stages - 3), plain, atol=1e-5)


def _features(seed: int = 0, spread: float = 3.0, dim: int = 16):
    rng = np.random.default_rng(seed)
    tasks = {}
    for t in range(4):  # four "tasks", each a few clusters in ``dim`` dimensions
        centres = rng.normal(0, spread, size=(3, dim)) + t
        labels = rng.integers(0, 3, 200)
        tasks[t] = (centres[labels] + rng.normal(0, 1, (200, dim)), labels)
    return tasks


def test_gmmc_mapper_agrees_with_scikit_learn():
    from sklearn.mixture import GaussianMixture

    tasks = _features(spread=1.0, dim=8)  # overlapping tasks: the mapper makes mistakes
    anchors = {t: fit_gmmc(x, 5, seed=t) for t, (x, _) in tasks.items()}
    mapper = GMMCMapper(anchors)
    # Reference built directly on scikit-learn: one GaussianMixture per task fitted on the
    # same data with the same seed and settings; an input goes to the task owning the most
    # probable component of the pooled mixture, each task's weights scaled by its share of
    # the samples (Eq. 4; the original code appends weights * N). log(phi_m N(x | m)) of a
    # task's components = log responsibility + log density of that task's mixture.
    x = np.concatenate([x for x, _ in tasks.values()])
    total = sum(len(f) for f, _ in tasks.values())
    scores = []
    for t, (f, _) in tasks.items():
        gmm = GaussianMixture(n_components=5, covariance_type="diag", random_state=t,
                              reg_covar=1e-4).fit(f)
        with np.errstate(divide="ignore"):
            log_joint = np.log(gmm.predict_proba(x)) + gmm.score_samples(x)[:, None]
        scores.append(log_joint + np.log(len(f) / total))  # (N, 5)
    theirs = np.repeat(list(tasks), 5)[np.concatenate(scores, 1).argmax(1)]
    ours = mapper.map(torch.tensor(x)).numpy()
    assert (ours == theirs).mean() >= 0.99
    # the tasks overlap, so agreement is not trivial
    truth = np.repeat(list(tasks), [len(f) for f, _ in tasks.values()])
    assert (ours == truth).mean() < 0.95


def test_mahalanobis_mapper_matches_numpy_exactly():
    tasks = _features(1)
    anchors = {t: fit_maha(x, y, 3, m=5, seed=t) for t, (x, y) in tasks.items()}
    for t, (x, y) in tasks.items():  # the anchor: class means of all data, m samples a class
        a = anchors[t]
        np.testing.assert_allclose(a.means, [x[y == c].mean(0) for c in range(3)], rtol=1e-6)
        assert np.bincount(a.sample_labels, minlength=3).tolist() == [5, 5, 5]
        # each a training sample of its class
        for row, c in zip(a.samples, a.sample_labels, strict=True):
            assert np.isclose(x[y == c], row, rtol=1e-6).all(1).any()
    mapper = MahaMapper(anchors)
    # Eq. 5 in plain numpy: tied covariance of the shared samples around their class means.
    means = np.concatenate([a.means for a in anchors.values()]).astype(np.float64)
    centred = np.concatenate([a.samples - a.means[a.sample_labels] for a in anchors.values()])
    cov = centred.T.astype(np.float64) @ centred / len(centred)
    P = np.linalg.pinv(cov, hermitian=True)
    x = np.concatenate([x for x, _ in tasks.values()])
    d = np.array([[(xi - mu) @ P @ (xi - mu) for mu in means] for xi in x])
    owner = np.repeat(list(anchors), 3)
    expected = owner[d.argmin(1)]
    np.testing.assert_array_equal(mapper.map(torch.tensor(x)).numpy(), expected)
    np.testing.assert_allclose(mapper.distances(torch.tensor(x)).numpy(), d, rtol=1e-6)


def _ledoit_wolf_shrinkage(x: np.ndarray) -> float:
    """Ledoit and Wolf (2004)'s shrinkage for samples x (N, D) centred already, in plain
    numpy: min(beta, delta) / delta with delta = ||S - mu I||_F^2 (mu = tr(S) / D) and
    beta = sum_i ||x_i x_i^T - S||_F^2 / N^2."""
    n, d = x.shape
    S = x.T @ x / n
    delta = ((S - np.trace(S) / d * np.eye(d)) ** 2).sum()
    beta = sum(((np.outer(xi, xi) - S) ** 2).sum() for xi in x) / n**2
    return min(beta, delta) / delta


@pytest.mark.parametrize("dim", [16, 96])  # 60 shared samples: S invertible, then singular
@pytest.mark.parametrize("shrinkage", [0.1, 0.5, 1.0, "ledoit-wolf"])
def test_shrunk_mahalanobis_mapper_matches_numpy(dim, shrinkage):
    tasks = _features(1, dim=dim)
    anchors = {t: fit_maha(x, y, 3, m=5, seed=t) for t, (x, y) in tasks.items()}
    mapper = MahaMapper(anchors, shrinkage)
    # Eq. 5 with the tied covariance shrunk towards a multiple of the identity, in numpy:
    # (1 - s) S + s mu I, mu = tr(S) / D (scikit-learn's ShrunkCovariance)
    means = np.concatenate([a.means for a in anchors.values()]).astype(np.float64)
    centred = np.concatenate(
        [a.samples.astype(np.float64) - a.means[a.sample_labels] for a in anchors.values()]
    )  # (60, D)
    s = _ledoit_wolf_shrinkage(centred) if shrinkage == "ledoit-wolf" else shrinkage
    assert mapper.shrinkage_ == pytest.approx(s, rel=1e-9)
    assert 0 < s <= 1
    S = centred.T @ centred / len(centred)
    P = np.linalg.inv((1 - s) * S + s * np.trace(S) / dim * np.eye(dim))
    x = np.concatenate([x for x, _ in tasks.values()])
    d = np.array([[(xi - mu) @ P @ (xi - mu) for mu in means] for xi in x])
    np.testing.assert_allclose(mapper.distances(torch.tensor(x)).numpy(), d, rtol=1e-6)
    owner = np.repeat(list(anchors), 3)
    np.testing.assert_array_equal(mapper.map(torch.tensor(x)).numpy(), owner[d.argmin(1)])


def test_maha_shrinkage_is_a_learner_option(tmp_path):
    """learner.maha_shrinkage reaches the mapper (from YAML or key=value, as a number or
    ledoit-wolf); the bundles do not depend on it (only the receiver's estimate does)."""
    from lifelong.errors import ConfigError

    digests, used = {}, {}
    for value in ("0", "ledoit-wolf", 0.25):
        torch.manual_seed(0)  # the same heads in every run (the CLI seeds the same way)
        learner, _, _ = _run(
            tmp_path / str(value), "none", tasks=2, epochs=1, mapper="maha", maha_shrinkage=value
        )
        digests[value] = learner.bundle_digests()
        used[value] = learner.report()["maha_shrinkage"]
    assert used["0"] == 0.0 and used[0.25] == 0.25 and 0 < used["ledoit-wolf"] < 1
    assert digests["0"] == digests["ledoit-wolf"] == digests[0.25]
    for bad in ("1.5", "-0.1", "oas"):
        with pytest.raises(ConfigError):
            make_experiment(
                {
                    "run": {"benchmark": "split-digits", "learner": "lll"},
                    "learner": {"mapper": "maha", "maha_shrinkage": bad},
                }
            )


def test_bundles_round_trip_into_a_fresh_learner(tmp_path):
    learner, stream, _ = _run(tmp_path, "partial", bb_stages=1)
    raw = {
        "run": {"benchmark": "split-digits", "learner": "lll", "setting": "class-il"},
        "benchmark": {"num_tasks": 3},
        "learner": {
            "backbone": "tiny-cnn",
            "bb": "partial",
            "image_size": 32,
            "bb_stages": 1,
            "gmm_components": 3,
        },
    }
    exp = make_experiment(raw)
    fresh = exp.build_learner(stream, torch.device("cpu"))
    for t in range(3):
        assert fresh.import_bundle(learner.export_bundle(t)) == t
    x = torch.cat([task.test.images() for task in stream])
    for task_id in (None, 1):  # without and with the task oracle
        a, b = fresh.predict(x, task_id), learner.predict(x, task_id)
        assert torch.equal(a.argmax(1), b.argmax(1))  # the same answers
        assert torch.equal(torch.isfinite(a), torch.isfinite(b))  # the same tasks chosen
        # equal up to float rounding (features computed in other batch groupings)
        torch.testing.assert_close(a[torch.isfinite(a)], b[torch.isfinite(b)], rtol=0, atol=1e-6)
    assert fresh.bundle_digests() == learner.bundle_digests()


@pytest.mark.parametrize("mapper", ["gmmc", "maha", "lda"])
def test_the_bank_holds_each_bundle_once(tmp_path, mapper):
    """The decoded bundles read the held bytes in place: every tensor of a bundle (head,
    biases, anchor) lies inside that bundle's bytes, and the anchor arrays refuse writes."""
    learner, _, _ = _run(tmp_path, "full", tasks=2, epochs=1, mapper=mapper)

    def inside(ptr: int, nbytes: int, data: bytes) -> bool:
        base = np.frombuffer(data, dtype=np.uint8).ctypes.data
        return base <= ptr and ptr + nbytes <= base + len(data)

    _check_held_once(learner, inside)
    # a bundle that arrives as a bytearray (not bytes) is held once too
    data = bytearray(learner.bundle_bytes.pop(0))
    learner.bundles.pop(0)
    assert learner.import_bundle(data) == 0
    _check_held_once(learner, inside)


def _check_held_once(learner, inside) -> None:
    for t, data in learner.bundle_bytes.items():
        b = learner.bundles[t]
        for x in (b.head_weight, b.head_bias, b.bb):
            assert x is not None and inside(x.data_ptr(), x.numel() * x.element_size(), data)
        arrays = [v for v in vars(b.anchor).values() if isinstance(v, np.ndarray)]
        assert arrays
        for arr in arrays:
            assert inside(arr.ctypes.data, arr.nbytes, data)
            with pytest.raises(ValueError):
                arr.flat[0] = 0


def _bundle_and_backbone(tmp_path):
    learner, _, _ = _run(tmp_path, "none")
    return learner.export_bundle(0), learner.backbone


def test_damaged_foreign_and_hostile_bundles_are_refused(tmp_path):
    data, backbone = _bundle_and_backbone(tmp_path)
    kw = dict(
        fingerprint=backbone.fingerprint(),
        feature_dim=backbone.num_features,
        bb_size=backbone.bb_size,
    )
    decode(data, **kw)  # the original is fine
    tampered = bytearray(data)
    tampered[-7] ^= 0x55  # a flipped byte in the tensor data
    truncated = data[: len(data) // 2]
    foreign = BACKBONES.get("tiny-cnn")(image_size=32, seed=1).fingerprint()
    hostile = pickle.dumps({"head.weight": "exploit"})
    for bad, extra in (
        (bytes(tampered), {}),
        (truncated, {}),
        (data, {"fingerprint": foreign}),
        (hostile, {}),
        (data, {"max_bytes": 100}),
        (b"", {}),
        (data, {"feature_dim": 32}),
    ):
        with pytest.raises(BundleError) as err:
            decode(bad, **{**kw, **extra})
        assert "\n" not in str(err.value)
    # NaN in a tensor is refused even with a consistent manifest.
    bundle = decode(data, **kw)
    bundle.head_weight = bundle.head_weight.clone()
    bundle.head_weight[0, 0] = float("nan")
    with pytest.raises(BundleError):
        decode(encode(bundle), **kw)


def test_class_names_initialise_similar_classes_and_count_synonyms(tmp_path):
    raw = {
        "run": {
            "benchmark": "shipped-mix",
            "learner": "lll",
            "epochs": 2,
            "setting": "class-il",
            "batch_size": 32,
        },
        "benchmark": {"num_tasks": 3},
        "learner": {
            "backbone": "tiny-cnn",
            "image_size": 32,
            "gmm_components": 2,
            "head_norm": "inf",
            "name_init": True,
            "synonyms": True,
        },
    }
    exp = make_experiment(raw)
    stream = exp.build_stream()
    learner = exp.build_learner(stream, torch.device("cpu"))
    starts = {}
    original = learner.begin_task

    def begin_task(task):
        original(task)
        starts[task.id] = learner.current["head"].weight.detach().clone()

    learner.begin_task = begin_task
    Runner(exp, stream, learner, tmp_path, torch.device("cpu"), progress=False).run()
    # Task 2 (scikit-learn digits 0-4) shares its class names with task 0 (MNIST 0-4):
    # every class starts from task 0's normalised weights for the same digit.
    matches = learner.report()["learning"]["2"]["name_matches"]
    assert matches == {n: n for n in ("zero", "one", "two", "three", "four")}
    from lifelong.learners.lll.learner import Head

    old = Head.effective(learner.bundles[0].head_weight, "inf")
    # the same normalised rows (the head's function), at a fresh row's scale (Adam's pace)
    torch.testing.assert_close(Head.effective(starts[2], "inf"), old)
    assert float(starts[2].abs().max()) < 0.5
    # The synonym view credits a prediction whose class name equals the true one across
    # tasks (global ids 0 and 10 are both "zero"), and only those.
    same = learner.synonym_match(torch.tensor([0, 10]), torch.tensor([10, 11]))
    assert same.tolist() == [True, False]  # "zero" (task 0) vs "zero" (task 2); "zero"/"one"


def test_learner_refuses_damaged_and_foreign_bundles_and_stays_unchanged(tmp_path):
    learner, stream, _ = _run(tmp_path, "none", tasks=2, epochs=1)
    data = learner.export_bundle(0)
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 0x01
    raw = {
        "run": {"benchmark": "split-digits", "learner": "lll", "setting": "class-il"},
        "benchmark": {"num_tasks": 2, "data_fraction": 0.4},
        "learner": {"backbone": "tiny-cnn", "image_size": 32, "gmm_components": 3},
    }
    fresh = make_experiment(raw).build_learner(stream, torch.device("cpu"))
    # the same network at another input size is another backbone (fingerprint differs)
    other = {**raw, "learner": {**raw["learner"], "image_size": 24}}
    foreign = make_experiment(other).build_learner(stream, torch.device("cpu"))
    for target, bad in ((fresh, bytes(tampered)), (fresh, data[:-100]), (foreign, data)):
        with pytest.raises(BundleError) as err:
            target.import_bundle(bad)
        assert "\n" not in str(err.value) and str(err.value)
        assert target.bundles == {} and target.bundle_bytes == {}
    assert "another backbone" in str(err.value)
    assert fresh.import_bundle(data) == 0  # the intact bundle is accepted


def test_partial_bb_caches_the_lower_stages_and_counts_macs_once():
    from lifelong.learners.lll.features import FeatureExtractor

    net = BACKBONES.get("tiny-cnn")(image_size=32)
    ext = FeatureExtractor(net, bb_from=2, device=torch.device("cpu"))
    spent = []
    ext.on_macs = spent.append
    fwd, below, top = (ext.unit_macs(k, 2) for k in ("forward", "stage_input", "top"))
    assert below + top == fwd and 0 < top < fwd
    # a partial-BB step runs (and back-propagates through) the top stages only
    assert ext.unit_macs("bb_step", 2) < ext.unit_macs("bb_step", 0)
    x = torch.rand(5, 3, 32, 32)
    bb = torch.zeros(net.bb_size)
    ext.with_bb(x, bb, 2)  # caches the input of stage 2 (5 images, counted once)
    ext.with_bb(x, bb, 2)
    assert spent == [5 * below]
    # raw features of these images come from the cache through the top stages only
    torch.testing.assert_close(ext.raw(x), net(x), rtol=0, atol=1e-5)
    assert spent == [5 * below, 5 * top]
