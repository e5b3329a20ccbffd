"""The UI-free core: plans, scheduling decisions, events, state, processes, git.

Nothing under this package may import ``textual`` or ``rich``; a test enforces it.
"""
