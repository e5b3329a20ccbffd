"""The built-in demo: a simulated coding agent and a scratch repository to run it on."""
