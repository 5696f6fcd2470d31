"""The ``shipped-102`` protocol: 102 tasks from shipped data, distinct in (source,
transform, classes), small, deterministic, each with its own global classes."""

from __future__ import annotations

import torch

from lifelong.experiment import make_experiment
from lifelong.protocols.shipped102 import GROUPS, TRANSFORMS, task_specs


def test_all_102_tasks_differ_in_source_transform_and_classes():
    specs = task_specs()
    assert len(specs) == 102
    triples = {(src, kind, classes) for _, src, classes, kind in specs}
    assert len(triples) == 102
    assert len({name for name, *_ in specs}) == 102
    assert {src for _, src, _, _ in specs} == {"mnist", "digits", "photos"}
    assert {kind for *_, kind in specs} == set(TRANSFORMS)
    # every (group, transform) pair can occur at most once in the 110 possible tasks
    assert len({(c, s, k) for _, s, c, k in task_specs(len(GROUPS) * len(TRANSFORMS))}) == 110


def test_the_stream_builds_small_distinct_tasks_deterministically():
    raw = {"run": {"benchmark": "shipped-102", "learner": "lll", "seed": 3},
           "benchmark": {"num_tasks": 14, "per_class": 10}}
    a = make_experiment(raw).build_stream()
    b = make_experiment(raw).build_stream()
    assert len(a) == 14 and a.fingerprint() == b.fingerprint()
    ids = [i for t in a for i in t.class_ids]
    assert len(ids) == len(set(ids)) == a.num_global_classes
    for t in a:
        x = t.train.images()
        assert x.shape[1:] == (3, 32, 32) and float(x.min()) >= 0 and float(x.max()) <= 1
        assert len(t.train) + len(t.val) + len(t.test) == 10 * t.num_classes
        assert t.info["transform"] in TRANSFORMS
    # the same digits under two transforms are different images
    plain, inverted = a[0].train.images(), a[10].train.images()  # mnist-0-4: plain, invert
    assert a[10].info["transform"] == "invert"
    assert not torch.allclose(plain.mean(0), inverted.mean(0))
