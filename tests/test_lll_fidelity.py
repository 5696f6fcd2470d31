"""LLL as the SKILL paper describes it: Head2Toe's pooled and flattened maps (7.3), beneficial
biases on fully connected layers (Eq. 2), partial BB sharing only its trained slice, the
GMMC fit and the task mapper in the MAC counts, the SKILL code's batch size under
``folder`` and task keys that any dataset folder name yields."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import fakedata
from lifelong.backbones import BACKBONES, Backbone, BiasedLinear, wrap_convs
from lifelong.backbones.base import pooled
from lifelong.experiment import make_experiment
from lifelong.learners.lll.admission import Admission
from lifelong.learners.lll.anchors import fit_gmmc
from lifelong.learners.lll.bundle import BundleError, decode, encode
from lifelong.learners.lll.cost import gmmc_fit_macs, gmmc_map_macs, maha_map_macs
from lifelong.learners.lll.h2t import h2t_features, pool_size
from lifelong.learners.lll.learner import LLLConfig
from lifelong.learners.lll.names import task_key
from lifelong.runner import Runner


@BACKBONES.register("test-conv-fc")
class ConvFC(Backbone):
    """A custom backbone with fully connected layers: conv stage, then two Linear stages."""

    preprocessing = "rgb|bilinear-antialias|(x-0.5)/0.5"

    def __init__(self, image_size: int = 16) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.image_size, self.num_features = image_size, 12
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 12)
        for m in (self.conv, self.fc1, self.fc2):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.5)
        stages = [wrap_convs(nn.ModuleList([m])) for m in (self.conv, self.fc1, self.fc2)]
        self.conv, self.fc1, self.fc2 = (s[0] for s in stages)
        self._freeze(stages)

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if i == 0:
            return F.relu(self.conv(x))
        if i == 1:
            return F.relu(self.fc1(pooled(x)))
        return self.fc2(x)


def _learner(tmp_path, benchmark="split-digits", tasks=2, epochs=3, run=None, bench=None,
             **learner):
    raw = {"run": {"benchmark": benchmark, "learner": "lll", "epochs": epochs,
                   "setting": "class-il", **(run or {})},
           "benchmark": bench or {"num_tasks": tasks, "data_fraction": 0.4},
           "learner": {"backbone": "tiny-cnn", "image_size": 16, "gmm_components": 3,
                       "engine": "torch", **learner}}
    exp = make_experiment(raw)
    stream = exp.build_stream()
    lll = exp.build_learner(stream, torch.device("cpu"))
    Runner(exp, stream, lll, tmp_path, torch.device("cpu"), progress=False).run()
    return lll, stream, exp


def _fresh(exp, stream):
    return exp.build_learner(stream, torch.device("cpu"))


def _with_manifest(data: bytes, **changes) -> bytes:
    """The bundle with manifest fields changed (tensors and their hash untouched)."""
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(json.loads(data[8:8 + n])["__metadata__"]["lifelong"])
    meta.update(changes)
    return st_save(st_load(data), metadata={"lifelong": json.dumps(meta)})


# -- Eq. 2: fully connected layers get beneficial biases ------------------------------------
def test_fully_connected_layers_of_a_custom_backbone_get_beneficial_biases():
    net = BACKBONES.get("test-conv-fc")(image_size=16)
    assert net.bb_size == 8 + 16 + 12  # one bias per conv channel and per hidden unit
    assert isinstance(net.fc2, BiasedLinear)
    x = torch.rand(3, 3, 16, 16)
    plain = net(x)
    bb = torch.zeros(net.bb_size)
    bb[-12:] = torch.arange(12.0)  # the last FC layer's biases: y = FC(x) + b + B (Eq. 2)
    net.use_bb(bb)
    assert torch.allclose(net(x), plain + torch.arange(12.0), atol=1e-6)
    bb = torch.zeros(net.bb_size, requires_grad=True)
    net.use_bb(bb)
    net(x).square().sum().backward()
    net.use_bb(None)
    assert float(bb.grad[8:24].abs().sum()) > 0 and float(bb.grad[24:].abs().sum()) > 0


def test_lll_trains_the_biases_of_a_custom_backbones_linear_layers(tmp_path):
    lll, _, _ = _learner(tmp_path, backbone="test-conv-fc", bb="full", tasks=1)
    b = lll.bundles[0]
    assert b.bb is not None and b.bb.numel() == 36
    assert float(b.bb[8:].abs().sum()) > 0  # the FC layers' biases (Eq. 2) were trained


# -- partial BB ships only its slice ----------------------------------------------------------
def test_partial_bb_bundle_ships_only_the_trained_slice_and_predicts_the_same(tmp_path):
    lll, stream, exp = _learner(tmp_path, bb="partial", bb_stages=1)
    net = lll.backbone
    start = net.bb_offset(net.num_stages - 1)  # tiny-cnn: 16 + 32 biases frozen, 64 trained
    for t, data in lll.bundle_bytes.items():
        b = decode(data, lll.expect())
        assert b.bb_offset == start and b.bb.numel() == net.bb_size
        assert float(b.bb[:start].abs().sum()) == 0
        assert st_load(data)["bb"].numel() == net.bb_size - start
        b.bb_offset = 0  # the old format: the whole vector
        whole = encode(b)
        # the float32 zeros are no longer shipped (the manifest gains its offset)
        assert 4 * start - 64 <= len(whole) - len(data) <= 4 * start
        assert torch.equal(decode(whole, lll.expect()).bb, lll.bundles[t].bb)
    other = _fresh(exp, stream)
    for data in lll.bundle_bytes.values():
        other.import_bundle(data, Admission.of(stream))
    # The same predictions (the logits to float rounding: the teacher's cached activations
    # were computed in other batches than the receiver's)
    x = torch.cat([task.test.images() for task in stream])
    mine, theirs = lll.predict(x), other.predict(x)  # no oracle: mapper, head and biases
    assert torch.equal(mine.argmax(1), theirs.argmax(1))
    assert torch.allclose(mine, theirs, atol=1e-5)
    for task in stream:
        mine, theirs = (m.predict(task.test.images(), task.id) for m in (lll, other))
        assert torch.equal(mine.argmax(1), theirs.argmax(1))
        assert torch.allclose(mine, theirs, atol=1e-5)


def test_partial_bb_offset_is_checked_on_receipt(tmp_path):
    lll, _, _ = _learner(tmp_path, bb="partial", bb_stages=1, tasks=1)
    data, exp = lll.bundle_bytes[0], lll.expect()
    for bad in (10**6, 112, -1, True, "48"):  # outside the backbone's 112 biases
        with pytest.raises(BundleError, match="inside"):
            decode(_with_manifest(data, bb_offset=bad), exp)
    with pytest.raises(BundleError, match="shape"):  # slice and offset disagree
        decode(_with_manifest(data, bb_offset=0), exp)
    b = decode(data, exp)
    b.bb_offset = 16  # a consistent slice, but not where its stage's biases start
    with pytest.raises(BundleError, match="start"):
        decode(encode(b), exp)
    assert decode(encode(b)).bb_offset == 16  # structurally fine without a backbone


# -- Head2Toe (7.3) ---------------------------------------------------------------------------
def test_head2toe_pools_and_flattens_the_chosen_maps():
    net = BACKBONES.get("tiny-cnn")(image_size=16)
    x, bb = torch.rand(2, 3, 16, 16), torch.randn(net.bb_size) * 0.1
    index = torch.tensor([70, 3, 20])  # channels of stages 2, 0, 1 (16 + 32 + 64 biases)
    assert pool_size(3, 8192) == 52 and pool_size(210, 8192) == 6  # 210 x 36 = 7,560
    out = h2t_features(net, x, bb, 0, index, 2)
    assert out.shape == (2, 64 + 3 * 4)
    net.use_bb(bb)
    with torch.no_grad():
        conv0 = net.body[0](net.preprocess(x))  # stage 0's conv output, before its ReLU
        feats = net(x)
    net.use_bb(None)
    assert torch.allclose(out[:, :64], feats, atol=1e-6)
    want = F.adaptive_avg_pool2d(conv0[:, 3:4], 2).flatten(1)  # channel 3, second chosen
    assert torch.allclose(out[:, 64 + 4:64 + 8], want, atol=1e-6)
    assert not any(c.record or c.last is not None for c in net.convs)  # nothing kept


def test_head2toe_defaults_are_the_papers():
    cfg = LLLConfig()
    assert (cfg.h2t_features, cfg.h2t_epochs, cfg.h2t_early_stopping) == (8192, 100, False)


def test_head2toe_bundle_round_trips_with_its_flattened_head(tmp_path):
    lll, stream, exp = _learner(tmp_path, bb="partial", bb_stages=1, h2t=True,
                                h2t_fraction=0.1, h2t_features=200, h2t_epochs=4, tasks=1)
    k = round(0.1 * lll.backbone.bb_size)  # 11 channels, s = isqrt(200 // 11) = 4
    b = lll.bundles[0]
    assert b.h2t_pool == 4 and b.h2t_index.numel() == k
    assert b.head_weight.shape[1] == 64 + k * 16
    assert lll.learning[0]["h2t_epochs"] == 4  # all epochs: no early stopping by default
    other = _fresh(exp, stream)
    other.import_bundle(lll.bundle_bytes[0], Admission.of(stream))
    x = stream[0].test.images()
    assert torch.equal(other.predict(x, 0), lll.predict(x, 0))
    with pytest.raises(BundleError, match="shape"):  # the head's width follows the pool
        decode(_with_manifest(lll.bundle_bytes[0], h2t_pool=3), lll.expect())


def test_head2toe_early_stopping_is_an_option(tmp_path):
    lll, _, _ = _learner(tmp_path, bb="partial", bb_stages=1, h2t=True, h2t_fraction=0.1,
                         h2t_features=200, h2t_epochs=30, h2t_early_stopping=True,
                         patience=1, tasks=1)
    assert lll.learning[0]["h2t_epochs"] < 30


# -- MACs: the GMMC fit (teacher) and the mapper (inference) ----------------------------------
def test_gmmc_fit_macs_by_hand():
    # N = 300, D = 20, k = 7, 5 k-means and 12 EM iterations:
    #   seeding  300 * 20 * (1 + 6 * (2 + floor(ln 7) = 3)) = 6,000 * 19   =   114,000
    #   Lloyd    (5 + 1) * 300 * 7 * 20                      = 6 * 42,000   =   252,000
    #   EM       (4 * 12 + 4) * 300 * 7 * 20                 = 52 * 42,000  = 2,184,000
    assert gmmc_fit_macs(300, 20, 7, 12, 5) == 2_550_000
    assert gmmc_map_macs(50, 64) == 6_400 and maha_map_macs(10, 64) == 4_096 + 640
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 20)) + 3 * rng.normal(size=(5, 20))[rng.integers(0, 5, 300)]
    stats: dict[str, int] = {}
    a = fit_gmmc(x, 7, 3, 1e-4, stats)
    from sklearn.mixture import GaussianMixture

    ref = GaussianMixture(7, covariance_type="diag", random_state=3, reg_covar=1e-4).fit(x)
    assert np.array_equal(a.means, ref.means_.astype(np.float32))  # the same fit
    assert stats["em_iterations"] == ref.n_iter_ and stats["kmeans_iterations"] >= 1


def test_teacher_macs_hold_the_gmmc_fit_and_inference_macs_the_mapper(tmp_path):
    gmmc, stream, _ = _learner(tmp_path / "g", tasks=2)
    maha, _, _ = _learner(tmp_path / "m", tasks=2, mapper="maha")
    d = gmmc.backbone.num_features
    for task in stream:
        # the same head training (same seeds); Mahalanobis' class means cost no products
        feats = gmmc.extract.raw(task.train.images()).numpy()
        stats: dict[str, int] = {}
        fit_gmmc(feats, 3, gmmc.seed * 1000 + task.id, gmmc.cfg.gmm_reg_covar, stats)
        fit = gmmc_fit_macs(len(feats), d, 3, stats["em_iterations"],
                            stats["kmeans_iterations"])
        assert gmmc.train_macs[task.id] - maha.train_macs[task.id] == fit
    fwd = gmmc.extract.unit_macs("forward", 0)
    assert gmmc.report()["inference_macs_per_image"] == fwd + 2 * (3 * 2) * d
    classes = sum(t.num_classes for t in stream)
    assert maha.report()["inference_macs_per_image"] == fwd + d * d + classes * d


# -- folder: batch 32, any dataset name -------------------------------------------------------
def test_folder_batch_size_is_the_skill_codes_for_lll_only(tmp_path):
    def batch(learner: str, **run) -> int:
        exp = make_experiment({"run": {"benchmark": "folder", "learner": learner, **run},
                               "benchmark": {"root": str(tmp_path)}})
        return exp.run.batch_size

    assert batch("lll") == 32 and batch("dfcnn") == 16 and batch("lll", batch_size=8) == 8
    exp = make_experiment({"run": {"benchmark": "split-digits", "learner": "lll"}})
    assert exp.run.batch_size == 10  # elsewhere the benchmark's default stands


NAMES = ["Oxford's flowers", "tab\tand\nnewline", "x" * 240, "日本の花", "oxford-s-flowers"]


def test_task_keys_are_short_printable_and_distinct():
    keys = [task_key(3, n) for n in NAMES]
    assert keys[0].startswith("3:oxford-s-flowers-") and len(set(keys)) == len(NAMES)
    assert all(k.isascii() and k.isprintable() and len(k) <= 60 for k in keys)
    assert task_key(3, NAMES[0]) == keys[0]  # derived, so every agent derives the same


def test_any_dataset_folder_name_is_learned_and_its_bundle_accepted(tmp_path):
    root = tmp_path / "data"
    layout = {"train": {"rose": 6, "tulip": 6}, "test": {"rose": 2, "tulip": 2}}
    fakedata.write_split_tree(root, {n: layout for n in NAMES[:3]})
    lll, stream, exp = _learner(tmp_path / "run", benchmark="folder", epochs=2,
                                bench={"root": str(root), "image_size": 16})
    assert exp.run.batch_size == 32
    assert sorted(b.info["task_name"] for b in lll.bundles.values()) == sorted(NAMES[:3])
    other = _fresh(exp, stream)
    for data in lll.bundle_bytes.values():
        other.import_bundle(data, Admission.of(stream))
    assert other.bundle_digests() == lll.bundle_digests()
