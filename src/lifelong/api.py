"""Run an experiment end to end: the function behind ``lifelong run``.

Everything that can fail because of the input (config, data, run directory) is checked
before the run directory is touched, so a bad input leaves no partial output.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from lifelong import __version__
from lifelong.checkpoint import has_checkpoint
from lifelong.config import merge
from lifelong.errors import ConfigError, LifelongError, RunError
from lifelong.experiment import Experiment, make_experiment, normalize_raw, resolve_device
from lifelong.history import History
from lifelong.io import atomic_write_json
from lifelong.outputs import (
    RESULT_FILES,
    matrix_from_json,
    read_results,
    write_config,
    write_results,
)
from lifelong.runner import Runner
from lifelong.tasks import TaskStream

__all__ = ["run_experiment", "execute_run", "FinishedRun", "load_run_config", "default_out",
           "RunInterrupted"]


def default_out(exp: Experiment) -> Path:
    """``runs/<benchmark>-<learner>-<seed>``."""
    return Path("runs") / f"{exp.run.benchmark}-{exp.run.learner}-{exp.run.seed}"


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The resolved config saved in a run directory (RunError if it has none)."""
    path = Path(run_dir) / "config.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{run_dir} is not a run directory (no config.yaml)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise RunError(f"{path} is unreadable: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} does not hold a config mapping")
    return data


def _describe_difference(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diff = _describe_difference(va, vb, f"{prefix}{key}.")
            if diff:
                return diff
        elif va != vb:
            return f"{prefix}{key} is {va!r} in the run, {vb!r} now"
    return ""


@dataclass(frozen=True)
class FinishedRun:
    """A run this process just finished, in memory: what results.json holds and the
    history that history.csv holds (so a caller such as ``compare`` reads no file back)."""

    results: dict[str, Any]
    history: History


def run_experiment(raw: dict[str, Any] | Experiment, *, out: str | Path | None = None,
                   resume: str | Path | None = None, overwrite: bool = False,
                   progress: bool = True, stl: str | Path | None = None) -> dict[str, Any]:
    """Run (or resume) the experiment described by ``raw`` and return its results (the
    content of ``results.json``); :func:`execute_run` takes the same arguments and also
    returns the history.

    Args:
        raw: user settings (sections run/benchmark/learner, or run fields at the top level),
            or an :class:`~lifelong.experiment.Experiment` already resolved from them (the
            config is then not built again).
        out: run directory; default ``runs/<benchmark>-<learner>-<seed>``.
        resume: a run directory to continue; ``raw`` may only repeat its settings or change
            execution-only ones (device, threads, cache_mb) and the data's location.
        overwrite: replace an existing run directory at ``out``.
        progress: show progress on stderr.
        stl: a finished STL run on the same stream; the results then report forward transfer
            against it.

    Raises:
        LifelongError: bad input; nothing is left behind.
        RunInterrupted: Ctrl-C; the run directory holds a checkpoint to resume from.
    """
    return execute_run(raw, out=out, resume=resume, overwrite=overwrite, progress=progress,
                       stl=stl).results


def execute_run(raw: dict[str, Any] | Experiment, *, out: str | Path | None = None,
                resume: str | Path | None = None, overwrite: bool = False,
                progress: bool = True, stl: str | Path | None = None) -> FinishedRun:
    """:func:`run_experiment`, returning the results and the history in memory."""
    if resume is not None:
        run_dir = Path(resume)
        original = make_experiment(load_run_config(run_dir))
        if isinstance(raw, Experiment):
            exp = raw
        elif raw:  # only execution settings may change; checked below
            exp = make_experiment(merge(original.to_dict(), normalize_raw(raw)))
        else:
            exp = original
        if exp.comparable() != original.comparable():
            diff = _describe_difference(original.comparable(), exp.comparable())
            raise RunError(f"--resume {run_dir}: {diff}")
        if not has_checkpoint(run_dir / "checkpoint"):
            raise RunError(f"--resume {run_dir}: no checkpoint to resume from")
        if out is not None and Path(out) != run_dir:
            raise ConfigError("--out and --resume name different directories")
    else:
        exp = raw if isinstance(raw, Experiment) else make_experiment(raw)
        run_dir = Path(out) if out is not None else default_out(exp)
        _check_new_run_dir(run_dir, overwrite)

    run = exp.run
    if run.threads is not None:
        torch.set_num_threads(run.threads)
    device = resolve_device(run.device)
    torch.manual_seed(run.seed)
    stream = exp.build_stream()  # reads and checks the data: DataError before any output
    stl_matrix = _stl_reference(stl, stream) if stl is not None else None
    learner = exp.build_learner(stream, device)
    runner = Runner(exp, stream, learner, run_dir, device, progress=progress)
    if resume is not None:
        runner.restore()
        (run_dir / "results.json").unlink(missing_ok=True)
    else:
        if run_dir.exists():
            _clear_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / MARKER, {"lifelong_version": __version__})
        write_config(run_dir, exp)
        runner.checkpoint()  # from here on the run can always be resumed

    start = time.perf_counter()
    try:
        outcome = runner.run()
    except KeyboardInterrupt:
        raise RunInterrupted(run_dir) from None
    except LifelongError:
        # e.g. an image that cannot be decoded: a fresh run that trained nothing leaves nothing
        if resume is None and runner.state.global_epoch == 0:
            _clear_run_dir(run_dir)
            if not any(run_dir.iterdir()):
                run_dir.rmdir()
        raise
    history = outcome.recorder.to_history()
    results = write_results(run_dir, exp, stream, history,
                            parameters=learner.parameter_count(),
                            train_seconds=outcome.train_seconds,
                            wall_seconds=time.perf_counter() - start, device=device,
                            stl_matrix=stl_matrix, train_macs=outcome.train_macs,
                            report=learner.learner_report(), extra={"run_dir": str(run_dir)})
    return FinishedRun(results, history)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``run_dir`` holds a checkpoint to ``--resume`` from."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


#: Marks a directory as a run directory: only such directories are ever deleted.
MARKER = ".lifelong-run"
_RUN_ENTRIES = (MARKER, "config.yaml", "checkpoint", *RESULT_FILES)


def _check_new_run_dir(run_dir: Path, overwrite: bool) -> None:
    """A new run may go to a missing or empty directory, or replace a run directory with
    ``overwrite``; never a file, the working directory, a parent of it or the home folder."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--out {run_dir} is a file, not a directory")
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return
    if not overwrite:
        hint = " (or --resume it)" if has_checkpoint(run_dir / "checkpoint") else ""
        raise RunError(f"run directory {run_dir} exists; choose another --out or "
                       f"pass --overwrite{hint}")
    here, target = Path.cwd().resolve(), run_dir.resolve()
    if target == Path.home().resolve() or target == here or target in here.parents:
        raise RunError(f"--overwrite will not replace {run_dir}: it holds the working or home "
                       "directory")
    if not (run_dir / MARKER).is_file():
        raise RunError(f"{run_dir} is not a lifelong run directory; --overwrite only "
                       "replaces run directories")


def _clear_run_dir(run_dir: Path) -> None:
    """Delete what a run writes; anything else in the directory is left alone."""
    for name in _RUN_ENTRIES:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _stl_reference(stl: str | Path, stream: TaskStream) -> np.ndarray:
    """The accuracy matrix of a finished STL run on exactly this task stream."""
    ref = read_results(stl)
    if not isinstance(ref, dict) or ref.get("learner") != "stl":
        raise ConfigError(f"--stl {stl}: not the results of an stl run")
    if ref.get("stream_fingerprint") != stream.fingerprint():
        raise ConfigError(f"--stl {stl}: that run was made on other tasks (benchmark, its "
                          "settings, the seed or the data differ)")
    try:
        R = matrix_from_json(ref["accuracy_matrix"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"--stl {stl}: results.json has no valid accuracy_matrix") from None
    if R.shape != (len(stream), len(stream)):
        raise ConfigError(f"--stl {stl}: {R.shape[0]} tasks, this stream has {len(stream)}")
    return R
