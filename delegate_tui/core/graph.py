"""Dependency-graph logic over task ids: cycles, layers and critical paths.

Owns every question about the *shape* of a plan and nothing about files or
processes. All functions are pure and take plain mappings, so they work the
same for a plan being validated and for a run being scheduled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Return one dependency cycle as ``[a, b, ..., a]``, or ``None``.

    ``deps`` maps a task id to the ids it depends on; ids missing from the
    mapping are ignored (unknown ids are reported separately).
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(deps, white)
    for root in deps:
        if colour[root] != white:
            continue
        # Iterative DFS: plans of thousands of tasks must not hit the recursion limit.
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        colour[root] = grey
        while stack:
            node, index = stack[-1]
            children = [d for d in deps[node] if d in deps]
            if index < len(children):
                stack[-1] = (node, index + 1)
                child = children[index]
                if colour[child] == grey:
                    start = path.index(child)
                    return [*path[start:], child]
                if colour[child] == white:
                    colour[child] = grey
                    stack.append((child, 0))
                    path.append(child)
            else:
                colour[node] = black
                stack.pop()
                path.pop()
    return None


def topological_order(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Ids ordered so that every task comes after its dependencies.

    Ties keep the mapping's order, so the result is stable for a given plan.
    Assumes the graph is acyclic (check with :func:`find_cycle` first).
    """
    order: list[str] = []
    done: set[str] = set()
    for root in deps:
        if root in done:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, index = stack[-1]
            children = [d for d in deps[node] if d in deps]
            if index < len(children):
                stack[-1] = (node, index + 1)
                if children[index] not in done:
                    stack.append((children[index], 0))
            else:
                stack.pop()
                if node not in done:
                    done.add(node)
                    order.append(node)
    return order


def layers(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Group ids by depth: layer 0 has no dependencies, layer n depends on layer n-1."""
    depth: dict[str, int] = {}
    for node in topological_order(deps):
        parents = [d for d in deps[node] if d in deps]
        depth[node] = 1 + max((depth[p] for p in parents), default=-1)
    result: list[list[str]] = [[] for _ in range(1 + max(depth.values(), default=-1))]
    for node in deps:
        result[depth[node]].append(node)
    return result


def dependents(deps: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Invert ``deps``: for each id, the ids that depend on it directly."""
    result: dict[str, list[str]] = {node: [] for node in deps}
    for node, parents in deps.items():
        for parent in parents:
            if parent in result:
                result[parent].append(node)
    return result


def ancestors(deps: Mapping[str, Sequence[str]], node: str) -> set[str]:
    """Every id that ``node`` depends on, directly or through others."""
    seen: set[str] = set()
    todo = [d for d in deps.get(node, ()) if d in deps]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(d for d in deps[current] if d in deps)
    return seen


def descendants(deps: Mapping[str, Sequence[str]], node: str) -> set[str]:
    """Every id that depends on ``node``, directly or through others."""
    below = dependents(deps)
    seen: set[str] = set()
    todo = list(below.get(node, ()))
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(below[current])
    return seen


def remaining_path(
    deps: Mapping[str, Sequence[str]], weight: Mapping[str, float]
) -> dict[str, float]:
    """For each id, the weight of the heaviest chain from it to a sink, itself included.

    This is the scheduling priority: the task at the head of the longest
    remaining chain goes first, which is what shortens the whole run.
    """
    below = dependents(deps)
    result: dict[str, float] = {}
    for node in reversed(topological_order(deps)):
        result[node] = weight.get(node, 1.0) + max((result[c] for c in below[node]), default=0.0)
    return result


def critical_path(deps: Mapping[str, Sequence[str]], weight: Mapping[str, float]) -> list[str]:
    """The heaviest dependency chain, from a root to a sink."""
    if not deps:
        return []
    rest = remaining_path(deps, weight)
    below = dependents(deps)
    roots: Iterable[str] = [n for n in deps if not [d for d in deps[n] if d in deps]]
    node = max(roots, key=lambda n: rest[n])
    path = [node]
    while below[node]:
        node = max(below[node], key=lambda n: rest[n])
        path.append(node)
    return path
