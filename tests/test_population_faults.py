"""A population's failure modes on a real local Ray cluster: every port on loopback, a driver
killed mid-run and resumed, an undersized cluster refused in one line, a delivery that
raises contained. These start Ray (seconds each) and real processes: marked ``system``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lifelong.skill.agent import Agent
from lifelong.skill.population import PopulationConfig, run_population

pytestmark = pytest.mark.system

LIFELONG = [sys.executable, "-m", "lifelong"]
TINY = ["--benchmark", "synthetic", "learner.backbone=tiny-cnn", "learner.image_size=16"]
RAW = {"run": {"benchmark": "synthetic", "learner": "lll", "setting": "class-il", "epochs": 20,
               "seed": 1},
       "benchmark": {"num_tasks": 4},
       "learner": {"backbone": "tiny-cnn", "image_size": 16}}


def _descendants(root: int) -> set[int]:
    """``root`` and every process below it, from /proc (no psutil needed)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        out.add(p)
        todo.extend(children.get(p, []))
    return out


def _listening(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every listening TCP socket owned by ``pids``."""
    owner = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    owner[link[8:-1]] = pid
        except OSError:
            continue
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in owner:  # 0A: LISTEN
                continue
            hexaddr, hexport = cols[1].split(":")
            raw = bytes.fromhex(hexaddr)
            if v6:  # four little-endian 32-bit words
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                addr = socket.inet_ntop(socket.AF_INET6, raw)
            else:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            out.append((addr, int(hexport, 16), owner[cols[9]]))
    return out


def test_every_port_of_a_local_population_is_bound_to_loopback(tmp_path):
    ray = pytest.importorskip("ray")
    from lifelong.skill.ray_cluster import start_ray

    start_ray(2)
    try:
        result = run_population(RAW, PopulationConfig(agents=2, backend="ray"), tmp_path)
        assert result.lost == [] and result.agree()
        # the actors are gone after the run; start one so that worker ports count too
        actor = ray.remote(num_cpus=1)(Agent).remote(RAW, 0, [0], in_process=False)
        ray.get(actor.holdings.remote())
        socks = _listening(_descendants(os.getpid()))
        assert len({pid for _, _, pid in socks}) >= 3, socks  # GCS, raylet, driver, worker
        wrong = [s for s in socks if s[0] not in ("127.0.0.1", "::ffff:127.0.0.1")]
        assert not wrong, wrong
    finally:
        ray.shutdown()


def _learned(run: Path) -> Counter:
    counts: Counter = Counter()
    for log in run.glob("agent-*/log.jsonl"):
        for line in log.read_text().splitlines():
            e = json.loads(line)
            if e["event"] == "learned":
                counts[e["task"]] += 1
    return counts


def test_a_killed_driver_is_resumed_without_learning_any_task_twice(tmp_path):
    run = tmp_path / "pop"
    cmd = [*LIFELONG, "skill", "--agents", "2", *TINY, "benchmark.num_tasks=8",
           "--epochs", "20", "--quiet", "--out", str(run)]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(run.glob("agent-*/bundles/*.bundle")):
            time.sleep(0.1)
        assert driver.poll() is None, "the population finished before it could be killed"
        os.kill(driver.pid, signal.SIGKILL)  # the driver dies with no chance to clean up
        driver.wait()
        assert not (run / "results.json").exists()
        before = _learned(run)
        resumed = subprocess.run([*LIFELONG, "skill", "--resume", str(run), "--quiet"],
                                 capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
    finally:
        try:  # whatever Ray left of the killed cluster
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    results = json.loads((run / "results.json").read_text())
    assert results["settings"]["resumed"] is True and results["dead"] == []
    assert all(sorted(map(int, h)) == list(range(8)) for h in results["holdings"].values())
    assert results["agree"] and len(results["holdings"]) == 2
    counts = _learned(run)
    assert sorted(counts) == list(range(8)) and set(counts.values()) == {1}, counts
    assert sum(before.values()) < 8 or before == counts  # some tasks were left to resume


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_more_agents_than_the_cluster_has_cpus_is_a_one_line_error(tmp_path):
    port = _free_port()
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    ray_bin = Path(sys.executable).with_name("ray")
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={port}",
                             "--num-cpus=2", "--include-dashboard=false",
                             "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        out = tmp_path / "pop"
        for _ in range(60):  # the head takes a few seconds to accept connections
            start = time.monotonic()
            r = subprocess.run([*LIFELONG, "skill", "--agents", "3", *TINY, "--quiet",
                                "--address", f"127.0.0.1:{port}", "--out", str(out)],
                               capture_output=True, text=True, timeout=60, env=env)
            elapsed = time.monotonic() - start  # of the attempt that reached the cluster
            if "cannot join" not in r.stderr:
                break
            time.sleep(1)
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert r.returncode == 2 and len(err) == 1, r.stderr[-2000:]
        assert "need 3 CPUs" in err[0] and "has 2" in err[0], err
        assert elapsed < 60 and not out.exists()
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def test_a_delivery_that_raises_is_contained_and_the_run_goes_on(tmp_path, monkeypatch):
    real = Agent.receive

    def flaky(self, data, source=""):
        if self.id == 1 and "agent-0" in source:
            raise RuntimeError("disk full\nand a second line")
        return real(self, data, source)

    monkeypatch.setattr(Agent, "receive", flaky)
    cfg = PopulationConfig(agents=2, backend="local", assignment="round-robin")
    result = run_population(RAW, cfg, tmp_path)
    assert result.dead == [] and sorted(result.accuracy) == [0, 1]
    calls = [(f["agent"], f["call"]) for f in result.failures]
    # agent 1 missed tasks 0 and 2 when they were shared, and again at catch-up
    assert calls.count((1, "receive")) == 2 and (1, "catch-up") in calls
    assert all("\n" not in f["reason"] for f in result.failures)
    assert sorted(result.holdings[1]) == [1, 3]
