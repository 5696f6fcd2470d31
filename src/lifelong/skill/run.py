"""``lifelong skill``: run a population into a directory, with a live view of every agent."""

from __future__ import annotations

import json
import shutil
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from lifelong.config import build_config, config_to_dict
from lifelong.errors import ConfigError
from lifelong.experiment import make_experiment
from lifelong.io import atomic_write_json
from lifelong.skill.population import (
    PopulationConfig,
    actor_resources,
    assign_tasks,
    run_population,
    table2,
)
from lifelong.skill.population_report import write_population
from lifelong.skill.ray_cluster import check_address, check_capacity, start_ray
from lifelong.skill.signing import new_key, read_key, write_key
from lifelong.tasks import TaskStream

__all__ = ["run_skill", "resume_skill"]

MARKER = ".lifelong-skill"
STATE = "population.json"  # what a resume needs: experiment, settings, assignment


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"{out} exists; pass --overwrite to replace it")
        if not (out / MARKER).exists():
            raise ConfigError(f"{out} is not a population run directory; not replacing it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("lifelong skill run\n")


class _View:
    """Per-agent rows: tasks learned of assigned, bundles received, refused, state."""

    def __init__(self, plan: list[list[int]], enabled: bool) -> None:
        self.rows: dict[Any, dict[str, Any]] = {
            a: {"tasks": len(t), "learned": 0, "received": 0, "refused": 0, "failed": 0,
                "state": "learning"} for a, t in enumerate(plan)}
        self.console = Console(stderr=True)
        self.live = Live(self._table(), console=self.console, refresh_per_second=4,
                         transient=False) if enabled and self.console.is_terminal else None
        self.lines = enabled and not self.live

    def _table(self) -> Table:
        t = Table(title="SKILL population")
        for col in ("agent", "learned", "received", "refused", "failed calls", "state"):
            t.add_column(col)
        for a, r in self.rows.items():
            t.add_row(str(a), f"{r['learned']}/{r['tasks']}", str(r["received"]),
                      str(r["refused"]), str(r["failed"]), r["state"])
        return t

    def __call__(self, e: dict[str, Any]) -> None:
        r = self.rows.get(e.get("agent"))
        if r is None:
            return
        kind = e["event"]
        if kind == "learned":
            r["learned"] += 1
            if r["learned"] == r["tasks"]:
                r["state"] = "sharing done"
            if self.lines:
                self.console.print(f"agent {e['agent']} learned task {e['task']} "
                                   f"({e['epochs']} epochs, {e['seconds']:.1f} s, "
                                   f"{e['bytes']:,} bytes to share)")
        elif kind == "received":
            r["received" if e["ok"] else "refused"] += 1
        elif kind == "failed":
            r["failed"] += 1
            if self.lines:
                self.console.print(f"agent {e['agent']}: {e['call']} failed (see results.json)")
        elif kind in ("dead", "restarted"):
            r["state"] = kind
            if self.lines:
                self.console.print(f"agent {e['agent']} {kind}")
        if self.live:
            self.live.update(self._table())


def _start_cluster(pop: PopulationConfig, device: str) -> None:
    """Start or join Ray and check it can hold the agents, before anything is written."""
    if pop.backend != "ray":
        return
    check_address(pop.address)
    import ray

    if not ray.is_initialized():
        start_ray(pop.agents * pop.threads, pop.address)
    check_capacity(pop.agents, pop.threads, gpus=actor_resources(pop, device)["num_gpus"])


def _stream_while_cluster_starts(exp: Any, pop: PopulationConfig) -> TaskStream:
    """The stream, read once (the agents get this copy), while Ray starts in the main
    thread (ray.init does not work from another thread); its errors come first."""
    box: list[Any] = []

    def read() -> None:
        try:
            box.append(exp.build_stream())
        except BaseException as err:  # re-raised below, in the caller's thread
            box.append(err)

    reader = threading.Thread(target=read, name="read-stream", daemon=True)
    reader.start()
    try:
        _start_cluster(pop, str(exp.run.device))
    finally:
        reader.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def run_skill(raw: dict[str, Any], pop: PopulationConfig, out: str | Path, *,
              overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run the population, write its directory, return results.json's mapping.

    Before any agent starts, the run directory holds ``population.json`` (the experiment,
    the population settings and the task assignment) and ``population.key`` (the run's
    signing key, mode 0600): what :func:`resume_skill` needs if the driver dies."""
    out = Path(out)
    exp = make_experiment(raw)  # validate everything before anything is written
    stream = _stream_while_cluster_starts(exp, pop)
    sizes = [len(t.train) for t in stream]
    plan = assign_tasks(len(stream), pop.agents, pop.assignment, sizes, pop.tasks)
    _prepare(out, overwrite)
    key = new_key()
    write_key(out, key)
    atomic_write_json(out / STATE, {"raw": raw, "population": config_to_dict(pop),
                                    "plan": plan})
    return _run(exp, stream, raw, pop, out, plan, sizes, key, progress, resume=False)


def resume_skill(out: str | Path, *, address: str | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Finish a population whose driver (or Ray head) died: every agent restores its saved,
    signed bundles, tasks some agent holds are not learned again, the rest are learned,
    shared and caught up, and results.json is written. ``address`` replaces the saved Ray
    address (a head that died comes back elsewhere)."""
    out = Path(out)
    state_file = out / STATE
    if not (out / MARKER).is_file() or not state_file.is_file():
        raise ConfigError(f"{out} is not a population run directory (no {STATE})")
    if (out / "results.json").exists():
        raise ConfigError(f"{out} has finished already (results.json exists)")
    try:
        state = json.loads(state_file.read_text())
        raw, plan = state["raw"], [[int(t) for t in p] for p in state["plan"]]
        saved = dict(state["population"])
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{state_file} is damaged ({type(err).__name__})") from None
    if address is not None:
        saved["address"] = address
    pop = build_config(PopulationConfig, saved, section="population")
    key = read_key(out)
    exp = make_experiment(raw)
    stream = _stream_while_cluster_starts(exp, pop)
    sizes = [len(t.train) for t in stream]
    return _run(exp, stream, raw, pop, out, plan, sizes, key, progress, resume=True)


def _run(exp: Any, stream: Any, raw: dict[str, Any], pop: PopulationConfig, out: Path,
         plan: list[list[int]], sizes: list[int], key: bytes | None, progress: bool,
         resume: bool) -> dict[str, Any]:
    view = _View(plan, progress)
    start = time.perf_counter()
    with view.live if view.live else nullcontext():
        result = run_population(raw, pop, out, notify=view, plan=plan, sizes=sizes, key=key,
                                resume=resume, stream=stream)
    elapsed = time.perf_counter() - start
    table = table2(result, pop.alpha, exp.learner.mapper)
    settings = {**exp.to_dict(), "population": config_to_dict(pop),
                "elapsed_seconds": elapsed, "resumed": resume, "signed": key is not None}
    return write_population(out, exp, result, settings, [t.name for t in stream], table)
