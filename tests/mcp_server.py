"""A real MCP server (the ``mcp`` package, streamable HTTP) on loopback, run as a process:
``python -m tests.mcp_server --port N --log calls.jsonl``; every tool call is appended to
the log so a test can see what arrived."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mcp.server.mcpserver import MCPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    server = MCPServer("orders")

    @server.tool()
    def order_status(order_id: str) -> str:
        """The delivery status of an order."""
        with args.log.open("a") as f:
            f.write(json.dumps({"tool": "order_status", "order_id": order_id}) + "\n")
        return f"Order {order_id} ships tomorrow."

    server.run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
