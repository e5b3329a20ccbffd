"""One real Ray cluster for the session: a head and a second node, both on loopback.

Ray picks its node address from the route to the internet unless told that the
cluster is one machine (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the switch Ray
itself uses on laptops): set here for this process and every ``delegate-tui``
the tests start, together with ``RAY_ADDRESS``. Tests that remove a node add
their own first. The head offers a label only it has (``HEAD_ONLY``), the second
node another (``NODE_B``) and a GPU; with Ray's client extra installed, the head
runs Ray Client's server (``cluster.client_address``, ``""`` without). Skipped, with the reason, when Ray is missing
or will not start.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

#: Ray's own resource names for the nodes, so tests can place work on one.
NODE_B = "node-b"
HEAD_ONLY = "head-only"
#: Set for this process and the cluster it starts. Loopback only (read when Ray is
#: imported). Ray Client's server on the head forks a server for each client while its
#: gRPC threads are busy; with gRPC's fork handlers on, that child died at once in some
#: sessions ("SpecificServer startup failed", 1-4 times in a row on a busy machine) and
#: the client waited 20-40 s each time. Every process here execs right after a fork, so
#: the handlers are off; and a client waits 10 s, not Ray's 30, if it happens anyway.
CLUSTER_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "GRPC_ENABLE_FORK_SUPPORT": "false",
    "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "10",
}
#: What every node of the tests' cluster leaves out: the log monitor (no driver reads the
#: workers' logs: ``log_to_driver=False``), one Python process less to start and run.
LEAN: dict[str, Any] = {"include_log_monitor": False}


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """The cluster; this process is connected to it as a driver."""
    saved = {k: os.environ.get(k) for k in (*CLUSTER_ENV, "RAY_ADDRESS")}
    os.environ.update(CLUSTER_ENV)
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        _restore(saved)
        pytest.skip("Ray is not installed: pip install -e '.[test]' (or '.[ray]')")
    started = time.monotonic()
    cluster = None
    # Ray Client's server on the head (as `ray start --head --ray-client-server-port`
    # starts it) when Ray's client extra (grpcio) is installed.
    client_port = _free_port() if importlib.util.find_spec("grpc") else 0
    try:
        cluster = Cluster(
            initialize_head=True,
            connect=False,
            head_node_args={
                "num_cpus": 4,
                "node_ip_address": "127.0.0.1",
                "include_dashboard": False,
                **LEAN,
                "no_monitor": True,  # the autoscaler's: a fixed cluster needs none
                "resources": {HEAD_ONLY: 4},
                **({"ray_client_server_port": client_port} if client_port else {}),
                # A node that stops answering is declared dead within about a second.
                "_system_config": {
                    "health_check_initial_delay_ms": 0,
                    "health_check_period_ms": 300,
                    "health_check_failure_threshold": 3,
                },
            },
        )
        # Ray takes a node's GPU count as told: node B has one (no device behind it).
        cluster.add_node(
            num_cpus=4, num_gpus=1, node_ip_address="127.0.0.1", resources={NODE_B: 4}, **LEAN
        )
        os.environ["RAY_ADDRESS"] = cluster.address
        cluster.client_address = f"ray://127.0.0.1:{client_port}" if client_port else ""
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
    except Exception as exc:  # Ray could not start here: say why
        if cluster is not None:
            cluster.shutdown()
        _restore(saved)
        pytest.skip(f"a local Ray cluster would not start: {type(exc).__name__}: {exc}")
    print(f"\nray cluster up in {time.monotonic() - started:.1f}s at {cluster.address}")

    def stop() -> None:
        ray.shutdown()
        cluster.shutdown()
        _restore(saved)

    _STOPS.append(stop)
    try:
        yield cluster
    finally:
        if stop in _STOPS:
            _STOPS.remove(stop)
            stop()


#: How to end the cluster now, while it is up.
_STOPS: list[Callable[[], None]] = []


@pytest.hookimpl(trylast=True)  # after the test's own fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """The cluster ends with the last Ray test, not with the session: the Ray tests run
    together, first, on one worker (one xdist group, collected first), and the idle
    cluster took about a tenth of a core (3.4 s of CPU in 30 s) from the tests after them."""
    if _STOPS and (nextitem is None or nextitem.get_closest_marker("ray") is None):
        _STOPS.pop()()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
