"""The agent CLIs against the vendor stand-ins: the fixtures of ``tests.standins``."""

from tests.standins.fixtures import agent_clis, agents, standin, standin_server

__all__ = ["agent_clis", "agents", "standin", "standin_server"]
