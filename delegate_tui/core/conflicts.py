"""Where tasks collide, decided from what each has changed.

Owns the conflict analysis behind the sidebar, as pure functions over change
sets (path lists per task) and the plan, plus the merge predictions the
watcher computes with ``git merge-tree`` and passes in. Kinds of finding:

* ``predicted-conflict`` (error): two tasks' work, or a task's work and the
  integration branch, would not merge cleanly; from ``git merge-tree``.
* ``overlap`` (warning): two tasks changed the same path (it may still merge).
* ``out-of-scope`` (warning): a task changed a path outside its ``edits``;
  (error) a ``consult`` task changed anything.
* ``shared-file`` (warning): a task changed a path in ``shared_files``.
* ``undeclared-collision`` (warning): a task changed a path that another
  active task declared in its ``edits``.
* ``unattributed`` (warning, ``isolation: shared``): a path changed in the one
  working tree that no running task's scope covers.

Each finding has a stable key, so the engine emits ``ConflictDetected`` when a
key appears and ``ConflictResolved`` when it goes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from delegate_tui.core import scopes
from delegate_tui.core.plan import Plan

INTEGRATION = "(integration)"


@dataclass(frozen=True, slots=True)
class Finding:
    """One collision that holds now."""

    kind: str
    severity: str
    tasks: tuple[str, ...]
    paths: tuple[str, ...]
    detail: str = ""

    @property
    def key(self) -> str:
        """Stable identity: kind, tasks and paths."""
        return f"{self.kind}:{','.join(self.tasks)}:{','.join(self.paths)}"


def analyze(
    plan: Plan,
    changes: Mapping[str, Sequence[str]],
    predictions: Mapping[tuple[str, str], Sequence[str]] | None = None,
    unattributed: Sequence[str] = (),
) -> list[Finding]:
    """Findings for the tasks in ``changes`` (active or finished-but-unmerged).

    ``changes`` maps a task id to the paths it changed since it started;
    ``predictions`` maps a pair of task ids (sorted; ``INTEGRATION`` for the
    integration branch) to the paths ``git merge-tree`` found in conflict.
    """
    findings: list[Finding] = []
    predictions = predictions or {}
    if unattributed:
        # isolation: shared: a change in the one tree that no running task's scope covers.
        findings.append(
            Finding(
                "unattributed",
                "warning",
                (),
                tuple(sorted(unattributed)),
                "changed while several tasks ran, outside every running task's edits",
            )
        )
    ids = sorted(changes)
    for (a, b), paths in sorted(predictions.items()):
        if paths:
            what = "the integration branch" if INTEGRATION in (a, b) else "each other"
            tasks = tuple(t for t in (a, b) if t != INTEGRATION)
            findings.append(
                Finding(
                    "predicted-conflict",
                    "error",
                    tasks,
                    tuple(sorted(paths)),
                    f"would not merge cleanly with {what}",
                )
            )
    for i, a in enumerate(ids):
        mine = set(changes[a])
        for b in ids[i + 1 :]:
            common = sorted(mine & set(changes[b]))
            # Kept beside a predicted conflict: the overlap says who touched what even
            # when git can still merge it, and stays true after one side merges.
            if common:
                findings.append(
                    Finding("overlap", "warning", (a, b), tuple(common), "both changed these paths")
                )
    for task_id in ids:
        task = plan.task(task_id)
        paths = sorted(changes[task_id])
        if not paths:
            continue
        if task.kind == "consult":
            findings.append(
                Finding(
                    "out-of-scope",
                    "error",
                    (task_id,),
                    tuple(paths),
                    "a consult task must not edit files",
                )
            )
        elif task.edits:
            outside = [p for p in paths if not scopes.matches_any(task.edits, p)]
            if outside:
                findings.append(
                    Finding(
                        "out-of-scope",
                        "warning",
                        (task_id,),
                        tuple(outside),
                        "outside its declared edits: " + ", ".join(task.edits),
                    )
                )
        shared = [p for p in paths if scopes.matches_any(plan.shared_files, p)]
        if shared:
            findings.append(
                Finding(
                    "shared-file",
                    "warning",
                    (task_id,),
                    tuple(shared),
                    "a shared file: tasks touching it should not run at once",
                )
            )
        for other_id in ids:
            if other_id == task_id:
                continue
            other = plan.task(other_id)
            claimed = [
                p
                for p in paths
                if other.edits
                and scopes.matches_any(other.edits, p)
                and not scopes.matches_any(task.edits, p)
            ]
            if claimed:
                findings.append(
                    Finding(
                        "undeclared-collision",
                        "warning",
                        (task_id, other_id),
                        tuple(claimed),
                        f"declared by {other_id}, changed by {task_id}",
                    )
                )
    return findings


def pairs_to_predict(changes: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """Pairs of tasks worth a ``merge-tree`` run: they changed a path in common."""
    ids = sorted(changes)
    out = []
    for i, a in enumerate(ids):
        mine = set(changes[a])
        for b in ids[i + 1 :]:
            if mine & set(changes[b]):
                out.append((a, b))
    return out


def attribute(
    plan: Plan, running: Sequence[str], paths: Sequence[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """``isolation: shared``: which running task changed which path, by declared scope.

    A path goes to every running task whose ``edits`` cover it; a path no
    scope covers goes to the only running task if there is one, else it is
    unattributed.
    """
    owned: dict[str, list[str]] = {task: [] for task in running}
    loose: list[str] = []
    for path in paths:
        owners = [
            t
            for t in running
            if plan.task(t).edits and scopes.matches_any(plan.task(t).edits, path)
        ]
        if not owners and len(running) == 1:
            owners = list(running)
        for owner in owners:
            owned[owner].append(path)
        if not owners:
            loose.append(path)
    return owned, loose


@dataclass(frozen=True, slots=True)
class Reader:
    """A task that may have read something a merge changed since it started."""

    task: str
    started: float  # when its attempt took its start (the integration tip, or kept work)
    reads: tuple[str, ...]  # declared globs, and files its agent was seen reading
    base: str = ""  # the commit its attempt started from


@dataclass(frozen=True, slots=True)
class Merge:
    """A task's work that landed on the integration branch."""

    task: str
    at: float
    paths: tuple[str, ...]
    commit: str = ""  # the integration tip it made


#: Whether a merged commit is already in a reader's start: ``(merged, base) -> bool``,
#: ``None`` when that is not known (then the times decide).
InBase = Callable[[str, str], "bool | None"]


def stale_inputs(
    readers: Sequence[Reader], merges: Sequence[Merge], in_base: InBase | None = None
) -> list[Finding]:
    """``stale-input`` findings: a merge that is not in a task's start changed a file in
    that task's read set (its declared ``reads`` and what its agent read).

    Whether the merge is in the start is ``in_base`` (git's ancestry: a retry that kept
    its old work started from an old tip, however late it was prepared); where that is
    not known, a merge that landed after the attempt took its start is not in it.
    """
    findings = []
    for reader in readers:
        for merge in merges:
            if merge.task == reader.task:
                continue
            known = (
                in_base(merge.commit, reader.base)
                if in_base is not None and merge.commit and reader.base
                else None
            )
            if known if known is not None else merge.at <= reader.started:
                continue
            paths = tuple(p for p in merge.paths if scopes.matches_any(reader.reads, p))
            if paths:
                findings.append(
                    Finding(
                        "stale-input",
                        "warning",
                        (reader.task, merge.task),
                        paths,
                        f"{merge.task} merged a change to what {reader.task} read, "
                        "after it started",
                    )
                )
    return findings
