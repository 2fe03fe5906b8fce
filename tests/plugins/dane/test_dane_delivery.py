"""The dane plugin in the queue runner, against real daemons on loopback.

knot serves ``dane.test`` signed (DNSSEC, its own keys) and ``plain.test`` unsigned; unbound
validates in front of it with the signed zone's key as trust anchor, and gomail's resolver asks
unbound with ``dnssec`` on. The MX hosts are aiosmtpd servers (tests/mxbed.py): 127.0.0.2 offers
STARTTLS with certificate A (issued by an intermediate of CA A), 127.0.0.3 with certificate B
(another CA), 127.0.0.4 offers no STARTTLS. Each destination below is a subdomain of dane.test
with its own MX records; the MX host names carry the TLSA records of one case each.
"""

from __future__ import annotations

import hashlib
import ssl
import time

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from gomail.delivery import QueueRunner
from gomail.dns import Resolver
from gomail.plugins import PluginManager
from gomail.store import Delivery
from knotbed import Knot, requires_knot
from mxbed import MXServers
from queuebed import delivery_config, make_app, open_store, outbound_pipelines
from unboundbed import Unbound, requires_unbound

pytestmark = [requires_knot, requires_unbound]

TLS_A, TLS_B, NO_TLS = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def _cert(blob: trustme.Blob) -> x509.Certificate:
    return x509.load_pem_x509_certificate(blob.bytes())


def tlsa(usage: int, selector: int, cert: x509.Certificate) -> str:
    """A TLSA record's data (matching type SHA-256) for cert."""
    if selector == 0:
        data = cert.public_bytes(Encoding.DER)
    else:
        data = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return f"TLSA {usage} {selector} 1 {hashlib.sha256(data).hexdigest()}"


class PKI:
    def __init__(self) -> None:
        root_a = trustme.CA()
        self.inter_a = root_a.create_child_ca()
        self.leaf_a = self.inter_a.issue_cert(
            "ee-ok.mx.dane.test", "ta-ok.mx.dane.test", "nexthop.dane.test", "mx.plain.test"
        )
        self.leaf_b = trustme.CA().issue_cert("ee-ok2.mx.dane.test")
        self.ctx_a = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.leaf_a.configure_cert(self.ctx_a)  # sends leaf A + the intermediate
        self.ctx_b = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.leaf_b.configure_cert(self.ctx_b)
        self.cert_a = _cert(self.leaf_a.cert_chain_pems[0])
        self.cert_b = _cert(self.leaf_b.cert_chain_pems[0])
        self.ta_a = _cert(self.inter_a.cert_pem)

    def zones(self) -> dict[str, str]:
        a, b, ta = self.cert_a, self.cert_b, self.ta_a
        bad_ds = "12345 13 2 " + "ab" * 32  # no such key: the child zone is bogus
        signed = f"""
ee MX 10 ee-ok.mx
eebad MX 10 ee-bad.mx
ta MX 10 ta-ok.mx
tabadname MX 10 ta-badname.mx
nexthop MX 10 ta-nh.mx
notls MX 10 notls.mx
unusable MX 10 unusable.mx
unusable-tls MX 10 unusable-tls.mx
two MX 10 ee-bad.mx
two MX 20 ee-ok2.mx
nodane MX 10 nodane.mx
bogus MX 10 bogus.mx
ee-ok.mx A {TLS_A}
_25._tcp.ee-ok.mx {tlsa(3, 1, a)}
ee-bad.mx A {TLS_A}
_25._tcp.ee-bad.mx {tlsa(3, 1, b)}
ta-ok.mx A {TLS_A}
_25._tcp.ta-ok.mx {tlsa(2, 0, ta)}
ta-badname.mx A {TLS_A}
_25._tcp.ta-badname.mx {tlsa(2, 0, ta)}
ta-nh.mx A {TLS_A}
_25._tcp.ta-nh.mx {tlsa(2, 1, ta)}
notls.mx A {NO_TLS}
_25._tcp.notls.mx {tlsa(3, 1, a)}
unusable.mx A {NO_TLS}
_25._tcp.unusable.mx {tlsa(1, 1, a)}
unusable-tls.mx A {TLS_B}
_25._tcp.unusable-tls.mx {tlsa(1, 1, a)}
ee-ok2.mx A {TLS_B}
_25._tcp.ee-ok2.mx {tlsa(3, 0, b)}
nodane.mx A {NO_TLS}
bogus.mx A {TLS_A}
_tcp.bogus.mx NS ns
_tcp.bogus.mx DS {bad_ds}
"""
        plain = f"""
@ MX 10 mx
mx A {TLS_A}
_25._tcp.mx {tlsa(3, 1, b)}
tosigned MX 10 ee-bad.mx.dane.test.
broken MX 10 brokenmx
brokenmx A {TLS_A}
_tcp.brokenmx NS ns.dead
ns.dead A 127.0.0.9
"""
        bogus_child = f"_25 {tlsa(3, 1, a)}\n"
        return {
            "dane.test": signed,
            "plain.test": plain,
            "_tcp.bogus.mx.dane.test": bogus_child,
        }


@pytest.fixture(scope="module")
def pki():
    return PKI()


@pytest.fixture(scope="module")
def dnsbed(tmp_path_factory, pki):
    with (
        Knot(tmp_path_factory.mktemp("knot"), pki.zones(), signed={"dane.test"}).start() as knot,
        Unbound(tmp_path_factory.mktemp("unbound"), knot, [knot.ksk("dane.test")]).start() as ub,
    ):
        yield ub


@pytest.fixture
def mx(pki):
    servers = MXServers([TLS_A, TLS_B, NO_TLS], tls={TLS_A: pki.ctx_a, TLS_B: pki.ctx_b})
    servers.start()
    yield servers
    servers.stop()


class Env:
    def __init__(self, app, runner, mx) -> None:
        self.app, self.runner, self.mx = app, runner, mx
        self.store = app.store

    async def send(self, recipient: str) -> None:
        """Queue one message to recipient and run one pass of the queue."""
        raw = b"From: <alice@local.test>\r\nSubject: dane\r\nMessage-ID: <q@x>\r\n\r\nHi.\r\n"
        await self.store.deliver(Delivery("Q1", "alice@local.test", raw, outbound=(recipient,)))
        await self.runner.run_once()

    def delivered(self, host: str) -> list[str]:
        return [r for m in self.mx.sinks[host].messages for r in m[1]]

    def tls(self, host: str) -> int:
        return self.mx.sinks[host].tls_sessions

    def nothing_delivered(self) -> bool:
        return all(not s.messages for s in self.mx.sinks.values())

    async def held(self, recipient: str) -> str:
        """Send to recipient, which must reach no MX and be deferred: the deferral's error."""
        await self.send(recipient)
        assert self.nothing_delivered()
        return await self.deferred()

    async def deferred(self) -> str:
        [entry] = await self.store.list_queue()
        assert entry.state == "deferred" and entry.attempts == 1
        return entry.last_error


@pytest.fixture
async def make_env(tmp_path, dnsbed, mx):
    made = []

    async def make(tls_policy: str = "[dane]", dnssec: bool = True) -> Env:
        config = delivery_config(tmp_path, mx.port)
        store = await open_store(config, users=())
        plugins = PluginManager()
        plugins.load_entrypoints()
        text = f"pipelines: {{}}\noutbound:\n  tls_policy: {tls_policy}\n"
        pipes = outbound_pipelines(tmp_path, text, plugins)
        app = make_app(config, store, dnsbed.port, plugins, pipes, dnssec=dnssec)
        app.emit = lambda name, **data: None
        env = Env(app, QueueRunner(app), mx)
        made.append(env)
        return env

    yield make
    for env in made:
        await env.runner.stop()
        await env.store.close()


@pytest.fixture
async def env(make_env):
    return await make_env()


# --- the resolver's DNSSEC look-ups, through unbound ----------------------------------------


async def test_secure_query_reports_the_ad_bit(dnsbed):
    dns = Resolver(["127.0.0.1"], dnsbed.port, 3, dnssec=True)
    answer = await dns.tlsa("_25._tcp.ee-ok.mx.dane.test")
    assert answer.secure and len(answer.records) == 1 and answer.records[0].usage == 3
    insecure = await dns.tlsa("_25._tcp.mx.plain.test")
    assert insecure.records and not insecure.secure  # unsigned zone: no AD
    denial = await dns.tlsa("_25._tcp.nodane.mx.dane.test")
    assert denial.secure and denial.nxdomain and not denial.records  # signed NXDOMAIN
    nodata = await dns.secure_query("ee-ok.mx.dane.test", "AAAA")
    assert nodata.secure and not nodata.nxdomain and not nodata.records
    assert (await dns.tlsa("_25._tcp.ee-ok.mx.dane.test")) is answer  # cached, secure kept
    with pytest.raises(Exception, match="SERVFAIL|no DNS server answered"):
        await dns.tlsa("_25._tcp.bogus.mx.dane.test")  # DS without the key: bogus


async def test_ad_bit_is_not_trusted_without_dnssec_config(dnsbed):
    dns = Resolver(["127.0.0.1"], dnsbed.port, 3)
    answer = await dns.tlsa("_25._tcp.ee-ok.mx.dane.test")
    assert answer.records and not answer.secure


# --- DANE in delivery ---------------------------------------------------------------------


async def test_dane_ee_match_delivers_over_tls(env):
    await env.send("bob@ee.dane.test")
    assert env.delivered(TLS_A) == ["bob@ee.dane.test"]
    assert env.tls(TLS_A) == 1
    assert await env.store.list_queue() == []


async def test_dane_ee_mismatch_defers_and_never_sends(env):
    error = await env.held("bob@eebad.dane.test")
    assert "4.7.5" in error and "dane: no TLSA record matches" in error
    assert "ee-bad.mx.dane.test" in error


async def test_dane_ta_match_with_the_mx_name_delivers(env):
    await env.send("bob@ta.dane.test")
    assert env.delivered(TLS_A) == ["bob@ta.dane.test"] and env.tls(TLS_A) == 1


async def test_dane_ta_spki_with_the_destination_name_delivers(env):
    # ta-nh.mx.dane.test is not in the certificate, the destination nexthop.dane.test is
    await env.send("bob@nexthop.dane.test")
    assert env.delivered(TLS_A) == ["bob@nexthop.dane.test"] and env.tls(TLS_A) == 1


async def test_dane_ta_wrong_name_defers(env):
    error = await env.held("bob@tabadname.dane.test")
    assert "4.7.5" in error and "dane: DANE-TA" in error
    assert "not valid for ta-badname.mx.dane.test" in error


async def test_no_starttls_with_secure_tlsa_defers_never_plaintext(env):
    error = await env.held("bob@notls.dane.test")
    assert "4.7.5" in error and "does not offer STARTTLS" in error and "dane" in error


async def test_unusable_records_still_require_tls(env):
    error = await env.held("bob@unusable.dane.test")  # PKIX-EE only, host without STARTTLS
    assert "does not offer STARTTLS; TLS is required by dane" in error


async def test_unusable_records_with_tls_deliver_unauthenticated(env):
    await env.send("bob@unusable-tls.dane.test")  # PKIX-EE of another cert: not checked
    assert env.delivered(TLS_B) == ["bob@unusable-tls.dane.test"] and env.tls(TLS_B) == 1


async def test_first_mx_mismatches_second_matches(env):
    await env.send("bob@two.dane.test")
    assert env.delivered(TLS_A) == []  # refused after the handshake, before MAIL FROM
    assert env.delivered(TLS_B) == ["bob@two.dane.test"] and env.tls(TLS_B) == 1
    assert await env.store.list_queue() == []


async def test_secure_denial_means_no_dane(env):
    await env.send("bob@nodane.dane.test")  # no TLSA, no STARTTLS: plaintext as usual
    assert env.delivered(NO_TLS) == ["bob@nodane.dane.test"] and env.tls(NO_TLS) == 0


async def test_insecure_zone_is_opportunistic(env):
    # plain.test is unsigned: its (mismatching) TLSA record is not believed
    await env.send("bob@plain.test")
    assert env.delivered(TLS_A) == ["bob@plain.test"] and env.tls(TLS_A) == 1


async def test_bogus_tlsa_defers_instead_of_plaintext(env):
    t0 = time.monotonic()
    error = await env.held("bob@bogus.dane.test")
    assert "4.7.5" in error and "DNSSEC look-up failed" in error and "bogus.mx" in error
    assert time.monotonic() - t0 < 10


async def test_insecure_mx_ignores_the_hosts_tlsa_unless_told(make_env):
    # tosigned.plain.test (unsigned) names ee-bad.mx.dane.test, whose TLSA mismatches
    env = await make_env()
    await env.send("bob@tosigned.plain.test")
    assert env.delivered(TLS_A) == ["bob@tosigned.plain.test"]  # RFC 7672 2.2.1


async def test_require_secure_mx_false_uses_the_hosts_tlsa(make_env):
    env = await make_env("[{dane: {require_secure_mx: false}}]")
    assert "dane: no TLSA record matches" in await env.held("bob@tosigned.plain.test")


async def test_insecure_host_is_not_asked_for_tlsa(make_env):
    # brokenmx.plain.test's TLSA look-up would fail (its _tcp subzone has no server), but the
    # host's own records are insecure: DANE cannot apply, so nothing is asked and nothing held
    env = await make_env("[{dane: {require_secure_mx: false}}]")
    await env.send("bob@broken.plain.test")
    assert env.delivered(TLS_A) == ["bob@broken.plain.test"]


async def test_without_dnssec_config_dane_does_nothing(make_env):
    env = await make_env(dnssec=False)
    await env.send("bob@eebad.dane.test")
    assert env.delivered(TLS_A) == ["bob@eebad.dane.test"]  # opportunistic TLS, any cert
