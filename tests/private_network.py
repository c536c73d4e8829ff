"""A private network for WebRTC tests: this process moves into a network namespace of its
own, with a veth pair carrying private addresses.

libwebrtc and aioice leave loopback out of their ICE candidates, so media between two local
peers would flow over the machine's external interface. Inside the namespace the only
interfaces are ``lo`` and the veth pair (both ends inside it) and there is no route out:
nothing a test sends can leave. Needs CAP_SYS_ADMIN and CAP_NET_ADMIN (root); where the
namespace cannot be made, :func:`enter_private_network` says why and changes nothing.

A network namespace is per thread; threads created later inherit it. It must therefore be
entered while the process has a single thread (before the LiveKit SDK starts its runtime),
which is why the test session enters it first thing (tests/conftest.py).
"""

from __future__ import annotations

import ctypes
import os
import subprocess

CLONE_NEWNET = 0x40000000
SERVER_ADDRESS = "10.77.0.1"  # the LiveKit test server and the worker's HTTP API
PEER_ADDRESS = "10.77.0.2"
ENV_FLAG = "LOCAL_VOICE_AGENT_PRIVATE_NET"  # set for this process and its children

_SETUP = [
    ["ip", "link", "set", "lo", "up"],
    ["ip", "link", "add", "lk0", "type", "veth", "peer", "name", "lk1"],
    ["ip", "addr", "add", f"{SERVER_ADDRESS}/24", "dev", "lk0"],
    ["ip", "addr", "add", f"{PEER_ADDRESS}/24", "dev", "lk1"],
    ["ip", "link", "set", "lk0", "up"],
    ["ip", "link", "set", "lk1", "up"],
]

_state: dict[str, str | None] = {}


def in_private_network() -> bool:
    return os.environ.get(ENV_FLAG) == SERVER_ADDRESS


def enter_private_network() -> str | None:
    """Move this process into a new network namespace; None on success, else why not.
    Idempotent: a second call (or a child of a process that entered) changes nothing."""
    if "result" in _state:
        return _state["result"]
    _state["result"] = result = _enter()
    return result


def unavailable_reason() -> str | None:
    """Why the private network is missing (None when this process is inside one)."""
    if in_private_network():
        return None
    return _state.get("result") or "the test session did not enter a private network"


def _enter() -> str | None:
    if in_private_network():
        return None  # inherited from the parent
    if len(os.listdir("/proc/self/task")) != 1:
        return "the process already runs several threads; a namespace would not cover them"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        return f"unshare(CLONE_NEWNET) failed: {os.strerror(ctypes.get_errno())} (needs root)"
    for command in _SETUP:
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError) as e:
            detail = getattr(e, "stderr", b"") or b""
            return f"{' '.join(command)} failed: {e} {detail.decode(errors='replace').strip()}"
    os.environ[ENV_FLAG] = SERVER_ADDRESS
    return None
