"""The gateway: one MCP endpoint in front of many upstream servers, with its REST API and activity log."""
