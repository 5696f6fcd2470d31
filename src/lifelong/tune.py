"""``lifelong tune``: choose each learner's method constants on validation data only.

Every learner's config may declare a search space (``Config.SEARCH``: field -> candidate
values, with ``SEARCH_SOURCE`` naming where the range comes from). For each candidate (the
full grid, or ``trials`` of it drawn with a fixed seed) and each tuning seed, an ordinary run
is trained with ``run.evaluate_test=false``: the runner records validation accuracy only
and never evaluates a test split. A candidate's score is the mean over seeds of the mean
validation accuracy over all tasks after the last one (``mean_final_val_accuracy``). The
best candidate (the first on ties, in grid order) is written to ``tuned.json``, which
``lifelong compare --tuned FILE`` applies to its runs. Trial runs are ordinary run
directories (``<out>/<learner>/trial<k>/seed<s>``): finished ones are reused.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lifelong.api import run_experiment
from lifelong.compare import same_settings
from lifelong.config import merge
from lifelong.errors import ConfigError
from lifelong.experiment import make_experiment
from lifelong.io import atomic_write_json
from lifelong.learners import resolve_learner
from lifelong.outputs import read_results

__all__ = ["tune", "load_tuned", "TUNED_FILE"]

TUNED_FILE = "tuned.json"


def _candidates(space: dict[str, tuple[Any, ...]], trials: int | None) -> list[dict[str, Any]]:
    grid = [dict(zip(space, combo, strict=True)) for combo in itertools.product(*space.values())]
    if trials is None or trials >= len(grid):
        return grid
    picks = np.random.default_rng(0).choice(len(grid), size=trials, replace=False)
    return [grid[i] for i in sorted(picks)]


def tune(raw: dict[str, Any], learners: Sequence[str], out: Path, *,
         seeds: Sequence[int] = (0,), trials: int | None = None, progress: bool = True,
         echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Tune every learner of ``learners`` that declares a search space; returns (and writes
    as ``out/tuned.json``) each one's chosen values, its score and every trial's."""
    if trials is not None and trials < 1:
        raise ConfigError("--trials must be >= 1")
    plan = {}
    for name in learners:
        cls, _ = resolve_learner(name)
        space = cls.Config.SEARCH
        cands = _candidates(space, trials) if space else []
        for values in cands:  # every candidate is a valid config before anything trains
            make_experiment(merge(raw, {"run": {"learner": name}, "learner": values}))
        plan[name] = (cls, cands)
    out.mkdir(parents=True, exist_ok=True)
    chosen: dict[str, Any] = {}
    for name, (cls, cands) in plan.items():
        if not cands:
            echo(f"{name}: no search space declared; its defaults are kept")
            chosen[name] = {"values": {}, "score": None, "trials": [],
                            "source": "defaults (nothing to tune)"}
            continue
        rows = []
        for k, values in enumerate(cands):
            scores = []
            for seed in seeds:
                trial = make_experiment(merge(raw, {
                    "run": {"learner": name, "seed": seed, "evaluate_test": False},
                    "learner": values}))
                run_dir = out / name / f"trial{k}" / f"seed{seed}"
                # reuse a finished trial only if it was made with exactly these settings
                if (run_dir / "results.json").is_file() and same_settings(run_dir, trial):
                    res = read_results(run_dir)
                else:
                    res = run_experiment(trial, out=run_dir, overwrite=run_dir.exists(),
                                         progress=progress)
                score = res["summary"].get("mean_final_val_accuracy")
                if score is None:
                    raise ConfigError(f"{run_dir}: no validation accuracy (empty val splits?)")
                scores.append(float(score))
            rows.append({"values": values, "val": float(np.mean(scores)), "per_seed": scores})
            echo(f"{name} trial {k + 1}/{len(cands)} {values}: validation {rows[-1]['val']:.4f}")
        best = max(range(len(rows)), key=lambda i: (rows[i]["val"], -i))  # first on ties
        chosen[name] = {"values": rows[best]["values"], "score": rows[best]["val"],
                        "trials": rows, "source": cls.Config.SEARCH_SOURCE}
    exp = make_experiment(merge(raw, {"run": {"learner": learners[0]}}))
    summary = {"protocol": {"benchmark": exp.run.benchmark, "epochs": exp.run.epochs,
                            "setting": exp.run.setting, "seeds": list(seeds),
                            "selected_on": "validation splits (test never evaluated)",
                            "score": "mean_final_val_accuracy, mean over seeds"},
               "learners": chosen}
    atomic_write_json(out / TUNED_FILE, summary)
    return summary


def load_tuned(path: str | Path, learners: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-learner settings from a ``tuned.json`` for the learners compared (those it has);
    ConfigError (one line) for a missing or malformed file or unknown settings."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        tuned = {n: dict(v["values"]) for n, v in data["learners"].items()}
    except FileNotFoundError:
        raise ConfigError(f"--tuned {p}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ConfigError(f"--tuned {p}: not a tuned.json ({type(err).__name__})") from None
    out = {}
    for name in learners:
        if name in tuned and tuned[name]:
            make_experiment({"run": {"learner": name}, "learner": tuned[name]})  # keys valid
            out[name] = tuned[name]
    return out
