"""A LiveKit-protocol server for tests: signalling (``/rtc``), media through aiortc, data
routing, the agent worker protocol (``/agent``) and the Twirp endpoints the project calls.

It is small on purpose: one process, no SFU features beyond what the product's room path
uses (audio tracks, data packets and text streams, attributes, dispatch, room lifecycle).
Run it on its own with ``python -m tests.livekit_server`` (see docs/development.md).
"""

from .server import LiveKitTestServer

__all__ = ["LiveKitTestServer"]
