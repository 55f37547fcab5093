"""Outbound calls to identity providers go to public addresses only.

An organization admin types the issuer (or, for SAML, a metadata URL), and the service
then fetches it and every endpoint the provider names. Without a check, that admin could
point the service at an address inside our own network (the cloud metadata service at
169.254.169.254, an internal admin port, Redis) and read what comes back in an error
message or a timing difference. So every outbound SSO request goes through
``GuardedTransport``:

- the host name is resolved once, here, and every address it resolves to must be
  public (``ipaddress.is_global``, not multicast) or inside a network the operator
  allows (``SSO_ALLOWED_NETWORKS``, e.g. an on-premises IdP at 10.0.0.0/8);
- the connection then goes to the address that was checked, with the original host in
  the ``Host`` header and in TLS (SNI and certificate check), so a DNS answer that
  changes between the check and the connection (rebinding) cannot reach another host.

Redirects are never followed (the client is built with ``follow_redirects=False``),
so a provider cannot bounce a request to an internal address either.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


class AddressNotAllowed(httpx.ConnectError):
    """The host resolves to an address outbound SSO calls may not reach. A subclass of
    ``ConnectError`` so every caller's existing handling (a 400 at configuration time,
    ``provider_unavailable`` during a login) applies unchanged."""


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_allowed(address: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    address = _unmapped(address)
    if any(address in network for network in allowed):
        return True
    return address.is_global and not address.is_multicast


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that connects only to allowed addresses (see the module)."""

    def __init__(
        self,
        allowed_networks: Sequence[IPNetwork] = (),
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._allowed = tuple(allowed_networks)
        self._inner = inner or httpx.AsyncHTTPTransport(trust_env=False)

    async def _resolve(self, host: str, port: int, limit: float | None) -> IPAddress:
        try:
            return ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            # The lookup counts against the connect timeout: a resolver that never
            # answers must not hold a login open.
            async with asyncio.timeout(limit):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("resolving the host timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot resolve the host ({exc.strerror})") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses:
            raise httpx.ConnectError("the host has no address")
        # Every answer must be allowed: a name that resolves to one public and one
        # internal address is refused rather than raced.
        for address in addresses:
            if not address_allowed(address, self._allowed):
                raise AddressNotAllowed("the host resolves to a non-public address")
        return addresses[0]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        timeouts = request.extensions.get("timeout", {})
        address = await self._resolve(host, port, timeouts.get("connect"))
        if not address_allowed(address, self._allowed):
            raise AddressNotAllowed("the address is not public")
        # Connect to the checked address; the Host header (set when the request was
        # built) and TLS keep the original name.
        request.url = url.copy_with(host=str(_unmapped(address)))
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
