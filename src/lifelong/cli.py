"""The ``lifelong`` command line: run, compare, skill, bundle, list, data list, data describe.

Errors caused by the input are printed as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lifelong.errors import LifelongError

__all__ = ["main"]

EXIT_INPUT = 2
EXIT_INTERRUPTED = 130


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides: run fields (epochs=5), benchmark.KEY=..., "
                        "learner.KEY=...; they may come before or after the options")


def _add_grid_options(p: argparse.ArgumentParser, out_help: str) -> None:
    """Options shared by the commands that train a grid of runs (compare, tune)."""
    p.add_argument("--root", help="dataset directory for benchmarks that read your data")
    p.add_argument("--epochs", type=int, help="training epochs per task (default: the paper's)")
    p.add_argument("--out", help=out_help)
    p.add_argument("--config", help="YAML file with run/benchmark/learner sections")
    p.add_argument("--device", help="auto (default), cpu, cuda or mps")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, letting ``key=value`` overrides sit anywhere among the options."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    unknown = [a for a in extra if a not in overrides]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if overrides:
        if not hasattr(args, "overrides"):
            parser.error(f"{args.command} takes no key=value overrides")
        args = argparse.Namespace(**{**vars(args),
                                     "overrides": [*args.overrides, *overrides]})
    return args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lifelong", description="Deep lifelong learning with shared knowledge.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train a learner on a benchmark's task stream",
                         description="Train a learner on a benchmark's tasks, one after another, "
                                     "and write results, history and plots to a run directory.")
    run.add_argument("--benchmark", help="benchmark protocol (see `lifelong list`)")
    run.add_argument("--learner", help="learner (see `lifelong list`)")
    run.add_argument("--root", help="dataset directory for benchmarks that read your data")
    run.add_argument("--epochs", type=int, help="training epochs per task (default: the paper's)")
    run.add_argument("--seed", type=int, help="random seed (data split, initialisation, batches)")
    run.add_argument("--out", help="run directory (default runs/<benchmark>-<learner>-<seed>)")
    run.add_argument("--config", help="YAML file with run/benchmark/learner sections")
    run.add_argument("--device", help="auto (default), cpu, cuda or mps")
    run.add_argument("--threads", type=int, help="torch CPU threads")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    run.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--stl", metavar="RUN_DIR",
                     help="a finished stl run on the same benchmark and seed: report forward "
                          "transfer against it")
    _add_common(run)

    cmp_ = sub.add_parser(
        "compare", help="run several learners over several seeds and compare them",
        description="Run each learner on the benchmark for every seed (finished runs are "
                    "reused, interrupted ones resumed) and write the DF-CNN paper's comparison: "
                    "a table with 95%% confidence intervals (markdown, CSV, JSON) and plots.")
    cmp_.add_argument("--benchmark", default="split-mnist", help="benchmark (default split-mnist)")
    cmp_.add_argument("--learners", default="stl,hps,tf,prognn,den,dfcnn",
                      help="comma-separated learners (default stl,hps,tf,prognn,den,dfcnn)")
    cmp_.add_argument("--seeds", type=int, default=5,
                      help="number of seeds, 0..N-1 (default 5, the papers')")
    cmp_.add_argument("--backend", choices=["local", "ray"], default="local",
                      help="local (default): runs one after another; ray: each run a Ray "
                           "task with --cpus-per-run CPUs")
    cmp_.add_argument("--address", default="",
                      help="Ray cluster to join (auto or HOST:PORT); default: a local "
                           "cluster on 127.0.0.1 with --workers x --cpus-per-run CPUs")
    cmp_.add_argument("--workers", type=int, default=2,
                      help="runs at once on a local Ray cluster (default 2)")
    cmp_.add_argument("--cpus-per-run", type=int, default=1, help="CPUs per run (default 1)")
    cmp_.add_argument("--gpus-per-run", type=float, default=0.0,
                      help="GPUs per run, fractional allowed (default 0)")
    cmp_.add_argument("--tuned", metavar="TUNED_JSON",
                      help="apply the values `lifelong tune` chose (its tuned.json)")
    cmp_.add_argument("--memory", type=int,
                      help="stored examples for every rehearsal method (ER, A-GEM, DER, "
                           "DER++, iCaRL): compare at equal memory")
    cmp_.add_argument("--reference",
                      help="learner every other is compared with, seed by seed (paired "
                           "intervals and tests; default stl, else finetune, if compared)")
    _add_grid_options(cmp_, "comparison directory (default runs/compare-<benchmark>)")
    cmp_.add_argument("--overwrite", action="store_true",
                      help="retrain runs that exist with other settings")
    cmp_.add_argument("overrides", nargs="*", metavar="key=value",
                      help="overrides for every run (epochs=5, benchmark.KEY=..., learner.KEY=...)"
                           " or for one learner (LEARNER.KEY=..., e.g. dfcnn.kb_l2=1e-7)")

    tun = sub.add_parser(
        "tune", help="choose learners' method constants on validation data only",
        description="For every learner with a declared search space, train each candidate "
                    "(the grid, or --trials of it) with test evaluation off and pick the best "
                    "mean validation accuracy after the last task; writes tuned.json for "
                    "`lifelong compare --tuned`.")
    tun.add_argument("--benchmark", default="split-mnist", help="benchmark (default split-mnist)")
    tun.add_argument("--learners", required=True, help="comma-separated learners")
    tun.add_argument("--seeds", type=int, default=1, help="tuning seeds, 0..N-1 (default 1)")
    tun.add_argument("--trials", type=int, help="candidates drawn from each grid (default all)")
    _add_grid_options(tun, "tuning directory (default runs/tune-<benchmark>)")
    _add_common(tun)

    sk = sub.add_parser(
        "skill", help="a SKILL population: agents learn tasks in parallel and share them",
        description="N Lightweight Lifelong Learner agents learn their own tasks in parallel "
                    "(Ray actors, or one after another with --backend local), share "
                    "knowledge bundles, and answer every task without a task oracle.")
    sk.add_argument("--agents", type=int, default=2, help="number of agents (default 2)")
    sk.add_argument("--benchmark", default="shipped-mix",
                    help="benchmark (default shipped-mix, the embedded many-task stream)")
    sk.add_argument("--root", help="dataset directory for benchmarks that read your data")
    sk.add_argument("--mapper", choices=["gmmc", "maha"], help="task mapper (default gmmc)")
    sk.add_argument("--bb", nargs="?", const="full", choices=["none", "partial", "full"],
                    help="beneficial biases (--bb alone: full)")
    sk.add_argument("--backend", choices=["ray", "local"], default="ray",
                    help="ray (default): agents as actors; local: one process, in turn")
    sk.add_argument("--address", default="",
                    help="join a running Ray cluster (e.g. auto or ray://HEAD:10001)")
    sk.add_argument("--assignment", choices=["balanced", "round-robin", "blocks", "dynamic"],
                    default="balanced",
                    help="how tasks are split among agents (dynamic: a free agent takes the "
                         "next task; Ray only)")
    sk.add_argument("--tasks", default="", help="explicit split, e.g. '0,1;2,3'")
    sk.add_argument("--threads", type=int, default=1, help="CPUs per agent (default 1)")
    sk.add_argument("--device", default="cpu",
                    help="each agent's device: cpu (default), cuda, or auto (CUDA where the "
                         "cluster has GPUs); on CUDA every actor asks Ray for GPUs")
    sk.add_argument("--gpus-per-agent", type=float, default=1.0,
                    help="GPUs each agent asks Ray for on CUDA (a fraction shares one; "
                         "default 1)")
    sk.add_argument("--restarts", type=int, default=0,
                    help="restart a dead agent from its saved bundles this many times")
    sk.add_argument("--evaluate", choices=["split", "all"], default="split",
                    help="the final test: split (default): agents holding the same bundles "
                         "test one share of the tasks each and all are credited; all: every "
                         "agent tests every task")
    sk.add_argument("--epochs", type=int, help="most epochs per task (default: the paper's)")
    sk.add_argument("--seed", type=int, help="random seed")
    sk.add_argument("--out", help="run directory (default runs/skill-<benchmark>-<N>)")
    sk.add_argument("--config", help="YAML file with run/benchmark/learner sections")
    sk.add_argument("--overwrite", action="store_true", help="replace an existing run")
    sk.add_argument("--quiet", action="store_true", help="no live view")
    sk.add_argument("--resume", metavar="RUN_DIR",
                    help="finish a population whose driver or Ray head died, from the "
                         "agents' saved bundles (the run's saved settings are used; "
                         "--address and --quiet may be given)")
    _add_common(sk)

    bun = sub.add_parser("bundle", help="check or inspect knowledge bundle files",
                         description="Check bundle files (signature and content) or print "
                                     "one bundle's manifest and tensor sizes.")
    bsub = bun.add_subparsers(dest="bundle_command", required=True, metavar="BUNDLE_COMMAND")
    ver = bsub.add_parser("verify", help="check bundle files; one line per file",
                          description="Check each bundle file: with --against RUN_DIR its "
                                      "signature (if the run has a key) and its content "
                                      "against that run's stream and backbone; without, its "
                                      "structure. Exit status 1 if any file is refused.")
    ver.add_argument("paths", nargs="+", metavar="PATH", help="bundle files")
    ver.add_argument("--against", metavar="RUN_DIR", help="a lifelong skill run directory")
    ins = bsub.add_parser("inspect", help="print a bundle's manifest and tensor sizes",
                          description="Print a bundle's manifest and tensor table as JSON.")
    ins.add_argument("path", metavar="PATH", help="a bundle file")

    sub.add_parser("list", help="list learners, benchmarks and networks",
                   description="List the registered learners, benchmarks and networks.")

    data = sub.add_parser("data", help="inspect benchmark protocols",
                          description="Inspect benchmark protocols and their task streams.")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    dsub.add_parser("list", help="list benchmarks and whether they need --root",
                    description="List benchmarks, their data source and paper training settings.")
    desc = dsub.add_parser("describe", help="print a benchmark's tasks, classes and split sizes",
                           description="Build a benchmark's task stream and print its tasks, "
                                       "classes and split sizes.")
    desc.add_argument("name", help="benchmark name")
    desc.add_argument("--root", help="dataset directory")
    desc.add_argument("--seed", type=int, help="protocol seed (default 0; also seed=N)")
    _add_common(desc)
    return parser


def _raw_from_args(args: argparse.Namespace,
                   overrides: dict[str, Any] | None = None,
                   flags_used: Sequence[str] = ("benchmark", "learner", "epochs", "seed",
                                                "device", "threads")) -> dict[str, Any]:
    """Settings from --config, then the flags named in ``flags_used``, then key=value
    (later wins). ``args`` is only read."""
    from lifelong.config import load_yaml, merge, parse_overrides
    from lifelong.experiment import normalize_raw

    raw = normalize_raw(load_yaml(args.config)) if args.config else normalize_raw({})
    flags: dict[str, Any] = {"run": {}, "benchmark": {}}
    for name in flags_used:
        value = getattr(args, name, None)
        if value is not None:
            flags["run"][name] = value
    if args.root is not None:
        flags["benchmark"]["root"] = args.root
    raw = merge(raw, flags)
    if overrides is None:
        overrides = parse_overrides(args.overrides)
    return merge(raw, normalize_raw(overrides))


def _cmd_run(args: argparse.Namespace) -> int:
    from lifelong.api import run_experiment
    from lifelong.experiment import make_experiment

    raw = _raw_from_args(args)
    if args.resume is None and not raw["run"].get("benchmark"):
        raise LifelongError("--benchmark is required (see `lifelong list`)")
    if args.resume is None and not raw["run"].get("learner"):
        raise LifelongError("--learner is required (see `lifelong list`)")
    _check_root(raw["run"].get("benchmark"), raw["benchmark"])
    # a new run's config is resolved here, once, and passed down; a resume resolves the saved
    # config with these execution settings on top (api.execute_run)
    settings = raw if args.resume is not None else make_experiment(raw)
    results = run_experiment(settings, out=args.out, resume=args.resume,
                             overwrite=args.overwrite, progress=not args.quiet, stl=args.stl)
    _print_summary(results)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lifelong.compare import compare, comparison_markdown
    from lifelong.config import parse_overrides
    from lifelong.learners import is_learner, resolve_learner

    learners = [n.strip() for n in args.learners.split(",") if n.strip()]
    if not learners or len(set(learners)) != len(learners):
        raise LifelongError("--learners needs distinct learner names, e.g. stl,hps,dfcnn")
    for name in learners:
        resolve_learner(name)
    if not 1 <= args.seeds <= 100:
        raise LifelongError("--seeds must be between 1 and 100")
    overrides = parse_overrides(args.overrides)
    per_learner = {k: overrides.pop(k) for k in list(overrides)
                   if is_learner(k) and isinstance(overrides[k], dict)}
    raw = _raw_from_args(args, overrides)
    if "learner" in raw["run"] or "seed" in raw["run"]:
        raise LifelongError("compare sets learner and seed itself: use --learners and --seeds")
    _check_root(raw["run"]["benchmark"], raw["benchmark"])
    out = Path(args.out) if args.out else Path("runs") / f"compare-{raw['run']['benchmark']}"
    if out.exists() and not out.is_dir():
        raise LifelongError(f"--out {out} is a file, not a directory")
    if args.tuned:
        from lifelong.tune import load_tuned

        for name, values in load_tuned(args.tuned, learners).items():
            clash = sorted(set(values) & set(per_learner.get(name, {})))
            if clash:
                raise LifelongError(f"{name}.{clash[0]} is given and in --tuned {args.tuned}")
            per_learner[name] = {**per_learner.get(name, {}), **values}
    if args.reference is not None and args.reference not in learners:
        raise LifelongError(f"--reference {args.reference} is not one of --learners")
    from lifelong.compare import GridBackend

    grid = GridBackend(backend=args.backend, address=args.address, workers=args.workers,
                       cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
    summary = compare(raw, learners, list(range(args.seeds)), out, per_learner=per_learner,
                      overwrite=args.overwrite, progress=not args.quiet,
                      reference=args.reference, memory=args.memory, backend=grid,
                      echo=lambda line: print(line, flush=True))
    print(comparison_markdown(summary), end="")
    print(f"-> {out}/comparison.md, comparison.csv, comparison.json and plots")
    return 0


_RESUME_KEEPS = {"resume", "address", "quiet", "command"}


def _cmd_skill(args: argparse.Namespace) -> int:
    from lifelong.config import build_config, merge
    from lifelong.skill.population import PopulationConfig
    from lifelong.skill.run import resume_skill, run_skill

    if args.resume is not None:
        defaults = _parser_defaults("skill")
        given = sorted(k for k, v in vars(args).items()
                       if k not in _RESUME_KEEPS and v != defaults.get(k) and v != [])
        if given:
            raise LifelongError(f"--resume continues with the run's saved settings; drop "
                                f"--{given[0].replace('_', '-')}")
        results = resume_skill(args.resume, address=args.address or None,
                               progress=not args.quiet)
        return _print_skill(results, Path(args.resume))
    threads = args.threads  # per agent: a population setting, not the run's
    raw = _raw_from_args(args, flags_used=("benchmark", "epochs", "seed"))
    if raw["run"].get("learner", "lll") != "lll":
        raise LifelongError("skill agents are Lightweight Lifelong Learners (learner lll)")
    raw = merge(raw, {"run": {"learner": "lll", "setting": "class-il", "threads": threads,
                              "device": args.device},
                      "learner": {k: v for k, v in (("mapper", args.mapper), ("bb", args.bb))
                                  if v is not None}})
    _check_root(raw["run"].get("benchmark"), raw["benchmark"])
    pop = build_config(PopulationConfig, {
        "agents": args.agents, "backend": args.backend, "address": args.address,
        "assignment": args.assignment, "tasks": args.tasks, "threads": threads,
        "restarts": args.restarts, "gpus_per_agent": args.gpus_per_agent,
        "evaluate": args.evaluate},
        section="population")
    out = args.out or f"runs/skill-{raw['run']['benchmark']}-{args.agents}"
    results = run_skill(raw, pop, out, overwrite=args.overwrite, progress=not args.quiet)
    return _print_skill(results, Path(out))


def _parser_defaults(command: str) -> dict[str, Any]:
    """The defaults of one subcommand's options (to tell what the user gave)."""
    parser = _parser()
    sub = next(a for a in parser._subparsers._group_actions  # type: ignore[union-attr]
               if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.default for a in sub.choices[command]._actions}


def _print_skill(results: dict[str, Any], out: Path) -> int:
    from lifelong.skill.population_report import table2_markdown

    print(table2_markdown(results["table2"], results["summary"]["mean_accuracy"]),
          end="")
    s = results["summary"]["per_agent"]
    for a, v in s.items():
        print(f"agent {a}: end-to-end {v['acc']:.3f}  task mapper {v['mapper']:.3f}  "
              f"oracle {v['oracle']:.3f}")
    tested = results.get("tested_by") or {}
    if any(len(v) < len(results["tasks"]) for v in tested.values()):
        shares = ", ".join(f"agent {a}: {len(v)}" for a, v in tested.items())
        print(f"final test split among agents holding the same bundles ({shares} tasks; "
              "--evaluate all tests each agent on every task)")
    agree = "yes" if results["agree"] else "NO"
    print(f"agents hold the same bundles: {agree}; dead: {results['dead'] or 'none'}; "
          f"lost tasks: {results['lost'] or 'none'}")
    failed = results.get("failures") or []
    if failed:
        print(f"calls that failed and were skipped: {len(failed)} (see results.json)")
    print(f"-> {out}/results.json, table2.md, accuracy.png, agent-*/log.jsonl")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from lifelong.tune import TUNED_FILE, tune

    learners = [n.strip() for n in args.learners.split(",") if n.strip()]
    if not learners or len(set(learners)) != len(learners):
        raise LifelongError("--learners needs distinct learner names, e.g. ewc,si,lwf")
    if not 1 <= args.seeds <= 100:
        raise LifelongError("--seeds must be between 1 and 100")
    raw = _raw_from_args(args, flags_used=("benchmark", "epochs", "device", "threads"))
    _check_root(raw["run"]["benchmark"], raw["benchmark"])
    out = Path(args.out) if args.out else Path("runs") / f"tune-{raw['run']['benchmark']}"
    if out.exists() and not out.is_dir():
        raise LifelongError(f"--out {out} is a file, not a directory")
    summary = tune(raw, learners, out, seeds=list(range(args.seeds)), trials=args.trials,
                   progress=not args.quiet, echo=lambda line: print(line, flush=True))
    for name, v in summary["learners"].items():
        score = "-" if v["score"] is None else f"{v['score']:.4f}"
        print(f"{name}: {v['values'] or 'defaults'} (validation {score})")
    print(f"-> {out / TUNED_FILE}; use it with: lifelong compare --tuned {out / TUNED_FILE}")
    return 0


def _cmd_bundle(args: argparse.Namespace) -> int:
    import json

    from lifelong.skill.bundle_cli import inspect_file, verify_files

    if args.bundle_command == "inspect":
        print(json.dumps(inspect_file(args.path), indent=2))
        return 0
    lines, ok = verify_files(args.paths, args.against)
    for line in lines:
        print(line)
    return 0 if ok else 1


def _check_root(name: str | None, bench_values: dict[str, Any]) -> None:
    """``--root`` for a benchmark whose data ships with a package is a mistake, not a no-op."""
    from lifelong.protocols import BENCHMARKS

    if name and "root" in bench_values and name in BENCHMARKS:
        if "root" not in BENCHMARKS.get(name).Config.__dataclass_fields__:
            raise LifelongError(f"benchmark {name} ships its data and takes no --root")


def _print_summary(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    s = results["summary"]
    table = Table(title=f"{results['learner']} on {results['benchmark']} (seed {results['seed']})")
    for col in ("task", "peak acc", "final acc", "forgetting ratio", "convergence epochs"):
        table.add_column(col, justify="right" if col != "task" else "left")

    def f(v: Any, fmt: str = ".3f") -> str:
        return "-" if v is None else format(v, fmt)

    for t in results["tasks"]:
        table.add_row(t["name"], f(t["peak_accuracy"]), f(t["final_accuracy"]),
                      f(t["forgetting_ratio"]), f(t["convergence_epochs"], ".0f"))
    table.add_row("mean", f(s["mean_peak_accuracy"]), f(s["mean_final_accuracy"]),
                  f(s["mean_forgetting_ratio"]), f(s["mean_convergence_epochs"], ".1f"),
                  style="bold")
    console = Console()
    console.print(table)
    console.print(f"parameters {s['parameters']:,}  training {s['train_seconds']:.1f} s  "
                  f"-> {results.get('run_dir', '')}", highlight=False)


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from lifelong.learners import LEARNERS
    from lifelong.nets import NETS
    from lifelong.protocols import BENCHMARKS

    console = Console()
    console.print("BASE@CONFIG names a static transfer configuration on hps, tf or dfcnn, "
                  "e.g. dfcnn@top-2 (= static-dfcnn with learner.transfer=top-2)",
                  highlight=False)
    for title, reg, describe in (
        ("learners", LEARNERS, lambda c: (", ".join(sorted(c.settings)), c.summary())),
        ("benchmarks", BENCHMARKS, lambda c: ("--root" if c.needs_root else "ships", c.summary())),
        ("networks", NETS, lambda s: ("", s.description)),
    ):
        table = Table(title=title, show_header=False, box=None, title_justify="left")
        for name in reg.names():
            a, b = describe(reg.get(name))
            table.add_row(f"[bold]{name}[/bold]", a, b)
        console.print(table)
    return 0


def _cmd_data_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from lifelong.protocols import BENCHMARKS

    table = Table("benchmark", "data", "net", "optimizer", "lr", "decay", "batch",
                  "epochs/task", "about")
    for name in BENCHMARKS.names():
        cls = BENCHMARKS.get(name)
        d = cls.defaults
        table.add_row(name, "--root" if cls.needs_root else "ships", d.net, d.optimizer,
                      f"{d.lr:g}", f"{d.lr_decay:g}", str(d.batch_size), str(d.epochs),
                      cls.summary())
    Console().print(table)
    return 0


def _cmd_data_describe(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from lifelong.config import RunConfig, build_config, parse_overrides
    from lifelong.experiment import normalize_raw
    from lifelong.protocols import BENCHMARKS

    cls = BENCHMARKS.get(args.name)
    raw = normalize_raw(parse_overrides(args.overrides))
    values = dict(raw["benchmark"])
    run_keys = set(raw["run"]) - {"seed"}
    if raw["learner"] or run_keys:
        wrong = sorted({*(f"learner.{k}" for k in raw["learner"]), *run_keys})
        raise LifelongError(f"data describe takes benchmark.KEY=... and seed=N, not "
                            f"{', '.join(wrong)}")
    if args.root is not None:
        values["root"] = args.root
    _check_root(args.name, values)
    seed = args.seed if args.seed is not None else raw["run"].get("seed", 0)
    seed_cfg = build_config(RunConfig, {"seed": seed}, section="run")
    cfg = build_config(cls.Config, values, section="benchmark")
    stream = cls(cfg).build(seed_cfg.seed)
    table = Table("task", "name", "classes", "train", "val", "test", "details",
                  title=f"{args.name}: {len(stream)} tasks, input {stream.input_shape}")
    for row in stream.describe():
        details = {k: v for k, v in row.items()
                   if k not in ("id", "name", "classes", "train", "val", "test")}
        table.add_row(str(row["id"]), row["name"], ", ".join(row["classes"]), str(row["train"]),
                      str(row["val"]), str(row["test"]),
                      ", ".join(f"{k}={v}" for k, v in details.items()))
    Console().print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lifelong`` command; returns the exit status."""
    args = _parse(argv)
    from lifelong._allocator import keep_freed_memory

    keep_freed_memory()  # this process is ours: see lifelong/_allocator.py
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "compare":
            return _cmd_compare(args)
        if args.command == "skill":
            return _cmd_skill(args)
        if args.command == "bundle":
            return _cmd_bundle(args)
        if args.command == "tune":
            return _cmd_tune(args)
        if args.data_command == "list":
            return _cmd_data_list(args)
        return _cmd_data_describe(args)
    except LifelongError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as err:  # a path that cannot be read or written: name it, no traceback
        where = f": {err.filename}" if err.filename else ""
        print(f"error: {err.strerror or err}{where}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt as err:
        run_dir = getattr(err, "run_dir", None)  # api.RunInterrupted: a checkpoint exists
        hint = f"; continue with: lifelong run --resume {run_dir}" if run_dir else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
