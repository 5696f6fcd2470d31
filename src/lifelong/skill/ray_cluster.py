"""Starting or joining the Ray cluster a population runs on, safely.

- **A local cluster listens on loopback only.** Ray resolves ``127.0.0.1`` to the machine's
  external address and binds its servers (GCS, raylets, workers) to every interface; it keeps
  them on loopback only when it believes clustering is off
  (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, its setting for single-machine platforms). We set
  that for the local clusters we start, and check afterwards that the GCS address is
  ``127.0.0.1``.
- **Token authentication stays on** (Ray 2.60's default for new local clusters). Joining a
  cluster with ``--address`` needs its token: from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``
  or ``~/.ray/auth_token`` (what ``ray start --head`` writes); we set ``RAY_AUTH_MODE=token``
  when it is unset so that the token is sent, and say so in one line if none is found.
- ``ray://`` (Ray Client) needs ``ray[client]``; without it the address is refused in one line.
- **An undersized cluster is an error**, not an endless wait: :func:`check_capacity` (CPUs,
  and GPUs when the agents ask for them).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path

from lifelong.errors import ConfigError

__all__ = ["start_ray", "check_address", "check_capacity", "cluster_cpus", "cluster_gpus"]

_LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _has_token() -> bool:
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or (
        Path(path).is_file() if path else (Path.home() / ".ray" / "auth_token").is_file())


def check_address(address: str) -> None:
    """ConfigError (one line) for an address this installation cannot join: ``ray://``
    without Ray Client, or something that is neither ``auto``, ``host:port`` nor
    ``ray://host:port``."""
    if not address:
        return
    if address.startswith("ray://"):
        if importlib.util.find_spec("grpc") is None:
            raise ConfigError("--address ray://... needs Ray Client: pip install 'ray[client]' "
                              "(or give the head's host:port, or auto, on a cluster node)")
        return
    host, _, port = address.rpartition(":")
    if address != "auto" and not (host and port.isdigit()):
        raise ConfigError(f"--address {address!r}: expected auto, HOST:PORT or "
                          "ray://HOST:PORT")


def _join(address: str) -> str:
    """The address to pass to ray.init to join ``address``, with its auth token set up."""
    check_address(address)
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is None:
        if not _has_token():
            raise ConfigError("joining a Ray cluster needs its auth token: set RAY_AUTH_TOKEN "
                              "or RAY_AUTH_TOKEN_PATH, or copy the head's ~/.ray/auth_token "
                              "(or set RAY_AUTH_MODE=disabled for a cluster without tokens)")
        os.environ["RAY_AUTH_MODE"] = "token"  # send the token Ray would otherwise not
    return address


def start_ray(num_cpus: int, address: str = "") -> None:
    """Start a local Ray cluster with ``num_cpus`` CPUs bound to 127.0.0.1, or join
    ``address``. ConfigError (one line) when joining fails.

    Ray runs its workers at nice 15 by default so that its own services stay responsive;
    here the workers *are* the computation, and at nice 15 they starve as soon as anything
    else runs on the machine (measured: 2% of a core each beside two busy processes). A
    local cluster therefore starts its workers at nice 0, unless RAY_worker_niceness says
    otherwise. A cluster joined with ``address`` keeps its own setting."""
    import ray

    if address:
        target = _join(address)
        try:
            ray.init(address=target, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        except Exception as err:  # ConnectionError, AuthenticationError, bad address, ...
            msg = " ".join(str(err).split())[:300]
            raise ConfigError(f"cannot join the Ray cluster at {address!r}: "
                              f"{type(err).__name__}: {msg}") from None
        return
    os.environ.setdefault("RAY_worker_niceness", "0")
    os.environ[_LOOPBACK] = "0"  # inherited by the GCS, raylet and workers
    from ray._private import ray_constants

    # The driver's copy was read when ray was imported (possibly before this call).
    ray_constants.ENABLE_RAY_CLUSTER = False
    # address="local": always a new cluster, even where ``ray start`` left its address
    # behind (ray.init() alone would join that cluster, or fail if it is gone)
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    gcs = ray.get_runtime_context().gcs_address
    if not gcs.startswith("127.0.0.1:"):
        ray.shutdown()
        raise ConfigError(f"the local Ray cluster did not bind to 127.0.0.1 (GCS at {gcs})")


def cluster_cpus() -> tuple[float, float]:
    """(total, available) CPUs of the connected cluster."""
    import ray

    return (float(ray.cluster_resources().get("CPU", 0.0)),
            float(ray.available_resources().get("CPU", 0.0)))


def cluster_gpus() -> tuple[float, float]:
    """(total, available) GPUs of the connected cluster."""
    import ray

    return (float(ray.cluster_resources().get("GPU", 0.0)),
            float(ray.available_resources().get("GPU", 0.0)))


def check_capacity(agents: int, threads: int, wait_s: float = 20.0, gpus: float = 0.0) -> None:
    """ConfigError unless the cluster has the CPUs (and ``gpus`` GPUs per agent) every agent
    asks for: at once if it has too few in all; after ``wait_s`` if too few are free (CPUs
    of actors just killed come back within a second or two)."""
    need = agents * threads
    total, free = cluster_cpus()
    if total < need:
        raise ConfigError(f"{agents} agents x {threads} CPUs need {need} CPUs; the Ray cluster "
                          f"has {total:g} (use fewer --agents or --threads, or a larger "
                          "cluster)")
    if gpus > 0:
        total_gpus, _ = cluster_gpus()
        if total_gpus < agents * gpus:
            raise ConfigError(f"{agents} agents x {gpus:g} GPUs need {agents * gpus:g} GPUs; "
                              f"the Ray cluster has {total_gpus:g} (use --device cpu, a "
                              "smaller population.gpus_per_agent, or fewer --agents)")
    deadline = time.monotonic() + wait_s
    while free < need and time.monotonic() < deadline:
        time.sleep(0.25)
        total, free = cluster_cpus()
    if free < need:
        raise ConfigError(f"{agents} agents x {threads} CPUs need {need} free CPUs; the Ray "
                          f"cluster has {free:g} of {total:g} free after {wait_s:g} s (other "
                          "jobs hold the rest)")
