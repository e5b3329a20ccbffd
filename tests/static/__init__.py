"""Checks of the source itself: the linters and the type checker, run as tests."""
