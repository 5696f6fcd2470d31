"""``lifelong compare``: several learners x several seeds on one benchmark, then the DF-CNN
paper's comparison (Figures 3 and 4) and the SKILL paper's views (Figures 4, 5 and 8, and
Table 1's training MACs) with 95% confidence intervals over seeds.

Every run is an ordinary run directory ``<out>/<learner>/seed<k>``: a finished one is reused
(if its settings match), an interrupted one is resumed, a missing one is trained. So the
command can be killed and started again, and more learners or seeds added later.
"""

from __future__ import annotations

import csv
import io
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lifelong import metrics, plots
from lifelong.api import FinishedRun, execute_run, load_run_config
from lifelong.checkpoint import has_checkpoint
from lifelong.config import merge
from lifelong.errors import ConfigError, RunError
from lifelong.experiment import Experiment, make_experiment
from lifelong.history import History
from lifelong.io import atomic_write_json, atomic_write_text
from lifelong.learners import resolve_learner
from lifelong.macs import learner_train_macs
from lifelong.outputs import matrix_from_json, read_history, read_results

__all__ = ["compare", "GridBackend", "METRICS", "skill_views", "NORMALIZED_TASKS"]

#: results.json summary fields compared, with their table headings.
METRICS = (
    ("mean_peak_accuracy", "peak accuracy"),
    ("mean_best_val_accuracy", "test accuracy at best val"),
    ("mean_final_accuracy", "final accuracy"),
    ("mean_forgetting_ratio", "forgetting ratio"),
    ("mean_convergence_epochs", "convergence epochs"),
    ("train_seconds", "train seconds"),
    ("train_macs", "training MACs"),  # SKILL Table 1 (with final accuracy)
)

#: The accuracies compared seed by seed against the reference learner.
PAIRED = ("mean_final_accuracy", "mean_best_val_accuracy", "mean_peak_accuracy")

#: How many of the first tasks the normalized-accuracy view follows. The SKILL paper's
#: Figure 5 shows 10; three keep the confidence bands readable in one panel.
NORMALIZED_TASKS = 3


#: One run of the grid: learner name, seed, run directory, what to do with it (reused,
#: resumed, trained, retrained) and its resolved settings.
Job = tuple[str, int, Path, str, Experiment]


def _experiments(raw: dict[str, Any], learners: Sequence[str], seeds: Sequence[int],
                 per_learner: dict[str, dict[str, Any]]) -> dict[tuple[str, int], Experiment]:
    """The resolved settings of every run, built once here (a ConfigError before anything
    trains) and passed down to the runs."""
    for name in per_learner:
        if name not in learners:
            raise ConfigError(f"settings for learner {name!r}, which is not in --learners")
    out = {}
    # the training-MACs column needs the runner's counter, unless the user said otherwise
    counting = {} if "count_macs" in raw.get("run", {}) else {"count_macs": True}
    for name in learners:
        resolve_learner(name)
        for seed in seeds:
            r = merge(raw, {"run": {"learner": name, "seed": seed, **counting},
                            "learner": per_learner.get(name, {})})
            out[(name, seed)] = make_experiment(r)
    return out


@dataclass(frozen=True)
class GridBackend:
    """Where ``compare`` runs its (learner, seed) grid.

    ``local``: one run after another in this process. ``ray``: each run that needs training
    is a Ray task with ``cpus_per_run`` CPUs (and torch threads) and ``gpus_per_run`` GPUs;
    without ``address`` a local cluster of ``workers x cpus_per_run`` CPUs is started on
    127.0.0.1 (``lifelong.skill.ray_cluster``). Results are the same either way: each run
    is seeded by its own settings alone.
    """

    backend: Literal["local", "ray"] = "local"
    address: str = ""
    workers: int = 2
    cpus_per_run: int = 1
    gpus_per_run: float = 0.0

    def __post_init__(self) -> None:
        if self.backend not in ("local", "ray"):
            raise ConfigError(f"backend must be local or ray, not {self.backend!r}")
        if self.workers < 1 or self.cpus_per_run < 1 or self.gpus_per_run < 0:
            raise ConfigError("workers and cpus_per_run must be >= 1, gpus_per_run >= 0")


def _with_memory(learners: Sequence[str], per_learner: dict[str, dict[str, Any]],
                 memory: int | None) -> dict[str, dict[str, Any]]:
    """``per_learner`` with every rehearsal method's memory set to ``memory`` examples."""
    if memory is None:
        return per_learner
    if memory < 1:
        raise ConfigError("--memory must be >= 1")
    out = {k: dict(v) for k, v in per_learner.items()}
    for name in learners:
        cls, _ = resolve_learner(name)
        budget = getattr(cls.Config, "with_memory", None)  # declared by rehearsal configs
        if budget is None:
            continue
        settings = budget(memory)
        clash = sorted(set(settings) & set(out.get(name, {})))
        if clash:
            raise ConfigError(f"--memory sets {name}.{clash[0]} itself")
        out[name] = {**out.get(name, {}), **settings}
    return out


def same_settings(run_dir: Path, exp: Experiment) -> bool:
    """Whether the run in ``run_dir`` was made with exactly these settings."""
    try:
        done = make_experiment(load_run_config(run_dir))
    except (RunError, ConfigError):
        return False
    return done.comparable() == exp.comparable()


def compare(raw: dict[str, Any], learners: Sequence[str], seeds: Sequence[int], out: Path, *,
            per_learner: dict[str, dict[str, Any]] | None = None, overwrite: bool = False,
            progress: bool = True, echo: Callable[[str], None] = print,
            reference: str | None = None, memory: int | None = None,
            backend: GridBackend | None = None) -> dict[str, Any]:
    """Run (or reuse, or resume) every learner x seed and write the comparison to ``out``.

    Args:
        raw: settings shared by all runs (normalised sections; ``learner`` applies to all).
        learners: registered learner names.
        seeds: run seeds (the data split, initialisation and batches of each).
        out: directory of the comparison; runs go to ``out/<learner>/seed<k>``.
        per_learner: settings for one learner only, by learner name.
        overwrite: retrain runs that exist with other settings (finished runs with the same
            settings are always reused).
        progress: show each run's progress bar.
        echo: where one line per run is reported.
        reference: the learner every other one is compared with seed by seed (paired 95%
            intervals of the differences, Wilcoxon signed-rank and sign tests); default
            ``stl`` if compared, else ``finetune`` if compared, else none.
        memory: give every rehearsal method (a learner whose config has ``with_memory``)
            the same number of stored examples; the table then shows each method's memory
            and stored examples replayed per step, as measured.
        backend: where the runs execute (:class:`GridBackend`): one after another in this
            process (default), or as Ray tasks, each with its own CPUs (and GPUs).

    Returns:
        The content of ``comparison.json``.
    """
    backend = backend or GridBackend()
    per_learner = _with_memory(learners, per_learner or {}, memory)
    plan = _experiments(raw, learners, seeds, per_learner)
    out.mkdir(parents=True, exist_ok=True)
    jobs: list[Job] = []  # in plan order; checked before any trains
    for (name, seed), exp in plan.items():
        run_dir = out / name / f"seed{seed}"
        exists = run_dir.is_dir() and any(run_dir.iterdir())
        same = exists and same_settings(run_dir, exp)
        if exists and not same and not overwrite:
            raise RunError(f"{run_dir} holds a run with other settings; use another --out "
                           "or --overwrite")
        if same and (run_dir / "results.json").is_file():
            action = "reused"
        elif same and has_checkpoint(run_dir / "checkpoint"):
            action = "resumed"
        else:
            action = "trained" if not exists else "retrained"
        jobs.append((name, seed, run_dir, action, exp))
    executor = _run_local if backend.backend == "local" else _run_ray
    done = executor(jobs, backend, progress, echo)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in learners}
    histories: dict[str, list[History]] = {name: [] for name in learners}
    for name, _, run_dir, _, _ in jobs:  # in plan order, whatever order they finished in
        results[name].append(done[run_dir].results)
        histories[name].append(done[run_dir].history)
    summary = _summarize(results, learners)
    if reference is None:
        reference = next((n for n in ("stl", "finetune") if n in learners), None)
    if reference is not None and reference not in learners:
        raise ConfigError(f"reference {reference!r} is not one of the compared learners")
    summary["reference"] = reference
    if reference is not None:
        for name in learners:
            if name != reference:
                summary["learners"][name]["vs_reference"] = _paired(results[name],
                                                                    results[reference])
    _write(out, summary, results, histories)
    return summary


def _paired(runs: list[dict[str, Any]], ref: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-seed differences of ``runs`` against the reference's runs of the same seeds
    (:func:`lifelong.metrics.paired_difference`); None where no seed has both values."""
    by_seed = {r["seed"]: r for r in ref}
    out: dict[str, Any] = {}
    for key in PAIRED:
        a, b = [], []
        for r in runs:
            other = by_seed.get(r["seed"])
            x, y = _metric(r, key), _metric(other, key) if other else None
            if x is not None and y is not None:
                a.append(x)
                b.append(y)
        out[key] = metrics.paired_difference(a, b) if a else None
    return out


def _reuse(run_dir: Path) -> FinishedRun:
    """A run an earlier process finished: its results and history, read from its files."""
    return FinishedRun(read_results(run_dir), read_history(run_dir))


def _execute(run_dir: Path, action: str, exp: Experiment, progress: bool
             ) -> FinishedRun:
    """One run of the grid: read, resume or train it; its results and history."""
    if action == "reused":
        return _reuse(run_dir)
    if action == "resumed":
        return execute_run({}, resume=run_dir, progress=progress)
    return execute_run(exp, out=run_dir, overwrite=action == "retrained", progress=progress)


def _line(i: int, total: int, name: str, seed: int, action: str, res: dict[str, Any],
          seconds: float) -> str:
    s = res["summary"]
    how = "trained" if action == "retrained" else action
    return (f"[{i}/{total}] {name} seed {seed}: {how}, peak {s['mean_peak_accuracy']:.3f}, "
            f"forgetting ratio {s['mean_forgetting_ratio']:.3f} ({seconds:.0f} s)")


def _run_local(jobs: list[Job], backend: GridBackend,
               progress: bool, echo: Callable[[str], None]) -> dict[Path, FinishedRun]:
    """The grid one run after another in this process."""
    done = {}
    for i, (name, seed, run_dir, action, exp) in enumerate(jobs, start=1):
        start = time.perf_counter()
        done[run_dir] = _execute(run_dir, action, exp, progress)
        echo(_line(i, len(jobs), name, seed, action, done[run_dir].results,
                   time.perf_counter() - start))
    return done


def _remote_run(run_dir: str, action: str, exp: Experiment, threads: int
                ) -> dict[str, Any]:
    """A grid run in a Ray worker: its own process, ``threads`` torch threads."""
    import torch

    from lifelong._allocator import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    run = _execute(Path(run_dir), action, exp, progress=False)
    return {"run": run, "seconds": time.perf_counter() - start}


def _run_ray(jobs: list[Job], backend: GridBackend,
             progress: bool, echo: Callable[[str], None]) -> dict[Path, FinishedRun]:
    """Every run that needs training as a Ray task with ``cpus_per_run`` CPUs (and
    ``gpus_per_run`` GPUs); finished runs are read here. A run that raises is re-raised
    here with its one-line reason after the others have finished (each run directory stays
    resumable)."""
    import ray
    from ray.exceptions import RayTaskError

    from lifelong.skill.ray_cluster import check_address, start_ray

    check_address(backend.address)
    done: dict[Path, FinishedRun] = {}
    todo = []
    for i, (name, seed, run_dir, action, exp) in enumerate(jobs, start=1):
        if action == "reused":
            done[run_dir] = _reuse(run_dir)
            echo(_line(i, len(jobs), name, seed, action, done[run_dir].results, 0.0))
        else:
            todo.append((i, name, seed, run_dir, action, exp))
    if not todo:
        return done
    if not ray.is_initialized():
        start_ray(backend.workers * backend.cpus_per_run, backend.address)
    task = ray.remote(num_cpus=backend.cpus_per_run, num_gpus=backend.gpus_per_run,
                      max_retries=0)(_remote_run)
    pending = {task.remote(str(run_dir.resolve()), action, exp, backend.cpus_per_run):
               (i, name, seed, run_dir, action) for i, name, seed, run_dir, action, exp in todo}
    failed: list[str] = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        i, name, seed, run_dir, action = pending.pop(ready[0])
        try:
            out = ray.get(ready[0])
        except RayTaskError as err:
            cause = getattr(err, "cause", None) or err
            failed.append(f"{name} seed {seed}: {' '.join(str(cause).split())[:200]}")
            echo(f"[{i}/{len(jobs)}] {name} seed {seed}: failed ({failed[-1]})")
            continue
        done[run_dir] = out["run"]
        echo(_line(i, len(jobs), name, seed, action, out["run"].results, out["seconds"]))
    if failed:
        raise RunError(f"{len(failed)} run(s) failed, e.g. {failed[0]}; run the command "
                       "again to resume them")
    return done


def _fwt_vs_stl(results: dict[str, list[dict[str, Any]]], name: str) -> list[float]:
    """Forward transfer of each seed's run against the STL run of the same seed."""
    stl = {r["seed"]: r for r in results.get("stl", [])}
    values = []
    for r in results[name]:
        ref = stl.get(r["seed"])
        if ref and ref.get("stream_fingerprint") == r.get("stream_fingerprint"):
            values.append(metrics.forward_transfer_vs_stl(matrix_from_json(r["accuracy_matrix"]),
                                                          matrix_from_json(ref["accuracy_matrix"])))
    return values


def _summarize(results: dict[str, list[dict[str, Any]]], learners: Sequence[str]
               ) -> dict[str, Any]:
    rows = {}
    for name in learners:
        runs = results[name]
        row: dict[str, Any] = {"seeds": [r["seed"] for r in runs],
                               "parameters": runs[0]["summary"]["parameters"]}
        for key, _ in METRICS:
            values = [v for r in runs if (v := _metric(r, key)) is not None]
            row[key] = _interval(values)
        if "stl" in results and name != "stl":
            row["forward_transfer_vs_stl"] = _interval(_fwt_vs_stl(results, name))
        for key in ("memory_examples", "replay_per_step"):  # rehearsal methods' report
            values = [float(v) for r in runs
                      if (v := r.get("learner_report", {}).get(key)) is not None]
            if values:
                row[key] = _interval(values)
        row["skill_views"] = _views_json(skill_views(_matrices(runs)))
        # how the batch loss was reduced: sum and mean give different effective step sizes
        row["loss_reduction"] = runs[0]["config"].get("learner", {}).get("loss_reduction")
        rows[name] = row
    first = results[learners[0]][0]
    return {"benchmark": first["benchmark"], "config": first["config"], "learners": rows}


def _metric(run: dict[str, Any], key: str) -> float | None:
    """A summary value of one run; ``train_macs`` of runs made before the runner counted
    them comes from the learner's own count (LLL) or is None (shown as "-")."""
    value = run["summary"].get(key)
    if value is None and key == "train_macs":
        value = learner_train_macs(run.get("learner_report"))
    return value


def _matrices(runs: list[dict[str, Any]]) -> list[np.ndarray]:
    """The (T, T) accuracy matrices of a learner's runs (those shaped like the first)."""
    Rs = [matrix_from_json(r["accuracy_matrix"]) for r in runs]
    return [R for R in Rs if R.shape == Rs[0].shape]


def _band(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of the 95% t-interval over seeds, entry by entry.

    ``rows`` are one (n,) array per seed; a NaN entry leaves that seed out of that entry
    only, and an entry no seed has stays NaN (e.g. a task not learned yet).
    """
    a = np.stack(rows)  # (seeds, n)
    mean, half = np.full(a.shape[1], np.nan), np.full(a.shape[1], np.nan)
    for k in range(a.shape[1]):
        v = a[:, k][np.isfinite(a[:, k])]
        if v.size:
            mean[k], half[k] = metrics.confidence_interval(v)
    return mean, half


def skill_views(matrices: Sequence[np.ndarray], first_tasks: int = NORMALIZED_TASKS
                ) -> dict[str, Any]:
    """The SKILL paper's views of one learner over seeds, each a pair (mean, half-width of
    the 95% interval) of (T,) arrays whose entry i is after learning task i.

    Args:
        matrices: One (T, T) accuracy matrix per seed, ``R[i, j]`` = accuracy on task j after
            learning task i (NaN for j > i).
        first_tasks: How many first tasks the normalized view follows.

    Returns:
        ``first_task_accuracy``: ``R[i, 0]`` (Figure 4).
        ``normalized_first_tasks``: for each j < ``first_tasks``, ``R[i, j] / R[j, j]``
        (Figure 5; NaN for i < j).
        ``average_accuracy``: ``mean_{j <= i} R[i, j]``, over the tasks learned so far
        (Figure 8).
    """
    if not matrices:
        raise ValueError("skill_views needs at least one accuracy matrix")
    T = matrices[0].shape[0]
    norm = [metrics.normalized_accuracy(R) for R in matrices]  # (T, T) each
    return {
        "first_task_accuracy": _band([R[:, 0] for R in matrices]),
        "normalized_first_tasks": [_band([N[:, j] for N in norm])
                                   for j in range(min(first_tasks, T))],
        "average_accuracy": _band([metrics.average_accuracy(R) for R in matrices]),
    }


def _views_json(views: dict[str, Any]) -> dict[str, Any]:
    """:func:`skill_views` for comparison.json (NaN -> None)."""
    def pair(p: tuple[np.ndarray, np.ndarray]) -> dict[str, list[float | None]]:
        return {"mean": [_opt(v) for v in p[0]], "ci95": [_opt(v) for v in p[1]]}

    return {"first_task_accuracy": pair(views["first_task_accuracy"]),
            "normalized_first_tasks": [pair(p) for p in views["normalized_first_tasks"]],
            "average_accuracy": pair(views["average_accuracy"])}


def _opt(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _interval(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "ci95": None, "values": []}
    mean, half = metrics.confidence_interval(values)
    return {"mean": mean, "ci95": half, "values": list(values)}


def _fmt(cell: dict[str, Any], digits: int = 3) -> str:
    if cell["mean"] is None:
        return "-"
    return f"{cell['mean']:.{digits}f} ± {cell['ci95']:.{digits}f}"


def _fmt_paired(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"
    if cell["ci95"] is None:  # one seed: no interval
        return f"{cell['mean']:+.3f} (1 seed)"
    p = "-" if cell["wilcoxon_p"] is None else f"{cell['wilcoxon_p']:.2g}"
    return f"{cell['mean']:+.3f} ± {cell['ci95']:.3f}{' *' if cell['significant'] else ''} " \
           f"(p {p}, n {cell['n']})"


def _fmt_macs(cell: dict[str, Any]) -> str:
    """MACs span many orders of magnitude (SKILL Table 1: 1.7E+16 to 4.5E+18)."""
    if cell["mean"] is None:
        return "-"
    return f"{cell['mean']:.3g} ± {cell['ci95']:.2g}"


def _nanmean(arrays: list[np.ndarray]) -> np.ndarray:
    """Mean over the first axis ignoring NaN; all-NaN entries (unseen tasks) stay NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice" for all-NaN
        return np.nanmean(np.stack(arrays), axis=0)


def _mean_history(hs: list[History]) -> History:
    """Element-wise mean over seeds (runs with the same epochs and evaluation schedule)."""
    base = hs[0]
    if any(h.test.shape != base.test.shape for h in hs):
        return base
    test = _nanmean([h.test for h in hs])
    val = _nanmean([h.val for h in hs])
    return History(epoch=base.epoch, task=base.task, task_epoch=base.task_epoch, val=val,
                   test=test, loss=np.mean([h.loss for h in hs], axis=0),
                   seconds=np.mean([h.seconds for h in hs], axis=0))


def _loss_lines(rows: dict[str, Any]) -> list[str]:
    """The comparison's loss reduction, stated once; learners that differ are named (their
    effective learning rates differ, so their rows do not compare like for like)."""
    by: dict[str, list[str]] = {}
    for name, r in rows.items():
        if r.get("loss_reduction") is not None:
            by.setdefault(r["loss_reduction"], []).append(name)
    if not by:
        return []
    if len(by) == 1:
        (reduction,) = by
        how = "summed" if reduction == "sum" else "averaged"
        return [f"Loss reduction: the batch loss is {how} over the batch "
                f"(`loss_reduction: {reduction}`) for every learner.", ""]
    parts = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(by.items()))
    return [f"Loss reduction differs between learners ({parts}): their effective learning "
            "rates differ; set `learner.loss_reduction` to compare at one.", ""]


def comparison_markdown(summary: dict[str, Any]) -> str:
    """``comparison.md``: the table of :func:`compare`'s summary (and, with a reference
    learner, the paired differences)."""
    rows = summary["learners"]
    has_fwt = any("forward_transfer_vs_stl" in r for r in rows.values())
    heads = [h for _, h in METRICS] + (["forward transfer vs STL"] if has_fwt else [])
    run = summary["config"]["run"]
    lines = [f"# {summary['benchmark']}: {len(rows)} learners, "
             f"{len(next(iter(rows.values()))['seeds'])} seeds, {run['epochs']} epochs per task",
             "", "Mean over seeds ± half-width of the 95% Student-t interval.", "",
             *_loss_lines(rows),
             "| learner | " + " | ".join(heads) + " | parameters |",
             "|---" * (len(heads) + 2) + "|"]
    for name, r in rows.items():
        cells = [_fmt_macs(r[k]) if k == "train_macs" else
                 _fmt(r[k], 1 if k == "train_seconds" else 3) for k, _ in METRICS]
        if has_fwt:
            cells.append(_fmt(r["forward_transfer_vs_stl"]) if "forward_transfer_vs_stl" in r
                         else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['parameters']:,} |")
    if any("memory_examples" in r for r in rows.values()):
        lines += ["", "Memory: stored training examples at the end of the stream, and stored "
                  "examples trained on per step (measured means).", "",
                  "| learner | stored examples | replayed per step |", "|---|---|---|"]
        for name, r in rows.items():
            if "memory_examples" in r:
                lines.append(f"| {name} | {r['memory_examples']['mean']:.0f} | "
                             f"{r['replay_per_step']['mean']:.1f} |")
    ref = summary.get("reference")
    if ref is not None:
        lines += ["", f"## Paired against {ref}, seed by seed", "",
                  f"Mean difference to {ref} over the seeds both ran ± half-width of the 95% "
                  "Student-t interval of the per-seed differences; `*`: the interval excludes "
                  "0. p: two-sided Wilcoxon signed-rank test.", "",
                  "| learner | " + " | ".join(dict(METRICS)[k] for k in PAIRED) + " |",
                  "|---" * (len(PAIRED) + 1) + "|"]
        for name, r in rows.items():
            if name == ref:
                continue
            lines.append(f"| {name} | " + " | ".join(
                _fmt_paired(r["vs_reference"][k]) for k in PAIRED) + " |")
    return "\n".join(lines) + "\n"


def _write(out: Path, summary: dict[str, Any], results: dict[str, list[dict[str, Any]]],
           histories: dict[str, list[History]]) -> None:
    rows = summary["learners"]
    has_fwt = any("forward_transfer_vs_stl" in r for r in rows.values())
    atomic_write_text(out / "comparison.md", comparison_markdown(summary))

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = [k for k, _ in METRICS] + (["forward_transfer_vs_stl"] if has_fwt else [])
    w.writerow(["learner", "seeds", *[f"{k}_{s}" for k in keys for s in ("mean", "ci95")],
                "parameters"])
    for name, r in rows.items():
        cells = []
        for k in keys:
            cell = r.get(k, {"mean": None, "ci95": None})
            cells += ["" if cell["mean"] is None else f"{cell['mean']:.6g}",
                      "" if cell["ci95"] is None else f"{cell['ci95']:.6g}"]
        w.writerow([name, len(r["seeds"]), *cells, r["parameters"]])
    atomic_write_text(out / "comparison.csv", buf.getvalue())
    atomic_write_json(out / "comparison.json", summary)

    names = [t["name"] for t in results[next(iter(results))][0]["tasks"]]
    if any([t["name"] for t in rs[0]["tasks"]] != names for rs in results.values()):
        names = [f"task {j + 1}" for j in range(len(names))]
    mean_h = {name: _mean_history(hs) for name, hs in histories.items()}
    reference = None
    if "stl" in rows and rows["stl"]["mean_peak_accuracy"]["mean"] is not None:
        reference = {"STL peak": rows["stl"]["mean_peak_accuracy"]["mean"]}
    title = summary["benchmark"]
    plots.plot_accuracy_panels(mean_h, names, out / "accuracy_panels.png",
                               title=f"{title}: test accuracy over training (mean over seeds)",
                               reference=reference)

    def bars(key: str) -> dict[str, tuple[float, float]]:
        return {n: (np.nan if r[key]["mean"] is None else r[key]["mean"],
                    np.nan if r[key]["ci95"] is None else r[key]["ci95"]) for n, r in rows.items()}

    plots.plot_bars_with_ci(bars("mean_peak_accuracy"), out / "peak_accuracy.png",
                            title=f"{title}: peak per-task accuracy", ylabel="accuracy")
    plots.plot_bars_with_ci(bars("mean_forgetting_ratio"), out / "forgetting_ratio.png",
                            title=f"{title}: catastrophic forgetting ratio",
                            ylabel="final / peak", hline=1.0)
    plots.plot_bars_with_ci(bars("mean_convergence_epochs"), out / "convergence.png",
                            title=f"{title}: epochs to 98% of peak", ylabel="epochs")
    per_task = {n: _nanmean([metrics.forgetting_ratio(h) for h in hs])
                for n, hs in histories.items()}
    plots.plot_grouped_bars(per_task, names, out / "forgetting_per_task.png",
                            title=f"{title}: forgetting ratio per task", ylabel="final / peak",
                            hline=1.0)
    # The SKILL paper's views, mean over seeds with 95% bands.
    views = {n: skill_views(_matrices(rs)) for n, rs in results.items()}
    plots.plot_average_accuracy({n: v["average_accuracy"][0] for n, v in views.items()},
                                out / "average_accuracy.png",
                                title=f"{title}: average accuracy over tasks learned so far",
                                ci={n: v["average_accuracy"][1] for n, v in views.items()})
    plots.plot_curves_over_tasks({n: v["first_task_accuracy"][0] for n, v in views.items()},
                                 out / "first_task_accuracy.png",
                                 title=f"{title}: accuracy on {names[0]}",
                                 ylabel=f"accuracy on {names[0]}",
                                 ci={n: v["first_task_accuracy"][1] for n, v in views.items()})
    plots.plot_curve_panels(
        {n: {names[j]: m for j, (m, _) in enumerate(v["normalized_first_tasks"])}
         for n, v in views.items()}, out / "normalized_first_tasks.png",
        title=f"{title}: normalized accuracy of the first tasks (R[i, j] / R[j, j])",
        ylabel="normalized accuracy", hline=1.0,
        ci={n: {names[j]: h for j, (_, h) in enumerate(v["normalized_first_tasks"])}
            for n, v in views.items()})
    for n, rs in results.items():  # chosen transfer configurations, pooled over seeds
        chosen = [c for r in rs for c in r.get("learner_report", {}).get("configurations",
                                                                         {}).values()]
        if chosen:
            plots.plot_configurations(chosen, out / f"configurations-{n}.png",
                                      title=f"{title}: {n}, {len(rs)} seeds")
