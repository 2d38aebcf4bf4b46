"""mcprelay: an MCP gateway and CLI that owns the OAuth of every upstream it reaches."""

__version__ = "0.1.0"
