"""Which host names stay on this machine: one rule for every place that lets plain `http://` or
no TLS through only on loopback (the server's bind address, the proxy's upstreams, the relay link,
webhook receivers, the KMS URL)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """`localhost`, or an IPv4/IPv6 loopback address (brackets allowed: `[::1]`). A name that
    only resolves to loopback does not count: DNS is not asked, so it cannot be made to lie."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
