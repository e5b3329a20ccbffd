"""Where a remote attempt runs: its Ray placement bundle, the wait for it, its GPU.

Owns the Ray executor's placing (:mod:`ray_executor`): the bundle a task's
``resources:`` labels ask for (one CPU, a GPU, the custom resources the
cluster offers), the wait for Ray to place that bundle's placement group,
bounded when no node could ever hold it (the attempt fails with what each
node offers), and the ``CUDA_VISIBLE_DEVICES`` of a bundle's GPU. Ray is
imported only inside the functions that need it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from delegate_tui.core.executor import AttemptLost

#: How long an attempt whose resources no node has waits (a node may join) before it
#: fails; ``DELEGATE_RAY_PLACE_TIMEOUT`` (seconds) says otherwise.
PLACE_TIMEOUT_S = 60.0
#: How often a placement still waiting looks at what the nodes have.
PLACE_CHECK_S = 0.5


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
    import ray

    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [n for n in nodes if n.get("Alive")]


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
            nodes = await asyncio.to_thread(alive_nodes)
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
    table = await asyncio.to_thread(placement_group_table, group)
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
