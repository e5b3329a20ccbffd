"""The full-screen UI (Textual): a projection of the run's events, and keys as commands."""

import os

# Textual draws a changed screen at most MAX_FPS times a second, so a key's effect
# waits up to 1/60 s for its frame. Under a flood of output that is a tenth of the
# key-latency budget; at 120 the wait halves (measured: median key -> screen 58 ->
# 48 ms in bench/ui_flood.py). Set before Textual is imported; the operator's own
# TEXTUAL_FPS wins.
os.environ.setdefault("TEXTUAL_FPS", "120")
