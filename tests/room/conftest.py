"""Fixtures for the room tests: one LiveKit test server and one real worker for the whole
package (a worker start costs seconds), inside the private network (tests/private_network.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.livekit_server import LiveKitTestServer
from tests.private_network import SERVER_ADDRESS, unavailable_reason
from tests.room.worker import API_KEY, API_SECRET, Worker, start_worker, stop_worker


def require_private_network() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"room tests need a private network namespace (WebRTC media): {reason}")


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def lk_server() -> AsyncIterator[LiveKitTestServer]:
    require_private_network()
    server = LiveKitTestServer(
        API_KEY, API_SECRET, host=SERVER_ADDRESS, empty_timeout_s=30, departure_timeout_s=3
    )
    await server.start()
    yield server
    await server.aclose()


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def worker(lk_server: LiveKitTestServer, cache_dir: Path) -> AsyncIterator[Worker]:
    running = await start_worker(lk_server, cache_dir)
    yield running
    await stop_worker(running)
    if os.environ.get("ROOM_TEST_WORKER_LOG"):  # for debugging: the worker's whole output
        await asyncio.to_thread(Path(os.environ["ROOM_TEST_WORKER_LOG"]).write_text, running.log())
