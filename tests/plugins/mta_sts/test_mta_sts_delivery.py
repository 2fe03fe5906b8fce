"""The mta-sts plugin in the queue runner, against real peers on loopback.

- knot serves the zone ``test``: the destination domains' MX, ``_mta-sts`` TXT and
  ``mta-sts`` A records, and the MX hosts;
- an aiohttp HTTPS server on 127.0.0.5 serves each domain's policy file (what ``Web.serve``
  says) with a trustme certificate for ``mta-sts.<domain>``;
- aiosmtpd MX servers offer STARTTLS: 127.0.0.2 ``good.mx.test`` with a right certificate,
  127.0.0.3 ``bad.mx.test`` with a certificate for another name, 127.0.0.4 ``rogue.mx.test``
  with one for its name from a CA nobody trusts, 127.0.0.6 ``plain.mx.test`` without TLS.

The runner is driven with ``run_once``, through a pipeline file whose outbound ``tls_policy``
stage names ``mta-sts``, as ``gomail run`` would load it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

import pytest
import trustme
from aiohttp import web
from gomail.delivery import QueueRunner
from gomail.server import load_plugins
from gomail.store import Delivery
from gomail_mta_sts import NAMESPACE, Policy, policies_of
from knotbed import Knot, knot_fixture, requires_knot
from mxbed import MXServers, free_port_on
from queuebed import delivery_config, make_app, open_store, outbound_pipelines

pytestmark = requires_knot

WEB = "127.0.0.5"
GOOD, BAD, ROGUE, PLAIN = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.6"
# domain -> its MX records (relative to the zone "test")
DOMAINS = {
    "ok": ["10 good.mx"],
    "badcert": ["10 bad.mx"],
    "rogue": ["10 rogue.mx"],
    "skip": ["10 plain.mx", "20 good.mx"],
    "onlyplain": ["10 plain.mx"],
    "testing": ["10 bad.mx"],
    "cached": ["10 bad.mx"],
    "none": ["10 bad.mx"],
    "badfile": ["10 bad.mx"],
    "nocert": ["10 bad.mx"],  # its policy host's certificate is not for its name
    "change": ["10 bad.mx"],
    "busy": ["10 good.mx"],
    "notls": ["10 plain.mx"],
}
HOSTS = {"good.mx": GOOD, "bad.mx": BAD, "rogue.mx": ROGUE, "plain.mx": PLAIN}


def zone(ids: dict[str, str]) -> str:
    lines = [f"{h} A {ip}" for h, ip in HOSTS.items()]
    for d, mxs in DOMAINS.items():
        lines += [f"{d} MX {mx}" for mx in mxs]
        lines.append(f'_mta-sts.{d} TXT "v=STSv1; id={ids.get(d, "1")};"')
        lines.append(f"mta-sts.{d} A {WEB}")
    return "\n".join(lines) + "\n"


def policy(mode: str, *mx: str, max_age: int = 86400) -> str:
    lines = ["version: STSv1", f"mode: {mode}", *[f"mx: {m}" for m in mx], f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


knot = knot_fixture({"test": zone({})})


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def mx(ca):
    other_ca = trustme.CA()
    tls = {
        GOOD: server_context(ca.issue_cert("good.mx.test")),
        BAD: server_context(ca.issue_cert("wrong.example")),
        ROGUE: server_context(other_ca.issue_cert("rogue.mx.test")),
    }
    servers = MXServers([GOOD, BAD, ROGUE, PLAIN], tls=tls).start()
    yield servers
    servers.stop()


@pytest.fixture(autouse=True)
def _clear_sinks(mx):
    for sink in mx.sinks.values():
        sink.messages.clear()
        sink.tls_sessions = 0


class Web:
    """The policy web server: ``serve(domain, body, ...)`` sets what mta-sts.<domain> answers;
    ``requests`` lists the domains asked, in order."""

    def __init__(self, ca: trustme.CA) -> None:
        names = [f"mta-sts.{d}.test" for d in DOMAINS if d != "nocert"]
        self.ssl = server_context(ca.issue_cert(*names))
        self.port = free_port_on(WEB)
        self.served: dict[str, web.Response] = {}
        self.requests: list[str] = []
        self.runner: web.AppRunner | None = None

    def serve(self, domain: str, body: str, status: int = 200, ctype: str = "text/plain", **hdrs):
        self.served[domain] = (status, body, ctype, hdrs)

    async def handle(self, request: web.Request) -> web.Response:
        domain = request.host.split(":")[0].removeprefix("mta-sts.").removesuffix(".test")
        self.requests.append(domain)
        if domain not in self.served:
            return web.Response(status=404, text="no policy")
        status, body, ctype, hdrs = self.served[domain]
        return web.Response(status=status, text=body, content_type=ctype, headers=hdrs)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/mta-sts.txt", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, WEB, self.port, ssl_context=self.ssl).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def policy_web(ca):
    server = Web(ca)
    await server.start()
    yield server
    await server.stop()


class Env:
    """A store, and apps/runners on it (``new_runner`` for a restart on the same store)."""

    def __init__(self, tmp_path, config, store, knot, mx, web, ca_file) -> None:
        self.tmp, self.knot, self.mx, self.web, self.ca_file = tmp_path, knot, mx, web, ca_file
        self.config, self.store = config, store
        self.runners: list[QueueRunner] = []
        text = (
            "outbound:\n"
            f"  tls_policy: [{{mta-sts: {{ca_file: {ca_file}, https_port: {web.port},"
            " fetch_timeout: 5}}]\n"
        )
        self.plugins = load_plugins()
        self.pipes = outbound_pipelines(tmp_path, text, self.plugins)

    def new_runner(self, dns_port: int | None = None) -> QueueRunner:
        port = dns_port or self.knot.port
        app = make_app(self.config, self.store, port, self.plugins, self.pipes)
        app.emit = lambda name, **data: None
        runner = QueueRunner(app)
        self.runners.append(runner)
        return runner

    async def enqueue(self, rcpt: str, qid: str = "Q1") -> None:
        sender = "alice@local.test"
        raw = (
            f"Return-Path: <{sender}>\r\nFrom: <{sender}>\r\nTo: <{rcpt}>\r\n"
            f"Subject: test {qid}\r\nMessage-ID: <{qid}@local.test>\r\n\r\nHi.\r\n"
        ).encode()
        await self.store.deliver(Delivery(qid, sender, raw, outbound=(rcpt,)))

    async def send(self, rcpt: str, qid: str = "Q1") -> None:
        """Queue one message to rcpt and run one pass of a new runner."""
        await self.enqueue(rcpt, qid)
        await self.new_runner().run_once()

    async def queued(self):
        return await self.store.list_queue()

    def got(self, ip: str) -> list[list[str]]:
        return [m[1] for m in self.mx.sinks[ip].messages]


@pytest.fixture
async def env(tmp_path, knot, mx, policy_web, ca_file):
    config = delivery_config(tmp_path, mx.port)
    e = Env(tmp_path, config, await open_store(config), knot, mx, policy_web, ca_file)
    yield e
    for r in e.runners:
        await r.stop()
    await e.store.close()


@pytest.fixture
def sts_log(caplog):
    caplog.set_level(logging.INFO, logger="gomail.mta-sts")
    return caplog


def warnings_of(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "gomail.mta-sts" and r.levelno >= logging.WARNING
    ]


# --- enforce --------------------------------------------------------------------------------


async def test_enforce_right_certificate_delivers_over_tls(env):
    env.web.serve("ok", policy("enforce", "good.mx.test"))
    await env.send("bob@ok.test")
    assert env.got(GOOD) == [["bob@ok.test"]]
    assert env.mx.sinks[GOOD].tls_sessions == 1
    assert await env.queued() == []
    stored = await env.store.plugin_get(NAMESPACE, "ok.test")
    p = Policy.from_json(stored)
    assert (p.id, p.mode, p.mx, p.max_age) == ("1", "enforce", ("good.mx.test",), 86400)
    assert abs(p.fetched - time.time()) < 60


@pytest.mark.parametrize("domain, ip", [("badcert", BAD), ("rogue", ROGUE)])
async def test_enforce_wrong_certificate_defers_without_plaintext(env, domain, ip):
    env.web.serve(domain, policy("enforce", "*.mx.test"))
    await env.send(f"bob@{domain}.test")
    assert env.got(ip) == []  # neither over TLS nor in plaintext
    [entry] = await env.queued()
    assert entry.state == "deferred" and entry.attempts == 1
    assert entry.last_error.startswith("451 4.7.5")
    assert "mta-sts" in entry.last_error and "certificate" in entry.last_error
    assert env.web.requests == [domain]


async def test_enforce_skips_mx_host_outside_policy(env):
    env.web.serve("skip", policy("enforce", "good.mx.test"))
    env.web.serve("onlyplain", policy("enforce", "good.mx.test"))
    await env.enqueue("bob@skip.test", qid="Q1")
    await env.enqueue("carol@onlyplain.test", qid="Q2")
    await env.new_runner().run_once()  # both in one pass
    assert env.got(PLAIN) == []  # the preferred MX is not in the policy
    assert env.got(GOOD) == [["bob@skip.test"]]
    [entry] = await env.queued()
    assert entry.recipient == "carol@onlyplain.test" and entry.state == "deferred"
    assert entry.last_error.startswith("451 4.7.5 plain.mx.test:")
    assert "not an MX host" in entry.last_error and "mta-sts" in entry.last_error.lower()


async def test_enforce_host_without_starttls_gets_no_plaintext(env):
    env.web.serve("notls", policy("enforce", "plain.mx.test"))
    await env.send("bob@notls.test")
    assert env.got(PLAIN) == []
    [entry] = await env.queued()
    assert entry.last_error.startswith("451 4.7.5")
    assert "STARTTLS" in entry.last_error and "mta-sts" in entry.last_error


# --- testing and none -----------------------------------------------------------------------


async def test_testing_mode_delivers_and_warns(env, sts_log):
    env.web.serve("testing", policy("testing", "*.mx.test"))
    await env.send("bob@testing.test")
    assert env.got(BAD) == [["bob@testing.test"]]
    assert env.mx.sinks[BAD].tls_sessions == 1
    assert await env.queued() == []
    [warning] = warnings_of(sts_log)
    assert "testing.test" in warning and "bad.mx.test" in warning
    assert "not valid for bad.mx.test" in warning


async def test_testing_mode_host_outside_policy_is_only_logged(env, sts_log):
    env.web.serve("testing", policy("testing", "good.mx.test"))
    await env.send("bob@testing.test")
    assert env.got(BAD) == [["bob@testing.test"]]
    assert any("bad.mx.test" in w and "allows" in w for w in warnings_of(sts_log))


async def test_mode_none_changes_nothing(env, sts_log):
    env.web.serve("none", policy("none"))
    await env.send("bob@none.test")
    assert env.got(BAD) == [["bob@none.test"]]
    assert env.web.requests == ["none"]
    assert warnings_of(sts_log) == []
    assert Policy.from_json(await env.store.plugin_get(NAMESPACE, "none.test")).mode == "none"


# --- the cache ------------------------------------------------------------------------------


async def test_cached_policy_enforced_after_restart_without_web_server(env):
    env.web.serve("cached", policy("enforce", "good.mx.test"))
    await env.send("bob@cached.test", qid="Q1")
    assert env.got(BAD) == []
    assert env.web.requests == ["cached"]
    await env.web.stop()  # an attacker blocks the policy host
    runner = env.new_runner()  # a new App: nothing in its memory
    await env.enqueue("carol@cached.test", qid="Q2")
    await runner.run_once(time.time() + 3600)  # the first message is due again too
    assert env.got(BAD) == []  # still enforced: bad.mx is not in the stored policy
    entries = await env.queued()
    assert sorted(e.recipient for e in entries) == ["bob@cached.test", "carol@cached.test"]
    assert all("4.7.5" in e.last_error for e in entries)


async def test_same_txt_id_fetches_once(env):
    env.web.serve("ok", policy("enforce", "good.mx.test"))
    runner = env.new_runner()
    for i in range(3):  # three at once
        await env.enqueue("bob@ok.test", qid=f"A{i}")
    await runner.run_once()
    await env.enqueue("carol@ok.test", qid="B")  # and one later
    await runner.run_once()
    assert len(env.got(GOOD)) == 4
    assert env.web.requests == ["ok"]


async def test_many_attempts_at_once_share_one_fetch(env):
    # three domains' worth of concurrency is not needed: per_domain connections run together
    env.config.delivery_per_domain = 10
    env.web.serve("busy", policy("enforce", "good.mx.test"))
    runner = env.new_runner()
    for i in range(6):
        await env.enqueue(f"u{i}@busy.test", qid=f"C{i}")
    await runner.run_once()
    assert len(env.got(GOOD)) == 6
    assert env.web.requests == ["busy"]


async def test_policy_in_use_is_fetched_again_after_a_day(env):
    env.web.serve("ok", policy("enforce", "good.mx.test", max_age=30 * 86400))
    runner = env.new_runner()
    await env.enqueue("bob@ok.test", qid="R1")
    await runner.run_once()
    await env.enqueue("bob@ok.test", qid="R2")
    await runner.run_once()
    assert env.web.requests == ["ok"]  # the same id an hour later: no fetch
    later = time.time() + 2 * 86400
    policies_of(runner.app).clock = lambda: later
    env.web.serve("ok", policy("enforce", "good.mx.test", "*.mx.test", max_age=30 * 86400))
    await env.enqueue("bob@ok.test", qid="R3")
    await runner.run_once()
    assert env.web.requests == ["ok", "ok"]
    p = Policy.from_json(await env.store.plugin_get(NAMESPACE, "ok.test", later))
    assert p.mx == ("good.mx.test", "*.mx.test") and p.fetched == later
    assert len(env.got(GOOD)) == 3


async def test_new_txt_id_refetches_and_none_replaces_enforce(env, tmp_path):
    env.web.serve("change", policy("enforce", "good.mx.test"))
    await env.send("bob@change.test", qid="Q1")
    assert env.got(BAD) == []  # enforced
    with Knot(tmp_path / "knot2", {"test": zone({"change": "2"})}).start() as knot2:
        env.web.serve("change", policy("none"))
        await env.new_runner(knot2.port).run_once(time.time() + 3600)
    assert env.got(BAD) == [["bob@change.test"]]
    assert env.web.requests == ["change", "change"]
    p = Policy.from_json(await env.store.plugin_get(NAMESPACE, "change.test"))
    assert (p.id, p.mode) == ("2", "none")


async def test_failed_refetch_keeps_the_cached_policy(env, tmp_path, sts_log):
    env.web.serve("change", policy("enforce", "good.mx.test"))
    await env.send("bob@change.test", qid="Q1")
    with Knot(tmp_path / "knot2", {"test": zone({"change": "3"})}).start() as knot2:
        env.web.serve("change", "garbage", ctype="text/html")  # the new policy is not usable
        await env.new_runner(knot2.port).run_once(time.time() + 3600)
    assert env.got(BAD) == []  # the old enforce policy still holds
    assert env.web.requests == ["change", "change"]
    assert any("stays" in w for w in warnings_of(sts_log))
    p = Policy.from_json(await env.store.plugin_get(NAMESPACE, "change.test"))
    assert (p.id, p.mode) == ("1", "enforce")


# --- policies that do not count -------------------------------------------------------------


@pytest.mark.parametrize(
    "domain, serve, words",
    [
        ("badfile", dict(ctype="text/html"), "text/html"),
        ("badfile", dict(body="mode: enforce\nmx: good.mx.test\nmax_age: 600\n"), "version"),
        ("badfile", dict(status=302, Location="https://elsewhere.test/p.txt"), "302"),
        ("badfile", dict(status=404), "404"),
        ("badfile", dict(body="x" * (65 * 1024)), "over"),
        ("nocert", {}, "certificate"),
    ],
    ids=["content-type", "no-version", "redirect", "not-found", "too-big", "wrong-cert"],
)
async def test_bad_policy_means_no_policy(env, sts_log, domain, serve, words):
    body = serve.pop("body", policy("enforce", "good.mx.test"))
    env.web.serve(domain, body, **serve)
    await env.send(f"bob@{domain}.test")
    assert env.got(BAD) == [[f"bob@{domain}.test"]]  # opportunistic, as without MTA-STS
    assert await env.queued() == []
    assert await env.store.plugin_get(NAMESPACE, f"{domain}.test") is None
    [warning] = warnings_of(sts_log)
    assert f"{domain}.test" in warning and words in warning


async def test_no_txt_record_means_no_fetch(env):
    await env.send("bob@bad.mx.test")  # a domain without _mta-sts: implicit MX, itself
    assert env.web.requests == []
    assert env.got(BAD) == [["bob@bad.mx.test"]]


async def test_stage_timeout_does_not_cancel_shared_fetch(env):
    """A caller that gives up (its stage timed out) leaves the look-up to the others."""
    env.web.serve("ok", policy("enforce", "good.mx.test"))
    runner = env.new_runner()
    policies = policies_of(runner.app)
    opts = {"ca_file": env.ca_file, "https_port": env.web.port, "fetch_timeout": 5}
    first = asyncio.ensure_future(policies.get("ok.test", opts))
    second = asyncio.ensure_future(policies.get("ok.test", opts))
    await asyncio.sleep(0)
    first.cancel()
    p = await asyncio.wait_for(second, 10)
    assert p is not None and p.mode == "enforce"
    assert env.web.requests == ["ok"]


class FakeDane:
    """Stands in for the dane plugin: it authenticates every host (its check passes)."""

    def gomail_tls_policy(self, policy):
        policy.authenticate("fakedane", lambda peer: None)


async def test_a_host_dane_authenticates_is_left_to_dane(env):
    # RFC 8461 2: MTA-STS must not override DANE; bad.mx's certificate is not valid for its
    # name (MTA-STS would refuse it), but DANE vouches for it.
    env.plugins.register(FakeDane(), "fakedane")
    text = (
        "outbound:\n"
        f"  tls_policy: [fakedane, {{mta-sts: {{ca_file: {env.ca_file},"
        f" https_port: {env.web.port}}}}}]\n"
    )
    env.pipes = outbound_pipelines(env.tmp, text, env.plugins)
    env.web.serve("badcert", policy("enforce", "*.mx.test"))
    await env.send("bob@badcert.test")
    assert env.got(BAD) == [["bob@badcert.test"]]
    assert env.mx.sinks[BAD].tls_sessions == 1
    assert env.web.requests == []  # MTA-STS was not even asked


async def test_testing_mode_warns_when_the_host_offers_no_starttls(env, sts_log):
    env.web.serve("notls", policy("testing", "plain.mx.test"))
    await env.send("bob@notls.test")
    assert env.got(PLAIN) == [["bob@notls.test"]]  # testing never holds mail back
    [warning] = warnings_of(sts_log)
    assert "notls.test" in warning and "does not offer STARTTLS" in warning
