"""One SKILL agent: a Lightweight Lifelong Learner that is teacher for its own tasks and
student for everyone else's (SKILL paper, section 3).

    agent = Agent(raw, agent_id=0, tasks=[0, 3])
    agent.set_peers({1: other})      # the live agents it shares with
    out = agent.learn(0)             # teacher: learn task 0, send its bundle to every peer
    out["receipts"]                  # one small record per peer: accepted, refused, failed
    agent.evaluate()                 # every task it holds, no task oracle

The same class runs in-process (``--backend local``, peers are :class:`Agent` objects) and
as a Ray actor (peers are actor handles). A teacher sends its bundle to its peers itself:
the bytes go from actor to actor through Ray's object store, never through the driver,
which only sees receipts. A Ray actor receives in its own concurrency group (``mail``), so
a bundle is taken in while the receiver is learning a task of its own; the two threads
share the bank under one lock, held by the learner only while its finished task's bundle
joins the bank (the anchor is fitted and the bundle made before, outside the lock). A
teacher returns once every peer has answered, so a bundle it has shared survives the
teacher's death. Received bytes are only ever read by
:func:`lifelong.learners.lll.bundle.decode` (safetensors + JSON; nothing is unpickled by us).

With a population ``key`` every bundle the agent shares or saves is signed
(:mod:`lifelong.skill.signing`) and every bundle it receives or restores must verify; then
its content is checked against the agent's backbone, mapper and stream
(:mod:`lifelong.learners.lll.admission`): a bundle can never claim one of the agent's own tasks,
replace one it holds, or name a task or classes its stream does not have.

Memory: a task's images are read and featurised a chunk at a time
(:meth:`lifelong.learners.lll.features.FeatureExtractor.raw_splits`, at most ``run.cache_mb``
of pixels and never more than 64 MB), and with beneficial biases every training batch is
read from the source; no split is kept decoded.

Accuracy must not depend on the number of agents (paper, Table 2). So a task's training
depends only on the run's seed and the task id: the head's initialisation and the batch order
are seeded per task, and the GMMC fit is seeded per task inside the learner. Received bundles
never influence what a teacher learns (with ``name_init`` they would: see docs/skill.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lifelong._allocator import keep_freed_memory
from lifelong.errors import ConfigError, LifelongError
from lifelong.experiment import make_experiment, resolve_device
from lifelong.learners.lll.admission import Admission, stream_facts
from lifelong.learners.lll.bundle import BundleError
from lifelong.learners.lll.features import CHUNK_BYTES
from lifelong.learners.lll.learner import LLL
from lifelong.runner import evaluate, train_epoch
from lifelong.skill.signing import sign, verify
from lifelong.tasks import TaskStream

__all__ = ["Agent", "AgentCrash", "MAIL", "one_line"]

#: The Ray concurrency group in which an actor receives bundles (one call at a time).
MAIL = "mail"


class AgentCrash(LifelongError):
    """The agent's injected failure (``crash_after``) in the in-process backend."""


def one_line(err: BaseException) -> str:
    """An exception as one bounded line (Ray's task errors carry whole tracebacks)."""
    text = " ".join(str(getattr(err, "cause", None) or err).split())
    return f"{type(err).__name__}: {text[:300]}"


def _task_seed(seed: int, task_id: int) -> int:
    return (seed * 1_000_003 + task_id * 7_919) % (2**31 - 1)


class Agent:
    """A LLL agent with its own task list; see the module docstring."""

    def __init__(
        self,
        raw: dict[str, Any],
        agent_id: int,
        tasks: list[int],
        *,
        out: str | None = None,
        threads: int = 1,
        crash_after: int | None = None,
        restore: bool = False,
        in_process: bool = True,
        key: str | None = None,
        dynamic: bool = False,
        stream: TaskStream | None = None,
        receipt_timeout: float = 600.0,
    ) -> None:
        """``raw``: the experiment (benchmark, learner ``lll`` and its settings, seed, epochs,
        ``run.device``). ``crash_after``: fault injection for tests and drills: the agent's
        process dies when it starts learning its (crash_after + 1)-th own task.
        ``restore``: reload the bundles this agent saved under ``out`` (a restarted or
        resumed agent). ``key``: the population's secret (hex): bundles are signed and must
        verify. ``dynamic``: ``tasks`` lists every task the agent may be handed (dynamic
        assignment), so its own tasks are those it has learned rather than all of
        ``tasks``. ``stream``: the stream the driver built (read once, shared); None: the
        agent builds it from ``raw``. ``receipt_timeout``: seconds a teacher waits for a
        peer's receipt (then the peer is caught up at the end)."""
        torch.set_num_threads(threads)  # one agent = one share of the machine
        if not in_process:  # a Ray actor's worker process is ours, as the CLI's is
            keep_freed_memory()  # lifelong/_allocator.py: eager PyTorch 2x faster at batch 64
        # Heavy imports the first task would otherwise pay (seconds on a busy machine): part
        # of start-up, so per-task times are the learning's own.
        for module in ("sklearn.mixture", "torch.utils.flop_counter"):  # GMMC, MAC counts
            importlib.import_module(module)
        self.id = agent_id
        self.tasks = list(tasks)
        self.crash_after = crash_after
        self.in_process = in_process
        self.exp = make_experiment(raw)
        if self.exp.run.setting != "class-il":
            raise ConfigError("SKILL agents answer without a task oracle: setting=class-il")
        self.stream = stream if stream is not None else self.exp.build_stream()
        bad = [t for t in self.tasks if not 0 <= t < len(self.stream)]
        if bad:
            raise ConfigError(
                f"agent {agent_id}: no task {bad[0]} in a stream of {len(self.stream)}"
            )
        # "auto": CUDA when this process sees one (a Ray actor sees the GPUs it asked for)
        self.device = resolve_device(self.exp.run.device)
        learner = self.exp.build_learner(self.stream, self.device)
        if not isinstance(learner, LLL):
            raise ConfigError(
                f"SKILL agents share LLL bundles; learner {self.exp.run.learner} has none"
            )
        self.learner: LLL = learner
        # pixels held at a time while a split is featurised: at most the run's cache budget
        self.learner.extract.chunk_bytes = max(1, min(CHUNK_BYTES, self.exp.run.cache_mb << 20))
        self._warm_up()
        self.key = bytes.fromhex(key) if key else None
        self.dynamic = dynamic
        self.receipt_timeout = receipt_timeout
        self._facts = stream_facts(self.stream)
        self.peers: dict[int, Any] = {}  # agent id -> Agent (in process) or Ray actor handle
        # The bank (held bundles, counters) is shared by the learning and the mail thread.
        self._bank = threading.RLock()
        self.dir = Path(out) / f"agent-{agent_id}" if out else None
        self._lock_fd: int | None = None
        if self.dir is not None:
            (self.dir / "bundles").mkdir(parents=True, exist_ok=True)
            if not in_process:
                self._lock()
        self.learned: list[int] = []
        self.past: dict[int, dict[str, Any]] = {}  # restored own tasks' "learned" events
        self.refused: list[dict[str, Any]] = []
        self.received_bytes = 0
        self.student_seconds = 0.0
        if restore:
            self._restore()
        self._log("start", tasks=self.tasks, restored=sorted(self.learner.bundles),
                  device=str(self.device))

    def _warm_up(self) -> None:
        """Count the backbone's MACs per image now (torch's flop counter on the eager
        backbone: seconds) and warm the inference engine up, as part of start-up rather
        than of the first task. Uses the global RNG, which every task reseeds before its
        head is drawn."""
        ex, cfg = self.learner.extract, self.learner.cfg
        ex.unit_macs("forward")
        # the engine's first runs are slow (session, memory plan): pay them here too
        ex.warm_up([self.learner.backbone.num_stages]
                   + ([ex.bb_from] if cfg.bb == "partial" and ex.bb_from > 0 else []))
        if cfg.bb != "none":
            for kind in ("top", "bb_step") + (("stage_input",) if ex.bb_from > 0 else ()):
                ex.unit_macs(kind, ex.bb_from)

    # -- bookkeeping -------------------------------------------------------------------------
    def _log(self, event: str, **fields: Any) -> None:
        if self.dir is None:
            return
        line = json.dumps(
            {"time": round(time.time(), 3), "agent": self.id, "event": event, **fields}
        )
        with open(self.dir / "log.jsonl", "a") as f:
            f.write(line + "\n")

    def _lock(self, wait_s: float = 60.0) -> None:
        """Hold ``agent-K/lock`` for this process's life: an agent restarted or resumed
        while its previous process still runs (e.g. an actor not yet reaped after its driver
        died) waits for it instead of racing it on the same files. The OS drops the lock
        when the process dies, however it dies."""
        assert self.dir is not None
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise ConfigError(
                        f"{self.dir} is still in use by another process after {wait_s:.0f} s"
                    ) from None
                time.sleep(0.2)
        self._lock_fd = fd

    def _wrap(self, data: bytes) -> bytes:
        """What leaves the agent: the bundle, signed when the population has a key."""
        return sign(self.key, data) if self.key is not None else data

    def _own(self) -> set[int]:
        return set(self.learned) if self.dynamic else set(self.tasks)

    def _file(self, task_id: int) -> Path:
        assert self.dir is not None
        ext = "bundle" if self.key is not None else "safetensors"
        return self.dir / "bundles" / f"task-{task_id}.{ext}"

    def _save(self, task_id: int) -> None:
        """Keep every bundle held on disk (signed, when there is a key), written
        atomically, so a restarted or resumed agent goes on from it."""
        if self.dir is None:
            return
        path = self._file(task_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self._wrap(self.learner.export_bundle(task_id)))
        os.replace(tmp, path)

    def _restore(self) -> None:
        """Reload the bundles saved under ``agent-K/bundles``: each must verify and pass
        the same content checks as a received one (a file on disk is no more trusted)."""
        if self.dir is None:
            raise ConfigError("restore needs the agent's output directory")
        admission = Admission(self._facts)  # own tasks are what a restore brings back
        files = sorted(
            p
            for p in (self.dir / "bundles").glob("task-*.*")
            if p.suffix in (".bundle", ".safetensors")
        )
        for path in files:
            try:
                task_id = self.learner.import_bundle(verify(self.key, path.read_bytes()), admission)
            except BundleError as err:  # a damaged or unsigned file is refused like any bundle
                self.refused.append({"source": path.name, "reason": str(err)})
                continue
            if task_id in self.tasks and task_id not in self.learned:
                self.learned.append(task_id)
        self.past = self._learned_events()

    def _learned_events(self) -> dict[int, dict[str, Any]]:
        """The last "learned" event of each own task held, from this agent's log (a
        resumed population reports what was learned before the driver died)."""
        log = self.dir / "log.jsonl" if self.dir is not None else None
        if log is None or not log.is_file():
            return {}
        out: dict[int, dict[str, Any]] = {}
        for line in log.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if (
                isinstance(e, dict)
                and e.get("event") == "learned"
                and e.get("task") in self.learned
            ):
                out[e["task"]] = {
                    "agent": self.id,
                    "task": e["task"],
                    "seconds": e.get("seconds", 0.0),
                    "epochs": e.get("epochs", 0),
                    "macs": e.get("macs", 0),
                    "bytes": e.get("bytes", 0),
                }
        return out

    def history(self) -> list[dict[str, Any]]:
        """Events of own tasks learned by earlier processes of this agent (see _restore)."""
        return [self.past[t] for t in sorted(self.past)]

    # -- teacher -------------------------------------------------------------------------------
    def set_peers(self, peers: Mapping[int, Any]) -> None:
        """The live agents this one shares its bundles with: id -> :class:`Agent` (in
        process) or Ray actor handle. The driver sets them at start and after a death or a
        restart; a call made on a peer that died meanwhile comes back as a receipt."""
        self.peers = {int(b): p for b, p in peers.items() if int(b) != self.id}

    def learn(self, task_id: int) -> dict[str, Any]:
        """Learn one own task (per-task seeded), fit its anchor, send the bundle to every
        peer; return what was learned (no bundle bytes) and one receipt per peer."""
        if task_id not in self.tasks:
            raise ConfigError(f"agent {self.id} is not assigned task {task_id}")
        if self.crash_after is not None and len(self.learned) >= self.crash_after:
            self._log("crash", task=task_id)
            if self.in_process:
                raise AgentCrash(f"agent {self.id} crashed (injected) before task {task_id}")
            os._exit(17)  # a real process death: nothing is flushed, nothing returned
        task = self.stream[task_id]
        run = self.exp.run
        seed = _task_seed(run.seed, task_id)
        start = time.perf_counter()
        macs_before = self.learner.train_macs.get(task_id, 0)
        torch.manual_seed(seed)  # the head's initialisation
        # name_init reads the bank while the head is made; otherwise the bank is not touched
        # until the task ends. With BB every batch is read from the source (train_epoch).
        with self._bank if self.learner.cfg.name_init else contextlib.nullcontext():
            self.learner.begin_task(task)
        epochs = 0
        assert run.epochs is not None and run.batch_size is not None  # filled by make_experiment
        for epoch in range(run.epochs):
            if self.learner.task_done():
                break
            self.learner.begin_epoch(epoch)
            gen = torch.Generator().manual_seed(seed + epoch + 1)
            # the runner's epoch (lifelong.runner.train_epoch), seeded per task so that a
            # task's training does not depend on which agent learns it; every batch kept
            train_epoch(self.learner, task, run.batch_size, gen, self.device, drop_last=False)
            epochs += 1
        # The anchor is fitted and the bundle made outside the bank lock (they read only
        # this task's features), so a peer's bundle is taken in meanwhile and the peer's
        # teacher is not kept waiting for its receipt; only joining the bank takes the lock.
        own = self.learner.seal_task(task)
        with self._bank:  # the bundle joins the bank
            self.learner.keep(task_id, own)
            self.learned.append(task_id)
            self._save(task_id)
            data = self._wrap(self.learner.export_bundle(task_id))
        seconds = time.perf_counter() - start
        macs = self.learner.train_macs.get(task_id, 0) - macs_before
        self._log(
            "learned",
            task=task_id,
            epochs=epochs,
            seconds=round(seconds, 3),
            macs=macs,
            bytes=len(data),
        )
        receipts = self._send(data, self.peers, source=f"agent-{self.id}")
        return {
            "agent": self.id,
            "task": task_id,
            "bytes": len(data),
            "seconds": seconds,
            "epochs": epochs,
            "macs": macs,
            "receipts": receipts,
        }

    def send(self, task_id: int, peers: Mapping[int, Any]) -> list[dict[str, Any]]:
        """Send a held bundle to ``peers`` (catching up an agent that missed it); their
        receipts."""
        return self._send(self.bundle(task_id), peers, source=f"catch-up from agent-{self.id}")

    def _send(self, data: bytes, peers: Mapping[int, Any], source: str) -> list[dict[str, Any]]:
        """Deliver ``data`` to every peer and wait for their receipts: each is
        :meth:`receive`'s answer with ``agent`` added, or ``{"agent", "failed": reason}``
        (the call raised, or no answer within ``receipt_timeout``), or ``{"agent", "dead":
        True}`` (the peer's process is gone)."""
        if not peers:
            return []
        if self.in_process:
            out = []
            for b, peer in sorted(peers.items()):
                try:
                    out.append({"agent": b, **peer.receive(data, source=source)})
                except Exception as err:  # contained per peer, as a delivery failure
                    out.append({"agent": b, "failed": one_line(err)})
            return out
        import ray
        from ray.exceptions import RayActorError

        ref = ray.put(data)  # one copy in the object store, read by every peer
        calls = {b: peer.receive.options(concurrency_group=MAIL).remote(ref, source=source)
                 for b, peer in sorted(peers.items())}
        ready, _ = ray.wait(list(calls.values()), num_returns=len(calls),
                            timeout=self.receipt_timeout)
        out = []
        for b, call in calls.items():
            if call not in ready:
                out.append({"agent": b,
                            "failed": f"no receipt within {self.receipt_timeout:g} s"})
                continue
            try:
                out.append({"agent": b, **ray.get(call)})
            except RayActorError:
                out.append({"agent": b, "dead": True})
            except Exception as err:  # RayTaskError: the receiver's call raised
                out.append({"agent": b, "failed": one_line(err)})
        return out

    # -- student -------------------------------------------------------------------------------
    def receive(self, data: bytes, source: str = "") -> dict[str, Any]:
        """Check untrusted bytes and add them to the bank. Never raises for bad input: a
        refused bundle is logged with a one-line reason and the agent carries on. The same
        bundle twice is accepted once (the second is a no-op)."""
        with self._bank:
            start = time.perf_counter()
            try:
                inner = verify(self.key, data)
                held = set(self.learner.bundle_bytes)
                task_id = self.learner.import_bundle(
                    inner, Admission(self._facts, frozenset(self._own()))
                )
            except BundleError as err:
                reason = str(err)
                self.refused.append({"source": source, "reason": reason})
                self._log("refused", source=source, reason=reason)
                return {"ok": False, "task": None, "reason": reason}
            if task_id in held:  # the same bytes again: nothing new
                self._log("duplicate", task=task_id, source=source)
                return {"ok": True, "task": task_id, "reason": None}
            self.received_bytes += len(data)
            self.student_seconds += time.perf_counter() - start
            self._save(task_id)
            self._log("received", task=task_id, source=source, bytes=len(data))
            return {"ok": True, "task": task_id, "reason": None}

    def holdings(self) -> dict[int, str]:
        """Task id -> SHA-256 of the bundle held (what agents compare to agree)."""
        with self._bank:
            return self.learner.bundle_digests()

    def bundle(self, task_id: int) -> bytes:
        """The bytes of a held bundle, signed if there is a key."""
        with self._bank:
            return self._wrap(self.learner.export_bundle(task_id))

    # -- test ------------------------------------------------------------------------------------
    def evaluate(self, task_ids: list[int] | None = None) -> dict[str, Any]:
        """Test accuracy per task, no task oracle: ``acc`` (end to end), ``mapper`` (right
        task chosen) and ``oracle`` (head given the true task). Tasks the agent does not
        hold are still asked (they are what was lost) and score what the mapper gives."""
        with self._bank:
            return self._evaluate(task_ids)

    def _evaluate(self, task_ids: list[int] | None) -> dict[str, Any]:
        ids = list(range(len(self.stream))) if task_ids is None else task_ids
        start = time.perf_counter()
        out: dict[str, Any] = {}
        held = set(self.learner.bundles)
        for t in ids:
            task = self.stream[t]
            if t in held:  # one pass gives all three (the runner's views)
                res = evaluate(self.learner, task, task.test, self.device, "class-il", views=True)
                out[str(t)] = {k: res[k] for k in ("acc", "mapper", "oracle")}
            elif held:  # a lost task: its mapper can only pick another task
                res = evaluate(self.learner, task, task.test, self.device, "class-il")
                out[str(t)] = {"acc": res["acc"], "mapper": 0.0, "oracle": float("nan")}
            else:
                out[str(t)] = {"acc": 0.0, "mapper": 0.0, "oracle": float("nan")}
        self._log("evaluated", seconds=round(time.perf_counter() - start, 3), tasks=len(ids))
        return out

    def report(self) -> dict[str, Any]:
        """What this agent did: its tasks, what it learned, refused and received, its cost."""
        with self._bank:
            return self._report()

    def _report(self) -> dict[str, Any]:
        rep = self.learner.learner_report().to_json()
        samples = sum(
            len(b.anchor.samples)
            for b in self.learner.bundles.values()
            if hasattr(b.anchor, "samples")
        )
        return {
            "feature_dim": self.learner.backbone.num_features,
            "maha_samples_total": samples,
            "agent": self.id,
            "tasks": self.tasks,
            "learned": sorted(self.learned),
            "held": sorted(self.learner.bundles),
            "refused": self.refused,
            "received_bytes": self.received_bytes,
            "student_seconds": self.student_seconds,
            "train_macs": rep["train_macs"],
            "bundle_bytes": rep["bundle_bytes"],
            "inference_macs_per_image": rep["inference_macs_per_image"],
            "pid": os.getpid(),
            # what, besides the bank, decides this agent's answers (a split final test
            # needs them equal: skill/population.py, _evaluate)
            "engine": self.learner.extract.engine.name,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
        }
