"""Evaluation time with and without ``lifelong._allocator.keep_freed_memory``.

Each measurement runs in a fresh subprocess (the allocator setting is per process), on the
same synthetic CIFAR-shaped tasks: 3 tasks x 1,000 test images, evaluated 5 times with HPS.

    python benchmarks/allocator.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, os, sys, time, torch
from lifelong._allocator import keep_freed_memory
if sys.argv[1] == "1":
    keep_freed_memory()
torch.set_num_threads(2)
from lifelong.experiment import make_experiment
from lifelong.runner import evaluate
exp = make_experiment({"run": {"benchmark": "synthetic", "learner": "hps", "net": "cifar"},
                       "benchmark": {"image_size": 32, "channels": 3, "classes_per_task": 10,
                                     "images_per_class": 500, "num_tasks": 3}})
stream = exp.build_stream()
learner = exp.build_learner(stream, torch.device("cpu"))
for t in stream:
    learner.begin_task(t); learner.end_task(t); t.test.cache()
t0, c0 = time.perf_counter(), os.times()
for _ in range(5):
    for t in stream:
        evaluate(learner, t, t.test, torch.device("cpu"), "task-il")
c1 = os.times()
print(json.dumps({"wall": time.perf_counter() - t0, "sys": c1.system - c0.system}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    res: dict[str, list[dict]] = {"0": [], "1": []}
    for _ in range(args.repeats):
        for mode in ("0", "1"):  # alternate, so both see the same machine load
            out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True,
                                 text=True, check=True)
            res[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for mode, name in (("0", "default malloc"), ("1", "keep_freed_memory")):
        walls = [r["wall"] for r in res[mode]]
        syss = [r["sys"] for r in res[mode]]
        print(f"{name:18s} wall {min(walls):6.2f} s (best of {len(walls)})  sys {min(syss):5.2f} s")
    ratio = min(r["wall"] for r in res["1"]) / min(r["wall"] for r in res["0"])
    print(f"evaluation time with / without: {ratio:.2f}")


if __name__ == "__main__":
    main()
