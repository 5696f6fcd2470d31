"""Where the wall time of one ``lifelong skill`` command goes, phase by phase.

    python benchmarks/skill_phases.py --agents 1 --out /tmp/p --overwrite --quiet

Runs the CLI in this process with the population's phases wrapped in timers and prints,
on stderr, the seconds since start at which each begins and ends: imports and config,
starting Ray (the stream is read meanwhile), putting the stream into the object store, the
engine (actor start-up, learning and sharing, the final test), the report, and Ray's
shutdown at exit. The agents' own split of the engine's time (start, each task learned,
the final test) is in ``<out>/agent-*/log.jsonl``. Arguments are ``lifelong skill``'s.
"""

from __future__ import annotations

import atexit
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

T0 = time.perf_counter()


def mark(what: str) -> None:
    print(f"[{time.perf_counter() - T0:7.2f} s] {what}", file=sys.stderr, flush=True)


def timed(module: ModuleType, name: str) -> None:
    """Replace ``module.name`` by a wrapper that marks its start and end."""
    inner: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark(f"-> {name}")
        try:
            return inner(*args, **kwargs)
        finally:
            mark(f"<- {name}")

    setattr(module, name, wrapper)


def main() -> int:
    atexit.register(lambda: mark("interpreter exit (after Ray's own shutdown hook)"))
    import ray

    import lifelong.cli as cli
    import lifelong.skill.population as population
    import lifelong.skill.run as run

    for name in ("_stream_while_cluster_starts", "run_population", "write_population"):
        timed(run, name)
    for name in ("_engine", "_stream_ref"):
        timed(population, name)
    timed(ray, "shutdown")
    mark("imported")
    rc = cli.main(["skill", *sys.argv[1:]])
    mark(f"command returned {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
