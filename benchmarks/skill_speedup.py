"""Wall-clock speedup of a SKILL population over one agent, and bytes shared per task.

    python benchmarks/skill_speedup.py [--agents 2] [--bb none] [--epochs N] [--repeat 3]

Defaults: the demo's stream and settings (``make demo``: ``lifelong skill --benchmark
shipped-mix``, 12 tasks, no BB, the learner's default epochs, seed 0). In one run:

1. **learning**, in this process: one agent learns every task with one agent's share of the
   machine (the process pinned to one core, one torch thread, one BLAS thread), then N Ray
   actors with one CPU and one thread each learn the same tasks and share them. Both times
   run from when every agent has started until every agent holds every task;
   ``speedup_learning`` = single / population (the paper's speedup is of learning; target
   >= 1.85 for 2 agents);
2. **the whole command**: ``lifelong skill --agents 1`` and ``--agents N`` run as
   subprocesses, start-up (imports, Ray, actors, stream, backbone), the final test (the
   CLI's default: split among agents holding the same bundles) and the report included;
   ``speedup_whole`` = the first's wall time over the second's (target >= 1.6);
3. ``driver_bundle_bytes``: bundle bytes that reached the driver in step 1's population
   (the most in any run with ``--repeat``; teachers send to their peers directly: 0);

With ``--repeat R`` steps 1 and 2 run R times, one after the other, and the two speedups
printed are the medians of the R runs' ratios (each run's are printed as comments): on this
machine one run's ratios varied by up to 0.7 between runs minutes apart (2026-12-04).

It checks that every agent's accuracy and bundles equal the single agent's, and prints the bytes
shared per task with float32 and float16 anchors, with the task-mapper accuracy of each (the
paper: 813 KB per task, GMMC, no BB).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one agent's share; Ray sets the same for its workers

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def _whole_command(agents: int, args: argparse.Namespace, out: Path) -> float:
    """Wall seconds of ``lifelong skill --agents N`` as a user runs it (a fresh process)."""
    cmd = [sys.executable, "-m", "lifelong", "skill", "--agents", str(agents),
           "--benchmark", args.benchmark, "--seed", str(args.seed), "--out", str(out),
           "--overwrite", "--quiet"]
    if args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    if args.bb != "none":
        cmd += ["--bb", args.bb]
    env = {k: v for k, v in os.environ.items() if k not in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--benchmark", default="shipped-mix")
    p.add_argument("--epochs", type=int, default=None,
                   help="most epochs per task (default: the learner's, as in the demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bb", default="none", choices=["none", "partial", "full"],
                   help="beneficial biases (more work per task: start-up weighs less)")
    p.add_argument("--no-whole", action="store_true",
                   help="skip the two whole-command runs (speedup_whole)")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs of steps 1 and 2; the speedups printed are their medians")
    args = p.parse_args()
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    from lifelong._allocator import keep_freed_memory

    keep_freed_memory()  # as the command line does; the Ray actors set it for themselves

    import ray
    import torch

    from lifelong.learners.lll.bundle import decode, encode
    from lifelong.skill.agent import Agent
    from lifelong.skill.population import PopulationConfig, run_population, start_ray, table2

    run: dict[str, object] = {"benchmark": args.benchmark, "learner": "lll",
                              "setting": "class-il", "seed": args.seed, "threads": 1}
    if args.epochs is not None:
        run["epochs"] = args.epochs
    raw = {"run": run, "learner": {"bb": args.bb}}
    work = Path(tempfile.mkdtemp(prefix="skill-speedup-"))
    cpus = os.sched_getaffinity(0)
    print(f"{args.agents} agents, {args.benchmark}, BB {args.bb}, epochs "
          f"{args.epochs or 'default'}, seed {args.seed}; {len(cpus)} CPUs; work dir {work}",
          flush=True)

    learn_ratios: list[float] = []
    whole_ratios: list[float] = []
    same, driver_bytes = True, 0
    for r in range(args.repeat):
        out = work / f"run-{r}"
        # 1. one agent, one core; then the population on Ray
        os.sched_setaffinity(0, {min(cpus)})
        torch.set_num_threads(1)
        single = run_population(raw, PopulationConfig(agents=1, backend="local"),
                                out / "single")
        os.sched_setaffinity(0, cpus)
        learn_single = single.learn_seconds - single.startup_seconds
        print(f"single agent: learning {learn_single:.1f} s, whole {single.wall_seconds:.1f} s",
              flush=True)
        t0 = time.perf_counter()
        start_ray(args.agents)
        t_init = time.perf_counter() - t0
        # evaluate=all: every agent tests every task, so that the check below compares each
        # agent's own answers with the single agent's (the CLI's default splits the test)
        pop = run_population(raw, PopulationConfig(agents=args.agents, backend="ray",
                                                   evaluate="all"), out / "population")
        ray.shutdown()
        learn_pop = pop.learn_seconds - pop.startup_seconds
        print(f"{args.agents} agents on Ray: learning {learn_pop:.1f} s after a start-up of "
              f"{t_init + pop.startup_seconds:.1f} s", flush=True)
        same = same and all(acc == single.accuracy[0] for acc in pop.accuracy.values()) and \
            all(h == single.holdings[0] for h in pop.holdings.values())
        learn_ratios.append(learn_single / learn_pop)
        driver_bytes = max(driver_bytes, pop.driver_bundle_bytes)

        # 2. the whole command, each a fresh process
        if not args.no_whole:
            t1 = _whole_command(1, args, out / "cli-1")
            tn = _whole_command(args.agents, args, out / f"cli-{args.agents}")
            whole_ratios.append(t1 / tn)
            print(f"lifelong skill --agents 1: {t1:.1f} s; --agents {args.agents}: {tn:.1f} s",
                  flush=True)
        print(f"# run {r + 1} of {args.repeat}: speedup_learning {learn_ratios[-1]:.2f}"
              + (f", speedup_whole {whole_ratios[-1]:.2f}" if whole_ratios else ""),
              flush=True)
    acc = np.mean([v["acc"] for v in single.accuracy[0].values()])
    mapper32 = np.mean([v["mapper"] for v in single.accuracy[0].values()])
    row = table2(pop, 1000.0, "gmmc")

    # 3. bytes per task with float16 anchors, and the mapper accuracy they give
    probe = Agent(raw, 0, [])
    expect = probe.learner.expect()
    sizes32, sizes16 = [], []
    for path in sorted((out / "single" / "agent-0" / "bundles").glob("task-*.safetensors")):
        data = path.read_bytes()
        half = encode(decode(data, expect), torch.float16)
        sizes32.append(len(data))
        sizes16.append(len(half))
        probe.receive(half)
    mapper16 = np.mean([v["mapper"] for v in probe.evaluate().values()])

    print()
    print(f"accuracy and bundles equal to the single agent's: {'yes' if same else 'NO'}; "
          f"end-to-end accuracy {acc:.3f}; efficiency in MACs {row['efficiency']:.3f}")
    print("| anchors | bytes per task (mean) | vs paper's 813 KB | task-mapper accuracy |")
    print("|---|---:|---:|---:|")
    for name, sizes, mapper in (("float32", sizes32, mapper32), ("float16", sizes16, mapper16)):
        kb = np.mean(sizes) / 1000
        print(f"| {name} | {np.mean(sizes):,.0f} | {kb / 813:.2f} | {mapper:.3f} |")
    print()
    print(f"speedup_learning = {float(np.median(learn_ratios)):.2f}")
    if whole_ratios:
        print(f"speedup_whole = {float(np.median(whole_ratios)):.2f}")
    print(f"driver_bundle_bytes = {driver_bytes}")  # the most in any run
    return 0 if same and driver_bytes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
