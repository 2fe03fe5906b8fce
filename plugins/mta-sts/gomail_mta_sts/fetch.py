"""Fetching a policy file over HTTPS (RFC 8461 3.3), with names resolved through ``app.dns``.

``https://mta-sts.<domain>/.well-known/mta-sts.txt``: no redirects, status 200, media type
text/plain, at most 64 KiB, the whole fetch within the time-out, and a certificate valid for
``mta-sts.<domain>`` that chains to a trusted root (the system's and the ``ca_file``'s).
"""

from __future__ import annotations

import socket
import ssl
from functools import lru_cache

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from gomail.dns import DNSError, Resolver

from gomail_mta_sts.policy import MAX_POLICY_SIZE, Policy, PolicyError, parse_policy

WELL_KNOWN = "/.well-known/mta-sts.txt"


class FetchError(Exception):
    """The policy could not be fetched or is not valid; the text says why."""


class DnsResolver(AbstractResolver):
    """aiohttp's look-ups answered by gomail's resolver (one DNS setting for everything)."""

    def __init__(self, dns: Resolver) -> None:
        self.dns = dns

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await self.dns.addresses(host)
        except DNSError as exc:
            raise OSError(f"cannot resolve {host}: {exc}") from None
        out: list[ResolveResult] = []
        for ip in addresses:
            fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
            if family not in (socket.AF_UNSPEC, fam):
                continue
            out.append(
                ResolveResult(
                    hostname=host,
                    host=ip,
                    port=port,
                    family=fam,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        if not out:
            raise OSError(f"{host} has no address of family {family!r}")
        return out

    async def close(self) -> None:
        pass


@lru_cache(maxsize=8)
def https_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifying client context: the system's roots, and those in ca_file when given."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


def policy_url(domain: str, port: int = 443) -> str:
    host = f"mta-sts.{domain}"
    return f"https://{host}{'' if port == 443 else f':{port}'}{WELL_KNOWN}"


async def fetch_text(
    dns: Resolver, domain: str, *, port: int = 443, limit: float = 10.0, ca_file: str | None
) -> str:
    """The policy file's text; FetchError when RFC 8461 3.3 says it does not count."""
    url = policy_url(domain, port)
    try:
        connector = aiohttp.TCPConnector(
            resolver=DnsResolver(dns), ssl=https_context(ca_file), use_dns_cache=False
        )
        async with (
            aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=limit),
                headers={"User-Agent": "gomail-mta-sts"},
            ) as session,
            session.get(url, allow_redirects=False) as resp,
        ):
            if resp.status != 200:
                where = resp.headers.get("Location")
                extra = f" (redirect to {where}, not followed)" if where else ""
                raise FetchError(f"{url} answered HTTP {resp.status}{extra}")
            if resp.content_type != "text/plain":
                raise FetchError(f"{url} has media type {resp.content_type}, not text/plain")
            if (resp.content_length or 0) > MAX_POLICY_SIZE:
                raise FetchError(f"{url} is {resp.content_length} bytes, over the limit")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(16384):
                body += chunk
                if len(body) > MAX_POLICY_SIZE:
                    raise FetchError(f"{url} is over {MAX_POLICY_SIZE} bytes")
    except FetchError:
        raise
    except TimeoutError:
        raise FetchError(f"{url}: no answer within {limit:g} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise FetchError(f"{url}: {exc or type(exc).__name__}") from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError(f"{url} is not UTF-8 text") from None


async def fetch_policy(
    dns: Resolver,
    domain: str,
    policy_id: str,
    now: float,
    *,
    port: int = 443,
    limit: float = 10.0,
    ca_file: str | None = None,
) -> Policy:
    """The domain's policy, fetched now for TXT id policy_id; FetchError if there is none."""
    text = await fetch_text(dns, domain, port=port, limit=limit, ca_file=ca_file)
    try:
        return parse_policy(text, policy_id, now)
    except PolicyError as exc:
        raise FetchError(f"{policy_url(domain, port)}: {exc}") from None
