"""The outbound pipeline's stages (throttle, route, tls_policy) as the queue runner runs them.

Real DNS (knot) and real SMTP servers (aiosmtpd, tests/mxbed.py) on loopback; the plugins are
small test classes registered like any other, and the pipeline comes from a YAML file.
"""

from __future__ import annotations

import ssl
import time

import pytest
import trustme
from gomail.delivery import QueueRunner
from gomail.delivery.policy import PeerTLS
from gomail.dns import MXHost
from gomail.pipeline import load_pipelines
from gomail.plugins import PluginManager
from gomail.store import Delivery
from gomail.verdict import Verdict
from knotbed import knot_fixture, requires_knot
from mxbed import MXServers
from queuebed import delivery_config, make_app, open_store, outbound_pipelines

pytestmark = requires_knot

ZONES = {
    "dest.test": "@ MX 10 mx1\n@ MX 20 mx2\nmx1 A 127.0.0.2\nmx2 A 127.0.0.3\n",
    "other.test": "@ MX 10 mx\nmx A 127.0.0.3\n",
    "nullmx.test": "@ MX 0 .\n",
}


class Router:
    """route: what the test says (a list of MX hosts, a verdict, or an exception)."""

    def __init__(self) -> None:
        self.mx: list[MXHost] | None = None
        self.verdict: Verdict | None = None
        self.fail = False
        self.seen: list[tuple[str, list[str], int]] = []

    async def gomail_route(self, attempt):
        self.seen.append((attempt.domain, list(attempt.recipients), attempt.attempts))
        if self.fail:
            raise RuntimeError("router broke")
        if self.mx is not None:
            attempt.mx = self.mx
        return self.verdict


class Policy:
    """tls_policy: require TLS and/or check the chain, per host, as the test says."""

    def __init__(self) -> None:
        self.require: set[str] = set()
        self.refuse_cert: set[str] = set()  # hosts whose certificate the check refuses
        self.skip: set[str] = set()  # hosts the plugin skips with a tempfail
        self.peers: list[PeerTLS] = []

    def gomail_tls_policy(self, attempt, mx, policy):
        if mx.host in self.skip:
            return Verdict.tempfail(451, "4.7.5", f"{mx.host} is not allowed")
        if mx.host in self.require:
            policy.require("testpolicy")

            def check(peer: PeerTLS) -> str | None:
                self.peers.append(peer)
                return "certificate refused" if peer.host in self.refuse_cert else None

            policy.add_check("testpolicy", check)
        return None


knot = knot_fixture(ZONES)


@pytest.fixture(scope="module")
def certs():
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx1.dest.test").configure_cert(ctx)
    return ctx


@pytest.fixture
def mx(certs):
    # 127.0.0.2 offers STARTTLS; 127.0.0.3 does not
    servers = MXServers(["127.0.0.2", "127.0.0.3"], tls={"127.0.0.2": certs}).start()
    yield servers
    servers.stop()


class Env:
    def __init__(self, app, runner, mx, router, policy) -> None:
        self.app, self.runner, self.mx = app, runner, mx
        self.router, self.policy = router, policy
        self.store = app.store
        self.events: list[tuple[str, dict]] = []
        app.emit = lambda name, **data: self.events.append((name, data))

    async def enqueue(self, recipients, qid="Q1", sender="alice@local.test"):
        raw = f"From: <{sender}>\r\nSubject: {qid}\r\nMessage-ID: <{qid}@x>\r\n\r\nHi.\r\n"
        await self.store.deliver(Delivery(qid, sender, raw.encode(), outbound=tuple(recipients)))

    def delivered(self, host: str) -> list[str]:
        return [r for m in self.mx.sinks[host].messages for r in m[1]]

    def names(self) -> list[str]:
        return [n for n, _d in self.events]


OUTBOUND = """\
pipelines: {}
outbound:
  throttle:   [{throttle: {per_minute: 2, domains: {other.test: 0}}}]
  route:      [{router: {on_error: tempfail}}]
  tls_policy: [policy]
"""


@pytest.fixture
async def env(tmp_path, knot, mx):
    config = delivery_config(tmp_path, mx.port)
    store = await open_store(config)
    plugins = PluginManager()
    plugins.load_entrypoints()
    router, policy = Router(), Policy()
    plugins.register(router, "router")
    plugins.register(policy, "policy")
    pipes = outbound_pipelines(tmp_path, OUTBOUND, plugins)
    app = make_app(config, store, knot.port, plugins, pipes)
    runner = QueueRunner(app)
    yield Env(app, runner, mx, router, policy)
    await runner.stop()
    await store.close()


async def test_route_sees_the_attempt_and_may_choose_the_hosts(env):
    env.router.mx = [MXHost(10, "mx2.dest.test")]
    await env.enqueue(["bob@dest.test", "carol@dest.test"])
    await env.runner.run_once()
    assert env.router.seen == [("dest.test", ["bob@dest.test", "carol@dest.test"], 0)]
    assert sorted(env.delivered("127.0.0.3")) == ["bob@dest.test", "carol@dest.test"]
    assert env.delivered("127.0.0.2") == []


async def test_route_reject_fails_for_good_with_a_dsn(env):
    env.router.verdict = Verdict.reject(550, "5.7.1", "No mail to dest.test from here")
    await env.enqueue(["bob@dest.test"])
    await env.runner.run_once()
    assert await env.store.list_queue() == []
    [(_uid, dsn)] = await env.store.list_messages("alice@local.test")
    assert b"No mail to dest.test from here" in dsn
    assert env.names() == ["email.failed"]
    assert env.events[0][1]["dsn"] is True


async def test_route_tempfail_and_plugin_failure_defer(env):
    env.router.verdict = Verdict.tempfail(451, "4.4.0", "not now")
    await env.enqueue(["bob@dest.test"])
    t0 = time.time()
    await env.runner.run_once(t0)
    [entry] = await env.store.list_queue()
    assert entry.attempts == 1 and "451 4.4.0 not now (router)" in entry.last_error
    env.router.verdict, env.router.fail = None, True
    await env.runner.run_once(entry.next_attempt + 1)
    [entry] = await env.store.list_queue()
    assert entry.attempts == 2 and "4.3.0" in entry.last_error  # on_error: tempfail
    assert env.delivered("127.0.0.2") == []


async def test_null_mx_is_email_failed(env):
    await env.enqueue(["bob@nullmx.test"])
    await env.runner.run_once()
    assert env.names() == ["email.failed"]
    assert "5.1.10" in env.events[0][1]["error"]


async def test_throttle_postpones_without_counting_a_try(env):
    for i in range(3):
        await env.enqueue([f"u{i}@dest.test"], qid=f"Q{i}")
    await env.enqueue(["bob@other.test"], qid="Q9")  # other.test: no limit
    t0 = time.time()
    await env.runner.run_once(t0)
    assert len(env.delivered("127.0.0.2")) == 2  # per_minute: 2
    assert env.delivered("127.0.0.3") == ["bob@other.test"]
    [entry] = await env.store.list_queue()
    assert entry.attempts == 0 and entry.last_error is None
    assert 1 <= entry.next_attempt - t0 <= 61
    assert "email.deferred" not in env.names()


async def test_required_tls_without_starttls_defers_never_plaintext(env):
    env.policy.require = {"mx1.dest.test", "mx2.dest.test"}  # mx2 (127.0.0.3) has no STARTTLS
    env.router.mx = [MXHost(10, "mx2.dest.test")]
    await env.enqueue(["bob@dest.test"])
    await env.runner.run_once()
    assert env.delivered("127.0.0.3") == []
    [entry] = await env.store.list_queue()
    assert "4.7.5" in entry.last_error and "does not offer STARTTLS" in entry.last_error
    assert "testpolicy" in entry.last_error


async def test_failed_check_tries_the_next_host_and_sees_the_chain(env):
    env.policy.require = {"mx1.dest.test"}
    env.policy.refuse_cert = {"mx1.dest.test"}
    await env.enqueue(["bob@dest.test"])
    await env.runner.run_once()
    assert env.delivered("127.0.0.2") == []  # refused after the handshake, before MAIL
    assert env.delivered("127.0.0.3") == ["bob@dest.test"]  # mx2: no policy, plaintext
    [peer] = env.policy.peers
    assert peer.host == "mx1.dest.test" and peer.ip == "127.0.0.2"
    assert peer.chain and peer.version and peer.version.startswith("TLS")


async def test_passed_check_delivers_over_tls(env):
    env.policy.require = {"mx1.dest.test"}
    await env.enqueue(["bob@dest.test"])
    await env.runner.run_once()
    assert env.delivered("127.0.0.2") == ["bob@dest.test"]
    assert env.mx.sinks["127.0.0.2"].tls_sessions == 1


async def test_skipped_hosts_defer_with_the_plugins_reason(env):
    env.policy.skip = {"mx1.dest.test", "mx2.dest.test"}
    await env.enqueue(["bob@dest.test"])
    await env.runner.run_once()
    [entry] = await env.store.list_queue()
    assert "mx2.dest.test is not allowed" in entry.last_error
    assert env.delivered("127.0.0.2") == env.delivered("127.0.0.3") == []


def test_outbound_stage_names_are_checked(tmp_path):
    plugins = PluginManager()
    plugins.load_entrypoints()
    path = tmp_path / "p.yaml"
    path.write_text("outbound:\n  deliver: [queue]\n")
    with pytest.raises(Exception, match=r"p.yaml:2: pipeline outbound: unknown stage 'deliver'"):
        load_pipelines(path, plugins, 30.0)
    path.write_text("outbound:\n  throttle: [queue]\n")
    with pytest.raises(Exception, match="has no hook for the throttle stage"):
        load_pipelines(path, plugins, 30.0)


async def test_a_connection_is_not_reused_under_a_stricter_policy(env):
    await env.enqueue(["bob@dest.test"], qid="Q1")
    await env.runner.run_once()  # opportunistic TLS to mx1; the connection is kept
    assert env.delivered("127.0.0.2") == ["bob@dest.test"]
    env.policy.require = {"mx1.dest.test"}
    env.policy.refuse_cert = {"mx1.dest.test"}
    await env.enqueue(["carol@dest.test"], qid="Q2")
    await env.runner.run_once()
    # the kept connection never saw the check: a new one is made, and refused
    assert env.delivered("127.0.0.2") == ["bob@dest.test"]
    assert env.delivered("127.0.0.3") == ["carol@dest.test"]
    assert [p.host for p in env.policy.peers] == ["mx1.dest.test"]


@pytest.mark.parametrize(
    "options, problem",
    [
        ("{per_minute: -1}", "per_minute: expected 0 or more, got -1"),
        ("{domains: {example.com: lots}}", "example.com: expected a number of attempts"),
        ("{domains: {example.com: true}}", "example.com: expected a number of attempts"),
    ],
)
def test_throttle_settings_are_checked_when_the_pipeline_loads(tmp_path, options, problem):
    plugins = PluginManager()
    plugins.load_entrypoints()
    path = tmp_path / "p.yaml"
    path.write_text(f"outbound:\n  throttle:\n    - throttle: {options}\n")
    with pytest.raises(Exception, match=rf"p.yaml:3: plugin 'throttle' option .*{problem}"):
        load_pipelines(path, plugins, 30.0)
