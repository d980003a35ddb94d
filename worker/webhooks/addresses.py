"""No server-side request forgery through a webhook URL: only ``https`` (plain ``http``
for loopback and hosts the operator allows), and never an address in a private,
link-local (cloud metadata), multicast or reserved range unless the host is allowed.

Checked when an endpoint is created or changed, and again at every delivery on the
address the name resolves to then; the delivery connects to that very address, so a DNS
answer that changes in between (DNS rebinding) cannot steer it elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class RefusedURL(ValueError):
    """A webhook URL we will not send to; the message says why and what is accepted."""


@dataclass(frozen=True)
class Target:
    """Where to connect for a URL: ``address`` (checked), for ``host`` (Host and TLS name)."""

    scheme: str
    host: str
    port: int
    path: str
    address: str

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the name."""
        ip = ipaddress.ip_address(self.address)
        netloc = f"[{ip}]" if ip.version == 6 else str(ip)
        return f"{self.scheme}://{netloc}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _forbidden(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _forbidden(ip.ipv4_mapped)
    return (
        ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


@dataclass(frozen=True)
class Allowed:
    """The operator's exceptions: hosts that may use plain http (``WEBHOOK_ALLOW_HTTP_HOSTS``)
    and hosts that may resolve to private addresses (``WEBHOOK_ALLOW_PRIVATE_HOSTS``)."""

    http_hosts: Collection[str] = ()
    private_hosts: Collection[str] = ()


NOTHING_ALLOWED = Allowed()


def check_url(
    url: str, *, allowed: Allowed = NOTHING_ALLOWED, resolver: Resolver = resolve
) -> Target:
    """The target to connect to for ``url``, or :class:`RefusedURL` saying why not."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise RefusedURL(f"url: {url!r} is not an absolute https:// URL")
    if parts.username or parts.password:
        raise RefusedURL("url: credentials in the URL are not accepted")
    http_ok = host in {h.lower() for h in allowed.http_hosts}
    private_ok = host in {h.lower() for h in allowed.private_hosts}
    loopback = _is_loopback_name(host)
    if parts.scheme == "http" and not (loopback or http_ok):
        raise RefusedURL(
            f"url: plain http is accepted only for loopback and WEBHOOK_ALLOW_HTTP_HOSTS; "
            f"use https:// for {host}"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise RefusedURL(f"url: {exc}") from None
    try:
        addresses = resolver(host, port)
    except OSError as exc:
        raise RefusedURL(f"url: {host} does not resolve ({exc})") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if ip.is_loopback or private_ok:
            continue
        if _forbidden(ip):
            raise RefusedURL(
                f"url: {host} resolves to {ip}, a private, link-local or reserved address; "
                "webhooks go only to public addresses (or hosts in WEBHOOK_ALLOW_PRIVATE_HOSTS)"
            )
    if not addresses:
        raise RefusedURL(f"url: {host} does not resolve")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, host, port, path, addresses[0].split("%", 1)[0])
