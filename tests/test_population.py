"""SKILL population: task assignment, accuracy independent of the number of agents (local and
Ray backends), a killed agent, restarts, and untrusted bundles."""

from __future__ import annotations

import dataclasses
import pickle
from contextlib import nullcontext

import pytest

from lifelong.errors import ConfigError
from lifelong.learners.lll.bundle import MAX_BUNDLE_BYTES, decode, encode
from lifelong.skill.agent import Agent
from lifelong.skill.population import (
    PopulationConfig,
    _evaluate,
    assign_tasks,
    run_population,
    start_ray,
    table2,
)

# Four tasks of the synthetic stream on the tiny backbone: each task learns in well under a
# second, so a population run costs mostly start-up.
RAW = {"run": {"benchmark": "synthetic", "learner": "lll", "setting": "class-il", "epochs": 20,
               "seed": 1},
       "benchmark": {"num_tasks": 4},
       "learner": {"backbone": "tiny-cnn", "image_size": 16}}


def test_assignment_covers_every_task_once():
    assert assign_tasks(5, 2, "round-robin") == [[0, 2, 4], [1, 3]]
    assert assign_tasks(5, 2, "blocks") == [[0, 1, 2], [3, 4]]
    # balanced: longest tasks first to the least loaded agent
    # (40 -> a0, 30 -> a1, 20 -> a1, 10 -> a0: 50 each)
    assert assign_tasks(4, 2, "balanced", [10, 40, 30, 20]) == [[0, 1], [2, 3]]
    assert assign_tasks(4, 2, "balanced", explicit="3,0;1,2") == [[3, 0], [1, 2]]
    for bad in ("0,1;1,2", "0,1,2,3", "a;b", "0;1;2,3"):
        with pytest.raises(ConfigError):
            assign_tasks(4, 2, "balanced", explicit=bad)
    with pytest.raises(ConfigError):
        assign_tasks(2, 3, "round-robin")


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    return run_population(RAW, PopulationConfig(agents=1, backend="local"), out)


def _same_as_single(result, single):
    ref = single.accuracy[0]
    assert result.lost == [] and result.dead == []
    for a, acc in result.accuracy.items():
        assert acc == ref, f"agent {a}"
    # Not only the same accuracy: byte-identical bundles, whoever learned each task.
    for a in result.survivors:
        assert result.holdings[a] == single.holdings[0]
    assert result.agree()


@pytest.mark.parametrize("agents, evaluate", [(2, "split"), (3, "all")])
def test_local_population_accuracy_does_not_depend_on_the_number_of_agents(
        agents, evaluate, single, tmp_path):
    cfg = PopulationConfig(agents=agents, backend="local", evaluate=evaluate)
    result = run_population(RAW, cfg, tmp_path)
    _same_as_single(result, single)
    shares = [result.tested_by[a] for a in result.survivors]
    if evaluate == "all":  # every agent answered every task itself, as the single agent
        assert shares == [[0, 1, 2, 3]] * agents
    else:  # each task tested once, by one of the agents, and every agent credited
        assert sorted(t for s in shares for t in s) == [0, 1, 2, 3] and all(shares)
    accs = [v["acc"] for v in single.accuracy[0].values()]
    assert sum(accs) / len(accs) > 0.6, accs  # it learned something (chance: 0.125)
    row = table2(result, 1000.0, "gmmc")
    assert row["agents"] == agents and row["received_bytes"] > 0
    assert row["teacher_macs"] < row["single_agent_macs"]


def test_local_restart_catches_up_from_saved_bundles(single, tmp_path):
    cfg = PopulationConfig(agents=2, backend="local", assignment="round-robin", crash_agent=1,
                           crash_after=1, restarts=1)
    result = run_population(RAW, cfg, tmp_path)
    assert result.restarted == [1]
    _same_as_single(result, single)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    start_ray(3)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_population_matches_the_single_agent_and_survives_a_killed_agent(
        ray_cluster, single, tmp_path):
    # 3 agents each test every task themselves (their own answers are compared); 2 split
    # the final test between their processes
    for agents, evaluate in ((1, "all"), (3, "all"), (2, "split")):
        cfg = PopulationConfig(agents=agents, backend="ray", evaluate=evaluate)
        result = run_population(RAW, cfg, tmp_path / f"n{agents}")
        _same_as_single(result, single)
        assert len({r["pid"] for r in result.reports.values()}) == agents  # own processes
        tested = sorted(t for ts in result.tested_by.values() for t in ts)
        assert tested == sorted([0, 1, 2, 3] * (agents if evaluate == "all" else 1))
    # Agent 1 (tasks 1 and 3) dies for real (os._exit) when it starts task 3.
    cfg = PopulationConfig(agents=2, backend="ray", assignment="round-robin", crash_agent=1,
                           crash_after=1)
    result = run_population(RAW, cfg, tmp_path / "crash")
    assert result.dead == [1] and result.lost == [3]
    assert result.survivors == [0] and sorted(result.holdings[0]) == [0, 1, 2]
    ref = single.accuracy[0]
    # The survivor answers every task it received exactly as the full population would
    # have: its GMMC mapper never sees task 3's components, so compare on the mapper view
    # of tasks whose inputs stay in its bank.
    for t in ("0", "1", "2"):
        assert result.accuracy[0][t]["oracle"] == ref[t]["oracle"]
        assert result.accuracy[0][t]["acc"] >= ref[t]["acc"]
    # Dynamic assignment: a free agent takes the next task, and the task a dead agent was
    # learning goes back on the list, so nothing is lost and the survivor knows everything.
    # Agent 1 dies on its first task: every agent is handed one at the start, whereas how
    # many it would get later depends on how fast agent 0 learns (a race).
    cfg = PopulationConfig(agents=2, backend="ray", assignment="dynamic", crash_agent=1,
                           crash_after=0)
    result = run_population(RAW, cfg, tmp_path / "dynamic")
    assert result.dead == [1] and result.lost == []
    assert result.accuracy[0] == ref and result.holdings[0] == single.holdings[0]
    assert sorted(t for tasks in result.assignment for t in tasks) == [0, 1, 2, 3]


def test_split_test_goes_on_without_an_agent_that_fails_it(single, tmp_path, monkeypatch):
    """Under evaluate=split, a share whose agent fails is tested again by another survivor;
    the failure is recorded and that agent is left out, as a failure in learning is."""
    real = Agent.evaluate
    asked: list[tuple[int, list[int]]] = []

    def flaky(self, task_ids=None):
        asked.append((self.id, list(task_ids)))
        if self.id == 1:
            raise RuntimeError("disk full")
        return real(self, task_ids)

    monkeypatch.setattr(Agent, "evaluate", flaky)
    result = run_population(RAW, PopulationConfig(agents=2, backend="local"), tmp_path)
    assert result.survivors == [0] and result.accuracy[0] == single.accuracy[0]
    assert sorted(result.reports) == sorted(result.holdings) == [0]
    assert result.tested_by == {0: [0, 1, 2, 3]}
    assert [(f["agent"], f["call"]) for f in result.failures] == [(1, "evaluate")]
    # a share each, then agent 1's share again, on agent 0
    (a0, first), (a1, share), (again, rest) = asked
    assert (a0, a1, again) == (0, 1, 0) and rest == share
    assert sorted(first + share) == [0, 1, 2, 3] and first and share


class _Canned:
    """A transport whose agents answer ``evaluate`` from a table (or die, or raise)."""

    def __init__(self, bad: dict[int, Exception] | None = None) -> None:
        self.bad = bad or {}
        self.calls: list[dict[int, list[int]]] = []

    def call_each(self, args, name):
        self.calls.append({a: ts for a, (ts,) in args.items()})
        return {a: self.bad.pop(a) if a in self.bad else
                {str(x): {"acc": x / 10, "mapper": 1.0, "oracle": 1.0} for x in ts}
                for a, (ts,) in args.items()}


def _split(transport, holdings, reports=None, tasks=(0, 1, 2, 3), mode="split"):
    reports = reports or {a: {"engine": "onnxruntime", "device": "cpu", "threads": 1}
                          for a in holdings}
    dead, failed = [], []
    acc, tested = _evaluate(transport, mode, holdings, reports, list(tasks), None, dead,
                            lambda a, call, why: failed.append((a, call, why)))
    return acc, tested, dead, failed


def test_the_final_test_is_split_only_among_agents_that_answer_alike():
    same = {a: {0: "h0", 1: "h1", 2: "h2", 3: "h3"} for a in range(3)}
    everything = {str(x): {"acc": x / 10, "mapper": 1.0, "oracle": 1.0} for x in range(4)}
    t = _Canned()
    acc, tested, _, _ = _split(t, same)
    assert len(t.calls) == 1 and sorted(x for ts in t.calls[0].values() for x in ts) == \
        [0, 1, 2, 3]
    assert all(acc[a] == everything for a in range(3))
    # different bundles, or another engine: every agent tests everything itself
    other = {**same, 2: {**same[2], 3: "other"}}
    for holdings, reports in ((other, None),
                              (same, {0: {"engine": "onnxruntime"}, 1: {"engine": "torch"},
                                      2: {"engine": "onnxruntime"}})):
        t = _Canned()
        acc, tested, _, _ = _split(t, holdings, reports)
        assert t.calls == [{a: [0, 1, 2, 3] for a in range(3)}]
        assert tested == {a: [0, 1, 2, 3] for a in range(3)}
    # more agents than tasks: one share per task, nobody asked for nothing
    t = _Canned()
    acc, tested, _, _ = _split(t, {a: {0: "h0", 1: "h1"} for a in range(3)}, tasks=(0, 1))
    assert [sorted(c.values()) for c in t.calls] == [[[0], [1]]] and len(acc) == 3


def test_a_dead_agents_share_of_the_split_test_goes_to_the_others():
    from lifelong.skill.population import _Dead

    same = {a: {x: f"h{x}" for x in range(4)} for a in range(3)}
    t = _Canned(bad={1: _Dead()})
    acc, tested, dead, failed = _split(t, same)
    assert dead == [1] and failed == [] and sorted(acc) == [0, 2]
    lost = t.calls[0][1]
    assert sorted(x for ts in t.calls[1].values() for x in ts) == sorted(lost)
    assert sorted(x for a in (0, 2) for x in tested[a]) == [0, 1, 2, 3]
    assert acc[0] == acc[2] and sorted(acc[0], key=int) == ["0", "1", "2", "3"]
    # everybody gone: nothing is credited
    t = _Canned(bad={0: _Dead(), 1: RuntimeError("x")})
    acc, tested, dead, failed = _split(t, {a: same[a] for a in (0, 1)})
    assert acc == {} and tested == {} and dead == [0] and [f[0] for f in failed] == [1]


def _agent(tmp_path) -> tuple[Agent, dict]:
    agent = Agent(RAW, 0, [0, 1], out=str(tmp_path))
    agent.learn(0)
    agent.learn(1)
    return agent, agent.evaluate([0, 1])


def test_untrusted_bundles_are_refused_and_the_agent_carries_on(tmp_path):
    teacher = Agent(RAW, 1, [2])
    teacher.learn(2)
    good = teacher.bundle(2)
    agent, before = _agent(tmp_path)
    lll = agent.learner
    bundle = decode(good, fingerprint=lll.backbone.fingerprint(),
                    feature_dim=lll.backbone.num_features, bb_size=lll.backbone.bb_size)
    nan = dataclasses.replace(bundle, head_bias=bundle.head_bias.clone())
    nan.head_bias[0] = float("nan")
    foreign = dataclasses.replace(bundle, fingerprint="0" * 64)
    wrong_shape = dataclasses.replace(bundle, head_weight=bundle.head_weight[:, :5].clone())
    bad = {"malformed": good[: len(good) // 3],
           "foreign backbone": encode(foreign),
           "NaN": encode(nan),
           "over the size limit": good + b"\0" * (MAX_BUNDLE_BYTES + 1 - len(good)),
           "pickle": pickle.dumps({"head.weight": [1.0]}),
           "wrong shape": encode(wrong_shape)}
    for name, data in bad.items():
        r = agent.receive(data, source=name)
        assert not r["ok"] and r["reason"] and "\n" not in r["reason"], name
    assert sorted(agent.learner.bundles) == [0, 1]
    assert [x["source"] for x in agent.refused] == list(bad)
    assert agent.evaluate([0, 1]) == before  # nothing it had changed
    assert agent.receive(good)["ok"] and sorted(agent.learner.bundles) == [0, 1, 2]
    assert not (tmp_path / "agent-0" / "bundles" / "task-2.tmp").exists()


def test_agent_refuses_tasks_it_was_not_given_and_non_lll_learners(tmp_path):
    agent = Agent(RAW, 0, [0])
    with pytest.raises(ConfigError):
        agent.learn(1)
    with pytest.raises(ConfigError):
        Agent({**RAW, "run": {**RAW["run"], "learner": "hps"}}, 0, [0])
    with pytest.raises(ConfigError):
        Agent(RAW, 0, [9])


def test_skill_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    from lifelong.cli import main

    out = tmp_path / "pop"
    for args in (["--agents", "9"], ["--agents", "2", "--tasks", "0;1"], ["--agents", "0"],
                 ["learner.nope=1"], ["--learner-typo"]):
        with pytest.raises(SystemExit) if args == ["--learner-typo"] else nullcontext():
            code = main(["skill", "--backend", "local", "--benchmark", "synthetic", "--quiet",
                         "--out", str(out), *args])
            assert code == 2
        err = capsys.readouterr().err.strip()
        assert err and len(err.splitlines()) <= 2, err  # argparse: usage + one line
        assert not out.exists()


def test_ray_client_addresses_without_ray_client_are_refused_in_one_line(tmp_path, capsys):
    import importlib.util

    from lifelong.cli import main

    if importlib.util.find_spec("grpc") is not None:
        pytest.skip("ray[client] is installed here: ray:// addresses are accepted")
    out = tmp_path / "pop"
    code = main(["skill", "--benchmark", "synthetic", "--quiet", "--address",
                 "ray://127.0.0.1:10001", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "ray[client]" in err
    assert not out.exists()
