"""Tools the agent can call: declared HTTP tools, MCP servers' tools and the built-in call
tools, combined per room (box.py), guarded (guard.py) and instrumented (runner.py)."""
