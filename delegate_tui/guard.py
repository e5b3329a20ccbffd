"""``python -m delegate_tui.guard GUARD_FILE [CLI]``: the scope guard as the CLI's hook.

claude runs it as a ``PreToolUse`` hook, gemini as a ``BeforeTool`` hook (``CLI`` says
which answer to print: ``claude``, the default, or ``gemini``). Owns only the process
around :func:`delegate_tui.core.guard.main`: the hook event on stdin, the decision on
stdout, the exit code (not 0 only when its own arguments are wrong: the command around
it then prints a refusal). Kept tiny and free of the UI so each write an agent makes
costs one short Python start.
"""

from __future__ import annotations

import sys

from delegate_tui.core.guard import main

if __name__ == "__main__":
    code, out = main(sys.argv[1:], sys.stdin.read())
    if out:
        sys.stdout.write(out + "\n")
    sys.exit(code)
