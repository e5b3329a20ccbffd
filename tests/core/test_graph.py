"""Graph shape: cycles, order, layers, priorities."""

from __future__ import annotations

from delegate_tui.core import graph

DEPS = {
    "contract": (),
    "schema": ("contract",),
    "service": ("schema",),
    "ui": ("schema",),
    "tests": ("schema",),
    "endpoints": ("service", "ui", "tests"),
}


def test_layers_follow_dependencies() -> None:
    assert graph.layers(DEPS) == [
        ["contract"],
        ["schema"],
        ["service", "ui", "tests"],
        ["endpoints"],
    ]


def test_topological_order_puts_parents_first() -> None:
    order = graph.topological_order(DEPS)
    for node, parents in DEPS.items():
        assert all(order.index(p) < order.index(node) for p in parents)


def test_cycles_found_whole_or_absent() -> None:
    assert graph.find_cycle(DEPS) is None
    cycle = graph.find_cycle({"a": ("b",), "b": ("c",), "c": ("a",), "d": ()})
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert graph.find_cycle({"a": ("a",)}) == ["a", "a"]


def test_remaining_path_and_critical_path_use_weights() -> None:
    weight = {"contract": 1, "schema": 1, "service": 10, "ui": 2, "tests": 1, "endpoints": 1}
    rest = graph.remaining_path(DEPS, weight)
    assert rest["service"] == 11 and rest["ui"] == 3 and rest["contract"] == 13
    assert graph.critical_path(DEPS, weight) == ["contract", "schema", "service", "endpoints"]


def test_ancestors_and_descendants() -> None:
    assert graph.ancestors(DEPS, "endpoints") == {"contract", "schema", "service", "ui", "tests"}
    assert graph.descendants(DEPS, "schema") == {"service", "ui", "tests", "endpoints"}


def test_deep_chain_has_no_recursion_limit() -> None:
    deps = {f"t{i}": ((f"t{i - 1}",) if i else ()) for i in range(5000)}
    assert graph.find_cycle(deps) is None
    assert len(graph.layers(deps)) == 5000
