"""The test session's private network holds what it promises: nothing a test sends can
leave the machine (the room tests' WebRTC media included)."""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.private_network import PEER_ADDRESS, SERVER_ADDRESS, unavailable_reason


@pytest.fixture(autouse=True)
def private_network() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no private network namespace: {reason}")


def test_only_loopback_and_the_veth_pair_exist_and_nothing_routes_out() -> None:
    links = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()}
    assert names == {"lo", "lk0", "lk1"}, names
    addresses = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    assert f"{SERVER_ADDRESS}/24" in addresses and f"{PEER_ADDRESS}/24" in addresses
    routes = subprocess.run(
        ["ip", "route", "show"], capture_output=True, text=True, check=True
    ).stdout
    assert "default" not in routes, routes
    # the kernel has no route for any other address: asked, not tried (nothing is sent)
    lookup = subprocess.run(["ip", "route", "get", "192.0.2.1"], capture_output=True, text=True)
    assert lookup.returncode != 0 and "unreachable" in lookup.stderr.lower(), lookup


def test_the_private_addresses_reach_each_other() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind((SERVER_ADDRESS, 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind((PEER_ADDRESS, 0))
            client.sendto(b"ping", server.getsockname())
            server.settimeout(2)
            data, sender = server.recvfrom(16)
    assert data == b"ping" and sender[0] == PEER_ADDRESS
