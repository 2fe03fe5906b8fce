"""gomail.dns against a real authoritative server (knot) on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading

import dns.message
import dns.rcode
import pytest
from daemonbed import free_udp_tcp_port
from gomail.config import load_config
from gomail.dns import (
    MXHost,
    NoAddress,
    NoSuchDomain,
    NullMX,
    PermanentDNSError,
    Resolver,
    TemporaryDNSError,
)
from gomail.yamlfile import ConfigError
from knotbed import Knot, knot_fixture, requires_knot

pytestmark = requires_knot

ZONES = {
    "dest.test": (
        "@ MX 20 mx2\n@ MX 10 mx1\n@ MX 20 mx3\n"
        "mx1 A 127.0.0.2\nmx2 A 127.0.0.3\nmx2 AAAA ::1\nmx3 A 127.0.0.4\n"
        '@ TXT "v=spf1 " "ip4:127.0.0.0/8 -all"\n'
        "noaddr TXT hello\n"
        "short 1 A 127.0.0.7\n"
    ),
    "implicit.test": "@ A 127.0.0.5\n",
    "nullmx.test": "@ MX 0 .\n",
    "bare.test": "www A 127.0.0.6\n",
}


knot = knot_fixture(ZONES)


@pytest.fixture
def resolver(knot):
    return Resolver(["127.0.0.1"], knot.port, timeout=3)


async def test_mx_in_preference_order(resolver):
    hosts = await resolver.mx("dest.test")
    assert hosts[0] == MXHost(10, "mx1.dest.test")
    assert {h.host for h in hosts[1:]} == {"mx2.dest.test", "mx3.dest.test"}
    assert all(h.preference == 20 for h in hosts[1:])


async def test_implicit_mx(resolver):
    assert await resolver.mx("implicit.test") == [MXHost(0, "implicit.test", implicit=True)]


async def test_null_mx_is_permanent(resolver):
    with pytest.raises(NullMX):
        await resolver.mx("nullmx.test")
    assert issubclass(NullMX, PermanentDNSError)


async def test_no_mx_and_no_address(resolver):
    with pytest.raises(NoAddress):
        await resolver.mx("bare.test")


async def test_nxdomain_is_permanent(resolver):
    with pytest.raises(NoSuchDomain):
        await resolver.mx("nothere.dest.test")
    with pytest.raises(NoSuchDomain):
        await resolver.addresses("nothere.dest.test")


async def test_addresses(resolver):
    assert await resolver.addresses("mx1.dest.test") == ["127.0.0.2"]
    assert await resolver.addresses("mx2.dest.test") == ["127.0.0.3", "::1"]
    with pytest.raises(NoAddress):
        await resolver.addresses("noaddr.dest.test")


async def test_txt_joins_strings(resolver):
    assert await resolver.txt("dest.test") == ["v=spf1 ip4:127.0.0.0/8 -all"]
    assert await resolver.txt("mx1.dest.test") == []


async def test_refused_zone_is_temporary(resolver):
    # knot is not authoritative for it: REFUSED from every server is not an answer.
    with pytest.raises(TemporaryDNSError):
        await resolver.mx("elsewhere.example")


async def test_no_server_is_temporary():
    res = Resolver(["127.0.0.1"], free_udp_tcp_port(), timeout=0.5)
    with pytest.raises(TemporaryDNSError):
        await res.mx("dest.test")


def test_config(tmp_path):
    f = tmp_path / "gomail.yaml"
    f.write_text("dns: {nameservers: [127.0.0.1], port: 5353, timeout: 2}\n")
    cfg = load_config(f)
    assert (cfg.dns_nameservers, cfg.dns_port, cfg.dns_timeout) == (["127.0.0.1"], 5353, 2.0)
    assert cfg.dns_cache is True
    f.write_text("dns: {cache: false}\n")
    assert load_config(f).dns_cache is False
    f.write_text("dns: {cache: 1}\n")
    with pytest.raises(ConfigError, match="dns.cache"):
        load_config(f)
    f.write_text("dns: {nameserver: 127.0.0.1}\n")
    with pytest.raises(ConfigError, match="dns.nameserver"):
        load_config(f)
    f.write_text("delivery: {port: 2525, retry: [1, 2], data_timeout: 5}\n")
    cfg = load_config(f)
    assert (cfg.delivery_port, cfg.delivery_retry, cfg.delivery_data_timeout) == (
        2525,
        [1.0, 2.0],
        5.0,
    )


def test_system_resolver_by_default():
    assert Resolver().nameservers  # read from /etc/resolv.conf


def counting(res: Resolver) -> list[tuple[str, str]]:
    """Record every query that reaches the network (dnspython's resolve) in the list returned."""
    asked: list[tuple[str, str]] = []
    real = res._res.resolve

    async def resolve(qname, rdtype, *args, **kwargs):
        asked.append((str(qname), str(rdtype)))
        return await real(qname, rdtype, *args, **kwargs)

    res._res.resolve = resolve
    return asked


async def test_second_lookup_comes_from_the_cache(resolver):
    asked = counting(resolver)
    first = await resolver.mx("dest.test")
    again = await resolver.mx("Dest.Test.")  # same name, other spelling
    assert sorted(again, key=repr) == sorted(first, key=repr)
    assert await resolver.txt("dest.test") == ["v=spf1 ip4:127.0.0.0/8 -all"]
    assert await resolver.txt("dest.test") == ["v=spf1 ip4:127.0.0.0/8 -all"]
    assert await resolver.addresses("mx2.dest.test") == ["127.0.0.3", "::1"]
    assert await resolver.addresses("mx2.dest.test") == ["127.0.0.3", "::1"]
    assert sorted(asked) == sorted(
        [
            ("dest.test.", "MX"),
            ("dest.test.", "TXT"),
            ("mx2.dest.test.", "A"),
            ("mx2.dest.test.", "AAAA"),
        ]
    )


async def test_cache_answers_with_the_server_gone(tmp_path):
    with Knot(tmp_path, {"gone.test": "@ MX 10 mx\nmx A 127.0.0.9\n"}).start() as server:
        res = Resolver(["127.0.0.1"], server.port, timeout=0.5)
        assert await res.mx("gone.test") == [MXHost(10, "mx.gone.test")]
    assert await res.mx("gone.test") == [MXHost(10, "mx.gone.test")]
    with pytest.raises(TemporaryDNSError):  # never asked before: goes to the (dead) server
        await res.addresses("mx.gone.test")


async def test_cache_off(knot):
    res = Resolver(["127.0.0.1"], knot.port, timeout=3, cache=False)
    asked = counting(res)
    await res.txt("dest.test")
    await res.txt("dest.test")
    assert len(asked) == 2


async def test_cache_expires_with_the_ttl(resolver):
    asked = counting(resolver)
    assert await resolver.addresses("short.dest.test") == ["127.0.0.7"]
    assert await resolver.addresses("short.dest.test") == ["127.0.0.7"]
    # A (TTL 1) and the AAAA NODATA (SOA minimum 60)
    assert sorted(asked) == [("short.dest.test.", "A"), ("short.dest.test.", "AAAA")]
    await asyncio.sleep(1.5)
    assert await resolver.addresses("short.dest.test") == ["127.0.0.7"]
    assert sorted(asked) == [
        ("short.dest.test.", "A"),
        ("short.dest.test.", "A"),
        ("short.dest.test.", "AAAA"),
    ]


async def test_nxdomain_is_cached(resolver):
    asked = counting(resolver)
    for _ in range(3):
        with pytest.raises(NoSuchDomain):
            await resolver.mx("nothere.dest.test")
    assert asked == [("nothere.dest.test.", "MX")]


async def test_cache_is_bounded(knot):
    res = Resolver(["127.0.0.1"], knot.port, timeout=3, cache_size=2)
    asked = counting(res)
    for name in ("mx1.dest.test", "mx2.dest.test", "mx3.dest.test"):
        await res.txt(name)
    assert len(res._cache) == 2
    await res.txt("mx3.dest.test")  # still cached
    await res.txt("mx1.dest.test")  # the oldest, evicted
    assert len(asked) == 4


@pytest.fixture
def servfail_server():
    """A UDP DNS server on loopback that answers SERVFAIL to everything; yields its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = dns.message.make_response(dns.message.from_wire(data))
            reply.set_rcode(dns.rcode.SERVFAIL)
            sock.sendto(reply.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(2)
    sock.close()


async def test_servfail_is_not_cached(servfail_server):
    res = Resolver(["127.0.0.1"], servfail_server, timeout=1)
    asked = counting(res)
    for _ in range(2):
        with pytest.raises(TemporaryDNSError):
            await res.txt("dest.test")
    assert len(asked) == 2
    assert not res._cache


async def test_timeout_is_not_cached():
    res = Resolver(["127.0.0.1"], free_udp_tcp_port(), timeout=0.3)
    asked = counting(res)
    for _ in range(2):
        with pytest.raises(TemporaryDNSError):
            await res.txt("dest.test")
    assert len(asked) == 2
    assert not res._cache
