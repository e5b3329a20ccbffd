"""Conflict analysis over hand-made change sets."""

from __future__ import annotations

import textwrap

from delegate_tui.core.conflicts import INTEGRATION, Finding, analyze, pairs_to_predict
from delegate_tui.core.plan import parse_plan

PLAN = parse_plan(
    textwrap.dedent(
        """\
        name: p
        shared_files: [package.json]
        tasks:
          - {id: api, prompt: x, edits: ["src/api/**"]}
          - {id: ui, prompt: x, edits: ["web/**"]}
          - {id: advice, prompt: x, kind: consult}
          - {id: loose, prompt: x}
        """
    )
)


def kinds(findings: list[Finding]) -> set[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    return {(f.kind, f.tasks, f.paths) for f in findings}


def test_nothing_changed_nothing_found() -> None:
    assert analyze(PLAN, {"api": [], "ui": []}) == []
    assert analyze(PLAN, {"api": ["src/api/a.py"], "ui": ["web/a.ts"]}) == []


def test_overlap_out_of_scope_undeclared_and_shared() -> None:
    found = analyze(
        PLAN, {"api": ["src/api/a.py", "web/app.ts", "package.json"], "ui": ["web/app.ts"]}
    )
    assert kinds(found) == {
        ("overlap", ("api", "ui"), ("web/app.ts",)),
        ("out-of-scope", ("api",), ("package.json", "web/app.ts")),
        ("shared-file", ("api",), ("package.json",)),
        ("undeclared-collision", ("api", "ui"), ("web/app.ts",)),
    }
    severities = {f.kind: f.severity for f in found}
    assert severities["overlap"] == "warning"


def test_consult_edit_is_an_error_and_undeclared_scope_is_not_out_of_scope() -> None:
    found = analyze(PLAN, {"advice": ["notes.md"], "loose": ["anything/at/all.py"]})
    assert kinds(found) == {("out-of-scope", ("advice",), ("notes.md",))}
    assert found[0].severity == "error"


def test_predictions_become_errors_beside_the_overlap() -> None:
    changes = {"api": ["src/api/a.py", "shared.py"], "ui": ["web/a.ts", "shared.py"]}
    assert pairs_to_predict(changes) == [("api", "ui")]
    found = analyze(
        PLAN, changes, {("api", "ui"): ["shared.py"], (INTEGRATION, "api"): ["src/api/a.py"]}
    )
    assert ("predicted-conflict", ("api", "ui"), ("shared.py",)) in kinds(found)
    assert ("predicted-conflict", ("api",), ("src/api/a.py",)) in kinds(found)
    assert ("overlap", ("api", "ui"), ("shared.py",)) in kinds(found)
    details = {f.tasks: f.detail for f in found if f.kind == "predicted-conflict"}
    assert details[("api",)] == "would not merge cleanly with the integration branch"
    clean = analyze(PLAN, changes, {("api", "ui"): []})
    assert ("overlap", ("api", "ui"), ("shared.py",)) in kinds(clean)


def test_a_findings_key_names_the_collision_whatever_order_the_changes_came_in() -> None:
    """The sidebar keeps one row per key: the same collision seen again (paths and tasks in
    another order) must keep its key, and a different collision must get another one."""
    first = analyze(PLAN, {"api": ["web/x.ts", "src/api/a.py"], "ui": ["web/x.ts"]})
    again = analyze(PLAN, {"ui": ["web/x.ts"], "api": ["src/api/a.py", "web/x.ts"]})
    assert sorted(f.key for f in first) == sorted(f.key for f in again)
    assert sorted(f.key for f in first) == [
        "out-of-scope:api:web/x.ts",
        "overlap:api,ui:web/x.ts",
        "undeclared-collision:api,ui:web/x.ts",
    ]
    wider = analyze(PLAN, {"api": ["web/x.ts", "web/y.ts"], "ui": ["web/x.ts"]})
    assert "out-of-scope:api:web/x.ts,web/y.ts" in {f.key for f in wider}
    assert "out-of-scope:api:web/x.ts" not in {f.key for f in wider}, "a wider finding is new"


def test_shared_tree_attribution_by_scope() -> None:
    from delegate_tui.core.conflicts import attribute

    owned, loose = attribute(PLAN, ["api", "ui"], ["src/api/a.py", "web/b.ts", "README.md"])
    assert owned == {"api": ["src/api/a.py"], "ui": ["web/b.ts"]} and loose == ["README.md"]
    owned, loose = attribute(PLAN, ["loose"], ["anything.txt"])
    assert owned == {"loose": ["anything.txt"]} and loose == [], (
        "one task running: it is the author"
    )
    found = analyze(PLAN, {"api": []}, None, ["README.md"])
    assert [(f.kind, f.tasks, f.paths) for f in found] == [("unattributed", (), ("README.md",))]


def test_every_finding_says_how_bad_it_is_and_why() -> None:
    """What the sidebar and ``stats`` show for each kind: severity and the sentence."""
    from delegate_tui.core.conflicts import Finding

    found = analyze(
        PLAN,
        {
            "advice": [],  # sorted first and changed nothing: the others are still analysed
            "api": ["src/api/a.py", "web/app.ts", "package.json"],
            "ui": ["web/app.ts"],
        },
        {("api", "ui"): ["web/app.ts"], (INTEGRATION, "api"): ["src/api/a.py"], ("ui", "x"): []},
        ["README.md"],
    )
    assert found == [
        Finding(
            "unattributed",
            "warning",
            (),
            ("README.md",),
            "changed while several tasks ran, outside every running task's edits",
        ),
        Finding(
            "predicted-conflict",
            "error",
            ("api",),
            ("src/api/a.py",),
            "would not merge cleanly with the integration branch",
        ),
        Finding(
            "predicted-conflict",
            "error",
            ("api", "ui"),
            ("web/app.ts",),
            "would not merge cleanly with each other",
        ),
        Finding("overlap", "warning", ("api", "ui"), ("web/app.ts",), "both changed these paths"),
        Finding(
            "out-of-scope",
            "warning",
            ("api",),
            ("package.json", "web/app.ts"),
            "outside its declared edits: src/api/**",
        ),
        Finding(
            "shared-file",
            "warning",
            ("api",),
            ("package.json",),
            "a shared file: tasks touching it should not run at once",
        ),
        Finding(
            "undeclared-collision",
            "warning",
            ("api", "ui"),
            ("web/app.ts",),
            "declared by ui, changed by api",
        ),
    ]
    (consult,) = analyze(PLAN, {"advice": ["notes.md", "a.md"]})
    assert consult == Finding(
        "out-of-scope",
        "error",
        ("advice",),
        ("a.md", "notes.md"),
        "a consult task must not edit files",
    )


def test_merge_predictions_are_asked_only_for_pairs_that_share_a_path() -> None:
    changes = {"c": ["x", "y"], "a": ["x"], "b": ["z"], "d": ["y", "z"]}
    assert pairs_to_predict(changes) == [("a", "c"), ("b", "d"), ("c", "d")]
    assert pairs_to_predict({"a": ["x"], "b": []}) == []


def test_in_a_shared_tree_a_path_two_scopes_cover_goes_to_both() -> None:
    from delegate_tui.core.conflicts import attribute
    from delegate_tui.core.plan import parse_plan

    plan = parse_plan(
        "name: p\ntasks:\n"
        "  - {id: wide, prompt: x, edits: ['src/**']}\n"
        "  - {id: narrow, prompt: x, edits: [src/a.py]}\n"
        "  - {id: loose, prompt: x}\n"
    )
    owned, loose = attribute(plan, ["wide", "narrow", "loose"], ["src/a.py", "src/b.py", "c.md"])
    assert owned == {"wide": ["src/a.py", "src/b.py"], "narrow": ["src/a.py"], "loose": []}
    assert loose == ["c.md"], "several tasks run: a path no scope covers is nobody's"
    assert attribute(plan, [], ["c.md"]) == ({}, ["c.md"])


def test_a_merge_after_a_reader_started_is_a_stale_input_finding() -> None:
    """Merges at or before the reader's start were in its base, and its own merge does not
    count; any later merge into what it reads does, each as its own finding."""
    from delegate_tui.core.conflicts import Finding, Merge, Reader, stale_inputs

    reader = Reader("ui", started=100.0, reads=("src/models/**",))
    merges = [
        Merge("ui", at=150.0, paths=("src/models/user.py",)),  # its own work
        Merge("base", at=100.0, paths=("src/models/base.py",)),  # the tip it started from
        Merge("user", at=120.0, paths=("src/models/user.py", "docs/user.md")),
        Merge("docs", at=130.0, paths=("docs/index.md",)),  # nothing it reads
        Merge("order", at=140.0, paths=("src/models/order.py",)),
    ]
    assert stale_inputs([reader], merges) == [
        Finding(
            "stale-input",
            "warning",
            ("ui", "user"),
            ("src/models/user.py",),
            "user merged a change to what ui read, after it started",
        ),
        Finding(
            "stale-input",
            "warning",
            ("ui", "order"),
            ("src/models/order.py",),
            "order merged a change to what ui read, after it started",
        ),
    ]
    assert stale_inputs([Reader("x", 0.0, ())], merges) == [], "no declared reads: nothing stale"
