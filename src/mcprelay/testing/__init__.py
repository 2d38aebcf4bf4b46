"""Real servers for tests and ``mcprelay demo``: a strict authorization server and MCP servers.

They live in the package, not under ``tests/``, because the demo ships them.
"""
