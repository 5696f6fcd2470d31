"""A SKILL population: N agents learn their own tasks in parallel and share bundles so that
every agent can answer every task without a task oracle (SKILL paper, sections 3 and 6).

    assignment = assign_tasks(num_tasks, agents, "balanced", sizes)
    result = run_population(raw, PopulationConfig(agents=2, backend="ray"), out)

Engines: one loop (:func:`_engine`: hand out tasks, restart or bury the dead, collect
receipts, catch up, evaluate) over two transports:

- ``ray``: each agent is a Ray actor with ``threads`` CPUs (and ``gpus_per_agent`` GPUs on
  CUDA). The driver hands each actor its next task and the handles of its live peers; when
  a task is learned the teacher puts its bundle in the object store once and calls every
  peer's ``receive`` itself (in the peer's ``mail`` concurrency group, so it is taken in
  while the peer learns); the driver gets the learned task's record and one small receipt
  per peer, never bundle bytes (``PopulationResult.driver_bundle_bytes`` counts any that
  came back). Catch-up works the same way: the driver asks a holder to send. The stream is
  read once by the driver and mapped by every actor from the object store (unless its
  pixels are memory-mapped files or over ``SHIP_LIMIT``: then each agent reads its own).
  ``address`` joins an existing cluster; otherwise ``ray.init`` starts a local one, and its
  start-up is part of the measured time.
- ``local``: the same agents in this process, one after another, sharing one stream
  (tests, and the single-agent reference).

Fault tolerance: an agent whose process dies is marked dead; the others finish, keep what
they received, and the tasks it had not shared are reported lost. With ``restarts`` > 0 a dead
agent is started again from the bundles it saved, pulls the bundles it misses from a live
agent (catch-up), and goes on with its remaining tasks. A delivery, catch-up or evaluation
that raises is recorded in ``PopulationResult.failures`` and the run goes on. With
``resume=True`` every agent restores its saved bundles first and tasks already held by some
agent are not learned again (a driver that died; ``lifelong skill --resume``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lifelong.config import Config, check
from lifelong.errors import ConfigError
from lifelong.skill.agent import MAIL, Agent, AgentCrash, one_line
from lifelong.skill.ray_cluster import check_capacity, cluster_cpus, start_ray
from lifelong.tasks import TaskStream

__all__ = ["PopulationConfig", "PopulationResult", "actor_resources", "assign_tasks",
           "run_population", "start_ray", "table2"]

#: Largest in-memory stream (bytes of pixel arrays) the driver ships to its actors through
#: Ray's object store (one shared copy per machine) instead of each actor building its own.
SHIP_LIMIT = 1 << 30


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
    # GPUs each agent's actor asks Ray for when the run's device is CUDA (or auto on a
    # cluster with GPUs); a fraction puts several agents on one GPU. CPU runs ask for none.
    gpus_per_agent: float = 1.0
    # The final test. split: when every survivor holds the same bundles and runs the same
    # engine, device and thread count, each task is tested by one of them and all are
    # credited (they compute the same predictions); all: every survivor tests every task
    # (the check that they do). Survivors that differ are always tested in full.
    evaluate: Literal["split", "all"] = "split"

    def validate(self) -> None:
        check(self.agents >= 1, "agents must be >= 1")
        check(self.threads >= 1, "threads must be >= 1")
        check(self.alpha >= 0, "alpha must be >= 0")
        check(self.restarts >= 0 and self.crash_after >= 0,
              "restarts and crash_after must be >= 0")
        check(self.startup_timeout > 0, "startup_timeout must be > 0")
        check(self.gpus_per_agent > 0, "gpus_per_agent must be > 0")


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
    # included); the rest of wall_seconds is the final test (split among agents holding the
    # same bundles, see PopulationConfig.evaluate).
    learn_seconds: float = 0.0
    # Calls on an agent that raised (a delivery, catch-up or evaluation): recorded with a
    # one-line reason, and the run went on without them.
    failures: list[dict[str, Any]] = field(default_factory=list)
    # Bytes of bundle payloads in everything the driver received from its agents (teachers
    # send to each other directly: 0 unless something routes a bundle through the driver).
    driver_bundle_bytes: int = 0
    # agent -> the tasks it tested in the final test (every task, under evaluate=all or when
    # the survivors' bundles differ; a share of them under split)
    tested_by: dict[int, list[int]] = field(default_factory=dict)

    @property
    def survivors(self) -> list[int]:
        return sorted(a for a in self.accuracy)

    def agree(self) -> bool:
        """All surviving agents hold the same bundles (same bytes, by SHA-256)."""
        views = [self.holdings[a] for a in self.survivors]
        return all(v == views[0] for v in views)


# -- the engine: one loop, two transports -----------------------------------------------------
class _Dead(Exception):
    """The agent's process is gone (an injected crash, a killed actor)."""


class _Local:
    """Agents in this process; learning runs one call at a time, in submission order (so
    round r: every live agent learns its r-th task and shares it)."""

    def __init__(self, make: Callable[[int, bool], Agent]) -> None:
        self.make = make
        self.agents: dict[int, Agent] = {}
        self.queue: list[tuple[int, int]] = []
        self.payload_bytes = 0  # bundle bytes the driver got back: none, by construction

    def spawn(self, a: int, restore: bool) -> None:
        self.agents[a] = self.make(a, restore)

    def ready(self) -> dict[int, dict[int, str]]:
        return {a: ag.holdings() for a, ag in self.agents.items()}

    def set_peers(self, live: list[int]) -> None:
        for a in live:
            self.agents[a].set_peers({b: self.agents[b] for b in live})

    def handles(self, ids: list[int]) -> dict[int, Any]:
        return {b: self.agents[b] for b in ids}

    def start(self, a: int, task: int) -> None:
        self.queue.append((a, task))

    def busy(self) -> bool:
        return bool(self.queue)

    def next(self) -> tuple[int, int, dict[str, Any] | None]:
        """(agent, task, record), or record None when the agent died learning it."""
        a, task = self.queue.pop(0)
        try:
            return a, task, self.agents[a].learn(task)
        except AgentCrash:
            return a, task, None

    def call(self, a: int, name: str, *args: Any) -> Any:
        return getattr(self.agents[a], name)(*args)

    def call_all(self, ids: list[int], name: str) -> dict[int, Any]:
        """``name()`` on each agent: its value, or the exception it raised."""
        return self.call_each({a: () for a in ids}, name)

    def call_each(self, args: dict[int, tuple[Any, ...]], name: str) -> dict[int, Any]:
        """``name(*args[a])`` on each agent ``a``: its value, or the exception it raised."""
        out: dict[int, Any] = {}
        for a, arg in args.items():
            try:
                out[a] = self.call(a, name, *arg)
            except Exception as err:  # recorded by the engine, per agent
                out[a] = err
        return out

    def close(self) -> None:
        pass


class _Ray:
    """Agents as Ray actors, ``threads`` CPUs (and ``gpus`` GPUs) each, with a ``mail``
    concurrency group to receive in while they learn."""

    def __init__(self, make_args: Callable[[int, bool], tuple[tuple[Any, ...], dict[str, Any]]],
                 resources: dict[str, float], startup_timeout: float) -> None:
        import ray

        self.ray = ray
        options: dict[str, Any] = {"max_restarts": 0, "concurrency_groups": {MAIL: 1},
                                   **resources}
        self.Actor = ray.remote(**options)(Agent)
        self.make_args = make_args
        self.resources = resources
        self.startup_timeout = startup_timeout
        self.actors: dict[int, Any] = {}
        self.pending: dict[Any, tuple[int, int]] = {}
        self.payload_bytes = 0

    def spawn(self, a: int, restore: bool) -> None:
        args, kwargs = self.make_args(a, restore)
        self.actors[a] = self.Actor.remote(*args, **kwargs)

    def _get(self, ref: Any, timeout: float | None = None) -> Any:
        value = self.ray.get(ref, timeout=timeout)
        self.payload_bytes += _payload_bytes(value)
        return value

    def ready(self) -> dict[int, dict[int, str]]:
        """Wait until every agent has built its stream and backbone: start-up, measured
        apart, and bounded: an actor the cluster cannot place would otherwise wait for
        ever."""
        from ray.exceptions import GetTimeoutError

        ids = sorted(self.actors)
        try:
            first = self._get([self.actors[a].holdings.remote() for a in ids],
                              timeout=self.startup_timeout)
        except GetTimeoutError:
            self.close()
            total, free = cluster_cpus()
            need = len(ids) * self.resources["num_cpus"]
            raise ConfigError(f"the agents did not all start within {self.startup_timeout:g} "
                              f"s: they need {need:g} CPUs, the cluster has {free:g} of "
                              f"{total:g} free") from None
        return dict(zip(ids, first, strict=True))

    def set_peers(self, live: list[int]) -> None:
        # ordered before each actor's later calls; a peer that died is found by its receipt
        for a in live:
            self.actors[a].set_peers.remote({b: self.actors[b] for b in live})

    def handles(self, ids: list[int]) -> dict[int, Any]:
        return {b: self.actors[b] for b in ids}

    def start(self, a: int, task: int) -> None:
        self.pending[self.actors[a].learn.remote(task)] = (a, task)

    def busy(self) -> bool:
        return bool(self.pending)

    def next(self) -> tuple[int, int, dict[str, Any] | None]:
        from ray.exceptions import RayActorError

        ready, _ = self.ray.wait(list(self.pending), num_returns=1)
        a, task = self.pending.pop(ready[0])
        try:
            return a, task, self._get(ready[0])
        except RayActorError:
            return a, task, None
        # any other RayTaskError is a bug in the agent's learning, not a death: it surfaces

    def _unwrap(self, ref: Any) -> Any:
        from ray.exceptions import RayActorError

        try:
            return self._get(ref)
        except RayActorError:
            raise _Dead() from None

    def call(self, a: int, name: str, *args: Any) -> Any:
        return self._unwrap(getattr(self.actors[a], name).remote(*args))

    def call_all(self, ids: list[int], name: str) -> dict[int, Any]:
        return self.call_each({a: () for a in ids}, name)

    def call_each(self, args: dict[int, tuple[Any, ...]], name: str) -> dict[int, Any]:
        """``name(*args[a])`` on each agent ``a``, in parallel: its value, or the exception."""
        refs = {a: getattr(self.actors[a], name).remote(*arg) for a, arg in args.items()}
        out: dict[int, Any] = {}
        for a, ref in refs.items():
            try:
                out[a] = self._unwrap(ref)
            except Exception as err:  # _Dead, or the call raised (RayTaskError)
                out[a] = err
        return out

    def close(self) -> None:
        for actor in self.actors.values():
            self.ray.kill(actor)


def _payload_bytes(value: Any) -> int:
    """Bytes of binary payloads (bundles) inside a value the driver received."""
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, dict):
        return sum(_payload_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_payload_bytes(v) for v in value)
    return 0


def _resume_state(histories: dict[int, list[dict[str, Any]]],
                  holdings: dict[int, dict[int, str]]) -> tuple[list[dict[str, Any]], set[int]]:
    """Events of tasks learned before a resume, and every task some agent already holds
    (those are not learned again: catch-up shares them)."""
    events = [e for a in sorted(histories) for e in histories[a]]
    held = set().union(*(set(h) for h in holdings.values())) if holdings else set()
    return events, held


def _engine(transport: _Local | _Ray, cfg: PopulationConfig, plan: list[list[int]],
            notify: Callable[[dict[str, Any]], None], start: float,
            order: list[int] | None = None, resume: bool = False,
            test_sizes: list[int] | None = None) -> PopulationResult:
    """The population's life, whatever the transport: start every agent, hand out tasks
    (``plan``, or with ``order`` dynamically: a free agent takes the next task and a dead
    agent's task goes back on the list), restart or bury the dead, collect receipts, catch
    up every survivor, evaluate (``test_sizes``: each task's test-set size, to split the
    final test evenly; see :func:`_evaluate`). Teachers send their bundles themselves; the
    driver sees records and receipts only."""
    t = transport
    n = len(plan)
    everything = sorted(x for tasks in plan for x in tasks)
    failures: list[dict[str, Any]] = []
    dead: list[int] = []
    restarted: list[int] = []
    restarts_left = cfg.restarts
    try:
        for a in range(n):
            t.spawn(a, resume)
        first = t.ready()
        startup = time.perf_counter() - start
        histories = t.call_all(list(range(n)), "history")
        events, held = _resume_state(histories, first)
        todo = [x for x in order if x not in held] if order is not None else None
        queues = {a: [x for x in tasks if x not in held] for a, tasks in enumerate(plan)}

        def live() -> list[int]:
            return [a for a in range(n) if a not in dead]

        def fail(a: int, call: str, reason: str) -> None:
            failures.append({"agent": a, "call": call, "reason": reason})
            notify({"event": "failed", "agent": a, "call": call})

        def receipts(rs: list[dict[str, Any]], call: str) -> None:
            for r in rs:
                if "failed" in r:
                    fail(r["agent"], call, r["failed"])
                elif "dead" not in r:  # a dead receiver is found when next called
                    notify({"event": "received", "agent": r["agent"], "task": r["task"],
                            "ok": r["ok"]})

        def submit(a: int) -> None:
            task = (todo.pop(0) if todo else None) if todo is not None else \
                (queues[a][0] if queues[a] else None)
            if task is not None:
                t.start(a, task)

        t.set_peers(live())
        for a in range(n):
            submit(a)
        while t.busy():
            a, task, res = t.next()
            if res is None:
                notify({"event": "dead", "agent": a, "task": task})
                if todo is not None:
                    todo.insert(0, task)  # someone else learns it
                if restarts_left > 0:
                    restarts_left -= 1
                    t.spawn(a, True)
                    restarted.append(a)
                    notify({"event": "restarted", "agent": a})
                else:
                    dead.append(a)
                t.set_peers(live())
                if a not in dead:
                    submit(a)
                continue
            if todo is None:
                queues[a].pop(0)
            events.append(_event(res))
            notify({"event": "learned", **_event(res)})
            receipts(res["receipts"], "receive")
            submit(a)

        held_now: dict[int, dict[int, str]] = {}
        for a, h in t.call_all(live(), "holdings").items():
            if isinstance(h, _Dead):
                dead.append(a)
            elif isinstance(h, Exception):
                fail(a, "holdings", one_line(h))
            else:
                held_now[a] = h
        for a, x, b in _missing(held_now):
            try:  # b sends task x to a itself
                receipts(t.call(b, "send", x, t.handles([a])), "catch-up")
            except _Dead:
                pass  # b is found dead at evaluation below
            except Exception as err:
                fail(b, "catch-up", one_line(err))
        learned = time.perf_counter() - start
        reports: dict[int, dict[str, Any]] = {}
        holdings: dict[int, dict[int, str]] = {}
        results = {name: t.call_all(live(), name) for name in ("report", "holdings")}
        for a in live():
            got = {name: results[name][a] for name in results}
            if any(isinstance(v, _Dead) for v in got.values()):
                dead.append(a)
                continue
            bad = [(name, v) for name, v in got.items() if isinstance(v, Exception)]
            for name, v in bad:
                fail(a, name, one_line(v))
            if not bad:
                reports[a], holdings[a] = got["report"], got["holdings"]
        accuracy, tested_by = _evaluate(t, cfg.evaluate, holdings, reports, everything,
                                        test_sizes, dead, fail)
        for a in list(holdings):
            if a not in accuracy:  # died or failed while testing
                del reports[a], holdings[a]
        wall = time.perf_counter() - start
    finally:
        t.close()
    if order is not None:  # who actually learned what
        plan = [[e["task"] for e in events if e["agent"] == a] for a in range(n)]
        lost = sorted(set(everything) - set().union(*map(set, holdings.values())))
    else:
        lost = _lost(plan, holdings)
    return PopulationResult(plan, accuracy, reports, holdings, sorted(dead), lost, restarted,
                            wall, startup, events, learned, failures,
                            driver_bundle_bytes=t.payload_bytes, tested_by=tested_by)


def _evaluate(t: _Local | _Ray, mode: str, holdings: dict[int, dict[int, str]],
              reports: dict[int, dict[str, Any]], tasks: list[int],
              test_sizes: list[int] | None, dead: list[int],
              fail: Callable[[int, str, str], None]
              ) -> tuple[dict[int, dict[str, Any]], dict[int, list[int]]]:
    """The final test: (agent -> task -> {acc, mapper, oracle}, agent -> tasks it tested).
    Agents that die or fail here are left out of both, as in learning.

    ``all``, or survivors that differ: every survivor tests every task. ``split``, when
    every survivor holds the same bundles (equal SHA-256s) and runs the same engine on the
    same kind of device with the same thread count: each task is tested once, by one
    survivor (longest test sets first, to the least loaded), and every survivor is
    credited with the results. Such agents give the same answers: their mappers are built
    from equal bytes in task order, and their heads and features are computed alike (a
    feature the tester computed in another batch, e.g. for a test image equal to one of
    its own training images, can differ in the last float bits); ``evaluate=all`` tests
    that. A share whose agent dies or fails is tested again by the other survivors."""
    alive = sorted(holdings)
    views = [(holdings[a], [reports[a].get(k) for k in ("engine", "device", "threads")])
             for a in alive]
    if mode == "all" or len(alive) < 2 or any(v != views[0] for v in views):
        out = _ask(t, {a: tasks for a in alive}, dead, fail)
        return out, {a: list(tasks) for a in out}
    size = dict(zip(tasks, test_sizes or [1] * len(tasks), strict=True))
    merged: dict[str, Any] = {}
    tested: dict[int, list[int]] = {a: [] for a in alive}
    left = list(tasks)
    while left and alive:
        # at most one share per task: more survivors than tasks leave some without one
        k = min(len(alive), len(left))
        split = assign_tasks(len(left), k, "balanced", [size[x] for x in left])
        todo = {a: [left[i] for i in part] for a, part in zip(alive, split, strict=False)}
        got = _ask(t, todo, dead, fail)
        left = []
        for a, share in todo.items():
            if a in got:
                merged.update(got[a])
                tested[a] += share
            else:  # dead or failed: its share is tested again by the others
                alive.remove(a)
                left += share
        left.sort()
    if not alive:
        return {}, {}
    return ({a: {str(x): dict(merged[str(x)]) for x in tasks} for a in alive},
            {a: sorted(tested[a]) for a in alive})


def _ask(t: _Local | _Ray, todo: dict[int, list[int]], dead: list[int],
         fail: Callable[[int, str, str], None]) -> dict[int, dict[str, Any]]:
    """``evaluate(todo[a])`` on each agent ``a``: the answers of those that gave one; an
    agent that died is added to ``dead``, one whose call raised is reported to ``fail``."""
    got: dict[int, dict[str, Any]] = {}
    for a, value in t.call_each({a: (ts,) for a, ts in todo.items()}, "evaluate").items():
        if isinstance(value, _Dead):
            dead.append(a)
        elif isinstance(value, Exception):
            fail(a, "evaluate", one_line(value))
        else:
            got[a] = value
    return got


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
    return {k: res[k] for k in ("agent", "task", "seconds", "epochs", "macs", "bytes")}


def _lost(plan: list[list[int]], holdings: dict[int, dict[int, str]]) -> list[int]:
    held = set().union(*(set(h) for h in holdings.values())) if holdings else set()
    return sorted(t for tasks in plan for t in tasks if t not in held)


def actor_resources(cfg: PopulationConfig, device: str,
                    cluster_gpus: float | None = None) -> dict[str, float]:
    """What each agent's actor asks Ray for: ``threads`` CPUs, and ``gpus_per_agent``
    GPUs (a fraction shares one) when the run's device is CUDA, or ``auto`` on a cluster
    with GPUs (``cluster_gpus``: its total; None: look it up). CPU only otherwise."""
    gpu = device.startswith("cuda")
    if device == "auto":
        if cluster_gpus is None:
            import ray

            cluster_gpus = float(ray.cluster_resources().get("GPU", 0.0))
        gpu = cluster_gpus > 0
    return {"num_cpus": float(cfg.threads), "num_gpus": cfg.gpus_per_agent if gpu else 0.0}


def _stream_ref(stream: TaskStream | None, limit: int = SHIP_LIMIT) -> Any:
    """The driver's stream in Ray's object store, for every actor to map instead of
    building it again (the folder index, the shipped arrays): None when there is none, or
    when its pixels live in memory-mapped files or exceed ``limit`` bytes (then each agent
    reads its own, as a separate machine would)."""
    if stream is None:
        return None
    import mmap

    import numpy as np
    import ray

    from lifelong.data.images import ArraySource

    seen: dict[int, int] = {}
    for task in stream:
        for split in (task.train, task.val, task.test):
            src = split.source
            if isinstance(src, ArraySource):
                arr: Any = src.array
                while isinstance(arr, np.ndarray):
                    if isinstance(arr, np.memmap):
                        return None
                    arr = arr.base
                if isinstance(arr, mmap.mmap):
                    return None
                seen[id(src)] = src.array.nbytes
    if sum(seen.values()) > limit:
        return None
    return ray.put(stream)


def _run_local(raw: dict[str, Any], cfg: PopulationConfig, plan: list[list[int]], out: str,
               notify: Callable[[dict[str, Any]], None], key: str | None = None,
               resume: bool = False, stream: TaskStream | None = None,
               test_sizes: list[int] | None = None) -> PopulationResult:
    start = time.perf_counter()

    def make(a: int, restore: bool) -> Agent:
        crash = cfg.crash_after if (a == cfg.crash_agent and not restore) else None
        return Agent(raw, a, plan[a], out=out, threads=cfg.threads, crash_after=crash,
                     restore=restore, key=key, stream=stream)

    return _engine(_Local(make), cfg, plan, notify, start, resume=resume,
                   test_sizes=test_sizes)


def _run_ray(raw: dict[str, Any], cfg: PopulationConfig, plan: list[list[int]], out: str,
             notify: Callable[[dict[str, Any]], None],
             order: list[int] | None = None, key: str | None = None,
             resume: bool = False, stream: TaskStream | None = None,
             test_sizes: list[int] | None = None) -> PopulationResult:
    """``order``: dynamic assignment: whichever agent is free takes the next task of this
    list (largest first), and a dead agent's task goes back on it."""
    import ray

    start = time.perf_counter()
    device = str(raw.get("run", {}).get("device", "cpu"))
    if not ray.is_initialized():
        start_ray(cfg.agents * cfg.threads, cfg.address)
    resources = actor_resources(cfg, device)
    check_capacity(len(plan), cfg.threads, gpus=resources["num_gpus"])
    everything = sorted(t for tasks in plan for t in tasks)
    shared = _stream_ref(stream)

    def make_args(a: int, restore: bool) -> tuple[tuple[Any, ...], dict[str, Any]]:
        crash = cfg.crash_after if (a == cfg.crash_agent and not restore) else None
        allowed = everything if order is not None else plan[a]
        return (raw, a, allowed), dict(out=out, threads=cfg.threads, crash_after=crash,
                                       restore=restore, in_process=False, key=key,
                                       dynamic=order is not None, stream=shared)

    return _engine(_Ray(make_args, resources, cfg.startup_timeout), cfg, plan, notify, start,
                   order=order, resume=resume, test_sizes=test_sizes)


def run_population(raw: dict[str, Any], cfg: PopulationConfig, out: str | Path,
                   notify: Callable[[dict[str, Any]], None] = lambda e: None,
                   plan: list[list[int]] | None = None,
                   sizes: list[int] | None = None, key: bytes | None = None,
                   resume: bool = False, stream: TaskStream | None = None) -> PopulationResult:
    """Assign tasks (unless ``plan`` is given), run the agents on the chosen backend,
    evaluate every survivor (``cfg.evaluate``). ``notify`` receives one event dict per learned
    task, delivery and death (for a live view). ``key``: the population's secret; every
    bundle is signed with it and must verify. ``resume``: every agent restores the bundles
    it saved under ``out``, and tasks some agent already holds are not learned again.
    ``stream``: the stream of ``raw``, if the caller has built it (it is then not built
    again: the agents get it, through Ray's object store on that backend)."""
    dynamic = cfg.assignment == "dynamic" and not cfg.tasks and cfg.backend == "ray"
    test_sizes: list[int] | None = None
    if stream is None and (plan is None or (dynamic and sizes is None)):
        from lifelong.experiment import make_experiment

        stream = make_experiment(raw).build_stream()
    if stream is not None:  # read once here, handed to every agent
        sizes = [len(t.train) for t in stream]
        test_sizes = [len(t.test) for t in stream]
        if plan is None:
            plan = assign_tasks(len(stream), cfg.agents, cfg.assignment, sizes, cfg.tasks)
    assert plan is not None
    hexkey = key.hex() if key is not None else None
    if dynamic:
        assert sizes is not None
        order = sorted(range(len(sizes)), key=lambda t: (-sizes[t], t))
        return _run_ray(raw, cfg, plan, str(out), notify, order, key=hexkey, resume=resume,
                        stream=stream, test_sizes=test_sizes)
    if cfg.crash_agent >= len(plan):
        raise ConfigError(f"crash_agent {cfg.crash_agent}: there are {len(plan)} agents")
    if cfg.backend == "ray":
        return _run_ray(raw, cfg, plan, str(out), notify, key=hexkey, resume=resume,
                        stream=stream, test_sizes=test_sizes)
    return _run_local(raw, cfg, plan, str(out), notify, key=hexkey, resume=resume,
                      stream=stream, test_sizes=test_sizes)


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
           "learn_seconds": result.learn_seconds,
           "driver_bundle_bytes": result.driver_bundle_bytes}
    if single_agent_seconds is not None:
        row["speedup"] = single_agent_seconds / result.wall_seconds
    return row
