"""A SKILL population: N agents learn their own tasks in parallel and share bundles so that
every agent can answer every task without a task oracle (SKILL paper, sections 3 and 6).

    assignment = assign_tasks(num_tasks, agents, "balanced", sizes)
    result = run_population(raw, PopulationConfig(agents=2, backend="ray"), out)

Engines:

- ``ray``: each agent is a Ray actor with ``threads`` CPUs (one share of the machine). The
  driver hands each actor its next task; when a task is learned its bundle bytes go to every
  other live actor (an actor runs calls in order, so a bundle is added after the receiver's
  current task). ``address`` joins an existing cluster; otherwise ``ray.init`` starts a local
  one, and its start-up is part of the measured time.
- ``local``: the same agents in this process, one after another (tests, and the single-agent
  reference).

Fault tolerance: an agent whose process dies is marked dead; the others finish, keep what
they received, and the tasks it had not shared are reported lost. With ``restarts`` > 0 a dead
agent is started again from the bundles it saved, pulls the bundles it misses from a live
agent (catch-up), and goes on with its remaining tasks. A delivery, catch-up or evaluation
that raises is recorded in ``PopulationResult.failures`` and the run goes on. With
``resume=True`` every agent restores its saved bundles first and tasks already held by some
agent are not learned again (a driver that died; ``lifelong skill --resume``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lifelong.config import Config, check
from lifelong.errors import ConfigError
from lifelong.skill.agent import Agent, AgentCrash
from lifelong.skill.ray_cluster import check_capacity, cluster_cpus, start_ray

__all__ = ["PopulationConfig", "PopulationResult", "assign_tasks", "run_population",
           "start_ray", "table2"]


@dataclass
class PopulationConfig(Config):
    """How the population is organised and run (the learner's settings live in ``raw``)."""

    agents: int = 2
    # balanced: greedy by training-set size (longest first), so agents finish together;
    # round-robin: task t to agent t mod N; blocks: contiguous runs of tasks; dynamic (Ray):
    # a free agent takes the next task, largest first (the local backend uses balanced).
    assignment: Literal["balanced", "round-robin", "blocks", "dynamic"] = "balanced"
    tasks: str = ""  # explicit, overrides assignment: "0,1;2,3" = agent 0 gets 0 and 1, ...
    backend: Literal["ray", "local"] = "ray"
    address: str = ""  # Ray cluster to join ("auto", "ray://host:10001"); "" starts one
    threads: int = 1  # CPUs (and torch threads) per agent
    alpha: float = 1000.0  # MACs per byte transmitted (the paper's communication cost)
    restarts: int = 0  # times a dead agent is started again from its saved bundles
    crash_agent: int = -1  # fault drill: this agent's process dies ...
    crash_after: int = 1  # ... when it starts its (crash_after + 1)-th own task
    startup_timeout: float = 300.0  # s for every agent to start (Ray); then a one-line error

    def validate(self) -> None:
        check(self.agents >= 1, "agents must be >= 1")
        check(self.threads >= 1, "threads must be >= 1")
        check(self.alpha >= 0, "alpha must be >= 0")
        check(self.restarts >= 0 and self.crash_after >= 0,
              "restarts and crash_after must be >= 0")
        check(self.startup_timeout > 0, "startup_timeout must be > 0")


def assign_tasks(num_tasks: int, agents: int, mode: str, sizes: list[int] | None = None,
                 explicit: str = "") -> list[list[int]]:
    """Split tasks 0..num_tasks-1 among agents; every task to exactly one agent."""
    if explicit:
        try:
            plan = [[int(t) for t in part.split(",") if t.strip()]
                    for part in explicit.split(";")]
        except ValueError:
            raise ConfigError(f"tasks: expected e.g. '0,1;2,3', got {explicit!r}") from None
        flat = [t for p in plan for t in p]
        if len(plan) != agents:
            raise ConfigError(f"tasks: {len(plan)} groups for {agents} agents")
        if sorted(flat) != list(range(num_tasks)):
            raise ConfigError(f"tasks: each of the {num_tasks} tasks must appear exactly once")
        return plan
    if agents > num_tasks:
        raise ConfigError(f"{agents} agents for {num_tasks} tasks: at most one agent per task")
    if mode == "round-robin":
        return [list(range(a, num_tasks, agents)) for a in range(agents)]
    if mode == "blocks":
        bounds = [-(-a * num_tasks // agents) for a in range(agents + 1)]  # earlier get more
        return [list(range(bounds[a], bounds[a + 1])) for a in range(agents)]
    # balanced (and the starting point of dynamic): longest-processing-time first on
    # training-set size
    sizes = sizes or [1] * num_tasks
    load = [0] * agents
    plan = [[] for _ in range(agents)]
    for t in sorted(range(num_tasks), key=lambda t: (-sizes[t], t)):
        a = min(range(agents), key=lambda a: (load[a], a))
        plan[a].append(t)
        load[a] += sizes[t]
    for p in plan:
        p.sort()
    # every agent needs a task: LPT on N <= T tasks always gives one to each
    return plan


@dataclass
class PopulationResult:
    """What a population run produced (written out by ``population_report``)."""

    assignment: list[list[int]]
    accuracy: dict[int, dict[str, Any]]  # agent -> task -> {acc, mapper, oracle}
    reports: dict[int, dict[str, Any]]
    holdings: dict[int, dict[int, str]]  # agent -> task -> sha256
    dead: list[int]
    lost: list[int]
    restarted: list[int]
    wall_seconds: float
    startup_seconds: float
    events: list[dict[str, Any]]
    # Until every survivor holds every task it can get (learning + sharing, start-up
    # included); the rest of wall_seconds is the final test, which every agent does in full.
    learn_seconds: float = 0.0
    # Calls on an agent that raised (a delivery, catch-up or evaluation): recorded with a
    # one-line reason, and the run went on without them.
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def survivors(self) -> list[int]:
        return sorted(a for a in self.accuracy)

    def agree(self) -> bool:
        """All surviving agents hold the same bundles (same bytes, by SHA-256)."""
        views = [self.holdings[a] for a in self.survivors]
        return all(v == views[0] for v in views)


# -- engines -------------------------------------------------------------------------------------
def _one_line(err: BaseException) -> str:
    """An exception as one bounded line (Ray's task errors carry whole tracebacks)."""
    text = " ".join(str(getattr(err, "cause", None) or err).split())
    return f"{type(err).__name__}: {text[:300]}"


def _resume_state(histories: dict[int, list[dict[str, Any]]],
                  holdings: dict[int, dict[int, str]]) -> tuple[list[dict[str, Any]], set[int]]:
    """Events of tasks learned before a resume, and every task some agent already holds
    (those are not learned again: catch-up shares them)."""
    events = [e for a in sorted(histories) for e in histories[a]]
    held = set().union(*(set(h) for h in holdings.values())) if holdings else set()
    return events, held


def _run_local(raw: dict[str, Any], cfg: PopulationConfig, plan: list[list[int]], out: str,
               notify: Callable[[dict[str, Any]], None], key: str | None = None,
               resume: bool = False) -> PopulationResult:
    start = time.perf_counter()
    agents: dict[int, Agent] = {}
    for a, tasks in enumerate(plan):
        crash = cfg.crash_after if (a == cfg.crash_agent and not resume) else None
        agents[a] = Agent(raw, a, tasks, out=out, threads=cfg.threads, crash_after=crash,
                          restore=resume, key=key)
    startup = time.perf_counter() - start
    events, held = _resume_state({a: ag.history() for a, ag in agents.items()},
                                 {a: ag.holdings() for a, ag in agents.items()})
    queues = {a: [t for t in tasks if t not in held] for a, tasks in enumerate(plan)}
    dead: list[int] = []
    restarted: list[int] = []
    failures: list[dict[str, Any]] = []
    restarts_left = cfg.restarts

    def guarded(a: int, call: str, fn: Callable[[], Any]) -> Any:
        """Run one call on agent ``a``; an exception is recorded, not raised."""
        try:
            return fn()
        except Exception as err:  # contained per agent: one bad call must not end the run
            failures.append({"agent": a, "call": call, "reason": _one_line(err)})
            notify({"event": "failed", "agent": a, "call": call})
            return None

    # Round r: every live agent learns its r-th task, then broadcasts it.
    while any(queues[a] for a in agents if a not in dead):
        for a in sorted(agents):
            if a in dead or not queues[a]:
                continue
            task = queues[a][0]
            try:
                res = agents[a].learn(task)
            except AgentCrash:
                notify({"event": "dead", "agent": a, "task": task})
                if restarts_left > 0:
                    restarts_left -= 1
                    agents[a] = Agent(raw, a, plan[a], out=out, threads=cfg.threads,
                                      restore=True, key=key)
                    restarted.append(a)
                    notify({"event": "restarted", "agent": a})
                else:
                    dead.append(a)
                continue
            queues[a].pop(0)
            events.append(_event(res))
            notify({"event": "learned", **_event(res)})
            for b in sorted(agents):
                if b != a and b not in dead:
                    r = guarded(b, "receive", functools.partial(
                        agents[b].receive, res["bundle"], source=f"agent-{a}"))
                    if r is not None:
                        notify({"event": "received", "agent": b, "task": res["task"],
                                "ok": r["ok"]})
    alive = [a for a in sorted(agents) if a not in dead]
    for a, t, b in _missing({a: agents[a].holdings() for a in alive}):
        guarded(a, "catch-up", functools.partial(
            agents[a].receive, agents[b].bundle(t), source=f"catch-up from agent-{b}"))
    learned = time.perf_counter() - start
    accuracy, reports, holdings = {}, {}, {}
    for a in alive:
        acc = guarded(a, "evaluate", agents[a].evaluate)
        if acc is None:
            continue
        accuracy[a], reports[a], holdings[a] = acc, agents[a].report(), agents[a].holdings()
    wall = time.perf_counter() - start
    return PopulationResult(plan, accuracy, reports, holdings, dead,
                            _lost(plan, holdings), restarted, wall, startup, events, learned,
                            failures)


def _missing(holdings: dict[int, dict[int, str]]) -> list[tuple[int, int, int]]:
    """Catch-up plan: (agent, task, holder) for every task an agent lacks that a live agent
    holds (a restarted or late agent pulls what was shared while it was away)."""
    plan = []
    for a, have in sorted(holdings.items()):
        for b, theirs in sorted(holdings.items()):
            for t in sorted(set(theirs) - set(have)):
                plan.append((a, t, b))
                have = {**have, t: theirs[t]}
    return plan


def _event(res: dict[str, Any]) -> dict[str, Any]:
    return {k: res[k] for k in ("agent", "task", "seconds", "epochs", "macs")} | \
        {"bytes": len(res["bundle"])}


def _lost(plan: list[list[int]], holdings: dict[int, dict[int, str]]) -> list[int]:
    held = set().union(*(set(h) for h in holdings.values())) if holdings else set()
    return sorted(t for tasks in plan for t in tasks if t not in held)


def _run_ray(raw: dict[str, Any], cfg: PopulationConfig, plan: list[list[int]], out: str,
             notify: Callable[[dict[str, Any]], None],
             order: list[int] | None = None, key: str | None = None,
             resume: bool = False) -> PopulationResult:
    """``order``: dynamic assignment: whichever agent is free takes the next task of this
    list (largest first), and a dead agent's task goes back on it."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

    start = time.perf_counter()
    if not ray.is_initialized():
        start_ray(cfg.agents * cfg.threads, cfg.address)
    check_capacity(len(plan), cfg.threads)
    Actor = ray.remote(num_cpus=cfg.threads, max_restarts=0)(Agent)

    todo = list(order) if order is not None else None
    everything = sorted(t for tasks in plan for t in tasks)
    failures: list[dict[str, Any]] = []

    def spawn(a: int, restore: bool = False) -> Any:
        crash = cfg.crash_after if (a == cfg.crash_agent and not restore) else None
        allowed = everything if todo is not None else plan[a]
        return Actor.remote(raw, a, allowed, out=out, threads=cfg.threads, crash_after=crash,
                            restore=restore, in_process=False, key=key,
                            dynamic=todo is not None)

    def submit(a: int) -> None:
        """Give agent ``a`` its next task, if any."""
        if todo is not None:
            task = todo.pop(0) if todo else None
        else:
            task = queues[a][0] if queues[a] else None
        if task is not None:
            pending[actors[a].learn.remote(task)] = (a, task)

    def get(a: int, call: str, ref: Any) -> Any:
        """One result from agent ``a``: a raised call is recorded, not re-raised; a dead
        actor is re-raised (the caller decides what a death means there)."""
        try:
            return ray.get(ref)
        except RayActorError:
            raise
        except RayTaskError as err:
            failures.append({"agent": a, "call": call, "reason": _one_line(err)})
            notify({"event": "failed", "agent": a, "call": call})
            return None

    actors = {a: spawn(a, restore=resume) for a in range(len(plan))}
    # Wait until every agent has built its stream and backbone: start-up, measured apart,
    # and bounded: an actor the cluster cannot place would otherwise wait for ever.
    ready_refs = {a: actors[a].holdings.remote() for a in actors}
    try:
        first = ray.get(list(ready_refs.values()), timeout=cfg.startup_timeout)
    except GetTimeoutError:
        for actor in actors.values():
            ray.kill(actor)
        total, free = cluster_cpus()
        raise ConfigError(f"the agents did not all start within {cfg.startup_timeout:g} s: "
                          f"they need {len(plan) * cfg.threads} CPUs, the cluster has "
                          f"{free:g} of {total:g} free") from None
    startup = time.perf_counter() - start
    histories = dict(zip(actors, ray.get([actors[a].history.remote() for a in actors]),
                         strict=True))
    events, held = _resume_state(histories, dict(zip(actors, first, strict=True)))
    if todo is not None:
        todo = [t for t in todo if t not in held]
    queues = {a: [t for t in tasks if t not in held] for a, tasks in enumerate(plan)}
    dead: list[int] = []
    restarted: list[int] = []
    restarts_left = cfg.restarts
    deliveries: list[tuple[int, int, Any]] = []
    pending: dict[Any, tuple[int, int]] = {}
    for a in actors:
        submit(a)

    generation = dict.fromkeys(actors, 0)

    def died(a: int, task: int) -> None:
        nonlocal restarts_left
        notify({"event": "dead", "agent": a, "task": task})
        if todo is not None:
            todo.insert(0, task)  # someone else learns it
        if restarts_left > 0:
            restarts_left -= 1
            actors[a] = spawn(a, restore=True)
            generation[a] += 1
            restarted.append(a)
            notify({"event": "restarted", "agent": a})
            submit(a)
        else:
            dead.append(a)

    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        ref = ready[0]
        a, task = pending.pop(ref)
        try:
            res = ray.get(ref)
        except (RayActorError, RayTaskError) as err:
            if isinstance(err, RayTaskError) and not isinstance(err, RayActorError):
                raise  # a bug in the agent's learning, not a death: surface it
            died(a, task)
            continue
        if todo is None:
            queues[a].pop(0)
        events.append(_event(res))
        notify({"event": "learned", **_event(res)})
        blob = ray.put(res["bundle"])  # one copy in the object store, read by every receiver
        for b in actors:
            if b != a and b not in dead:
                deliveries.append((b, generation[b],
                                   actors[b].receive.remote(blob, source=f"agent-{a}")))
        submit(a)
    for b, gen, ref in deliveries:
        try:
            r = get(b, "receive", ref)
            if r is not None:
                notify({"event": "received", "agent": b, "task": r["task"], "ok": r["ok"]})
        except RayActorError:
            # a delivery to an agent that died: if it was restarted, catch-up covers it
            if b not in dead and gen == generation[b]:
                dead.append(b)
    alive = [a for a in sorted(actors) if a not in dead]
    held_now = {}
    for a in alive:
        try:
            h = get(a, "holdings", actors[a].holdings.remote())
        except RayActorError:
            dead.append(a)
            continue
        if h is not None:
            held_now[a] = h
    for a, t, b in _missing(held_now):
        try:
            get(a, "catch-up", actors[a].receive.remote(actors[b].bundle.remote(t),
                                                        source=f"catch-up from agent-{b}"))
        except RayActorError:
            pass  # found dead at evaluation below
    learned = time.perf_counter() - start
    alive = [a for a in sorted(actors) if a not in dead]
    acc_refs = {a: actors[a].evaluate.remote() for a in alive}
    accuracy, reports, holdings = {}, {}, {}
    for a in alive:
        try:
            acc = get(a, "evaluate", acc_refs[a])
            if acc is None:
                continue
            rep = get(a, "report", actors[a].report.remote())
            hold = get(a, "holdings", actors[a].holdings.remote())
        except RayActorError:
            dead.append(a)
            continue
        if rep is not None and hold is not None:
            accuracy[a], reports[a], holdings[a] = acc, rep, hold
    wall = time.perf_counter() - start
    for actor in actors.values():
        ray.kill(actor)
    if todo is not None:  # who actually learned what
        plan = [[e["task"] for e in events if e["agent"] == a] for a in range(len(plan))]
        lost = sorted(set(everything) - set().union(*map(set, holdings.values())))
    else:
        lost = _lost(plan, holdings)
    return PopulationResult(plan, accuracy, reports, holdings, sorted(dead),
                            lost, restarted, wall, startup, events, learned, failures)


def run_population(raw: dict[str, Any], cfg: PopulationConfig, out: str | Path,
                   notify: Callable[[dict[str, Any]], None] = lambda e: None,
                   plan: list[list[int]] | None = None,
                   sizes: list[int] | None = None, key: bytes | None = None,
                   resume: bool = False) -> PopulationResult:
    """Assign tasks (unless ``plan`` is given), run the agents on the chosen backend,
    evaluate every survivor on every task. ``notify`` receives one event dict per learned
    task, delivery and death (for a live view). ``key``: the population's secret; every
    bundle is signed with it and must verify. ``resume``: every agent restores the bundles
    it saved under ``out``, and tasks some agent already holds are not learned again."""
    dynamic = cfg.assignment == "dynamic" and not cfg.tasks and cfg.backend == "ray"
    if plan is None or (dynamic and sizes is None):
        from lifelong.experiment import make_experiment

        stream = make_experiment(raw).build_stream()
        sizes = [len(t.train) for t in stream]
        plan = assign_tasks(len(stream), cfg.agents, cfg.assignment, sizes, cfg.tasks)
    hexkey = key.hex() if key is not None else None
    if dynamic:
        assert sizes is not None
        order = sorted(range(len(sizes)), key=lambda t: (-sizes[t], t))
        return _run_ray(raw, cfg, plan, str(out), notify, order, key=hexkey, resume=resume)
    if cfg.crash_agent >= len(plan):
        raise ConfigError(f"crash_agent {cfg.crash_agent}: there are {len(plan)} agents")
    if cfg.backend == "ray":
        return _run_ray(raw, cfg, plan, str(out), notify, key=hexkey, resume=resume)
    return _run_local(raw, cfg, plan, str(out), notify, key=hexkey, resume=resume)


# -- the paper's Table 2 ---------------------------------------------------------------------------
def table2(result: PopulationResult, alpha: float, mapper: str,
           single_agent_seconds: float | None = None) -> dict[str, Any]:
    """Computation and communication of the population, measured (SKILL Table 2).

    Teacher MACs: the largest sum over one agent's own tasks (agents work in parallel, so
    the slowest one bounds the population). Communication: bytes one student receives (all
    bundles but its own tasks'), times ``alpha``. Student MACs: 0 for GMMC; for Mahalanobis
    the tied covariance (S x D^2) and its pseudo-inverse (~D^3), counted analytically
    because numpy's products are outside torch's flop counter. Efficiency: single-agent
    MACs / (N x population MACs)."""
    n = len(result.assignment)
    by_task = {e["task"]: e for e in result.events}
    teacher = [sum(by_task[t]["macs"] for t in tasks if t in by_task)
               for tasks in result.assignment]
    single_teacher = sum(e["macs"] for e in by_task.values())
    bytes_per_task = {t: e["bytes"] for t, e in by_task.items()}
    received = max((sum(b for t, b in bytes_per_task.items() if t not in tasks)
                    for tasks in result.assignment), default=0)
    student = 0
    if mapper == "maha" and result.reports:
        rep = next(iter(result.reports.values()))
        dim = int(rep.get("feature_dim", 0))
        shared = int(rep.get("maha_samples_total", 0))
        student = shared * dim * dim + dim**3
    total = max(teacher, default=0) + alpha * received + student
    single_total = single_teacher + student
    row = {"agents": n, "teacher_macs": max(teacher, default=0), "received_bytes": received,
           "communication_macs": alpha * received, "student_macs": student,
           "total_macs": total, "single_agent_macs": single_total,
           "efficiency": single_total / (n * total) if total else float("nan"),
           "bytes_per_task": (sum(bytes_per_task.values()) / len(bytes_per_task)
                              if bytes_per_task else 0.0),
           "wall_seconds": result.wall_seconds, "startup_seconds": result.startup_seconds,
           "learn_seconds": result.learn_seconds}
    if single_agent_seconds is not None:
        row["speedup"] = single_agent_seconds / result.wall_seconds
    return row
