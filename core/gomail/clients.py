"""Who a client is, for counting it (rate limits, failed logins): its IP address, an IPv4
address mapped into IPv6 as itself, and IPv6 by /64 (one host usually owns a whole /64)."""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)
def client_key(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)
