"""Where a remote attempt runs: its Ray placement bundle, the wait for it, its GPU, its host.

Owns the Ray executor's placing (:mod:`ray_executor`): the bundle a task's
``resources:`` labels ask for (one CPU, a GPU, the custom resources the
cluster offers), the wait for Ray to place that bundle's placement group,
bounded when no node could ever hold it (the attempt fails with what each
node offers), the ``CUDA_VISIBLE_DEVICES`` of a bundle's GPU, each node's
host (:class:`Hosts`: one :class:`~delegate_tui.core.ray_host.NodeHost` per
node for as long as this process stays connected, shared by its runs), and
what a failed call to a host means (:func:`host_failure`: a host that could
not start, one that died, a node lost). Ray is imported only inside the
functions that need it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from delegate_tui.core.executor import RAY_INSTALL, AttemptLost
from delegate_tui.core.ray_host import RayHost

#: How long an attempt whose resources no node has waits (a node may join) before it
#: fails; ``DELEGATE_RAY_PLACE_TIMEOUT`` (seconds) says otherwise.
PLACE_TIMEOUT_S = 60.0
#: How often a placement still waiting looks at what the nodes have.
PLACE_CHECK_S = 0.5
#: Threads of the Ray executor's own (see :func:`off_loop`).
POOL_THREADS = 4

_T = TypeVar("_T")
_POOL: ThreadPoolExecutor | None = None


async def off_loop(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` in a thread of the Ray executor's own: its packs, the change sets
    it lays, Ray's blocking calls. The loop's default threads run the engine's git
    (worktrees, snapshots, commits, merges), and under load an attempt's change set or
    start pack queued there behind them, on the attempt's way."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="delegate-ray")
    return await asyncio.get_running_loop().run_in_executor(_POOL, functools.partial(fn, *args))


def place_timeout() -> float:
    """Seconds an attempt no node can take waits before it fails."""
    text = os.environ.get("DELEGATE_RAY_PLACE_TIMEOUT", "").strip()
    try:
        return max(0.0, float(text)) if text else PLACE_TIMEOUT_S
    except ValueError:
        return PLACE_TIMEOUT_S


def ray_bundle(labels: Sequence[str], offered: Mapping[str, float]) -> dict[str, float]:
    """The placement bundle for a task's ``resources:`` labels.

    Every attempt takes one CPU, so a node runs as many agents as it has CPUs;
    ``gpu`` takes one GPU; a label the cluster offers as a custom resource takes one
    unit of it; other labels are only the plan's scheduling locks.
    """
    bundle = {"CPU": 1.0}
    for label in labels:
        if label.lower() == "gpu" and offered.get("GPU", 0) > 0:
            bundle["GPU"] = 1.0
        elif label in offered:
            bundle[label] = 1.0
    return bundle


def fits(bundle: Mapping[str, float], resources: Mapping[str, float]) -> bool:
    """True when a node with ``resources`` (in all) could hold ``bundle``."""
    return all(resources.get(name, 0.0) >= amount for name, amount in bundle.items())


def describe(resources: Mapping[str, float]) -> str:
    """``1 CPU, 1 gpu-node`` (Ray's bookkeeping resources left out)."""
    shown = [
        f"{amount:g} {name}"
        for name, amount in sorted(resources.items(), key=lambda kv: (kv[0] != "CPU", kv[0]))
        if not name.startswith("node:") and name not in ("memory", "object_store_memory")
    ]
    return ", ".join(shown) or "nothing"


def node_label(info: Mapping[str, str]) -> str:
    """How a node is shown: its address and the start of its Ray id."""
    return f"{info.get('ip', '?')}/{info.get('node_id', '')[:6]}"


def alive_nodes() -> list[dict[str, Any]]:
    """The cluster's live nodes, as ``ray.nodes()`` describes them."""
    return [n for n in all_nodes() if n.get("Alive")]


def all_nodes() -> list[dict[str, Any]]:
    """Every node the cluster knows of, the dead included (``ray.nodes()``)."""
    import ray

    nodes: list[dict[str, Any]] = ray.nodes()
    return nodes


async def awaited(ref: Any) -> Any:
    """A Ray object ref's value, as a coroutine (for ``asyncio`` tasks and waits)."""
    return await ref


async def placed(
    group: Any, bundle: Mapping[str, float], timeout: float, ended: Callable[[], bool]
) -> str:
    """The id of the node Ray placed ``group`` (of the one ``bundle``) on.

    Raises :class:`AttemptLost` when no live node could hold the bundle for ``timeout``
    seconds (nodes that could but are busy are waited for), or when ``ended()``.
    """
    from ray.util.placement_group import placement_group_table

    waiter = asyncio.ensure_future(awaited(group.ready()))
    fitted = time.monotonic()  # when a node last could hold it
    try:
        while not (await asyncio.wait({waiter}, timeout=PLACE_CHECK_S))[0]:
            if ended():
                raise AttemptLost(f"ended while waiting for a node with {describe(bundle)}")
            nodes = await off_loop(alive_nodes)
            if any(fits(bundle, node.get("Resources", {})) for node in nodes):
                fitted = time.monotonic()  # the nodes are busy: wait for one
            elif time.monotonic() - fitted >= timeout:
                offers = "; ".join(
                    node_label({"ip": n.get("NodeManagerAddress", "?"), "node_id": n["NodeID"]})
                    + f" has {describe(n.get('Resources', {}))}"
                    for n in nodes
                )
                raise AttemptLost(
                    f"no node of the cluster has {describe(bundle)} "
                    f"(waited {timeout:g} s; {offers or 'no node is alive'}); "
                    "add one, or set DELEGATE_RAY_PLACE_TIMEOUT to wait longer"
                )
        waiter.result()
    finally:
        waiter.cancel()
    table = await off_loop(placement_group_table, group)
    return str(table["bundles_to_node_id"][0])


async def gpu_env(group: Any) -> dict[str, str]:
    """``CUDA_VISIBLE_DEVICES`` for the GPU that ``group``'s bundle holds (a task run in
    the bundle asks Ray which one it is)."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0)
    ids = await _gpu_task().options(scheduling_strategy=strategy).remote()
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in ids)}


_GPU_TASK: Any = None


def _gpu_ids() -> list[str]:
    import ray

    return [str(i) for i in ray.get_gpu_ids()]


def _gpu_task() -> Any:
    """A task that says which GPU it was given (run in an attempt's bundle)."""
    global _GPU_TASK
    if _GPU_TASK is None:
        import ray

        _GPU_TASK = ray.remote(num_cpus=0, num_gpus=1)(_gpu_ids)
    return _GPU_TASK


# ------------------------------------------------------------ the nodes' hosts


class Hosts:
    """Each node's host, kept while this process stays connected to the cluster.

    A host serves every run of the process (a test session, a benchmark, a run
    service), so only the first run waits for the hosts' Ray workers to start.
    They end with the connection (Ray ends a driver's actors when it goes).
    """

    def __init__(self) -> None:
        self.job = ""
        #: Node id -> (the actor, its ``where()`` reply to come).
        self.nodes: dict[str, tuple[Any, Any]] = {}

    def current(self) -> dict[str, tuple[Any, Any]]:
        """The hosts of this connection (none after a new ``ray.init``)."""
        import ray

        job = ray.get_runtime_context().get_job_id()
        if job != self.job:
            self.job, self.nodes = job, {}
        return self.nodes

    def host(self, node_id: str) -> tuple[Any, Any]:
        """The host of node ``node_id``, started if it has none yet."""
        nodes = self.current()
        entry = nodes.get(node_id)
        if entry is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            actor = (
                host_class()
                .options(
                    num_cpus=0,
                    max_restarts=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                )
                .remote()
            )
            entry = nodes[node_id] = (actor, actor.where.remote())
        return entry

    def drop(self, node_id: str) -> None:
        """Node ``node_id``'s host is gone: a later attempt there starts another."""
        self.nodes.pop(node_id, None)


HOSTS = Hosts()


def is_lost(exc: BaseException) -> bool:
    import ray.exceptions

    names = ("RayActorError", "ObjectLostError", "ActorUnschedulableError", "NodeDiedError")
    kinds = tuple(k for k in (getattr(ray.exceptions, n, None) for n in names) if k)
    return isinstance(exc, kinds)


async def host_failure(exc: BaseException, node_id: str, node: str, when: str) -> str:
    """What an error from a node's host says happened, for the attempt's reason; ``""``
    when it is no failure of the host or its node (an error of the call itself).

    A host that could not start there (delegate-tui missing or broken on the node) says
    its own error; a host that died on a node still alive says so; only a node that is
    gone is "node lost".
    """
    if not is_lost(exc):
        return ""
    try:
        nodes = await off_loop(all_nodes)
    except Exception:  # the cluster itself is out of reach
        nodes = []
    info = next((n for n in nodes if str(n.get("NodeID")) == node_id), {})
    node = node or node_label({"ip": info.get("NodeManagerAddress", "?"), "node_id": node_id})
    if getattr(exc, "actor_init_failed", False):
        error = _last_line(str(exc))
        hint = (
            f"; install it there ({RAY_INSTALL}, the version here)"
            if "delegate_tui" in error
            else ""
        )
        return f"the Ray host could not start on {node}: {error}{hint}"
    if info.get("Alive"):
        return f"the Ray host on {node} died {when}: {_first_line(str(exc))}"
    return f"node lost: {node} went away {when}"


def _plain(text: str) -> list[str]:
    """``text``'s lines without terminal colours or blanks."""
    lines = (re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in text.splitlines())
    return [line for line in lines if line and not set(line) <= set("^~ ")]


def _first_line(text: str) -> str:
    return next(iter(_plain(text)), "no reason given")


def _last_line(text: str) -> str:
    lines = _plain(text)
    return lines[-1] if lines else "no reason given"


_HOST_CLASS: Any = None


def host_class() -> Any:
    """The actor class, made once per process (Ray exports it on first use)."""
    global _HOST_CLASS
    if _HOST_CLASS is None:
        import ray

        _HOST_CLASS = ray.remote(RayHost)
    return _HOST_CLASS
