"""``python -m tests.livekit_server [--host H] [--port 7880]``: run the test server on its
own. Keys come from ``LIVEKIT_API_KEY`` / ``LIVEKIT_API_SECRET``.

WebRTC media needs an address other than loopback (libwebrtc leaves loopback out of its ICE
candidates): run it, the worker and the clients inside a network namespace with a private
address, as docs/development.md shows."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from .server import LiveKitTestServer


async def _serve(args: argparse.Namespace) -> None:
    key = os.environ.get("LIVEKIT_API_KEY", "")
    secret = os.environ.get("LIVEKIT_API_SECRET", "")
    if not key or not secret:
        sys.exit("set LIVEKIT_API_KEY and LIVEKIT_API_SECRET")
    server = LiveKitTestServer(
        key,
        secret,
        host=args.host,
        port=args.port,
        empty_timeout_s=args.empty_timeout,
        departure_timeout_s=args.departure_timeout,
    )
    await server.start()
    print(f"LiveKit test server on {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.livekit_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7880)
    parser.add_argument("--empty-timeout", type=float, default=300.0)
    parser.add_argument("--departure-timeout", type=float, default=20.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
