"""gomail.dns against a real authoritative server (knot) on loopback."""

from __future__ import annotations

import pytest
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
from knotbed import Knot, free_udp_tcp_port, requires_knot

pytestmark = requires_knot

ZONES = {
    "dest.test": (
        "@ MX 20 mx2\n@ MX 10 mx1\n@ MX 20 mx3\n"
        "mx1 A 127.0.0.2\nmx2 A 127.0.0.3\nmx2 AAAA ::1\nmx3 A 127.0.0.4\n"
        '@ TXT "v=spf1 " "ip4:127.0.0.0/8 -all"\n'
        "noaddr TXT hello\n"
    ),
    "implicit.test": "@ A 127.0.0.5\n",
    "nullmx.test": "@ MX 0 .\n",
    "bare.test": "www A 127.0.0.6\n",
}


@pytest.fixture(scope="module")
def knot(tmp_path_factory):
    server = Knot(tmp_path_factory.mktemp("knot"), ZONES).start()
    yield server
    server.stop()


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
