"""Where a tool may send a request: public addresses, and the hosts the operator allows.

A tool's URL comes from a tenant or from the LLM's own words, so without a guard a tool is a
way into the worker's network: the cloud metadata endpoint (169.254.169.254), the inference
socket's neighbours, a database on loopback. The rule is checked on the address a name
*resolves to*, at connect time (aiohttp's resolver hook), so a public name that resolves to a
private address is refused as well, and every redirect hop is checked again.

``TOOLS_ALLOWED_HOSTS`` lists hosts (``crm.internal``) or host:port pairs
(``127.0.0.1:8080``) that may be reached whatever they resolve to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult


class BlockedAddressError(OSError):
    """The tool's host is, or resolves to, an address tools may not reach."""


def is_public(address: str) -> bool:
    """Whether ``address`` is a globally routable unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return ip.is_global and not ip.is_multicast


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class AddressGuard:
    def __init__(self, allowed_hosts: Iterable[str] = ()) -> None:
        self._hosts: set[str] = set()
        self._host_ports: set[tuple[str, int]] = set()
        for entry in allowed_hosts:
            host, port = parse_allowed_host(entry)
            if port is None:
                self._hosts.add(host)
            else:
                self._host_ports.add((host, port))

    def host_allowed(self, host: str, port: int) -> bool:
        """Whether the operator listed this host (any address it resolves to may be used)."""
        host = host.lower().strip("[]")
        return host in self._hosts or (host, port) in self._host_ports

    def check_url(self, url: str) -> None:
        """Refuse a URL whose host is a literal non-public address (names are checked on
        their resolved addresses by :meth:`connector`)."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.scheme not in ("http", "https") or not host:
            raise BlockedAddressError(f"{url!r} is not an http(s) URL")
        if self.host_allowed(host, port):
            return
        if _is_ip(host) and not is_public(host):
            raise BlockedAddressError(f"{host} is not a public address")
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise BlockedAddressError(f"{host} is not a public host")

    async def check_resolved(self, url: str) -> None:
        """:meth:`check_url`, and every address the host resolves to must be public (for
        clients without a resolver hook: the MCP transport checks each request with it)."""
        self.check_url(url)
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if self.host_allowed(host, port) or _is_ip(host):
            return
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not infos or not all(is_public(str(info[4][0])) for info in infos):
            raise BlockedAddressError(f"{host} resolves to an address tools may not reach")

    def connector(self) -> aiohttp.TCPConnector:
        """A connector whose every name lookup keeps only the addresses this guard allows."""
        return aiohttp.TCPConnector(resolver=GuardedResolver(self), limit=8, force_close=True)


class GuardedResolver(AbstractResolver):
    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if self._guard.host_allowed(host, port):
            return found
        kept = [r for r in found if is_public(r["host"])]
        if not kept:
            raise BlockedAddressError(f"{host} resolves to no public address")
        return kept

    async def close(self) -> None:
        await self._inner.close()


def parse_allowed_host(entry: str) -> tuple[str, int | None]:
    """``host`` or ``host:port`` (IPv6 in brackets); raises ``ValueError``."""
    entry = entry.strip().lower()
    if not entry:
        raise ValueError("empty host")
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, port_text = entry.split(":")
    else:
        host, port_text = entry, ""
    if not host or any(c in host for c in "/@? "):
        raise ValueError(f"{entry!r} is not a host or host:port")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{entry!r}: the port must be 1-65535")
    return host, int(port_text)


def parse_allowed_hosts(raw: str) -> list[str]:
    """``TOOLS_ALLOWED_HOSTS``: comma-separated; raises ``ValueError`` naming a bad entry."""
    entries = [e.strip() for e in raw.split(",") if e.strip()]
    for entry in entries:
        parse_allowed_host(entry)
    return entries
