"""OAuth for MCP upstreams: discovery, registration, the login flow and the tokens it yields."""
