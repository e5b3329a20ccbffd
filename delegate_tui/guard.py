"""``python -m delegate_tui.guard GUARD_FILE``: the scope guard as claude's PreToolUse hook.

Owns only the process around :func:`delegate_tui.core.guard.main`: the hook
event on stdin, the decision on stdout, the exit code. Kept tiny and free of
the UI so each write an agent makes costs one short Python start.
"""

from __future__ import annotations

import sys

from delegate_tui.core.guard import main

if __name__ == "__main__":
    code, out = main(sys.argv[1:], sys.stdin.read())
    if out:
        sys.stdout.write(out + "\n")
    sys.exit(code)
