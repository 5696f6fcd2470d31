"""Wall-clock speedup of a SKILL population over one agent, and bytes shared per task.

    python benchmarks/skill_speedup.py [--agents 2] [--tasks 6] [--epochs 20]

In one run, on the same tasks, seed and settings:

1. the single-agent reference: one agent learns every task, in this process, with one
   agent's share of the machine (one core: the process is pinned to CPU 0, one torch
   thread, one BLAS thread); its time includes building its stream and backbone;
2. the population: N Ray actors with one CPU and one thread each; its time includes
   ``ray.init`` and every actor's start-up (imports, stream, backbone);

then prints the speedup (1) / (2) of learning and sharing, i.e. until every agent holds every
task (target >= 0.85 N; the paper's speedup is of learning), and of the whole run including
the final test of every task, which each agent does in full in both cases; checks that every
agent's accuracy equals the single agent's, and prints the bytes shared per task with
float32 and float16
anchors, with the task-mapper accuracy of each (the paper: 813 KB per task, GMMC, no BB).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one agent's share; Ray sets the same for its workers

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--benchmark", default="shipped-mix")
    p.add_argument("--tasks", type=int, default=12, help="first N tasks of the benchmark")
    p.add_argument("--epochs", type=int, default=20, help="most epochs per task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", default="efficientnet-lite0")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--assignment", default="balanced", choices=["balanced", "dynamic"],
                   help="how the population splits the tasks (dynamic: a free agent takes "
                        "the next task)")
    p.add_argument("--bb", default="none", choices=["none", "partial", "full"],
                   help="beneficial biases (more work per task: start-up weighs less)")
    args = p.parse_args()

    import ray
    import torch

    from lifelong.learners.lll.bundle import decode, encode
    from lifelong.skill.agent import Agent
    from lifelong.skill.population import PopulationConfig, run_population, start_ray, table2

    raw = {"run": {"benchmark": args.benchmark, "learner": "lll", "setting": "class-il",
                   "epochs": args.epochs, "seed": args.seed},
           "benchmark": {"num_tasks": args.tasks},
           "learner": {"backbone": args.backbone, "image_size": args.image_size, "bb": args.bb}}
    work = Path(tempfile.mkdtemp(prefix="skill-speedup-"))
    cpus = os.sched_getaffinity(0)
    print(
        f"{args.agents} agents, {args.tasks} tasks of {args.benchmark}, <= {args.epochs} "
        f"epochs each, BB {args.bb}, {args.assignment} assignment, seed {args.seed}; "
        f"{len(cpus)} CPUs; work dir {work}",
        flush=True,
    )

    # 1. one agent, one core
    os.sched_setaffinity(0, {min(cpus)})
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    single = run_population(raw, PopulationConfig(agents=1, backend="local"), work / "single")
    t_single = time.perf_counter() - t0
    os.sched_setaffinity(0, cpus)
    print(f"single agent: {t_single:.1f} s", flush=True)

    # 2. the population on Ray, start-up included
    t0 = time.perf_counter()
    start_ray(args.agents)
    t_init = time.perf_counter() - t0
    pop = run_population(
        raw,
        PopulationConfig(agents=args.agents, backend="ray", assignment=args.assignment),
        work / "population",
    )
    t_pop = time.perf_counter() - t0
    learn_single, learn_pop = single.learn_seconds, t_init + pop.learn_seconds
    ray.shutdown()
    print(
        f"{args.agents} agents on Ray: {t_pop:.1f} s (Ray and actors' start-up "
        f"{t_init + pop.startup_seconds:.1f} s of it)",
        flush=True,
    )

    same = all(acc == single.accuracy[0] for acc in pop.accuracy.values()) and all(
        h == single.holdings[0] for h in pop.holdings.values()
    )
    acc = np.mean([v["acc"] for v in single.accuracy[0].values()])
    mapper32 = np.mean([v["mapper"] for v in single.accuracy[0].values()])

    # 3. bytes per task with float16 anchors, and the mapper accuracy they give
    probe = Agent(raw, 0, [])
    kw = dict(
        fingerprint=probe.learner.backbone.fingerprint(),
        feature_dim=probe.learner.backbone.num_features,
        bb_size=probe.learner.backbone.bb_size,
    )
    sizes32, sizes16 = [], []
    for path in sorted((work / "single" / "agent-0" / "bundles").glob("task-*.safetensors")):
        data = path.read_bytes()
        half = encode(decode(data, **kw), torch.float16)
        sizes32.append(len(data))
        sizes16.append(len(half))
        probe.receive(half)
    mapper16 = np.mean([v["mapper"] for v in probe.evaluate().values()])

    row = table2(pop, 1000.0, "gmmc", single_agent_seconds=t_single)
    row["wall_seconds"] = t_pop
    row["speedup"] = t_single / t_pop
    print()
    print("| agents | phase | single agent s | population s | speedup | target |")
    print("|---:|---|---:|---:|---:|---:|")
    print(
        f"| {args.agents} | learning and sharing | {learn_single:.1f} | {learn_pop:.1f} | "
        f"{learn_single / learn_pop:.2f} | >= {0.85 * args.agents:.2f} |"
    )
    print(
        f"| {args.agents} | whole run, final test included | {t_single:.1f} | {t_pop:.1f} | "
        f"{row['speedup']:.2f} | |"
    )
    print()
    print(
        f"accuracy equal to the single agent's: {'yes' if same else 'NO'}; end-to-end "
        f"accuracy {acc:.3f}; teacher GMACs (largest agent) {row['teacher_macs'] / 1e9:.1f}; "
        f"efficiency in MACs {row['efficiency']:.3f}"
    )
    print()
    print("| anchors | bytes per task (mean) | vs paper's 813 KB | task-mapper accuracy |")
    print("|---|---:|---:|---:|")
    for name, sizes, mapper in (("float32", sizes32, mapper32), ("float16", sizes16, mapper16)):
        kb = np.mean(sizes) / 1000
        print(f"| {name} | {np.mean(sizes):,.0f} | {kb / 813:.2f} | {mapper:.3f} |")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
